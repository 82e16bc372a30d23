// The live counters behind RpcStats, shared by an RpcNode's client and server halves.
#pragma once

#include <atomic>
#include <cstdint>

#include "halo/transport/rpc.h"

namespace halo::transport::internal {

struct RpcCounters {
  using Counter = std::atomic<uint64_t>;
  Counter calls_started{0};
  Counter calls_succeeded{0};
  Counter calls_failed{0};
  Counter calls_deadline_exceeded{0};
  Counter calls_unavailable{0};
  Counter calls_cancelled{0};
  Counter responses_ignored{0};
  Counter requests_received{0};
  Counter requests_handled{0};
  Counter requests_rejected{0};
  Counter unknown_methods{0};
  Counter requests_expired{0};
  Counter requests_cancelled{0};
  Counter responses_sent{0};
  Counter frames_dropped{0};
  Counter send_failures{0};

  static void bump(Counter& c) { c.fetch_add(1, std::memory_order_relaxed); }

  RpcStats snapshot() const {
    auto v = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
    RpcStats s;
    s.calls_started = v(calls_started);
    s.calls_succeeded = v(calls_succeeded);
    s.calls_failed = v(calls_failed);
    s.calls_deadline_exceeded = v(calls_deadline_exceeded);
    s.calls_unavailable = v(calls_unavailable);
    s.calls_cancelled = v(calls_cancelled);
    s.responses_ignored = v(responses_ignored);
    s.requests_received = v(requests_received);
    s.requests_handled = v(requests_handled);
    s.requests_rejected = v(requests_rejected);
    s.unknown_methods = v(unknown_methods);
    s.requests_expired = v(requests_expired);
    s.requests_cancelled = v(requests_cancelled);
    s.responses_sent = v(responses_sent);
    s.frames_dropped = v(frames_dropped);
    s.send_failures = v(send_failures);
    return s;
  }
};

}  // namespace halo::transport::internal
