// halo-gcs under a test's control: started on a data directory and a port, killed with
// SIGKILL, restarted on the same files and port, as an operator (or the launcher) would.
//
//   GcsServerProcess::Options options;
//   options.where = Placement{hosts.get(), 0};
//   options.data_dir = dir->file("gcs");
//   options.secret_file = dir->secret_path();
//   options.health = HealthChecks{.initial_delay_ms = 500, .period_ms = 200, .timeout_ms = 200,
//                                 .failure_threshold = 3};
//   auto gcs = GcsServerProcess::start(options);      // returns once it serves
//   ASSERT_TRUE(gcs.ok()) << gcs.status();
//   connect_to((*gcs)->address());                    // "ucx://198.18.7.1:40123"
//   (*gcs)->kill();
//   ASSERT_TRUE((*gcs)->restart().ok());              // same address
//
// "Serving" is what halo-gcs promises with --address-file: it writes its address there once it
// answers requests. Not thread-safe; use from the thread that started it (its ChildProcess
// dies with that thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "tests/gcs/cluster/placement.h"
#include "tests/support/child_process.h"

namespace halo::gcs::testing {

// The GCS's health-check knobs (Ray's names), as the tests set them.
struct HealthChecks {
  int64_t initial_delay_ms = 500;
  int64_t period_ms = 200;
  int64_t timeout_ms = 200;
  int64_t failure_threshold = 3;

  std::vector<std::string> flags() const;
  // period × threshold + timeout: the promised bound from a node's death to DEAD.
  std::chrono::milliseconds death_bound() const;
};

class GcsServerProcess {
 public:
  struct Options {
    Placement where;
    std::string data_dir;     // Created if missing.
    std::string secret_file;  // The cluster secret, mode 0600.
    // 0 picks a free port at the first start; restarts reuse the port the GCS got, so its
    // address stays the same for clients that reconnect.
    uint16_t port = 0;
    HealthChecks health;
    std::string fsync_policy = "always";  // "always" or "group".
    std::vector<std::string> extra_flags;
    // Time allowed from spawn to serving.
    std::chrono::milliseconds start_timeout{30'000};
  };

  // Starts halo-gcs and waits until it serves. On failure the status holds its output.
  static StatusOr<std::unique_ptr<GcsServerProcess>> start(Options options);

  // SIGKILL, then reaps it.
  StatusOr<test::ExitStatus> kill();
  // Starts it again (after kill()) on the same data directory, port and flags, with the given
  // fsync policy (empty: the one it had), and waits until it serves. The status names the
  // data directory and holds the output when it does not come back.
  Status restart(const std::string& fsync_policy = "");

  // The address it serves on (from its address file).
  const std::string& address() const { return address_; }
  const std::string& data_dir() const { return options_.data_dir; }
  test::ChildProcess& process() { return *process_; }
  // Spawn to serving, of the last start or restart.
  std::chrono::steady_clock::duration last_start_time() const { return last_start_time_; }

 private:
  explicit GcsServerProcess(Options options) : options_(std::move(options)) {}
  Status launch();

  Options options_;
  std::string address_file_;
  std::string address_;
  std::unique_ptr<test::ChildProcess> process_;
  std::chrono::steady_clock::duration last_start_time_{};
};

// Path of the halo-gcs program under test.
std::string gcs_program();

}  // namespace halo::gcs::testing
