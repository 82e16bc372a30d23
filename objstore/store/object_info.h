// What the node's object store says about one object (ObjectInfo), and the words it is built
// from: who asks (ClientId), which kind of copy (CopyKind), the object's life (ObjectState),
// and where its bytes are (Placement).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace halo::objstore {

// The RPC service's id for a connected client (a driver or worker on this node). 0 is the node
// daemon itself, e.g. while it sends an object to another node.
using ClientId = uint64_t;
inline constexpr ClientId kNodeClient = 0;

enum class CopyKind {
  kPrimary,    // Created on this node (or an HA copy): never evicted, only spilled.
  kSecondary,  // Fetched from another node, which still has the object: evicted when room is
               // needed.
};

// created --seal--> sealed --spill--> spilled --restore--> sealed
//    \--abort/creator gone--> (gone)        remove: (gone) once unpinned
enum class ObjectState {
  kCreated,  // Space reserved; its creator is writing the bytes. Not readable.
  kSealed,   // Complete, immutable and in memory: readable in place.
  kSpilled,  // Complete, only in its spill file: restore() before reading.
};

std::string_view object_state_name(ObjectState state);
std::string_view copy_kind_name(CopyKind kind);

// Where an object's bytes are inside the segment: [offset, offset + size). `size` is the
// object's own size, not the (larger, aligned) block that holds it.
struct Placement {
  uint64_t offset = 0;
  uint64_t size = 0;
  friend bool operator==(const Placement&, const Placement&) = default;
};

struct ObjectInfo {
  ObjectState state = ObjectState::kCreated;
  uint64_t size = 0;  // The object's size in bytes, as created.
  CopyKind kind = CopyKind::kPrimary;
  ClientId creator = kNodeClient;
  uint64_t pins = 0;  // Pins held, summed over clients.
  // Set while the bytes are in memory (created, sealed); nullopt when only on disk.
  std::optional<Placement> placement;
  // remove() was called; the memory goes when the last pin does.
  bool pending_remove = false;
  // A spill file of the object exists (or is being written); empty otherwise.
  std::string spill_path;
};

}  // namespace halo::objstore
