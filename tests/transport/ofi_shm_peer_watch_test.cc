// ShmPeerWatch against hand-made regions with the head of libfabric 1.17's shm region: a lock
// left held by a dead owner is released (and a sender spinning on it returns); a live owner's
// lock and a region of another layout are left alone. The end-to-end case (a real shm peer
// killed mid-transfer) is Conformance.PeerKilledMidTransfer... over Ofi_Shm.
#include "ofi/ofi_shm_peer_watch.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/wait_for.h"

namespace halo::transport::internal::ofi {
namespace {

using namespace std::chrono_literals;

// A region under /dev/shm with a version byte, an owner pid and a lock where libfabric 1.17's
// shm provider keeps them; unlinked when the test ends.
class FakeRegion {
 public:
  FakeRegion(const std::string& tag, uint8_t version, pid_t owner) {
    name_ = "halo-watch-test." + std::to_string(::getpid()) + "." + tag;
    const int fd = ::shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    EXPECT_GE(fd, 0) << name_ << ": " << std::strerror(errno);
    EXPECT_EQ(::ftruncate(fd, 4096), 0);
    head_ =
        static_cast<std::byte*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ::close(fd);
    std::memcpy(head_, &version, sizeof(version));
    std::memcpy(head_ + 4, &owner, sizeof(owner));
    pthread_spin_init(lock(), PTHREAD_PROCESS_SHARED);
  }
  ~FakeRegion() {
    ::munmap(head_, 4096);
    ::shm_unlink(name_.c_str());
  }
  const std::string& name() const { return name_; }
  pthread_spinlock_t* lock() { return reinterpret_cast<pthread_spinlock_t*>(head_ + 24); }
  bool exists() const {
    struct stat st {};
    return ::stat(("/dev/shm/" + name_).c_str(), &st) == 0;
  }
  bool held() {
    if (pthread_spin_trylock(lock()) != 0) return true;
    pthread_spin_unlock(lock());
    return false;
  }

 private:
  std::string name_;
  std::byte* head_ = nullptr;
};

// The pid of a process that has exited and been reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

TEST(ShmPeerWatch, ReleasesTheLockADeadOwnerHeldAndTheSpinningSenderReturns) {
  FakeRegion region("dead", 4, dead_pid());
  ASSERT_EQ(pthread_spin_lock(region.lock()), 0);  // As if the owner died inside it.
  std::atomic<bool> sender_returned{false};
  std::thread sender([&] {
    pthread_spin_lock(region.lock());  // What fi_send/fi_read do to queue a command.
    pthread_spin_unlock(region.lock());
    sender_returned = true;
  });
  ShmPeerWatch watch(20ms);
  watch.watch(region.name());
  const bool returned = test::wait_for([&] { return sender_returned.load(); }, 10s);
  if (!returned) pthread_spin_unlock(region.lock());  // Free the sender so the test can end.
  sender.join();
  EXPECT_TRUE(returned) << "the sender spinning on the dead owner's lock never returned";
  EXPECT_EQ(watch.locks_released(), 1u);
  EXPECT_FALSE(region.held());
  EXPECT_TRUE(test::wait_for([&] { return !region.exists(); }, 10s))
      << "the dead owner's region file was not removed";
}

TEST(ShmPeerWatch, RemovesTheRegionFileOfADeadOwnerThatHeldNoLock) {
  FakeRegion dead("dead-free", 4, dead_pid());
  FakeRegion live("live-free", 4, ::getpid());
  ShmPeerWatch watch(20ms);
  watch.watch(live.name());
  watch.watch(dead.name());
  ASSERT_TRUE(test::wait_for([&] { return !dead.exists(); }, 10s))
      << "the dead owner's region file was not removed";
  EXPECT_TRUE(live.exists()) << "a live owner's region file was removed";
  EXPECT_EQ(watch.locks_released(), 0u);
}

TEST(ShmPeerWatch, SweepRemovesTheRegionsOfDeadOwnersOnly) {
  FakeRegion dead("sweep-dead", 4, dead_pid());
  FakeRegion dead_held("sweep-dead-held", 4, dead_pid());
  FakeRegion live("sweep-live", 4, ::getpid());
  FakeRegion other_layout("sweep-v3", 3, dead_pid());
  FakeRegion unowned("sweep-no-pid", 4, 0);
  ASSERT_EQ(pthread_spin_lock(dead_held.lock()), 0);
  const std::string prefix = "halo-watch-test." + std::to_string(::getpid()) + ".sweep-";
  EXPECT_EQ(ShmPeerWatch::remove_regions_of_dead_owners(prefix), 2u);
  EXPECT_FALSE(dead.exists());
  EXPECT_FALSE(dead_held.exists());
  EXPECT_TRUE(live.exists());
  EXPECT_TRUE(other_layout.exists()) << "a region of an unknown layout was removed";
  EXPECT_TRUE(unowned.exists()) << "a region not initialized yet was removed";
  EXPECT_EQ(ShmPeerWatch::remove_regions_of_dead_owners(""), 0u) << "an empty prefix matches all";
}

TEST(ShmPeerWatch, SweepCountsAKilledOwnerNotYetReapedAsDead) {
  const pid_t child = ::fork();
  if (child == 0) {
    for (;;) ::pause();
  }
  FakeRegion zombie("sweep-zombie", 4, child);
  const std::string prefix = "halo-watch-test." + std::to_string(::getpid()) + ".sweep-";
  EXPECT_EQ(ShmPeerWatch::remove_regions_of_dead_owners(prefix), 0u) << "its owner still runs";
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  // Not reaped: a zombie keeps its pid (kill(pid, 0) still succeeds) but no longer maps anything.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(::kill(child, 0), 0);
  EXPECT_EQ(ShmPeerWatch::remove_regions_of_dead_owners(prefix), 1u);
  EXPECT_FALSE(zombie.exists());
  int status = 0;
  ::waitpid(child, &status, 0);
}

TEST(ShmPeerWatch, LeavesALiveOwnersLockAndARegionOfAnotherLayout) {
  FakeRegion live("live", 4, ::getpid());
  FakeRegion other_layout("v3", 3, dead_pid());
  FakeRegion dead("dead", 4, dead_pid());
  ASSERT_EQ(pthread_spin_lock(live.lock()), 0);
  ASSERT_EQ(pthread_spin_lock(other_layout.lock()), 0);
  ASSERT_EQ(pthread_spin_lock(dead.lock()), 0);
  ShmPeerWatch watch(20ms);
  watch.watch(live.name());
  watch.watch(other_layout.name());
  watch.watch(dead.name());
  // Every watched region is looked at in the same pass, so once the dead owner's lock is
  // released the others have had as many looks.
  ASSERT_TRUE(test::wait_for([&] { return watch.locks_released() == 1; }, 10s));
  EXPECT_FALSE(dead.held());
  EXPECT_TRUE(live.held()) << "a live owner's lock was released";
  EXPECT_TRUE(other_layout.held()) << "a region of an unknown layout was touched";
  pthread_spin_unlock(live.lock());
  pthread_spin_unlock(other_layout.lock());
}

TEST(ShmPeerWatch, IgnoresNamesWithNoRegion) {
  ShmPeerWatch watch(20ms);
  watch.watch("");
  watch.watch("halo-watch-test.no-such-region");
  watch.watch("../etc/passwd");
  EXPECT_EQ(watch.locks_released(), 0u);
}

}  // namespace
}  // namespace halo::transport::internal::ofi
