#include "launcher/local_cluster/spawner_thread.h"

#include <pthread.h>
#include <signal.h>

#include <future>

#include "launcher/session/daemon_process.h"

namespace halo::launcher::internal {

SpawnerThread::SpawnerThread() {
  // A new thread starts with its creator's mask: block everything around its creation.
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

SpawnerThread::~SpawnerThread() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

StatusOr<pid_t> SpawnerThread::spawn(const std::vector<std::string>& argv,
                                     const std::string& log_path) {
  std::promise<StatusOr<pid_t>> result;
  std::future<StatusOr<pid_t>> pid = result.get_future();
  {
    std::lock_guard lock(mu_);
    jobs_.emplace_back(
        [&] { result.set_value(spawn_daemon(argv, log_path, SpawnMode::kAttached)); });
  }
  wake_.notify_one();
  return pid.get();
}

void SpawnerThread::run() {
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return done_ || !jobs_.empty(); });
    // Jobs queued before the end still run: their callers wait for them.
    if (jobs_.empty()) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace halo::launcher::internal
