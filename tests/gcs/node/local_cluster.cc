#include "tests/gcs/node/local_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gcs/client/cluster_secret.h"
#include "tests/support/test_store_size.h"
#include "tests/support/wait_for.h"

namespace halo::test {

using namespace std::chrono_literals;

std::string program(const std::string& name) { return std::string(HALO_BIN_DIR) + "/" + name; }

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

void write_secret(const std::string& path) {
  std::ofstream(path) << "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  ::chmod(path.c_str(), 0600);
}

std::vector<std::string> fast_health_checks(int initial_delay_ms) {
  return {str_cat("--health-check-initial-delay-ms=", initial_delay_ms),
          "--health-check-period-ms=200", "--health-check-timeout-ms=200",
          "--health-check-failure-threshold=3"};
}

StatusOr<std::unique_ptr<GcsChild>> GcsChild::start(const std::string& dir,
                                                    std::vector<std::string> flags, uint16_t port) {
  auto gcs = std::unique_ptr<GcsChild>(new GcsChild());
  gcs->dir_ = dir;
  gcs->flags_ = std::move(flags);
  gcs->port_ = port != 0 ? port : free_port();
  gcs->secret_file_ = dir + "/secret";
  if (::access(gcs->secret_file_.c_str(), F_OK) != 0) write_secret(gcs->secret_file_);
  HALO_RETURN_IF_ERROR(gcs->launch());
  return gcs;
}

Status GcsChild::launch() {
  std::vector<std::string> argv = {program("halo-gcs"),
                                   "--data-dir=" + dir_ + "/gcs_data",
                                   "--secret-file=" + secret_file_,
                                   "--host=127.0.0.1",
                                   str_cat("--port=", port_),
                                   "--address-file=" + dir_ + "/gcs_address"};
  for (const auto& f : flags_) argv.push_back(f);
  ChildOptions options;
  options.echo_label = "gcs";
  HALO_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::spawn(argv, options));
  process_ = std::make_unique<ChildProcess>(std::move(child));
  auto line = process_->wait_for_line("halo-gcs listening on ", 30s);
  if (!line.ok()) return line.status().with_context("halo-gcs did not start");
  std::string rest = line->substr(std::string("halo-gcs listening on ").size());
  address_ = rest.substr(0, rest.find(' '));
  return Status();
}

Status GcsChild::kill() {
  auto killed = process_->kill();
  return killed.ok() ? Status() : killed.status();
}

Status GcsChild::restart() {
  if (process_->running()) HALO_RETURN_IF_ERROR(kill());
  return launch();
}

StatusOr<std::vector<gcs::proto::NodeInfo>> GcsChild::nodes(bool include_removed) {
  gcs::GcsClientOptions options;
  options.address = address_;
  HALO_ASSIGN_OR_RETURN(options.cluster_secret, gcs::read_secret_file(secret_file_));
  options.reconnect_timeout = 10s;
  HALO_ASSIGN_OR_RETURN(auto client, gcs::GcsClient::create(options));
  gcs::proto::GetNodesRequest request;
  request.set_include_removed(include_removed);
  HALO_ASSIGN_OR_RETURN(auto response,
                        (client->call<gcs::proto::GetNodesRequest, gcs::proto::GetNodesResponse>(
                            "gcs.get_nodes", request)));
  return std::vector<gcs::proto::NodeInfo>(response.nodes().begin(), response.nodes().end());
}

StatusOr<gcs::proto::NodeInfo> GcsChild::node(const std::string& node_id_hex,
                                              bool include_removed) {
  HALO_ASSIGN_OR_RETURN(auto all, nodes(include_removed));
  for (const auto& n : all) {
    if (hex(n.node_id()) == node_id_hex) return n;
  }
  return not_found_error(str_cat("node ", node_id_hex, " is not in the GCS's table"));
}

StatusOr<ChildProcess> spawn_node(const std::string& gcs_address, const std::string& secret_file,
                                  const std::string& state_file, std::vector<std::string> extra,
                                  const std::string& label) {
  std::vector<std::string> argv = {program("halo-node"), "--gcs-address=" + gcs_address,
                                   "--secret-file=" + secret_file, "--host=127.0.0.1",
                                   "--state-file=" + state_file,
                                   // A store small enough for many nodes on one test machine.
                                   "--object-store-memory=" + std::to_string(kTestStoreBytes)};
  for (auto& e : extra) argv.push_back(std::move(e));
  ChildOptions options;
  options.echo_label = label;
  return ChildProcess::spawn(argv, options);
}

StatusOr<node::NodeStateRecord> wait_for_node_state(
    const std::string& state_file, const std::string& state,
    std::chrono::steady_clock::duration timeout,
    const std::function<bool(const node::NodeStateRecord&)>& pred) {
  StatusOr<node::NodeStateRecord> last = not_found_error("never read");
  const bool reached = wait_for(
      [&] {
        last = node::read_node_state_file(state_file);
        return last.ok() && last->state == state && (pred == nullptr || pred(*last));
      },
      timeout);
  if (reached) return last;
  return deadline_exceeded_error(
      str_cat("the node state file ", state_file, " did not show '", state,
              "' in time; last: ", last.ok() ? node::to_json(*last) : last.status().to_string()));
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

}  // namespace halo::test
