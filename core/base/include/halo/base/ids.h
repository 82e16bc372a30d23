// Identifiers of what a cluster tracks: nodes, objects, jobs, actors, tasks and workers.
//
// Each kind is its own type, so a NodeId cannot be passed where an ObjectId is expected, and
// each is a fixed number of raw bytes: compact on the wire, cheap to compare and hash.
//
//   halo::ObjectId id = halo::ObjectId::random();
//   request.set_object_id(id.binary());              // 16 bytes for a protobuf `bytes` field
//   HALO_ASSIGN_OR_RETURN(halo::ObjectId same, halo::ObjectId::from_binary(reply.object_id()));
//   std::cout << id;                                 // 32 lower-case hex digits
//   HALO_ASSIGN_OR_RETURN(halo::NodeId node, halo::NodeId::from_hex(argv[1]));
//   std::unordered_map<halo::ObjectId, Entry> table; // std::hash is provided
//
// Sizes, and why:
// - NodeId, ObjectId, ActorId, TaskId, WorkerId: 16 bytes, random. Any process creates them on
//   its own, with no round trip to the GCS (which may be down or partitioned away while tasks
//   and objects keep being created). 128 random bits make a collision among 2^40 ids about as
//   likely as 2^-49 (birthday bound), so uniqueness needs no coordination.
// - JobId: 4 bytes, handed out in order by the GCS, which owns the job table (`from_int`).
//   Jobs are few and the GCS is their only creator, so a counter is unique, short, and reads
//   as a number in logs; 32 random bits, in contrast, would likely collide within ~65,000 jobs,
//   so JobId has no random().
//
// The all-zero id is nil: the value of a default-constructed id, meaning "none". random()
// never returns nil, and the GCS starts job numbers at 1.
//
// Ids are plain values: copy freely; const methods are safe from any number of threads.
// random() is thread-safe and fork-safe (a forked worker never repeats its parent's ids).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

#include "halo/base/status.h"

namespace halo {

namespace internal_ids {
// Fills `out[0..n)` from a cryptographically secure generator (OpenSSL's RAND_bytes, else the
// kernel's getrandom), drawn ahead in per-thread blocks that a fork discards. Aborts if neither
// works: halo cannot run without unique ids, and Linux's generator cannot fail once booted.
void fill_random(uint8_t* out, size_t n);
std::string to_hex(const uint8_t* bytes, size_t n);
// The `n` bytes that `text` (2n hex digits, either case) encodes, or INVALID_ARGUMENT naming
// `type_name`, the text and what is wrong with it.
StatusOr<std::string> bytes_from_hex(std::string_view text, std::string_view type_name, size_t n);
Status wrong_size_error(std::string_view type_name, size_t expected, size_t got);

// A 64-bit finalizer (splitmix64): ids built from counters or test patterns are not uniform,
// so their bytes are mixed rather than used as the hash directly.
constexpr uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}
}  // namespace internal_ids

// An id of the kind named by `Tag` (which provides `static constexpr std::string_view kName`),
// `N` bytes long. Use the aliases below rather than this template.
template <typename Tag, size_t N>
class Id {
 public:
  static constexpr size_t kSize = N;
  static constexpr std::string_view kTypeName = Tag::kName;

  // The nil id (all zero bytes).
  constexpr Id() = default;
  static constexpr Id nil() { return Id(); }

  // A fresh random id, never nil. Thread-safe and fork-safe; takes some tens of nanoseconds.
  static Id random() requires(N >= 16) {
    Id id;
    do {
      internal_ids::fill_random(id.bytes_.data(), N);
    } while (id.is_nil());
    return id;
  }

  // The id numbered `n`, stored big-endian so that ids order and print as their numbers do
  // (JobId::from_int(3).to_hex() == "00000003"). from_int(0) is nil.
  static constexpr Id from_int(uint32_t n) requires(N == 4) {
    Id id;
    id.bytes_ = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                 static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
    return id;
  }
  constexpr uint32_t to_int() const requires(N == 4) {
    return (uint32_t{bytes_[0]} << 24) | (uint32_t{bytes_[1]} << 16) | (uint32_t{bytes_[2]} << 8) |
           uint32_t{bytes_[3]};
  }

  // From exactly N raw bytes, as written by binary(). Anything else (a truncated or foreign
  // field in a message) is INVALID_ARGUMENT naming the type and both sizes.
  static StatusOr<Id> from_binary(std::string_view bytes) {
    if (bytes.size() != N) return internal_ids::wrong_size_error(kTypeName, N, bytes.size());
    Id id;
    std::memcpy(id.bytes_.data(), bytes.data(), N);
    return id;
  }
  static constexpr Id from_bytes(const std::array<uint8_t, N>& bytes) {
    Id id;
    id.bytes_ = bytes;
    return id;
  }

  // From 2N hex digits (either case), as written by to_hex(). A wrong length or a non-hex
  // character is INVALID_ARGUMENT naming the type, the text and the problem.
  static StatusOr<Id> from_hex(std::string_view text) {
    HALO_ASSIGN_OR_RETURN(std::string bytes, internal_ids::bytes_from_hex(text, kTypeName, N));
    return from_binary(bytes);
  }

  constexpr bool is_nil() const { return *this == Id(); }

  // The N raw bytes, for the wire (protobuf `bytes` fields) and for files.
  std::string binary() const {
    return std::string(reinterpret_cast<const char*>(bytes_.data()), N);
  }
  constexpr const std::array<uint8_t, N>& bytes() const { return bytes_; }

  // 2N lower-case hex digits; the form in logs, messages and command lines.
  std::string to_hex() const { return internal_ids::to_hex(bytes_.data(), N); }

  // Bytewise order: stable across processes and machines, so sorted id lists agree.
  constexpr auto operator<=>(const Id&) const = default;

  size_t hash() const {
    uint64_t h = internal_ids::mix(0x9e3779b97f4a7c15ull ^ N);
    for (size_t i = 0; i < N; i += 8) {
      uint64_t word = 0;
      std::memcpy(&word, bytes_.data() + i, N - i < 8 ? N - i : 8);
      h = internal_ids::mix(h ^ word);
    }
    return static_cast<size_t>(h);
  }

 private:
  std::array<uint8_t, N> bytes_{};
};

template <typename Tag, size_t N>
std::ostream& operator<<(std::ostream& os, const Id<Tag, N>& id) {
  return os << id.to_hex();
}

struct NodeIdTag {
  static constexpr std::string_view kName = "NodeId";
};
struct ObjectIdTag {
  static constexpr std::string_view kName = "ObjectId";
};
struct JobIdTag {
  static constexpr std::string_view kName = "JobId";
};
struct ActorIdTag {
  static constexpr std::string_view kName = "ActorId";
};
struct TaskIdTag {
  static constexpr std::string_view kName = "TaskId";
};
struct WorkerIdTag {
  static constexpr std::string_view kName = "WorkerId";
};

// A node daemon, as a member of the cluster.
using NodeId = Id<NodeIdTag, 16>;
// An object in the store, HA or not.
using ObjectId = Id<ObjectIdTag, 16>;
// A driver program's run; numbered by the GCS.
using JobId = Id<JobIdTag, 4>;
// An actor, across all its restarts.
using ActorId = Id<ActorIdTag, 16>;
// One task submission, across all its retries.
using TaskId = Id<TaskIdTag, 16>;
// One worker process.
using WorkerId = Id<WorkerIdTag, 16>;

}  // namespace halo

template <typename Tag, size_t N>
struct std::hash<halo::Id<Tag, N>> {
  size_t operator()(const halo::Id<Tag, N>& id) const { return id.hash(); }
};
