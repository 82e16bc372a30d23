// The process's connection to its node's object store, as the templates of halo.h use it. Not
// part of the API: call halo::put/get/wait. Implemented in core/runtime (client_runtime.cc).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "halo/base/ids.h"
#include "halo/base/status.h"

namespace halo::internal {

// One reference held by this process. ObjectRef copies share one; the client counts them per
// object and tells its node about the first and the last.
class RefState {
 public:
  RefState(ObjectId id, std::string owner_address)
      : id_(id), owner_address_(std::move(owner_address)) {}
  ~RefState();
  RefState(const RefState&) = delete;
  RefState& operator=(const RefState&) = delete;
  const ObjectId& id() const { return id_; }
  const std::string& owner_address() const { return owner_address_; }

 private:
  ObjectId id_;
  std::string owner_address_;
};

struct PutParams {
  std::optional<std::chrono::milliseconds> timeout;  // Wait for room; default: the client's.
  bool ha = false;                                   // halo::PutOptions::ha.
  uint32_t num_primary_copies = 0;
};

// The client's entry points. Every function throws halo::Error (or a subclass) on failure.
// Thread-safe.
//
// Creates an object of `size` bytes, has `write` fill it in place, seals it; returns the new
// reference.
std::shared_ptr<RefState> put_object(size_t size,
                                     const std::function<void(std::span<std::byte>)>& write,
                                     const PutParams& params);
// An object's bytes in the node's store, and what keeps them there: the node keeps the object
// pinned for this process while any `pin` of it lives (an unpinned copy fetched from another
// node may be evicted when room is needed; it is fetched again on the next get).
struct PinnedObject {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> pin;
};
// The bytes of each object, fetched from other nodes as needed. Throws GetTimeoutError after
// `timeout` (negative: wait for ever).
std::vector<PinnedObject> get_objects(const std::vector<const RefState*>& refs,
                                      std::chrono::milliseconds timeout);
// Which objects are ready, once `num_ready` are or at the timeout.
std::vector<bool> wait_objects(const std::vector<const RefState*>& refs, size_t num_ready,
                               std::chrono::milliseconds timeout);
// Before a reference leaves the process (ObjectRef::binary()): waits until the node has
// applied this process's puts, so that whoever receives the reference finds the object.
void publish_refs();
// A reference rebuilt from its wire form (another process's ObjectRef::binary()).
std::shared_ptr<RefState> adopt_ref(ObjectId id, std::string owner_address);

// For halo/mpi.h. The transport address of an ALIVE node daemon of the cluster at
// `gcs_address` that runs on this machine, "" when none does, or why the GCS cannot be asked.
StatusOr<std::string> find_local_node(const std::string& gcs_address,
                                      const std::string& secret_file);
// For halo/mpi.h: `hook` runs at the end of the next shutdown(), once this process's
// connection is gone (halo::init(MPI_Comm) stops the daemons it started there).
void at_shutdown(std::function<void()> hook);

}  // namespace halo::internal
