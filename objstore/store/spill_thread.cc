#include "objstore/store/spill_thread.h"

#include <utility>

namespace halo::objstore {

SpillThread::SpillThread() : thread_([this] { run(); }) {}

SpillThread::~SpillThread() { stop(); }

void SpillThread::post(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!exited_) {
      jobs_.push_back(std::move(job));
      wake_.notify_one();
      return;
    }
  }
  job(true);
}

void SpillThread::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void SpillThread::run() {
  while (true) {
    Job job;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) {
        exited_ = true;  // Under the lock that post() checks, so no job is queued too late.
        return;
      }
      job = std::move(jobs_.front());
      jobs_.pop_front();
      stopping = stopping_;
    }
    job(stopping);
  }
}

}  // namespace halo::objstore
