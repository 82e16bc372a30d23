// Reading one JSON object — a line printed by gcs_watch, or halo-node's state file — with
// Protocol Buffers' JSON parser into a google::protobuf::Struct, and its fields by name.
//
//   auto object = parse_json_object(R"({"state":"alive","incarnation":2})");
//   if (object.ok()) use(json_string(*object, "state"), json_number(*object, "incarnation"));
//
// A missing field, or one of another type, reads as empty / 0 / false: callers compare the
// values with what they expect, so a wrong type shows as a mismatch in their message.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <string>
#include <string_view>

#include "halo/base/status.h"

namespace halo::gcs::testing {

// INVALID_ARGUMENT, quoting the text, when it is not one JSON object.
StatusOr<google::protobuf::Struct> parse_json_object(std::string_view text);

std::string json_string(const google::protobuf::Struct& object, const std::string& name);
// Numbers up to 2^53 are exact (JSON numbers are doubles here).
double json_number(const google::protobuf::Struct& object, const std::string& name);
bool json_bool(const google::protobuf::Struct& object, const std::string& name);

}  // namespace halo::gcs::testing
