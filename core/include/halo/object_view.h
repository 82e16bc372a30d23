// What halo::get returns: the value of an object, read in place in the node's shared memory
// when its type allows (no copy), decoded once otherwise. It keeps the object alive (it holds a
// reference) and in memory (the node keeps it pinned) for as long as it exists; hold views
// only while you read, and keep the ObjectRef instead.
//
//   halo::ObjectView<std::vector<double>> v = halo::get(ref);
//   double first = v[0];                      // Reads the store directly.
//   std::span<const double> all = v.span();
//   std::vector<double> mine = v;             // A copy, when one is wanted.
//
//   halo::ObjectView<Params> p = halo::get(params_ref);   // Trivially copyable: in place.
//   int n = p->iterations;
//
// Views are read-only: objects are immutable once sealed.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "halo/internal/object_codec.h"
#include "halo/object_ref.h"

namespace halo {

template <typename T>
class ObjectView {
 public:
  // Trivially copyable T: the value in place.
  const T& operator*() const
      requires(internal::encoding_of<T>() != internal::Encoding::kContiguous) {
    if constexpr (internal::encoding_of<T>() == internal::Encoding::kTrivial) {
      return *reinterpret_cast<const T*>(payload_.data());
    } else {
      return *decoded_;
    }
  }
  const T* operator->() const
      requires(internal::encoding_of<T>() != internal::Encoding::kContiguous) {
    return &**this;
  }

  // Contiguous containers (std::vector, std::basic_string of trivially copyable elements):
  // the elements in place.
  auto span() const requires(internal::encoding_of<T>() == internal::Encoding::kContiguous) {
    using E = typename T::value_type;
    return std::span<const E>(reinterpret_cast<const E*>(payload_.data()),
                              payload_.size() / sizeof(E));
  }
  auto data() const requires(internal::encoding_of<T>() == internal::Encoding::kContiguous) {
    return span().data();
  }
  size_t size() const requires(internal::encoding_of<T>() == internal::Encoding::kContiguous) {
    return span().size();
  }
  auto begin() const requires(internal::encoding_of<T>() == internal::Encoding::kContiguous) {
    return span().begin();
  }
  auto end() const requires(internal::encoding_of<T>() == internal::Encoding::kContiguous) {
    return span().end();
  }
  const auto& operator[](size_t i) const
      requires(internal::encoding_of<T>() == internal::Encoding::kContiguous) {
    return span()[i];
  }

  // A copy of the value, for code that wants to own it.
  T value() const {
    if constexpr (internal::encoding_of<T>() == internal::Encoding::kContiguous) {
      auto s = span();
      return T(s.begin(), s.end());
    } else {
      return **this;
    }
  }
  operator T() const { return value(); }  // NOLINT(google-explicit-constructor)

  // The object's payload bytes in the store (empty for a value decoded through cereal).
  std::span<const std::byte> bytes() const { return payload_; }
  const ObjectRef<T>& ref() const { return ref_; }

 private:
  template <typename U>
  friend ObjectView<U> make_view(ObjectRef<U> ref, internal::PinnedObject object);
  ObjectView(ObjectRef<T> ref, std::span<const std::byte> payload, std::shared_ptr<const void> pin)
      : ref_(std::move(ref)), payload_(payload), pin_(std::move(pin)) {
    if constexpr (internal::encoding_of<T>() == internal::Encoding::kSerialized) {
      decoded_ = std::make_shared<const T>(internal::decode_serialized<T>(payload_));
      pin_.reset();  // A decoded copy needs the store's bytes no longer.
      payload_ = {};
    }
  }

  ObjectRef<T> ref_;
  std::span<const std::byte> payload_;
  std::shared_ptr<const void> pin_;
  std::shared_ptr<const T> decoded_;  // kSerialized only.
};

template <typename T>
ObjectView<T> make_view(ObjectRef<T> ref, internal::PinnedObject object) {
  std::span<const std::byte> payload =
      internal::checked_payload(object.bytes, internal::header_of<T>(), ref.id().to_hex());
  return ObjectView<T>(std::move(ref), payload, std::move(object.pin));
}

}  // namespace halo
