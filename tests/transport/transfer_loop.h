// A stream of large transfers to one peer, kept going until the test breaks the peer (kills
// it, cuts its link) and records how every operation ended, so the test can check that each
// pending operation failed with a clear status in bounded time.
//
//   TransferLoop loop(ep, *source, *target, peer_region, {.op_bytes = 256 << 20});
//   loop.start();
//   ASSERT_TRUE(wait_for([&] { return loop.completed_ok() >= 2; }, 60s));
//   loop.stop_issuing();     // the operations pending now are the ones to watch
//   peer.kill();
//   ASSERT_TRUE(loop.wait_until_idle(timeout));
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "halo/transport/transport.h"

namespace halo::transport::testing {

class TransferLoop {
 public:
  struct Options {
    size_t op_bytes = 256 << 20;
    // Independent chains of operations. A put chain alternates put and flush; a get chain
    // issues gets. Each chain issues its next operation when the previous one succeeded and
    // stops at the first failure.
    int put_chains = 1;
    int get_chains = 1;
  };

  enum class Kind { kPut, kFlush, kGet };
  struct Outcome {
    Kind kind;
    Clock::time_point issued;
    Clock::time_point completed;
    Status status;
    bool pending_at_stop = false;  // Issued and not complete when stop_issuing() was called.
  };

  // `source` is read by puts, `target` written by gets; both must hold op_bytes and, like the
  // endpoint, stay alive until wait_until_idle() returned true.
  TransferLoop(EndpointPtr ep, const MemoryRegion& source, const MemoryRegion& target,
               RemoteRegion remote, Options options);

  void start();
  // No operation is issued after this returns. Returns when that was.
  Clock::time_point stop_issuing();
  // Waits until every issued operation has completed. False at the time limit.
  bool wait_until_idle(std::chrono::milliseconds timeout) const;

  size_t completed_ok() const;
  size_t pending() const;
  // Completions beyond the first of an operation: a transport bug when not 0.
  size_t extra_completions() const;
  // Every completed operation, in completion order, and the pending ones (status UNKNOWN,
  // completed = issued) after them.
  std::vector<Outcome> outcomes() const;
  static std::string_view kind_name(Kind kind);

 private:
  struct State;
  static void issue(const std::shared_ptr<State>& state, Kind kind);

  std::shared_ptr<State> state_;
};

}  // namespace halo::transport::testing
