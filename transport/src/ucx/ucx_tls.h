// Which UCX transports (UCX_TLS) a halo context asks for, and what follows from the choice.
//
// halo leaves UCX's shared-memory FIFO transports (the "mm" family: posix, sysv, xpmem) out
// unless asked for them. A sender into an mm FIFO first reserves a slot (advances the
// receiver's head) and only then writes the element; a sender killed in between leaves a slot
// that never completes, and UCX 1.13's receiver waits on it for ever: every later message to
// that process, from any peer, is stuck behind it (its progress thread spins, since arming
// the worker reports the unread head as busy). One client killed at the wrong moment would
// silence its node daemon: health checks unanswered, the node fenced and declared dead. Same-host
// processes talk over TCP loopback instead (and UCX's peer-failure handling then covers them).
#pragma once

#include <string>

namespace halo::transport::internal::ucx {

struct TlsChoice {
  // What to hand ucp_config_modify("TLS", ...); empty: keep what ucp_config_read found (the
  // user's UCX_TLS).
  std::string tls;
  // The transports named may include an mm one (posix, sysv, xpmem; "sm", "shm", "all" or an
  // explicit name): worth a warning, see above.
  bool may_use_shared_memory_fifo = false;
  // UCX may carry data over TCP with no InfiniBand transport beside it: what
  // ucx_tcp_copy_messages applies to.
  bool may_carry_data_over_tcp = false;
};

// `configured`: the ucx_tls knob (empty: not set). `env_ucx_tls`: the UCX_TLS environment
// variable or nullptr. `has_infiniband`: an InfiniBand device exists on this host.
// The knob wins over UCX_TLS, UCX_TLS over halo's default, which is "^mm" (everything but the
// shared-memory FIFO transports).
TlsChoice choose_tls(const std::string& configured, const char* env_ucx_tls, bool has_infiniband);

// Whether /sys/class/infiniband lists a device.
bool host_has_infiniband();

}  // namespace halo::transport::internal::ucx
