// halo-node under a test's control, and the state file it rewrites on every change:
//
//   {"node_id":"5f0c…","incarnation":2,"state":"alive","gcs_connected":true,
//    "pid":4242,"updated_at_ms":1764000000000, ...}
//
// state is one of registering, alive, fenced, draining, stopped (launcher/node).
//
//   NodeDaemon::Options options;
//   options.where = Placement{hosts.get(), 1};
//   options.gcs_address = gcs->address();
//   options.secret_file = dir->secret_path();
//   options.state_file = dir->file("node1.json");
//   options.name = "node1";
//   auto node = NodeDaemon::start(options);           // returns once it is alive and connected
//   ASSERT_TRUE(node.ok()) << node.status();
//   (*node)->process().stop();                        // SIGSTOP
//   auto fenced = (*node)->wait_for_state(
//       [](const NodeStateFile& s) { return s.state == "fenced"; }, 20s, "fenced");
//
// Not thread-safe; use from the thread that started it (its ChildProcess dies with that
// thread).
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

// One reading of a node daemon's state file.
struct NodeStateFile {
  std::string node_id;  // 32 hex digits.
  std::string address;  // The node daemon's transport address.
  uint64_t incarnation = 0;
  std::string state;
  bool gcs_connected = false;
  int64_t pid = 0;            // The daemon's process id.
  int64_t updated_at_ms = 0;  // Wall clock of the node's last rewrite of the file.
  std::string text;           // The whole file, for messages.
};

// NOT_FOUND when the file does not exist (yet), INVALID_ARGUMENT when it is not a JSON object.
StatusOr<NodeStateFile> read_node_state_file(const std::string& path);

class NodeDaemon {
 public:
  struct Options {
    Placement where;
    std::string gcs_address;
    std::string secret_file;
    std::string state_file;  // Removed before the start.
    std::string name;        // "node1": labels its output and messages.
    std::vector<std::string> extra_flags;
    std::chrono::milliseconds start_timeout{30'000};
  };

  // Starts halo-node and waits until its state file says alive and connected to the GCS.
  static StatusOr<std::unique_ptr<NodeDaemon>> start(Options options);

  // The state file now.
  StatusOr<NodeStateFile> state() const { return read_node_state_file(options_.state_file); }
  // Reads the state file until `condition` holds and returns that reading. DEADLINE_EXCEEDED,
  // naming `what` and quoting the last reading, when it does not within `timeout`.
  StatusOr<NodeStateFile> wait_for_state(const std::function<bool(const NodeStateFile&)>& condition,
                                         std::chrono::steady_clock::duration timeout,
                                         std::string_view what) const;

  const std::string& name() const { return options_.name; }
  test::ChildProcess& process() { return *process_; }

 private:
  explicit NodeDaemon(Options options) : options_(std::move(options)) {}

  Options options_;
  std::unique_ptr<test::ChildProcess> process_;
};

// Path of the halo-node program under test.
std::string node_program();

}  // namespace halo::gcs::testing
