// halo's C++ API: objects in a cluster's shared-memory object stores (docs/objstore.md).
//
//   #include <halo/halo.h>
//
//   int main() {
//     halo::init();                                    // An embedded local cluster, or:
//     // halo::init({.address = "10.0.0.1:6380"});     // join a running one.
//     std::vector<double> samples(1 << 20, 1.0);
//     halo::ObjectRef<std::vector<double>> ref = halo::put(samples);
//     halo::ObjectView<std::vector<double>> view = halo::get(ref);   // In place, no copy.
//     double sum = std::accumulate(view.begin(), view.end(), 0.0);
//     halo::shutdown();
//   }
//
// Values: trivially copyable types and std::vector / std::basic_string of them are written
// straight into the store and read in place; any other type goes through cereal (it needs a
// `serialize(Archive&)` member unless the standard library's support covers it).
//
// Errors are exceptions (halo/errors.h): ObjectStoreFullError from put, GetTimeoutError and
// ObjectLostError from get, halo::Error for anything else (no cluster, a bad address, a
// reference of another type).
//
// Threads: every function may be called from any thread once init() has returned.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "halo/errors.h"
#include "halo/init_options.h"
#include "halo/internal/client.h"
#include "halo/internal/object_codec.h"
#include "halo/object_ref.h"
#include "halo/object_view.h"

namespace halo {

// Connects this process to a cluster. With no address (options.address, else $HALO_ADDRESS),
// starts an embedded local cluster (a GCS and options.num_nodes node daemons as child
// processes) that shutdown() stops. Throws halo::Error if it cannot (the message says why and
// where the logs are). Calling it twice without shutdown() in between throws.
void init(const InitOptions& options = {});
// Drops this process's references, disconnects, and stops an embedded cluster. Idempotent.
void shutdown();
bool is_initialized();

struct PutOptions {
  // How long a put waits for room when the store is full now, and (with `ha`) how long the
  // copies may take; default InitOptions::put_timeout.
  std::optional<std::chrono::milliseconds> timeout = std::nullopt;
  // High availability (docs/objstore.md, "HA objects"): the put returns once primary copies
  // of the object are sealed on `num_primary_copies` nodes in all (different failure domains
  // where nodes have them), written there by RDMA puts, and recorded in the GCS. The object
  // then stays readable when its creator, or its creator's node, or any one other holder dies.
  bool ha = false;
  // Copies of an HA object, this node's included; 0: the node's num_primary_copies (default 2).
  uint32_t num_primary_copies = 0;
};

// Stores `value` as a new immutable object on this process's node; returns its reference.
// Throws ObjectStoreFullError when it does not fit; with `ha`, halo::Error (FAILED_PRECONDITION)
// when fewer nodes than asked could take a copy: a put never succeeds with fewer copies.
template <typename T>
ObjectRef<T> put(const T& value, const PutOptions& options = {}) {
  internal::Encoder<T> encoder(value);
  internal::PutParams params;
  params.timeout = options.timeout;
  params.ha = options.ha;
  params.num_primary_copies = options.num_primary_copies;
  auto state = internal::put_object(
      internal::kHeaderBytes + encoder.payload_size(),
      [&encoder](std::span<std::byte> out) { encoder.write(out); }, params);
  return make_ref<T>(std::move(state));
}

// The value of the object, in place where its type allows; fetched from its node first when
// held elsewhere. Throws GetTimeoutError after `timeout` (default: wait for ever) and
// ObjectLostError when the object can no longer be read.
template <typename T>
ObjectView<T> get(const ObjectRef<T>& ref,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
  if (ref.empty()) throw Error("halo::get of an empty ObjectRef");
  auto objects = internal::get_objects({ref.state()}, timeout);
  return make_view(ref, std::move(objects.front()));
}

// Several at once (fetched concurrently).
template <typename T>
std::vector<ObjectView<T>> get(const std::vector<ObjectRef<T>>& refs,
                               std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
  std::vector<const internal::RefState*> states;
  states.reserve(refs.size());
  for (const auto& ref : refs) {
    if (ref.empty()) throw Error("halo::get of an empty ObjectRef");
    states.push_back(ref.state());
  }
  auto objects = internal::get_objects(states, timeout);
  std::vector<ObjectView<T>> views;
  views.reserve(refs.size());
  for (size_t i = 0; i < refs.size(); ++i) {
    views.push_back(make_view(refs[i], std::move(objects[i])));
  }
  return views;
}

// Waits until `num_ready` of `refs` are ready (sealed at their owner, or lost) or `timeout`
// passes (default: for ever); returns which are ready, in order. Never throws GetTimeoutError.
template <typename T>
std::vector<bool> wait(const std::vector<ObjectRef<T>>& refs, size_t num_ready,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
  std::vector<const internal::RefState*> states;
  states.reserve(refs.size());
  for (const auto& ref : refs) states.push_back(ref.state());
  return internal::wait_objects(states, num_ready, timeout);
}

// The node this process is connected to, and its store (for tools and tests).
struct StoreInfo {
  std::string node_id_hex;
  std::string node_address;
  std::string gcs_address;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t objects = 0;
  uint64_t referenced_objects = 0;
  uint64_t fetches = 0;
  uint64_t spilled_objects = 0;
  uint64_t evictions = 0;
  uint64_t puts_waiting_for_room = 0;  // Puts (of any process) the node holds until room frees.
  uint64_t rooms_created_ahead = 0;    // Rooms clients asked ahead of their next puts, so far.
};
StoreInfo store_info();

// The cluster this process belongs to: where its GCS is, the secret file that admits a client
// (a program may start helpers on other nodes with HALO_ADDRESS / HALO_SECRET_FILE /
// HALO_NODE_ADDRESS set from it), and its nodes as the GCS lists them.
struct NodeInfo {
  std::string node_id_hex;
  std::string address;  // The node daemon's transport address.
  std::string hostname;
  std::string state;  // ALIVE, SUSPECTED, DEAD, DRAINING.
};
struct ClusterInfo {
  std::string gcs_address;
  std::string secret_file;
  std::vector<NodeInfo> nodes;
};
ClusterInfo cluster_info();

}  // namespace halo
