// Configuration of a Transport. Every knob is documented here, once, next to its default;
// see halo/base/config.h for how defaults, file, HALO_* environment and flags combine.
#pragma once

#include <cstdint>
#include <string>

namespace halo::transport {

struct TransportConfig {
  // Which RDMA library carries the bytes: "ucx" (UCP) or "ofi" (libfabric, FI_EP_RDM).
  std::string transport = "ucx";
  // UCX transports (UCX_TLS), e.g. "tcp,self". Empty: the UCX_TLS environment variable, or
  // else "^mm": every transport UCX finds except its shared-memory FIFO (posix, sysv, xpmem),
  // which a process killed mid-send can wedge for its peer (UCX 1.13); processes on one host
  // then talk over TCP loopback. Naming posix or sysv here is allowed, with a warning.
  std::string ucx_tls = "";
  // libfabric provider: "tcp" (tcp;ofi_rxm), "shm", or any provider fi_info lists.
  std::string ofi_provider = "tcp";
  // Network interface to use (UCX_NET_DEVICES / FI_TCP_IFACE), e.g. "eth0". Empty: the
  // interface that carries the listen/connect address.
  std::string net_interface = "";
  // Core to pin the progress thread to (hwloc logical index); -1 leaves it unpinned.
  int32_t progress_core = -1;
  // How the progress thread waits for work: "poll" spins forever (lowest latency, burns a
  // core), "event" sleeps on the library's event fd, "hybrid" spins for progress_spin_us after
  // the last event and then sleeps.
  std::string progress_mode = "hybrid";
  int64_t progress_spin_us = 200;
  // In "event" and "hybrid" mode: while this process awaits a reply to an RPC call or the
  // completion of a transfer, the thread spins this long after the last event (if longer than
  // progress_spin_us) before it sleeps, so that an answer arriving soon finds it awake. With
  // nothing awaited, a thread in "event" mode sleeps at once. Longer is not better where
  // threads outnumber cores: on two cores, 1 MiB gets from another node ran at ~750 MB/s with
  // 0, ~1,300 MB/s with 30 us; a stream of 1 MiB puts at 0.6 of memcpy with 0 or 30 us and
  // 0.37 with 60 us (the client's thread, always awaiting a batch's answer, no longer slept
  // between puts and took a core from the caller).
  int64_t progress_await_spin_us = 30;
  // Connection set-up (including authentication) must finish within this time.
  int64_t connect_timeout_ms = 10000;
  // A peer that connected must authenticate within this time or is dropped.
  int64_t auth_timeout_ms = 5000;
  // A keep-alive is sent to a peer not heard from for this long.
  int64_t keepalive_interval_ms = 500;
  // A peer not heard from for this long while operations to it are pending is declared
  // failed: its endpoint is closed and every pending operation on it completes with
  // UNAVAILABLE. Bounds how long any operation to a dead or unreachable peer can hang.
  int64_t peer_timeout_ms = 5000;
  // A peer with no operation pending is declared failed after this much silence. Longer than
  // peer_timeout_ms because a healthy peer that is busy pushing bulk data to us (RMA, which
  // we do not see) may answer keep-alives late, and nothing here waits on it.
  int64_t idle_peer_timeout_ms = 30000;
  // After an endpoint is taken down, the library has this long to complete its outstanding
  // operations (releasing their buffers) before they are completed with an error regardless.
  int64_t close_grace_ms = 2000;
  // Largest active-message header and payload accepted from a peer; larger ones are refused
  // (sender side) or make the receiver drop the peer.
  uint64_t max_am_header_bytes = 64 * 1024;
  uint64_t max_am_payload_bytes = 1ull << 32;
  // How put/get move bytes: "rma" (the library's one-sided put/get), "am" (active-message
  // rendezvous straight into the target region), or "auto" (what measured fastest for the
  // transport in use; see docs/transport.md).
  std::string rma_mechanism = "auto";
  // UCX's TCP transport (1.13 at least) completes a zero-copy message twice when sending it
  // fails, so a peer that dies while messages stream to it can abort this process. When on
  // and UCX may carry data over TCP (and no InfiniBand transport), messages are copied
  // through 256 KiB segments instead (UCX_ZCOPY_THRESH=inf, UCX_TCP_{TX,RX}_SEG_SIZE=256K),
  // at the same bandwidth; UCX_* variables set in the environment win. Every process of a
  // cluster must agree. See docs/transport.md.
  bool ucx_tcp_copy_messages = true;

  template <typename V>
  void visit(V& v) {
    v("transport", transport, "RDMA library: ucx or ofi");
    v("ucx_tls", ucx_tls, "UCX transports (UCX_TLS); empty = UCX_TLS or ^mm");
    v("ofi_provider", ofi_provider, "libfabric provider: tcp, shm, ...");
    v("net_interface", net_interface, "network interface; empty = from the address");
    v("progress_core", progress_core, "core for the progress thread; -1 = unpinned");
    v("progress_mode", progress_mode, "poll, event or hybrid");
    v("progress_spin_us", progress_spin_us, "hybrid mode: spin time before sleeping");
    v("progress_await_spin_us", progress_await_spin_us,
      "event and hybrid mode: spin time before sleeping while a reply is awaited");
    v("connect_timeout_ms", connect_timeout_ms, "connection + authentication time limit");
    v("auth_timeout_ms", auth_timeout_ms, "time an inbound peer has to authenticate");
    v("keepalive_interval_ms", keepalive_interval_ms, "keep-alive period for quiet peers");
    v("peer_timeout_ms", peer_timeout_ms, "silence that fails a peer with pending operations");
    v("idle_peer_timeout_ms", idle_peer_timeout_ms, "silence that fails a peer with none");
    v("close_grace_ms", close_grace_ms, "time the library has to finish a closed peer's ops");
    v("max_am_header_bytes", max_am_header_bytes, "largest accepted message header");
    v("max_am_payload_bytes", max_am_payload_bytes, "largest accepted message payload");
    v("rma_mechanism", rma_mechanism, "put/get mechanism: auto, rma or am");
    v("ucx_tcp_copy_messages", ucx_tcp_copy_messages,
      "UCX over TCP: copy messages, avoiding UCX 1.13's zero-copy failure bug");
  }
};

}  // namespace halo::transport
