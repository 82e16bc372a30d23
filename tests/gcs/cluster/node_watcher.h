// A subscriber to the GCS's node changes, for tests: the gcs_watch program (gcs_watch.cc),
// run where the GCS is reachable (inside test host 0; the test process is in the root network
// namespace and cannot reach 198.18.x.x), and the events it has printed so far.
//
//   auto watcher = NodeWatcher::start(Placement{hosts.get(), 0}, gcs->address(), secret_path);
//   ASSERT_TRUE(watcher.ok()) << watcher.status();
//   auto dead = (*watcher)->wait_for(
//       [&](const NodeEvent& e) { return e.node_id == id && e.state == "DEAD"; }, 10s,
//       "DEAD for node1");
//   ASSERT_TRUE(dead.ok()) << dead.status();
//   auto detected_at = std::chrono::microseconds(dead->mono_us);  // steady clock, µs
//
// Not thread-safe; use from the thread that started it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "halo/base/status.h"
#include "tests/gcs/cluster/placement.h"
#include "tests/support/child_process.h"

namespace halo::gcs::testing {

// One node change as the subscriber received it.
struct NodeEvent {
  uint64_t seq = 0;
  bool resync = false;  // Part of a resync (the whole table), not a change as it happened.
  std::string node_id;  // 32 hex digits.
  uint64_t incarnation = 0;
  std::string state;  // The proto enum's name: ALIVE, SUSPECTED, DEAD, DRAINING, REMOVED.
  std::string reason;
  int64_t changed_at_ms = 0;  // The row's state_changed_at_ms: the GCS's wall clock.
  int64_t mono_us = 0;        // Steady clock (CLOCK_MONOTONIC) at receipt, µs.

  std::string to_string() const;
};

class NodeWatcher {
 public:
  // Starts gcs_watch at `where` and waits until it has subscribed.
  static StatusOr<std::unique_ptr<NodeWatcher>> start(const Placement& where,
                                                      const std::string& gcs_address,
                                                      const std::string& secret_file);

  // The first event, among those heard so far and those arriving within `timeout`, that
  // `match` accepts. DEADLINE_EXCEEDED naming `what`, with the transcript, when none does.
  StatusOr<NodeEvent> wait_for(const std::function<bool(const NodeEvent&)>& match,
                               std::chrono::steady_clock::duration timeout, std::string_view what);
  // Every event heard so far (reads what has arrived without waiting).
  const std::vector<NodeEvent>& events();
  // The events, one per line, for failure messages.
  std::string transcript() const;

 private:
  explicit NodeWatcher(test::ChildProcess process) : process_(std::move(process)) {}
  // Reads one line (waiting up to `timeout`) and records it if it is a node event. The status
  // of the read: DEADLINE_EXCEEDED when no line came, UNAVAILABLE once gcs_watch has ended.
  Status read_one(std::chrono::steady_clock::duration timeout);

  test::ChildProcess process_;
  std::vector<NodeEvent> events_;
  std::vector<std::string> unparsed_;  // Lines that were not events, kept for messages.
};

// Path of the gcs_watch program.
std::string watch_program();

}  // namespace halo::gcs::testing
