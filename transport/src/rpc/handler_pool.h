// The threads that run RPC handlers when RpcConfig::handler_threads > 0, so that handlers may
// block (disk, locks, nested RPCs) without stalling the transport's progress thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace halo::transport::internal {

class HandlerPool {
 public:
  explicit HandlerPool(int threads);
  // Stops the pool (see stop()).
  ~HandlerPool();
  HandlerPool(const HandlerPool&) = delete;
  HandlerPool& operator=(const HandlerPool&) = delete;

  // Queues `work`; first in, first started. Dropped (destroyed unrun) after stop().
  void post(std::function<void()> work);
  // Waits for running work to return, then destroys queued work unrun. Idempotent; not from a
  // pool thread.
  void stop();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace halo::transport::internal
