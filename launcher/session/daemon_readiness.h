// Waiting for daemons that were just started to serve: the GCS once it wrote its address
// file, a node once its state file says it is a member. Polled with a deadline; a daemon that
// ends meanwhile ends the wait at once, with the end of its log.
//
//   std::string address;
//   HALO_RETURN_IF_ERROR(wait_for_daemons(
//       {{.what = "halo-gcs", .pid = pid, .log = session.log_file("gcs"),
//         .ready = [&]() -> Status { HALO_ASSIGN_OR_RETURN(address, session.gcs_address());
//                                    return Status(); }}},
//       std::chrono::seconds(10)));
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "launcher/node/node_state_file.h"

namespace halo::launcher {

struct DaemonStart {
  std::string what;  // For messages: "halo-gcs", "halo-node node-1".
  pid_t pid = 0;
  std::string log;  // Its log file, whose end goes into the messages.
  // OK once it serves; otherwise why not yet (goes into the time-out message).
  std::function<Status()> ready;
  // Whether it still runs; empty: process_running(pid).
  std::function<bool()> running = nullptr;
};

// Polls every daemon's `ready` until all are OK. UNAVAILABLE as soon as one that is not ready
// has ended; DEADLINE_EXCEEDED naming the first one not ready after `timeout`. Both messages
// name the daemon and its pid and hold the end of its log.
Status wait_for_daemons(const std::vector<DaemonStart>& daemons, std::chrono::milliseconds timeout);

// The node's state from its state file once it is a member (alive, with an incarnation);
// otherwise an error saying what it is instead (or that the file is not there yet).
StatusOr<node::NodeStateRecord> node_ready(const std::string& state_file);

}  // namespace halo::launcher
