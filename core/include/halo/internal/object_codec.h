// How a C++ value becomes the bytes of an object and back (docs/objstore.md, "Values").
//
// Every object starts with a 16-byte header: a magic number, the encoding, and a fingerprint of
// the C++ type that was put, so that get<T> on an object of another type fails with a clear
// error instead of reading garbage. The value follows, 16-byte aligned:
//   - kTrivial: a trivially copyable T, its bytes as they are in memory;
//   - kContiguous: std::vector<E> or std::basic_string<E> of trivially copyable E, the elements
//     as they are in memory (no length prefix: the object's size says it);
//   - kSerialized: anything else, through cereal's portable binary archive. cereal is header-
//     only, well kept (Debian's libcereal-dev), handles the standard library out of the box,
//     and a user type needs one `serialize(Archive&)` member to qualify; see docs/objstore.md.
// The first two are written straight into the store and read in place: no copy beyond the
// store, no serializer.
#pragma once

#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

namespace halo::internal {

enum class Encoding : uint8_t { kTrivial = 1, kContiguous = 2, kSerialized = 3 };

inline constexpr uint32_t kObjectMagic = 0x4f4c4148;  // "HALO", little-endian.
inline constexpr size_t kHeaderBytes = 16;

struct ObjectHeader {
  uint32_t magic = kObjectMagic;
  Encoding encoding = Encoding::kTrivial;
  uint8_t reserved[3] = {};
  uint64_t type_fingerprint = 0;
};
static_assert(sizeof(ObjectHeader) == kHeaderBytes);

template <typename T>
struct is_contiguous : std::false_type {};
template <typename E, typename A>
struct is_contiguous<std::vector<E, A>> : std::is_trivially_copyable<E> {};
template <typename E, typename Tr, typename A>
struct is_contiguous<std::basic_string<E, Tr, A>> : std::is_trivially_copyable<E> {};

template <typename T>
constexpr Encoding encoding_of() {
  if constexpr (std::is_trivially_copyable_v<T>) {
    return Encoding::kTrivial;
  } else if constexpr (is_contiguous<T>::value) {
    return Encoding::kContiguous;
  } else {
    return Encoding::kSerialized;
  }
}

// FNV-1a of the type's mangled name: the same in every process built by the same compiler.
template <typename T>
uint64_t type_fingerprint() {
  static const uint64_t fingerprint = [] {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char* p = typeid(T).name(); *p != '\0'; ++p) {
      h = (h ^ static_cast<uint8_t>(*p)) * 0x100000001b3ull;
    }
    return h;
  }();
  return fingerprint;
}

template <typename T>
ObjectHeader header_of() {
  ObjectHeader h;
  h.encoding = encoding_of<T>();
  h.type_fingerprint = type_fingerprint<T>();
  return h;
}

// A value ready to be written: its size, and how to write it into the object's payload.
template <typename T>
class Encoder {
 public:
  explicit Encoder(const T& value) : value_(value) {
    if constexpr (encoding_of<T>() == Encoding::kSerialized) {
      std::ostringstream out(std::ios::binary);
      {
        cereal::PortableBinaryOutputArchive archive(out);
        archive(value_);
      }
      serialized_ = std::move(out).str();
    }
  }
  size_t payload_size() const {
    if constexpr (encoding_of<T>() == Encoding::kTrivial) {
      return sizeof(T);
    } else if constexpr (encoding_of<T>() == Encoding::kContiguous) {
      return value_.size() * sizeof(typename T::value_type);
    } else {
      return serialized_.size();
    }
  }
  // Writes header and payload into `out` (kHeaderBytes + payload_size() bytes).
  void write(std::span<std::byte> out) const {
    const ObjectHeader header = header_of<T>();
    std::memcpy(out.data(), &header, kHeaderBytes);
    std::byte* payload = out.data() + kHeaderBytes;
    if constexpr (encoding_of<T>() == Encoding::kTrivial) {
      std::memcpy(payload, &value_, sizeof(T));
    } else if constexpr (encoding_of<T>() == Encoding::kContiguous) {
      if (!value_.empty()) std::memcpy(payload, value_.data(), payload_size());
    } else {
      std::memcpy(payload, serialized_.data(), serialized_.size());
    }
  }

 private:
  const T& value_;
  std::string serialized_;
};

// Checks that `object` (header + payload) holds a T; returns the payload, or throws
// halo::Error saying what is wrong.
std::span<const std::byte> checked_payload(std::span<const std::byte> object,
                                           const ObjectHeader& expected,
                                           std::string_view object_id_hex);

template <typename T>
T decode_serialized(std::span<const std::byte> payload) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(payload.data()), payload.size()),
                        std::ios::binary);
  cereal::PortableBinaryInputArchive archive(in);
  T value;
  archive(value);
  return value;
}

}  // namespace halo::internal
