#include "objstore/store/available_memory.h"

#include <fstream>

namespace halo::objstore {
namespace {

// The first number in `path` ("max" and unreadable files give UINT64_MAX).
uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t value = 0;
  if (!(in >> value)) return UINT64_MAX;
  return value;
}

// The value of `key` in a memory.stat file, or 0.
uint64_t stat_field(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string name;
  uint64_t value = 0;
  while (in >> name >> value) {
    if (name == key) return value;
  }
  return 0;
}

uint64_t mem_available() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return UINT64_MAX;
}

// Room left under this process's memory cgroup: its limit minus its working set (usage less the
// inactive file cache, which the kernel reclaims first), for cgroup v2 (the "0::" line of
// /proc/self/cgroup) or v1 (the "memory" controller's line). Sets `which` to the cgroup's path.
uint64_t cgroup_room(std::string& which) {
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line;
  while (std::getline(cgroups, line)) {
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    uint64_t limit = UINT64_MAX;
    uint64_t usage = 0;
    uint64_t reclaimable = 0;
    if (controllers.empty() && line.rfind("0::", 0) == 0) {
      const std::string dir = "/sys/fs/cgroup" + path;
      limit = read_number(dir + "/memory.max");
      usage = read_number(dir + "/memory.current");
      reclaimable = stat_field(dir + "/memory.stat", "inactive_file");
    } else if (controllers == "memory") {
      const std::string dir = "/sys/fs/cgroup/memory" + path;
      limit = read_number(dir + "/memory.limit_in_bytes");
      usage = read_number(dir + "/memory.usage_in_bytes");
      reclaimable = stat_field(dir + "/memory.stat", "total_inactive_file");
    } else {
      continue;
    }
    // v1 reports "no limit" as a huge number rather than "max".
    if (limit == UINT64_MAX || limit >= (uint64_t{1} << 60) || usage == UINT64_MAX) continue;
    usage = usage > reclaimable ? usage - reclaimable : 0;
    which = "cgroup " + path;
    return limit > usage ? limit - usage : 0;
  }
  return UINT64_MAX;
}

}  // namespace

AvailableMemory available_memory() {
  AvailableMemory out;
  if (const uint64_t bytes = mem_available(); bytes != UINT64_MAX) {
    out.bytes = bytes;
    out.source = "MemAvailable";
  }
  std::string cgroup;
  if (const uint64_t room = cgroup_room(cgroup); room < out.bytes) {
    out.bytes = room;
    out.source = cgroup;
  }
  return out;
}

}  // namespace halo::objstore
