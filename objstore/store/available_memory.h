// How much memory this process may still fill: what a store about to be pre-faulted checks
// first, so that a store larger than the machine (or the job's share of it) fails at once with
// a clear error instead of later, in the middle of a put.
//
//   AvailableMemory m = available_memory();
//   if (size > m.bytes) return error("only " + format_bytes(m.bytes) + " (" + m.source + ")");
#pragma once

#include <cstdint>
#include <string>

namespace halo::objstore {

struct AvailableMemory {
  // The smallest of MemAvailable (/proc/meminfo) and the room left under this process's
  // memory cgroup limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes, minus what the
  // cgroup uses). UINT64_MAX when none of them can be read.
  uint64_t bytes = UINT64_MAX;
  // Where `bytes` comes from, for messages: "MemAvailable", "cgroup /slurm/uid_0/job_42".
  std::string source;
};

AvailableMemory available_memory();

}  // namespace halo::objstore
