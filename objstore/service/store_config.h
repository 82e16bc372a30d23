// Configuration of a node's object store (halo-node flags). Every knob is documented here,
// once, next to its default; halo/base/config.h explains how defaults, a file, HALO_*
// environment variables and flags combine.
#pragma once

#include <cstdint>
#include <string>

namespace halo::objstore {

struct StoreConfig {
  // Bytes of shared memory for objects on this node (Ray's --object-store-memory). 0: 30% of
  // the memory the node registers (Ray's default share).
  uint64_t object_store_memory = 0;
  // NUMA node (hwloc logical index) to bind the store's memory to; -1: the one nearest the
  // network interface when hwloc can tell, else no binding on a single-node machine.
  int32_t numa_node = -1;
  // Touch every page at start, so that no put pays for page faults. First checks that the
  // machine (and the job's memory cgroup) has the memory: a store too large fails at once.
  bool object_store_prefault = true;
  // Pre-fault (and mlock) on a background thread, in small steps, while the node
  // joins its cluster, instead of before: a node with a large store is ALIVE in tens of
  // milliseconds, not after the kernel has zeroed every page (about 0.3 s per GiB). The log
  // says when it is done.
  bool object_store_prefault_background = true;
  // mlock the store so it never swaps; refused (RLIMIT_MEMLOCK) gives a warning, not a failure.
  bool object_store_lock_memory = true;
  // Where objects go when the store is full (may be a shared filesystem); empty: no spilling,
  // a put that finds the store full waits for room or fails.
  std::string spill_dir = "";
  // Puts of at most this many bytes travel inside the request (one message instead of
  // create + seal); lookups between nodes return objects this small inline.
  uint64_t max_inline_bytes = 16 * 1024;
  // Each client reserves arenas of this size for its puts of up to max_inline_bytes: it
  // writes them in place and announces them in batches, with no round trip per put. 0: off
  // (such puts travel inside a request each, and wait for its answer).
  uint64_t small_object_arena_bytes = 1024 * 1024;
  // Put-ahead: a client creates the room for its next puts of the same size (larger than
  // max_inline_bytes, at most this) while it writes the current one, so that a stream of equal
  // puts waits for no round trip. It holds at most this many bytes of such room (at most 8
  // rooms), granted only from free blocks with an eighth of the store to spare and while no
  // put waits for room, and gives it back when its puts change size or pause. 0: off.
  uint64_t put_ahead_bytes = 32 * 1024 * 1024;
  // Objects move between nodes in RMA puts of this size, all in flight at once.
  uint64_t transfer_chunk_bytes = 4 * 1024 * 1024;
  // How long a node tries to reach another node's daemon before the transfer fails.
  int64_t peer_connect_timeout_ms = 5000;
  // Primary copies of an HA object (halo::put with ha), the creating node's included, when the
  // put does not say. Every node of a cluster should have the same value.
  uint32_t num_primary_copies = 2;

  template <typename V>
  void visit(V& v) {
    v("object_store_memory", object_store_memory,
      "bytes of shared memory for objects; 0 = 30% of the node's memory");
    v("numa_node", numa_node, "NUMA node for the store's memory; -1 = nearest the NIC");
    v("object_store_prefault", object_store_prefault, "touch every store page at start");
    v("object_store_prefault_background", object_store_prefault_background,
      "pre-fault on a background thread while the node joins (false: before it joins)");
    v("object_store_lock_memory", object_store_lock_memory, "mlock the store (warns if refused)");
    v("spill_dir", spill_dir, "folder for objects spilled from a full store; empty = none");
    v("max_inline_bytes", max_inline_bytes, "largest object sent inside a message");
    v("small_object_arena_bytes", small_object_arena_bytes,
      "room each client reserves at once for its small puts; 0 = off");
    v("put_ahead_bytes", put_ahead_bytes,
      "room a client may create ahead for its next puts of up to this size; 0 = off");
    v("transfer_chunk_bytes", transfer_chunk_bytes, "RMA chunk size of transfers between nodes");
    v("peer_connect_timeout_ms", peer_connect_timeout_ms,
      "time limit to reach another node's daemon");
    v("num_primary_copies", num_primary_copies, "primary copies of an HA object (default 2)");
  }
};

}  // namespace halo::objstore
