// A reference to an object in the cluster's object store, typed by the value it holds.
//
//   halo::ObjectRef<std::vector<double>> ref = halo::put(samples);
//   auto copy = ref;                   // Copies share one reference.
//   std::string wire = ref.binary();   // Hand it to another process (MPI, a file, ...)...
//   auto same = halo::ObjectRef<std::vector<double>>::from_binary(wire);  // ...which adopts it.
//   std::string text = ref.hex();      // The same as text (from_hex adopts it).
//
// An object lives while any ObjectRef to it exists anywhere in the cluster: each process
// tells its node when it holds the first and drops the last reference, and nodes tell the
// object's owner node. When a process dies, its references go with it. A process that passes
// a reference on must keep its own until the receiver has adopted it (from_binary), or the
// object may be freed in between.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "halo/base/ids.h"
#include "halo/errors.h"
#include "halo/internal/client.h"

namespace halo {

template <typename T>
class ObjectRef {
 public:
  // An empty reference (refers to nothing); get() on it throws.
  ObjectRef() = default;

  const ObjectId& id() const { return state_->id(); }
  // The transport address of the node that owns the object (where it was put).
  const std::string& owner_address() const { return state_->owner_address(); }
  bool empty() const { return state_ == nullptr; }

  // The wire form: 16 id bytes followed by the owner address. Needs halo::init(): it first
  // makes sure the node has applied this process's puts (they are announced to it in batches),
  // so that the receiver finds the object.
  std::string binary() const {
    internal::publish_refs();
    return id().binary() + owner_address();
  }
  // Adopts a reference another process sent; needs halo::init() first. Throws halo::Error for
  // bytes that are not a reference.
  static ObjectRef from_binary(std::string_view bytes) {
    if (bytes.size() <= ObjectId::kSize) throw Error("not an ObjectRef: too short");
    auto id = ObjectId::from_binary(bytes.substr(0, ObjectId::kSize));
    return ObjectRef(internal::adopt_ref(*id, std::string(bytes.substr(ObjectId::kSize))));
  }

  // The wire form as text (lower-case hex of binary()), for files, command lines and the
  // environment; from_hex() adopts it. Throws halo::Error for text that is not such a form.
  std::string hex() const {
    const std::string bytes = binary();
    return internal_ids::to_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  static ObjectRef from_hex(std::string_view text) {
    auto bytes = internal_ids::bytes_from_hex(text, "ObjectRef", text.size() / 2);
    if (!bytes.ok()) throw Error(bytes.status().to_string());
    return from_binary(*bytes);
  }

  const internal::RefState* state() const { return state_.get(); }

 private:
  template <typename U>
  friend ObjectRef<U> make_ref(std::shared_ptr<internal::RefState> state);
  explicit ObjectRef(std::shared_ptr<internal::RefState> state) : state_(std::move(state)) {}
  std::shared_ptr<internal::RefState> state_;
};

template <typename T>
ObjectRef<T> make_ref(std::shared_ptr<internal::RefState> state) {
  return ObjectRef<T>(std::move(state));
}

}  // namespace halo
