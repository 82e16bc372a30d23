// The one thread an embedded local cluster forks its daemons from.
//
// Why a thread of its own: a daemon gets SIGKILL through PR_SET_PDEATHSIG when its parent
// *thread* exits, not its parent process (the kernel tracks the thread that forked). Forking
// from the caller's thread would kill the cluster when, say, the thread that called
// halo::init() returns while others go on using the cluster. This thread forks on request and
// lives until the cluster's daemons are gone; when the whole process dies, it dies too, and
// the daemons with it, which is the point.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "halo/base/status.h"

namespace halo::launcher::internal {

class SpawnerThread {
 public:
  // Starts the thread, with every signal blocked (it never runs the caller's handlers; the
  // children's mask is reset at spawn).
  SpawnerThread();
  // Ends the thread. Any daemon it started and that still runs gets SIGKILL then: destroy it
  // only once they are stopped.
  ~SpawnerThread();
  SpawnerThread(const SpawnerThread&) = delete;
  SpawnerThread& operator=(const SpawnerThread&) = delete;

  // spawn_daemon(argv, log_path, SpawnMode::kAttached) run on this thread; waits for it.
  // Thread-safe.
  StatusOr<pid_t> spawn(const std::vector<std::string>& argv, const std::string& log_path);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace halo::launcher::internal
