// `halo start --head` (GCS + one node) and `halo start --address HOST:PORT` (a node joins).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_address.h"
#include "launcher/cli/commands.h"
#include "launcher/cli/gcs_connection.h"
#include "launcher/node/node_state_file.h"
#include "launcher/session/daemon_process.h"
#include "launcher/session/daemon_readiness.h"
#include "launcher/session/session.h"

namespace halo::launcher::cli {
namespace {

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(std::max(seconds, 0.1) * 1000)));
}

// `halo-gcs` and `halo-node` next to the running `halo` (build/bin, <prefix>/bin) when they
// are there and executable, else the bare name, found in PATH by exec.
std::string program_path(const std::string& name) {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  const std::string exe = n > 0 ? std::string(path, static_cast<size_t>(n)) : "./halo";
  const std::string local = exe.substr(0, exe.rfind('/')) + "/" + name;
  return ::access(local.c_str(), X_OK) == 0 ? local : name;
}

struct StartedNode {
  std::string name;
  node::NodeStateRecord state;
  pid_t pid = 0;
};

StatusOr<StartedNode> start_node(const StartOptions& options, const Session& session,
                                 const std::string& gcs_address, const std::string& secret_file) {
  StartedNode started;
  started.name = session.next_node_name();
  const std::string state_file = session.node_state_file(started.name);
  const std::string log = session.log_file(started.name);
  std::vector<std::string> argv = {program_path("halo-node"),
                                   "--gcs-address=" + gcs_address,
                                   "--secret-file=" + secret_file,
                                   "--host=" + options.host,
                                   str_cat("--port=", options.node_port),
                                   "--state-file=" + state_file,
                                   "--transport=" + options.cluster.transport};
  if (!options.resources.empty()) argv.push_back("--resources=" + options.resources);
  if (!options.labels.empty()) argv.push_back("--labels=" + options.labels);
  if (options.num_cpus >= 0) argv.push_back(str_cat("--num-cpus=", options.num_cpus));
  if (options.memory_bytes >= 0) argv.push_back(str_cat("--memory-bytes=", options.memory_bytes));
  for (const auto& flag : options.node_flags) argv.push_back(flag);
  HALO_ASSIGN_OR_RETURN(started.pid, spawn_daemon(argv, log));
  HALO_RETURN_IF_ERROR(write_pid_file(session.pid_file(started.name), started.pid));
  HALO_RETURN_IF_ERROR(wait_for_daemons({{.what = "halo-node " + started.name,
                                          .pid = started.pid,
                                          .log = log,
                                          .ready = [&]() -> Status {
                                            HALO_ASSIGN_OR_RETURN(started.state,
                                                                  node_ready(state_file));
                                            return Status();
                                          }}},
                                        to_ms(options.cluster.timeout_s)));
  return started;
}

Status start_head(const StartOptions& options) {
  HALO_ASSIGN_OR_RETURN(Session session, Session::create(options.cluster.session_dir));
  const std::string secret_file = session.secret_file();
  HALO_RETURN_IF_ERROR(write_new_secret_file(secret_file));
  const std::string data_dir = options.data_dir.empty() ? session.gcs_data_dir() : options.data_dir;
  const std::string log = session.log_file("gcs");
  std::vector<std::string> argv = {program_path("halo-gcs"),
                                   "--data-dir=" + data_dir,
                                   "--secret-file=" + secret_file,
                                   "--host=" + options.host,
                                   str_cat("--port=", options.port),
                                   "--address-file=" + session.gcs_address_file(),
                                   "--transport=" + options.cluster.transport};
  for (const auto& flag : options.gcs_flags) argv.push_back(flag);
  HALO_ASSIGN_OR_RETURN(pid_t gcs_pid, spawn_daemon(argv, log));
  HALO_RETURN_IF_ERROR(write_pid_file(session.pid_file("gcs"), gcs_pid));
  std::string address;
  HALO_RETURN_IF_ERROR(wait_for_daemons({{.what = "halo-gcs",
                                          .pid = gcs_pid,
                                          .log = log,
                                          .ready = [&]() -> Status {
                                            HALO_ASSIGN_OR_RETURN(address, session.gcs_address());
                                            return Status();
                                          }}},
                                        to_ms(options.cluster.timeout_s)));
  auto node = start_node(options, session, address, secret_file);
  if (!node.ok()) {
    return node.status().with_context(str_cat("the GCS serves at ", address,
                                              " but its node did not start (`halo stop` stops "
                                              "the GCS)"));
  }
  // HOST:PORT of the address halo-gcs wrote: the port it really got (with --port 0 too).
  const size_t scheme = address.find("://");
  const std::string host_port = scheme == std::string::npos ? address : address.substr(scheme + 3);
  std::printf(
      "halo cluster started (session %s)\n"
      "  GCS address:   %s\n"
      "  secret file:   %s\n"
      "  node:          %s (incarnation %llu, %s)\n"
      "  logs:          %s/logs/\n"
      "To add a node from another machine, copy the secret file there (mode 0600) and run:\n"
      "  halo start --address %s --secret-file /path/to/cluster_secret\n"
      "From this machine: halo start --address %s\n"
      "Status: halo status    Stop: halo stop\n",
      session.dir().c_str(), address.c_str(), secret_file.c_str(), node->state.node_id.c_str(),
      static_cast<unsigned long long>(node->state.incarnation), node->name.c_str(),
      session.dir().c_str(), host_port.c_str(), host_port.c_str());
  std::fflush(stdout);
  return Status();
}

Status start_joining_node(const StartOptions& options) {
  if (options.cluster.address.empty()) {
    return invalid_argument_error(
        "halo start needs --head (start a cluster) or --address HOST:PORT (join one)");
  }
  // The session to record the node in: the one named, else this machine's latest (a node
  // joining the cluster started here), else a new one (a machine joining from afar).
  StatusOr<Session> session = options.cluster.session_dir.empty()
                                  ? Session::open("")
                                  : Session::create(options.cluster.session_dir);
  if (!session.ok()) session = Session::create("");
  if (!session.ok()) return session.status();
  const std::string secret_file =
      options.cluster.secret_file.empty() ? session->secret_file() : options.cluster.secret_file;
  if (auto secret = gcs::read_secret_file(secret_file); !secret.ok()) {
    return secret.status().with_context("pass the cluster's secret with --secret-file");
  }
  ClusterOptions probe = options.cluster;
  probe.secret_file = secret_file;
  std::string address;
  {
    // Fails early, with the address tried, rather than leaving a node that cannot join.
    HALO_ASSIGN_OR_RETURN(GcsConnection connection, connect_to_gcs(probe));
    address = connection.address;
  }
  HALO_ASSIGN_OR_RETURN(StartedNode node, start_node(options, *session, address, secret_file));
  std::printf(
      "halo-node %s started (node %s, incarnation %llu, pid %d), joined the GCS at %s\n"
      "  state: %s  log: %s\n",
      node.name.c_str(), node.state.node_id.c_str(),
      static_cast<unsigned long long>(node.state.incarnation), node.pid, address.c_str(),
      session->node_state_file(node.name).c_str(), session->log_file(node.name).c_str());
  std::fflush(stdout);
  return Status();
}

}  // namespace

Status run_start(const StartOptions& options) {
  if (options.head && !options.cluster.address.empty()) {
    return invalid_argument_error("halo start: --head and --address exclude each other");
  }
  return options.head ? start_head(options) : start_joining_node(options);
}

}  // namespace halo::launcher::cli
