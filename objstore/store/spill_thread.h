// The object store's one thread for disk I/O. Spills, restores and removals of spill files run
// on it, one at a time in the order they were posted, so the thread that calls the store (the
// RPC service's progress thread) never waits for a disk.
//
//   SpillThread thread;
//   thread.post([](bool stopping) { if (!stopping) write_the_file(); });
//   ...
//   thread.stop();  // runs what is still queued with stopping = true, then joins
//
// Thread-safe: post() from any thread, including from a job.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace halo::objstore {

class SpillThread {
 public:
  // A unit of work. `stopping` is true when the thread runs it only to wind it up at shutdown:
  // it should release what it holds and answer whoever waits for it, skipping optional I/O.
  using Job = std::function<void(bool stopping)>;

  SpillThread();
  ~SpillThread();  // stop().
  SpillThread(const SpillThread&) = delete;
  SpillThread& operator=(const SpillThread&) = delete;

  // Queues `job`. Once the thread has finished (after stop()), runs it at once on the caller's
  // thread with stopping = true.
  void post(Job job);
  // Marks the thread stopping, lets it run every queued job (and any they post) with
  // stopping = true, and joins it. Idempotent; call it from one thread, never from a job.
  void stop();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  bool exited_ = false;  // The thread has left run(): post() runs jobs itself.
  std::thread thread_;   // Last: starts after the fields it uses exist.
};

}  // namespace halo::objstore
