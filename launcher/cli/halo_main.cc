// halo: the command line that starts, inspects and stops a halo cluster (docs/cli.md).
//
//   halo start --head                       GCS + one node on this machine; prints the address
//   halo start --address 10.0.0.1:6379      a node on this machine joins that cluster
//   halo status [--json] [--verbose]        nodes, states, incarnations, resources, labels
//                                           (--verbose: and each node's hwloc topology)
//   halo drain NODE [--wait]                a node leaves gracefully
//   halo stop                               stops what this machine started for the session
//
// Exit codes: 0 done; 1 the command failed (the message says why); 2 bad command line.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "launcher/cli/commands.h"

namespace {

// `from_env`: --address and --secret-file default to $HALO_ADDRESS and $HALO_SECRET_FILE, as
// for the cluster's client programs (not for `halo start`, where they say what to join).
void add_cluster_options(CLI::App* command, halo::launcher::cli::ClusterOptions& o, bool address,
                         bool from_env = true) {
  command->add_option("--session-dir", o.session_dir,
                      "session folder (default: session_latest in $HALO_TEMP_DIR or /tmp/halo)");
  // An option whose default is the session's `what`, or first the variable `env`.
  auto session_default = [&](const char* name, std::string& value, const std::string& help,
                             const std::string& what, const char* env) {
    const std::string default_text =
        from_env ? halo::str_cat("$", env, ", else the session's ", what) : "the session's " + what;
    CLI::Option* option =
        command->add_option(name, value, halo::str_cat(help, " (default: ", default_text, ")"));
    if (from_env) option->envname(env);
  };
  if (address) {
    session_default("--address", o.address, "GCS address, HOST:PORT or ucx://HOST:PORT",
                    "gcs_address", "HALO_ADDRESS");
  }
  session_default("--secret-file", o.secret_file, "cluster secret file, mode 0600",
                  "cluster_secret", "HALO_SECRET_FILE");
  command->add_option("--transport", o.transport, "transport: ucx or ofi")->capture_default_str();
  command
      ->add_option("--timeout-s", o.timeout_s,
                   "seconds to wait for the GCS (and for daemons to start)")
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace halo::launcher::cli;
  CLI::App app{"halo: start, inspect and stop a halo cluster (docs/cli.md)"};
  app.require_subcommand(1);

  StartOptions start;
  CLI::App* start_cmd = app.add_subcommand(
      "start", "start a cluster's head (--head) or a node that joins one (--address)");
  add_cluster_options(start_cmd, start.cluster, true, /*from_env=*/false);
  start_cmd->add_flag("--head", start.head, "start the GCS and one node on this machine");
  start_cmd->add_option("--host", start.host, "address the daemons listen on")
      ->capture_default_str();
  start_cmd->add_option("--port", start.port, "the GCS's port (with --head)")
      ->capture_default_str();
  start_cmd->add_option("--node-port", start.node_port, "the node's port; 0 picks a free one")
      ->capture_default_str();
  start_cmd->add_option("--data-dir", start.data_dir,
                        "the GCS's data folder (default: <session>/gcs_data)");
  start_cmd->add_option("--resources", start.resources, "custom resources, e.g. \"GPU=2\"");
  start_cmd->add_option("--labels", start.labels, "labels, e.g. \"failure_domain=rack1\"");
  start_cmd->add_option("--num-cpus", start.num_cpus, "CPUs to register (default: detected)");
  start_cmd->add_option("--memory-bytes", start.memory_bytes,
                        "memory to register (default: detected)");
  start_cmd->add_option("--gcs-flag", start.gcs_flags,
                        "extra flag for halo-gcs, e.g. --gcs-flag=--health-check-period-ms=200 "
                        "(repeatable)");
  start_cmd->add_option("--node-flag", start.node_flags, "extra flag for halo-node (repeatable)");

  StopOptions stop;
  CLI::App* stop_cmd =
      app.add_subcommand("stop", "stop the daemons this machine started for the session");
  stop_cmd->add_option("--session-dir", stop.session_dir, "session folder (default: the latest)");
  stop_cmd->add_option("--grace-s", stop.grace_s, "seconds between SIGTERM and SIGKILL")
      ->capture_default_str();

  StatusOptions status;
  CLI::App* status_cmd = app.add_subcommand("status", "show the cluster's nodes and GCS");
  add_cluster_options(status_cmd, status.cluster, true);
  status_cmd->add_flag("--json", status.json, "print JSON");
  status_cmd->add_flag("--verbose,-v", status.verbose,
                       "also each node's topology (NUMA nodes, cores, NIC, progress thread)");
  status_cmd->add_flag("--all", status.all, "include nodes that left (REMOVED)");

  DrainOptions drain;
  CLI::App* drain_cmd = app.add_subcommand("drain", "make a node leave the cluster gracefully");
  add_cluster_options(drain_cmd, drain.cluster, true);
  drain_cmd->add_option("node", drain.node, "node id (hex) or a unique prefix of it")->required();
  drain_cmd->add_option("--reason", drain.reason, "why (shown in halo status)")
      ->capture_default_str();
  drain_cmd->add_flag("--wait", drain.wait, "wait until the node has left (REMOVED)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  halo::Status result;
  if (*start_cmd) {
    result = run_start(start);
  } else if (*stop_cmd) {
    result = run_stop(stop);
  } else if (*status_cmd) {
    result = run_status(status);
  } else if (*drain_cmd) {
    result = run_drain(drain);
  }
  if (!result.ok()) {
    std::cerr << "halo: " << result << "\n";
    return 1;
  }
  return 0;
}
