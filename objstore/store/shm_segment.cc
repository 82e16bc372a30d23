#include "objstore/store/shm_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string_view>

#include "halo/base/logging.h"
#include "halo/base/machine_topology.h"
#include "objstore/store/available_memory.h"
#include "objstore/store/byte_count.h"

namespace halo::objstore {
namespace {

constexpr char kMemfdName[] = "halo-object-store";
// What readlink(2) of a descriptor of our memfd says ("/memfd:NAME (deleted)").
constexpr std::string_view kMemfdLinkPrefix = "/memfd:halo-object-store";

uint64_t page_size() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

class Bitmap {
 public:
  Bitmap() : bitmap_(hwloc_bitmap_alloc()) {}
  ~Bitmap() { hwloc_bitmap_free(bitmap_); }
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
  hwloc_bitmap_t get() const { return bitmap_; }

 private:
  hwloc_bitmap_t bitmap_;
};

// The NUMA node the segment goes to, or none, and why (for describe()).
struct NumaChoice {
  hwloc_obj_t node = nullptr;
  std::string why;
};

// The first NUMA node (by OS index) in `nodeset`, or null.
hwloc_obj_t first_numa_node(hwloc_topology_t topology, hwloc_const_nodeset_t nodeset) {
  const int os_index = hwloc_bitmap_first(nodeset);
  if (os_index < 0) return nullptr;
  return hwloc_get_numanode_obj_by_os_index(topology, static_cast<unsigned>(os_index));
}

hwloc_obj_t nearest_numa_node_of_nic(hwloc_topology_t topology, const std::string& interface) {
  hwloc_obj_t near = locality_of_interface(topology, interface);
  return near == nullptr ? nullptr : first_numa_node(topology, near->nodeset);
}

StatusOr<NumaChoice> choose_numa_node(hwloc_topology_t topology, const SegmentOptions& options) {
  const int nodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  if (options.numa_node >= 0) {
    hwloc_obj_t node = hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE,
                                             static_cast<unsigned>(options.numa_node));
    if (node == nullptr) {
      return invalid_argument_error(
          str_cat("--numa-node ", options.numa_node, ": this machine has ", nodes,
                  " NUMA node(s), numbered 0 to ", nodes - 1,
                  " (hwloc logical indexes, as "
                  "`lstopo` shows them); pass one of those or -1 to choose automatically"));
    }
    return NumaChoice{node, "as requested"};
  }
  if (!options.net_interface.empty()) {
    if (hwloc_obj_t node = nearest_numa_node_of_nic(topology, options.net_interface)) {
      return NumaChoice{node, str_cat("nearest ", options.net_interface)};
    }
  }
  if (nodes <= 1) return NumaChoice{nullptr, "one NUMA node"};
  Bitmap cpus;
  Bitmap nodeset;
  if (hwloc_get_cpubind(topology, cpus.get(), HWLOC_CPUBIND_PROCESS) != 0) {
    hwloc_bitmap_copy(cpus.get(), hwloc_topology_get_allowed_cpuset(topology));
  }
  hwloc_cpuset_to_nodeset(topology, cpus.get(), nodeset.get());
  hwloc_obj_t node = first_numa_node(topology, nodeset.get());
  if (node == nullptr) node = hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, 0);
  return NumaChoice{node, "first of this process's CPUs"};
}

// Binds the pages of [data, data + size) to the chosen NUMA node before they are touched, so
// that pre-faulting allocates them there. Returns the phrase for describe(); a refused binding
// is a warning, a numa_node this machine lacks an error.
StatusOr<std::string> bind_to_numa_node(const SegmentOptions& options, std::byte* data,
                                        uint64_t size) {
  StatusOr<hwloc_topology_t> topology = machine_topology();
  if (!topology.ok()) {
    log::warn("object store: {}; the segment is not NUMA-bound (pass --numa-node explicitly)",
              topology.status());
    return std::string("not NUMA-bound (no topology)");
  }
  HALO_ASSIGN_OR_RETURN(const NumaChoice choice, choose_numa_node(*topology, options));
  if (choice.node == nullptr) return str_cat("not NUMA-bound (", choice.why, ")");
  const unsigned index = choice.node->logical_index;
  if (hwloc_set_area_membind(*topology, data, size, choice.node->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET) != 0) {
    const int err = errno;
    log::warn(
        "object store: binding the {} segment to NUMA node {} ({}) was refused: {}; it stays "
        "unbound, so objects may sit on a node far from the NIC and the CPUs",
        format_bytes(size), index, choice.why, std::strerror(err));
    return str_cat("not NUMA-bound (binding to node ", index, " refused: ", std::strerror(err),
                   ")");
  }
  return str_cat("NUMA node ", index, " (", choice.why, ")");
}

// Pre-faults [data, data + size), part of a store of `store_size` bytes (for the message).
Status prefault(std::byte* data, uint64_t size, uint64_t store_size) {
#ifdef MADV_POPULATE_WRITE
  if (::madvise(data, size, MADV_POPULATE_WRITE) == 0) return Status();
  const int err = errno;
  if (err == ENOMEM || err == EFAULT) {
    return resource_exhausted_error(str_cat("cannot pre-fault the ", format_bytes(store_size),
                                            " object store: the machine has not "
                                            "that much free memory; lower --object-store-memory"));
  }
  // EINVAL: a kernel older than 5.14, without MADV_POPULATE_WRITE; touch the pages instead.
  if (err != EINVAL) return errno_error(err, "madvise(MADV_POPULATE_WRITE) of the object store");
#endif
  const uint64_t page = page_size();
  auto* bytes = reinterpret_cast<volatile unsigned char*>(data);
  for (uint64_t offset = 0; offset < size; offset += page) bytes[offset] = 0;
  return Status();
}

// A store of `size` bytes fits in what the machine and this process's cgroup have left.
Status check_memory_available(uint64_t size) {
  const AvailableMemory available = available_memory();
  if (size <= available.bytes) return Status();
  return resource_exhausted_error(str_cat("cannot pre-fault the ", format_bytes(size),
                                          " object store: only ", format_bytes(available.bytes),
                                          " of memory is available (", available.source,
                                          "); lower --object-store-memory"));
}

std::string memlock_limit() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
  if (limit.rlim_cur == RLIM_INFINITY) return "unlimited";
  return format_bytes(limit.rlim_cur);
}

// Logs why mlock(2) of the `size`-byte segment was refused (errno `err`) and what to do; returns
// the phrase for describe().
std::string lock_refused(uint64_t size, int err) {
  const std::string limit = memlock_limit();
  log::warn(
      "object store: cannot lock the {} segment in memory (mlock: {}); RLIMIT_MEMLOCK is {}. "
      "The store works, but the kernel may swap its pages out. To lock it, raise the limit for "
      "halo-node: `ulimit -l unlimited` in the shell that starts it, `memlock` in "
      "/etc/security/limits.conf, or LimitMEMLOCK=infinity in its systemd unit",
      format_bytes(size), std::strerror(err), limit);
  return str_cat("not locked: RLIMIT_MEMLOCK ", limit);
}

// mlock(2); a refusal is a warning. Returns the phrase for describe().
std::string lock(std::byte* data, uint64_t size) {
  if (::mlock(data, size) == 0) return "locked";
  return lock_refused(size, errno);
}

// True when `pid` no longer runs: no /proc entry, or a zombie waiting to be reaped.
bool process_is_gone(pid_t pid) {
  std::ifstream stat(str_cat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return false;
  const char state = line[paren + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace

StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::create(const SegmentOptions& options) {
  if (options.size_bytes == 0) {
    return invalid_argument_error(
        "the object store's size is 0: set --object-store-memory to the bytes of shared memory "
        "the node may hold objects in");
  }
  const uint64_t page = page_size();
  const uint64_t size = (options.size_bytes + page - 1) / page * page;
  const int fd = ::memfd_create(kMemfdName, MFD_CLOEXEC);
  if (fd < 0) return errno_error(errno, "memfd_create for the object store");
  // From here on the segment owns fd (and later the mapping), whatever fails.
  std::unique_ptr<ShmSegment> segment(new ShmSegment(fd, nullptr, size));
  if (::fchmod(fd, 0600) != 0) return errno_error(errno, "fchmod 0600 of the object store memfd");
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    return errno_error(errno, str_cat("sizing the object store memfd to ", format_bytes(size)));
  }
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    const int err = errno;
    if (err == ENOMEM) {
      return resource_exhausted_error(str_cat("cannot map a ", format_bytes(size),
                                              " object store (mmap: ", std::strerror(err),
                                              "); lower --object-store-memory"));
    }
    return errno_error(err, str_cat("mmap of the ", format_bytes(size), " object store"));
  }
  segment->data_ = static_cast<std::byte*>(data);

  HALO_ASSIGN_OR_RETURN(const std::string numa, bind_to_numa_node(options, segment->data_, size));
  if (options.prefault) HALO_RETURN_IF_ERROR(check_memory_available(size));
  if (options.prefault && options.prefault_in_background) {
    segment->description_ =
        str_cat(format_bytes(size), " memfd, ", numa, ", pre-faulting",
                options.lock_memory ? " and locking" : "", " in the background");
    segment->prefaulting_ = true;
    ShmSegment* self = segment.get();
    segment->prefaulter_ = std::thread(
        [self, lock_memory = options.lock_memory] { self->prefault_in_background(lock_memory); });
    return segment;
  }
  if (options.prefault) HALO_RETURN_IF_ERROR(prefault(segment->data_, size, size));
  const std::string locked =
      options.lock_memory ? lock(segment->data_, size) : "not locked (lock_memory off)";
  segment->description_ = str_cat(format_bytes(size), " memfd, ", numa, ", ", locked);
  return segment;
}

void ShmSegment::prefault_in_background(bool lock_memory) {
  // At the daemon's own priority, in small steps. Each step holds the process's mmap lock
  // (mlock for writing), so a long one, or one at a lower priority that the scheduler leaves
  // waiting while it holds the lock, stalls every thread of the daemon that faults or maps
  // memory. (At nice 10, in a loaded full test run, a node streaming 1 GiB missed its health
  // checks for 600 ms and was declared dead: most likely this.)
  const auto start = std::chrono::steady_clock::now();
  constexpr uint64_t kStep = 4 << 20;
  Status faulted;
  std::string locked = lock_memory ? "locked" : "not locked (lock_memory off)";
  bool locking = lock_memory;
  uint64_t done = 0;
  for (; done < size_ && faulted.ok() && !stop_prefault_.load(); done += kStep) {
    const uint64_t step = std::min(kStep, size_ - done);
    faulted = prefault(data_ + done, step, size_);
    if (faulted.ok() && locking && ::mlock(data_ + done, step) != 0) {
      const int err = errno;
      locking = false;
      ::munlock(data_, done);  // All or nothing: describe() has one word for it.
      locked = lock_refused(size_, err);
    }
  }
  if (!faulted.ok()) {
    log::error("object store: {}. Pages are allocated as objects are written", faulted);
  } else if (!stop_prefault_.load()) {
    log::info("object store: {} pre-faulted in {} ms; {}", format_bytes(size_),
              std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count(),
              locked);
  }
  {
    std::lock_guard lock(prefault_mu_);
    prefaulting_ = false;
  }
  prefault_cv_.notify_all();
}

void ShmSegment::wait_prefaulted() const {
  std::unique_lock lock(prefault_mu_);
  prefault_cv_.wait(lock, [this] { return !prefaulting_; });
}

StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::attach(pid_t owner_pid, int owner_fd,
                                                         uint64_t size) {
  if (owner_pid <= 0 || owner_fd < 0 || size == 0) {
    return invalid_argument_error(str_cat("cannot attach to an object store given as pid ",
                                          owner_pid, ", fd ", owner_fd, ", size ", size,
                                          ": the node daemon's reply is malformed"));
  }
  const std::string path = str_cat("/proc/", owner_pid, "/fd/", owner_fd);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (process_is_gone(owner_pid)) {
      return unavailable_error(str_cat("the node daemon (pid ", owner_pid,
                                       ") that owns the object store is gone; reconnect to the "
                                       "node once it is back"));
    }
    if (err == ENOENT) {
      return not_found_error(str_cat("process ", owner_pid, " has no descriptor ", owner_fd, " (",
                                     path,
                                     "): it is not the object store's owner, or it "
                                     "closed the segment"));
    }
    if (err == EACCES || err == EPERM) {
      return permission_denied_error(
          str_cat("may not open the object store of process ", owner_pid, " (", path,
                  "): only processes of the node daemon's user can map it; run this client as "
                  "the user that runs halo-node"));
    }
    return errno_error(err, str_cat("open ", path));
  }
  std::unique_ptr<ShmSegment> segment(new ShmSegment(fd, nullptr, size));

  char link[256] = {};
  const std::string own_path = str_cat("/proc/self/fd/", fd);
  const ssize_t n = ::readlink(own_path.c_str(), link, sizeof(link) - 1);
  if (n < 0 || std::string_view(link, static_cast<size_t>(n)).rfind(kMemfdLinkPrefix, 0) != 0) {
    return invalid_argument_error(str_cat(path, " is ", n < 0 ? "unreadable" : link,
                                          ", not halo's object store (", kMemfdLinkPrefix,
                                          "): the node daemon sent a wrong descriptor"));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error(errno, str_cat("fstat ", path));
  if (static_cast<uint64_t>(st.st_size) != size) {
    return invalid_argument_error(str_cat("the object store at ", path, " is ", st.st_size,
                                          " bytes, but the client was told ", size,
                                          ": the node daemon's reply does not match its segment"));
  }
  // MAP_POPULATE fills this process's page tables for the whole segment now (its pages exist:
  // the owner pre-faulted them). Otherwise every first touch of a page by this client is a
  // fault, and a put or read of fresh memory runs at ~1.2 GB/s instead of memcpy's speed.
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (data == MAP_FAILED) {
    return errno_error(errno, str_cat("mmap of the ", format_bytes(size), " object store ", path));
  }
  segment->data_ = static_cast<std::byte*>(data);
  segment->description_ =
      str_cat(format_bytes(size), " memfd of pid ", owner_pid, " (fd ", owner_fd, "), attached");
  return segment;
}

ShmSegment::~ShmSegment() {
  stop_prefault_.store(true);
  if (prefaulter_.joinable()) prefaulter_.join();
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace halo::objstore
