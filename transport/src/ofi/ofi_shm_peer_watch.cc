#include "ofi/ofi_shm_peer_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>

#include "halo/base/logging.h"

namespace halo::transport::internal::ofi {
namespace {

// The head of `struct smr_region` in libfabric 1.17 (prov/shm/src/smr_util.h), whose layout
// version is kLayoutVersion: version, reserved, flags, owner pid, two CMA bytes, base address,
// then the command-queue lock.
constexpr uint8_t kLayoutVersion = 4;
constexpr size_t kVersionOffset = 0;
constexpr size_t kPidOffset = 4;
constexpr size_t kLockOffset = 24;
constexpr size_t kMappedBytes = 4096;

// A process that may still use its region. A zombie (exited, not yet reaped by its parent)
// keeps its pid but no memory: a test or launcher that killed a child and sweeps before
// reaping it must still see it as dead, or the region outlives everyone.
bool process_exists(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;  // Cannot tell: leave it alone.
  // "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ')'.
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return true;
  const char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}

int unlocked_value() {
  pthread_spinlock_t lock;
  pthread_spin_init(&lock, PTHREAD_PROCESS_SHARED);
  static_assert(sizeof(pthread_spinlock_t) == sizeof(int));
  return static_cast<int>(lock);
}

}  // namespace

struct ShmPeerWatch::Region {
  std::string name;
  ino_t inode = 0;
  std::byte* head = nullptr;
  bool held_last_look = false;

  ~Region() {
    if (head != nullptr) ::munmap(head, kMappedBytes);
  }
  pid_t owner() const {
    pid_t pid = 0;
    std::memcpy(&pid, head + kPidOffset, sizeof(pid));
    return pid;
  }
  pthread_spinlock_t* lock() const {
    return reinterpret_cast<pthread_spinlock_t*>(head + kLockOffset);
  }
  bool lock_held() const {
    return __atomic_load_n(reinterpret_cast<const int*>(head + kLockOffset), __ATOMIC_ACQUIRE) !=
           unlocked_value();
  }
};

ShmPeerWatch::ShmPeerWatch(std::chrono::milliseconds period)
    : period_(period), thread_([this] { run(); }) {}

ShmPeerWatch::~ShmPeerWatch() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ShmPeerWatch::watch(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) return;
  {
    std::lock_guard lock(mu_);
    for (const auto& region : regions_) {
      if (region->name == name) return;
    }
  }
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return;  // Not a region of this machine's shm provider.
  struct stat file {};
  if (::fstat(fd, &file) != 0) {
    ::close(fd);
    return;
  }
  void* head = ::mmap(nullptr, kMappedBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (head == MAP_FAILED) return;
  auto region = std::make_unique<Region>();
  region->name = name;
  region->inode = file.st_ino;
  region->head = static_cast<std::byte*>(head);
  const auto version = static_cast<uint8_t>(region->head[kVersionOffset]);
  if (version != kLayoutVersion) {
    log::warn(
        "transport: shm region {} has layout version {}, not {}: a peer killed while holding "
        "its lock can hang this process",
        name, version, kLayoutVersion);
    return;
  }
  std::lock_guard lock(mu_);
  regions_.push_back(std::move(region));
}

size_t ShmPeerWatch::remove_regions_of_dead_owners(const std::string& prefix) {
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return 0;
  size_t removed = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (prefix.empty() || name.rfind(prefix, 0) != 0) continue;
    const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
    if (fd < 0) continue;
    struct stat file {};
    void* head = MAP_FAILED;
    if (::fstat(fd, &file) == 0 && S_ISREG(file.st_mode) && file.st_uid == ::getuid() &&
        file.st_size >= static_cast<off_t>(kMappedBytes)) {
      head = ::mmap(nullptr, kMappedBytes, PROT_READ, MAP_SHARED, fd, 0);
    }
    ::close(fd);
    if (head == MAP_FAILED) continue;
    const auto* bytes = static_cast<const std::byte*>(head);
    pid_t owner = 0;
    std::memcpy(&owner, bytes + kPidOffset, sizeof(owner));
    const bool dead = static_cast<uint8_t>(bytes[kVersionOffset]) == kLayoutVersion && owner > 0 &&
                      !process_exists(owner);
    ::munmap(head, kMappedBytes);
    struct stat now {};
    if (dead && ::fstatat(AT_FDCWD, ("/dev/shm/" + name).c_str(), &now, 0) == 0 &&
        now.st_ino == file.st_ino && ::shm_unlink(name.c_str()) == 0) {
      ++removed;
    }
  }
  ::closedir(dir);
  if (removed > 0) {
    log::info("transport: removed {} shm region(s) /dev/shm/{}* of processes that died", removed,
              prefix);
  }
  return removed;
}

uint64_t ShmPeerWatch::locks_released() const {
  std::lock_guard lock(mu_);
  return locks_released_;
}

void ShmPeerWatch::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, period_, [this] { return stopping_; });
    if (stopping_) return;
    std::erase_if(regions_, [this](const auto& region) { return !check(*region); });
  }
}

bool ShmPeerWatch::check(Region& region) {
  const pid_t owner = region.owner();
  if (owner <= 0 || process_exists(owner)) {
    region.held_last_look = false;
    return true;
  }
  // The owner is gone: from now on only senders take the lock, each for a moment. Held on two
  // looks a period apart, it is the lock the owner died holding.
  if (region.lock_held()) {
    if (!region.held_last_look) {
      region.held_last_look = true;
      return true;
    }
    pthread_spin_init(region.lock(), PTHREAD_PROCESS_SHARED);
    ++locks_released_;
    log::warn(
        "transport: shm peer process {} died holding the command-queue lock of /dev/shm/{}; "
        "released it",
        owner, region.name);
  }
  // A killed owner cannot remove its region; a new endpoint under the same name (a restarted
  // listener on the same port) could not be created while it exists. Remove it unless the
  // name already belongs to a new region.
  struct stat now {};
  if (::fstatat(AT_FDCWD, ("/dev/shm/" + region.name).c_str(), &now, 0) == 0 &&
      now.st_ino == region.inode) {
    ::shm_unlink(region.name.c_str());
  }
  return false;
}

}  // namespace halo::transport::internal::ofi
