#include "objstore/store/object_info.h"

namespace halo::objstore {

std::string_view object_state_name(ObjectState state) {
  switch (state) {
    case ObjectState::kCreated:
      return "created";
    case ObjectState::kSealed:
      return "sealed";
    case ObjectState::kSpilled:
      return "spilled";
  }
  return "unknown";
}

std::string_view copy_kind_name(CopyKind kind) {
  switch (kind) {
    case CopyKind::kPrimary:
      return "primary";
    case CopyKind::kSecondary:
      return "secondary";
  }
  return "unknown";
}

}  // namespace halo::objstore
