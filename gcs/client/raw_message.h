// A message that is already serialized: what GcsClient's type-erased call path hands to the RPC
// layer's templates, which accept any type with protobuf's parse/serialize members
// (transport::ProtoMessage). Parsing keeps the bytes as they are; serializing copies them out.
#pragma once

#include <string>

namespace halo::gcs::internal {

struct RawMessage {
  std::string bytes;

  bool ParseFromArray(const void* data, int size) {
    bytes.assign(static_cast<const char*>(data), static_cast<size_t>(size));
    return true;
  }
  bool SerializeToString(std::string* out) const {
    *out = bytes;
    return true;
  }
  std::string GetTypeName() const { return "serialized message"; }
};

}  // namespace halo::gcs::internal
