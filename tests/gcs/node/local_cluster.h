// Test support for node and CLI tests: a real halo-gcs child on 127.0.0.1 with its own data
// folder and secret, halo-node children, and a GcsClient to look at the node table.
//
//   TempDir dir;
//   auto gcs = GcsChild::start(dir.path(), {"--health-check-period-ms=200"});
//   auto node = spawn_node(gcs->address(), gcs->secret_file(), dir.path() + "/n1.json");
//   ASSERT_TRUE(wait_for_node_state(dir.path() + "/n1.json", "alive", 20s).ok());
//   auto nodes = gcs->nodes();
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gcs/client/gcs_client.h"
#include "halo/base/status.h"
#include "launcher/node/node_state_file.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"

namespace halo::test {

// Where the programs are: build/bin.
std::string program(const std::string& name);

// A TCP port that was free a moment ago on 127.0.0.1.
uint16_t free_port();
// Writes a 64-hex-digit secret to `path`, mode 0600.
void write_secret(const std::string& path);

// The health-check settings node tests use: fast, with room for a loaded machine.
std::vector<std::string> fast_health_checks(int initial_delay_ms = 500);

class GcsChild {
 public:
  // Starts halo-gcs on 127.0.0.1:`port` (0: a free one) with data in `dir`/gcs_data, secret
  // `dir`/secret (made if missing); returns once it prints that it listens.
  static StatusOr<std::unique_ptr<GcsChild>> start(const std::string& dir,
                                                   std::vector<std::string> flags,
                                                   uint16_t port = 0);
  const std::string& address() const { return address_; }
  uint16_t port() const { return port_; }
  const std::string& secret_file() const { return secret_file_; }
  ChildProcess& process() { return *process_; }

  // SIGKILL, then the same command again (same port, same data).
  Status kill();
  Status restart();

  // The node table (a fresh client per call: robust across restarts).
  StatusOr<std::vector<gcs::proto::NodeInfo>> nodes(bool include_removed = false);
  // The row of `node_id_hex`, if the table has it.
  StatusOr<gcs::proto::NodeInfo> node(const std::string& node_id_hex, bool include_removed = true);

 private:
  Status launch();
  std::string dir_;
  std::vector<std::string> flags_;
  uint16_t port_ = 0;
  std::string secret_file_;
  std::string address_;
  std::unique_ptr<ChildProcess> process_;
};

// Starts halo-node (stdout echoed with `label`).
StatusOr<ChildProcess> spawn_node(const std::string& gcs_address, const std::string& secret_file,
                                  const std::string& state_file,
                                  std::vector<std::string> extra = {},
                                  const std::string& label = "node");

// Waits until the state file shows `state` (and `pred`, if given); returns the record.
StatusOr<node::NodeStateRecord> wait_for_node_state(
    const std::string& state_file, const std::string& state,
    std::chrono::steady_clock::duration timeout,
    const std::function<bool(const node::NodeStateRecord&)>& pred = nullptr);

std::string hex(const std::string& bytes);

}  // namespace halo::test
