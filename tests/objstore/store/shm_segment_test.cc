// The shared-memory segment: an owner-only memfd with no name in /dev/shm, pre-faulted,
// locked (or a warning naming the limit), NUMA-bound as asked, and mapped by another process
// through /proc/<pid>/fd/<fd>, with clear errors when that cannot work.
#include "objstore/store/shm_segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hwloc.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "objstore/store/available_memory.h"

namespace halo::objstore {
namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

SegmentOptions options_of(uint64_t size) {
  SegmentOptions options;
  options.size_bytes = size;
  return options;
}

std::unique_ptr<ShmSegment> create_or_die(const SegmentOptions& options) {
  auto segment = ShmSegment::create(options);
  EXPECT_TRUE(segment.ok()) << segment.status();
  return segment.ok() ? std::move(*segment) : nullptr;
}

// Runs `body` in a forked child and returns its exit code (128 + signal if it was killed).
int run_in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A field ("Rss", "Locked") of /proc/self/smaps for the mapping that starts at `start`, in
// bytes; -1 if not found.
int64_t smaps_field(const void* start, const std::string& field) {
  std::ifstream smaps("/proc/self/smaps");
  std::ostringstream prefix;
  prefix << std::hex << reinterpret_cast<uintptr_t>(start) << "-";
  std::string line;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    // Mapping lines start with the address in lower-case hex; field lines with a capital.
    const bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                        !std::isupper(static_cast<unsigned char>(line[0]));
    if (header) in_mapping = line.rfind(prefix.str(), 0) == 0;
    if (in_mapping && line.rfind(field + ":", 0) == 0) {
      return std::stoll(line.substr(field.size() + 1)) * 1024;
    }
  }
  return -1;
}

uint64_t resident_pages(const ShmSegment& segment) {
  std::vector<unsigned char> pages(segment.size() / kPage);
  if (::mincore(segment.data(), segment.size(), pages.data()) != 0) return 0;
  uint64_t resident = 0;
  for (unsigned char page : pages) resident += page & 1;
  return resident;
}

std::string fd_link(int fd) {
  char link[256] = {};
  const ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, 255);
  return n < 0 ? "" : std::string(link, static_cast<size_t>(n));
}

std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* entry = ::readdir(dir)) names.insert(entry->d_name);
    ::closedir(dir);
  }
  return names;
}

TEST(ShmSegment, IsAnOwnerOnlyMemfdRoundedUpToWholePages) {
  auto segment = create_or_die(options_of(1000));
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(segment->size(), kPage);
  struct stat st {};
  ASSERT_EQ(::fstat(segment->fd(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "the segment is open to other users";
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kPage);
  EXPECT_EQ(fd_link(segment->fd()).rfind("/memfd:halo-object-store", 0), 0u)
      << fd_link(segment->fd());
  EXPECT_NE(::fcntl(segment->fd(), F_GETFD) & FD_CLOEXEC, 0) << "workers would inherit the fd";
}

TEST(ShmSegment, LeavesNothingInDevShm) {
  const std::set<std::string> before = dev_shm_entries();
  auto segment = create_or_die(options_of(1 << 20));
  ASSERT_NE(segment, nullptr);
  struct stat st {};
  ASSERT_EQ(::fstat(segment->fd(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u) << "the segment has a name in some filesystem";
  // Other tests may create files in /dev/shm meanwhile; none may be this segment.
  for (const std::string& name : dev_shm_entries()) {
    if (before.count(name) > 0) continue;
    EXPECT_EQ(name.find("halo-object-store"), std::string::npos) << name;
    struct stat other {};
    if (::stat(("/dev/shm/" + name).c_str(), &other) == 0) {
      EXPECT_FALSE(other.st_ino == st.st_ino && other.st_dev == st.st_dev) << name;
    }
  }
}

TEST(ShmSegment, PrefaultedPagesAreResidentBeforeAnyWrite) {
  SegmentOptions options = options_of(64 << 20);
  options.lock_memory = false;  // mlock would fault the pages in too.
  auto segment = create_or_die(options);
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(resident_pages(*segment), segment->size() / kPage);
  EXPECT_GE(smaps_field(segment->data(), "Rss"), static_cast<int64_t>(segment->size()) * 99 / 100);
}

// The check above would pass for any mapping if mincore/smaps counted untouched pages.
TEST(ShmSegment, WithoutPrefaultPagesAreNotResidentYet) {
  SegmentOptions options = options_of(64 << 20);
  options.lock_memory = false;
  options.prefault = false;
  auto segment = create_or_die(options);
  ASSERT_NE(segment, nullptr);
  EXPECT_LT(resident_pages(*segment), segment->size() / kPage / 100);
}

TEST(ShmSegment, BackgroundPrefaultReturnsFirstThenMakesEveryPageResidentAndLocked) {
  SegmentOptions options = options_of(64 << 20);
  options.prefault_in_background = true;
  auto segment = create_or_die(options);
  ASSERT_NE(segment, nullptr);
  EXPECT_NE(segment->describe().find("pre-faulting and locking in the background"),
            std::string::npos)
      << segment->describe();
  // The store is usable while the thread works: a write lands and stays.
  std::memset(segment->data() + (32 << 20), 0x5A, 4096);
  segment->wait_prefaulted();
  EXPECT_EQ(resident_pages(*segment), segment->size() / kPage);
  EXPECT_EQ(static_cast<unsigned char>(segment->data()[(32 << 20) + 4095]), 0x5A);
  struct rlimit limit {};
  ::getrlimit(RLIMIT_MEMLOCK, &limit);
  if (::geteuid() == 0 || limit.rlim_cur == RLIM_INFINITY) {
    EXPECT_EQ(smaps_field(segment->data(), "Locked"), static_cast<int64_t>(segment->size()));
  }
}

// Destroying a segment whose pre-fault has barely begun stops the thread, and nothing is left
// mapped (a pre-fault running on after munmap would fault in someone else's memory or crash).
TEST(ShmSegment, DestroyedWhileBackgroundPrefaultRunsStopsItAndUnmaps) {
  SegmentOptions options = options_of(256 << 20);
  options.prefault_in_background = true;
  options.lock_memory = false;
  for (int i = 0; i < 5; ++i) {
    auto segment = create_or_die(options);
    ASSERT_NE(segment, nullptr);
    const void* start = segment->data();
    segment.reset();
    EXPECT_EQ(smaps_field(start, "Rss"), -1) << "mapping still there after round " << i;
  }
}

TEST(ShmSegment, StoreLargerThanTheAvailableMemoryFailsAtOnceNamingTheFlag) {
  const AvailableMemory available = available_memory();
  ASSERT_NE(available.bytes, UINT64_MAX) << "neither /proc/meminfo nor a cgroup limit readable";
  EXPECT_FALSE(available.source.empty());
  for (bool background : {false, true}) {
    SegmentOptions options = options_of(available.bytes + (1ull << 30));
    options.prefault_in_background = background;
    const auto start = std::chrono::steady_clock::now();
    auto segment = ShmSegment::create(options);
    ASSERT_FALSE(segment.ok());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    EXPECT_EQ(segment.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(segment.status().message().find("--object-store-memory"), std::string::npos)
        << segment.status();
    EXPECT_NE(segment.status().message().find(available.source), std::string::npos)
        << segment.status();
  }
}

TEST(ShmSegment, LockedWhenTheLimitAllows) {
  const uint64_t size = 4 << 20;
  struct rlimit limit {};
  ::getrlimit(RLIMIT_MEMLOCK, &limit);
  if (::geteuid() != 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < 2 * size) {
    GTEST_SKIP() << "RLIMIT_MEMLOCK is below " << 2 * size << " bytes and this is not root";
  }
  auto segment = create_or_die(options_of(size));
  ASSERT_NE(segment, nullptr);
  EXPECT_NE(segment->describe().find(", locked"), std::string::npos) << segment->describe();
  EXPECT_EQ(smaps_field(segment->data(), "Locked"), static_cast<int64_t>(segment->size()));
}

// In a child: RLIMIT_MEMLOCK of `bytes` (at most the hard limit) and, for root, no CAP_IPC_LOCK
// (which ignores the limit). 0, or 10-12 for the step that failed.
int limit_memlock(rlim_t bytes) {
  struct rlimit limit {};
  ::getrlimit(RLIMIT_MEMLOCK, &limit);
  limit.rlim_cur = std::min(bytes, limit.rlim_max);
  if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0) return 10;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  if (::syscall(SYS_capget, &header, caps) != 0) return 11;
  caps[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
  if (::syscall(SYS_capset, &header, caps) != 0) return 12;
  return 0;
}

// In a child: a 64 KiB RLIMIT_MEMLOCK and, for root, no CAP_IPC_LOCK (which ignores the limit).
TEST(ShmSegment, RefusedLockIsAWarningNamingTheLimitNotAFailure) {
  const int code = run_in_child([] {
    if (const int failed = limit_memlock(64 << 10); failed != 0) return failed;
    auto segment = ShmSegment::create(options_of(4 << 20));
    if (!segment.ok()) return 13;
    if ((*segment)->describe().find("not locked: RLIMIT_MEMLOCK 64.0 KiB") == std::string::npos) {
      return 14;
    }
    return 0;
  });
  EXPECT_EQ(code, 0) << "10-12: cannot set up the limit; 13: create failed; 14: describe() "
                        "does not name the limit";
}

// In the background, a refused lock leaves the store whole and usable: every page resident,
// none locked (all or nothing), the thread ended.
TEST(ShmSegment, RefusedLockInTheBackgroundLeavesEveryPageResidentAndNoneLocked) {
  const int code = run_in_child([] {
    // Room for some 4 MiB steps (when the hard limit allows), not for the whole store.
    if (const int failed = limit_memlock(64 << 20); failed != 0) return failed;
    SegmentOptions options = options_of(96 << 20);
    options.prefault_in_background = true;
    auto segment = ShmSegment::create(options);
    if (!segment.ok()) return 13;
    (*segment)->wait_prefaulted();
    if (resident_pages(**segment) != (*segment)->size() / kPage) return 14;
    if (smaps_field((*segment)->data(), "Locked") != 0) return 15;
    return 0;
  });
  EXPECT_EQ(code, 0) << "10-12: cannot set up the limit; 13: create failed; 14: not every page "
                        "resident; 15: some pages left locked";
}

// The OS index of the NUMA node holding the page at `address`, or -1.
int numa_node_of(const void* address) {
  hwloc_topology_t topology;
  hwloc_topology_init(&topology);
  hwloc_topology_load(topology);
  hwloc_nodeset_t nodeset = hwloc_bitmap_alloc();
  int node = -1;
  if (hwloc_get_area_memlocation(topology, address, 1, nodeset, HWLOC_MEMBIND_BYNODESET) == 0) {
    node = hwloc_bitmap_first(nodeset);
  }
  hwloc_bitmap_free(nodeset);
  hwloc_topology_destroy(topology);
  return node;
}

TEST(ShmSegment, BindsToTheRequestedNumaNode) {
  SegmentOptions options = options_of(4 << 20);
  options.numa_node = 0;
  auto segment = create_or_die(options);
  ASSERT_NE(segment, nullptr);
  EXPECT_NE(segment->describe().find("NUMA node 0 (as requested)"), std::string::npos)
      << segment->describe();
  // Logical node 0 is the first NUMA node; on the machines halo is tested on, OS index 0.
  EXPECT_EQ(numa_node_of(segment->data()), 0);
  EXPECT_EQ(numa_node_of(segment->data() + segment->size() - 1), 0);
}

TEST(ShmSegment, AutomaticChoiceTakesTheNumaNodeNearestTheNic) {
  std::string nic;
  {
    hwloc_topology_t topology;
    hwloc_topology_init(&topology);
    hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    hwloc_topology_load(topology);
    for (hwloc_obj_t dev = hwloc_get_next_osdev(topology, nullptr); dev != nullptr;
         dev = hwloc_get_next_osdev(topology, dev)) {
      if (dev->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK && dev->name != nullptr) {
        nic = dev->name;
        break;
      }
    }
    hwloc_topology_destroy(topology);
  }
  if (nic.empty()) GTEST_SKIP() << "hwloc finds no network interface on a PCI device here";
  SegmentOptions options = options_of(1 << 20);
  options.net_interface = nic;
  auto segment = create_or_die(options);
  ASSERT_NE(segment, nullptr);
  EXPECT_NE(segment->describe().find("(nearest " + nic + ")"), std::string::npos)
      << segment->describe();

  options.net_interface = "no-such-nic0";
  segment = create_or_die(options);
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(segment->describe().find("nearest"), std::string::npos) << segment->describe();
}

TEST(ShmSegment, NumaNodeTheMachineLacksIsAnError) {
  SegmentOptions options = options_of(1 << 20);
  options.numa_node = 999;
  auto segment = ShmSegment::create(options);
  ASSERT_FALSE(segment.ok());
  EXPECT_EQ(segment.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(segment.status().message().find("--numa-node 999"), std::string::npos)
      << segment.status();
}

TEST(ShmSegment, ZeroSizeIsAnErrorNamingTheFlag) {
  auto segment = ShmSegment::create(options_of(0));
  ASSERT_FALSE(segment.ok());
  EXPECT_EQ(segment.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(segment.status().message().find("--object-store-memory"), std::string::npos);
}

TEST(ShmSegment, ForkedChildAttachesAndWritesWhatTheOwnerSees) {
  auto segment = create_or_die(options_of(1 << 20));
  ASSERT_NE(segment, nullptr);
  std::memset(segment->data(), 0xA5, 4096);
  const pid_t owner = ::getpid();
  const int fd = segment->fd();
  const uint64_t size = segment->size();
  const int code = run_in_child([&] {
    auto attached = ShmSegment::attach(owner, fd, size);
    if (!attached.ok()) return 1;
    ShmSegment& mapped = **attached;
    if (mapped.data() == segment->data()) {
      // fork() kept the owner's mapping at this address; attach must map anew.
      return 2;
    }
    for (int i = 0; i < 4096; ++i) {
      if (mapped.data()[i] != std::byte{0xA5}) return 3;
    }
    for (uint64_t i = 0; i < 8192; ++i) mapped.data()[size - 8192 + i] = std::byte(i % 251);
    return 0;
  });
  ASSERT_EQ(code, 0) << "1: attach failed; 2: not a new mapping; 3: owner's bytes not seen";
  for (uint64_t i = 0; i < 8192; ++i) {
    ASSERT_EQ(segment->data()[size - 8192 + i], std::byte(i % 251)) << "byte " << i;
  }
}

TEST(ShmSegment, AttachToADeadOwnerSaysItIsGone) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  auto attached = ShmSegment::attach(pid, 3, kPage);
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(attached.status().message().find("pid " + std::to_string(pid)), std::string::npos);
  EXPECT_NE(attached.status().message().find("gone"), std::string::npos) << attached.status();
}

TEST(ShmSegment, AttachWithTheWrongSizeNamesBothSizes) {
  auto segment = create_or_die(options_of(1 << 20));
  ASSERT_NE(segment, nullptr);
  auto attached = ShmSegment::attach(::getpid(), segment->fd(), segment->size() + kPage);
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.status().code(), StatusCode::kInvalidArgument);
  const std::string message(attached.status().message());
  EXPECT_NE(message.find(std::to_string(segment->size())), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(segment->size() + kPage)), std::string::npos) << message;
}

TEST(ShmSegment, AttachToADescriptorThatIsNoStoreIsRefused) {
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  auto attached = ShmSegment::attach(::getpid(), null_fd, kPage);
  ::close(null_fd);
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(attached.status().message().find("not halo's object store"), std::string::npos)
      << attached.status();

  auto missing = ShmSegment::attach(::getpid(), 4000, kPage);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();
}

TEST(ShmSegment, AttachFromAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  auto segment = create_or_die(options_of(1 << 20));
  ASSERT_NE(segment, nullptr);
  const pid_t owner = ::getpid();
  const int fd = segment->fd();
  const uint64_t size = segment->size();
  const int code = run_in_child([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
    auto attached = ShmSegment::attach(owner, fd, size);
    if (attached.ok()) return 1;
    return attached.status().code() == StatusCode::kPermissionDenied ? 0 : 2;
  });
  EXPECT_EQ(code, 0) << "1: another user mapped the store; 2: another error than "
                        "PERMISSION_DENIED; 10: cannot become nobody";
}

}  // namespace
}  // namespace halo::objstore
