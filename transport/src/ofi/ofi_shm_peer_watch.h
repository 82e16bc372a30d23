// Releases the command-queue lock of a libfabric shm peer that died holding it.
//
// libfabric 1.17's shm provider guards every endpoint's command queue with a spin lock kept in
// that endpoint's own shared region (/dev/shm/<name>): every sender takes it to queue a
// command, and the owner takes it while it progresses. An owner killed with SIGKILL inside that
// critical section leaves the lock held for ever, and the next sender — our progress thread —
// spins inside fi_send/fi_read with no way out: no keep-alive, time-out or close can run.
//
// ShmPeerWatch maps the head of each peer region the transport addresses. A thread looks every
// `period` at whether the region's owner process still exists; once it does not, a lock seen
// held on two looks in a row is reset, which lets the stuck sender return (its operations then
// fail through the transport's peer time-out like any other operation to a dead peer). The dead
// owner's region file is then removed (it cannot remove it itself), unless the name already
// belongs to a new region. A region of an unknown layout is left alone, with a warning. See
// docs/transport.md, "A shm peer killed holding its lock".
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace halo::transport::internal::ofi {

class ShmPeerWatch {
 public:
  explicit ShmPeerWatch(std::chrono::milliseconds period);
  ~ShmPeerWatch();
  ShmPeerWatch(const ShmPeerWatch&) = delete;
  ShmPeerWatch& operator=(const ShmPeerWatch&) = delete;

  // Starts watching the region of the shm endpoint `name` (as in its fabric address, without
  // the terminating NUL). Unknown names and regions already watched are ignored. Thread-safe.
  void watch(const std::string& name);

  // Locks reset so far (for tests and the log).
  uint64_t locks_released() const;

  // Removes the region files under /dev/shm whose names start with `prefix`, that belong to
  // this user, have the known layout and whose owner process no longer exists: what processes
  // killed before they could close their endpoints left behind. The transport calls it once
  // as it starts. Returns how many it removed.
  static size_t remove_regions_of_dead_owners(const std::string& prefix);

 private:
  struct Region;

  void run();
  // One look at `region`; returns false when it needs no more watching.
  bool check(Region& region);

  const std::chrono::milliseconds period_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Region>> regions_;
  uint64_t locks_released_ = 0;
  std::thread thread_;
};

}  // namespace halo::transport::internal::ofi
