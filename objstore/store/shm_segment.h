// The node's shared-memory segment: one memfd that holds every object of the node's store,
// mapped by the node daemon (create) and by the clients on the same machine (attach).
//
//   SegmentOptions options;
//   options.size_bytes = 1ull << 30;        // --object-store-memory
//   options.net_interface = "ib0";          // bind near this NIC (numa_node = -1: auto)
//   HALO_ASSIGN_OR_RETURN(std::unique_ptr<ShmSegment> segment, ShmSegment::create(options));
//   log::info("object store: {}", segment->describe());  // "1.0 GiB memfd, NUMA node 1, locked"
//   // Tell clients (getpid(), segment->fd(), segment->size()); a client on this machine then:
//   HALO_ASSIGN_OR_RETURN(auto mapped, ShmSegment::attach(node_pid, node_fd, size));
//   std::memcpy(mapped->data() + offset, bytes, n);
//
// Why a memfd and not a file in /dev/shm: a memfd has no name in any filesystem, so the memory
// goes back to the kernel as soon as the last descriptor and mapping are gone. A node daemon
// killed with SIGKILL (which halo does by design in its failure handling) can never leave a
// stale multi-gigabyte file in /dev/shm that nobody removes.
//
// Access control: the memfd is created with mode 0600, and a client reaches it only through
// /proc/<owner pid>/fd/<owner fd>, which the kernel lets a process open only when it may
// ptrace-read the owner (same user, owner not marked non-dumpable) and the file mode allows it.
// So only processes of the node daemon's user (and root) can map the store; clients must run
// as that user.
//
// A ShmSegment is immutable after creation (a background pre-fault only touches pages); data()
// may be read and written from any thread (what is written where is the object store's
// business). The destructor unmaps and closes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "halo/base/status.h"

namespace halo::objstore {

struct SegmentOptions {
  // Bytes of shared memory; rounded up to the page size. ObjectStore sets it from
  // StoreOptions::capacity_bytes.
  uint64_t size_bytes = 0;
  // hwloc logical index of the NUMA node to bind the memory to (--numa-node). -1: automatic:
  // the NUMA node nearest `net_interface` when hwloc's I/O discovery finds it; else no binding
  // on a machine with one NUMA node; else the first NUMA node of the process's CPU binding.
  int numa_node = -1;
  // Network interface the transport uses ("ib0", "eth0"); only read when numa_node is -1.
  std::string net_interface;
  // Touch every page (MADV_POPULATE_WRITE, else one write per page), so that no put pays for
  // page faults. create() first checks that the machine, and this process's memory cgroup,
  // have that much memory available (available_memory.h): a store that cannot fit fails at
  // once.
  bool prefault = true;
  // Pre-fault (and lock) on a background thread that create() starts, in 4 MiB steps, instead
  // of before create() returns. The kernel allocates and zeroes a large store at a few GB/s,
  // so a node daemon joins its cluster that much sooner; a put into a page not yet touched
  // pays its fault, as without pre-faulting.
  bool prefault_in_background = false;
  // mlock(2) the segment so it is never swapped out (and RDMA registration does not pin pages
  // one by one). Refused by RLIMIT_MEMLOCK: a warning, not a failure.
  bool lock_memory = true;
};

class ShmSegment {
 public:
  // Creates, sizes, maps, binds, pre-faults and locks a segment as `options` say. Errors:
  // INVALID_ARGUMENT for size 0 or a numa_node this machine does not have; RESOURCE_EXHAUSTED
  // when the memory cannot be reserved or pre-faulted (the message names the size and
  // --object-store-memory); other system errors with the call that failed. A refused NUMA
  // binding or mlock is logged as a warning and shows in describe().
  static StatusOr<std::unique_ptr<ShmSegment>> create(const SegmentOptions& options);

  // Maps the segment that process `owner_pid` holds as descriptor `owner_fd`, `size` bytes
  // long (its size(), as the owner told the client). Errors: UNAVAILABLE when the owner is
  // gone; NOT_FOUND when it has no such descriptor; PERMISSION_DENIED when the owner runs as
  // another user; INVALID_ARGUMENT when the descriptor is not a halo object store or its size
  // is not `size`. The mapping is populated up front (no page faults on first touch; pages the
  // owner had not touched yet are allocated now).
  static StatusOr<std::unique_ptr<ShmSegment>> attach(pid_t owner_pid, int owner_fd, uint64_t size);

  // Stops a background pre-fault (at its next 4 MiB step), unmaps and closes.
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  std::byte* data() const { return data_; }
  // Bytes mapped: the requested size rounded up to the page size.
  uint64_t size() const { return size_; }
  // The memfd (this process's descriptor); what clients pass to attach() with this pid.
  int fd() const { return fd_; }
  // One line for logs and status: "1.0 GiB memfd, NUMA node 0, locked",
  // "1.0 GiB memfd, not NUMA-bound (one NUMA node), not locked: RLIMIT_MEMLOCK 8.0 MiB",
  // "1.0 GiB memfd, NUMA node 0, pre-faulting and locking in the background". (The
  // background thread logs how it ended.)
  const std::string& describe() const { return description_; }
  // Waits until a background pre-fault (and lock) is over; at once without one.
  void wait_prefaulted() const;

 private:
  ShmSegment(int fd, std::byte* data, uint64_t size) : fd_(fd), data_(data), size_(size) {}
  void prefault_in_background(bool lock_memory);

  int fd_ = -1;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  std::string description_;
  std::thread prefaulter_;
  std::atomic<bool> stop_prefault_{false};
  mutable std::mutex prefault_mu_;
  mutable std::condition_variable prefault_cv_;
  bool prefaulting_ = false;  // Guarded by prefault_mu_.
};

}  // namespace halo::objstore
