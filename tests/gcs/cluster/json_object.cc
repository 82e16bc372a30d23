#include "tests/gcs/cluster/json_object.h"

#include <google/protobuf/util/json_util.h>

namespace halo::gcs::testing {

namespace {

const google::protobuf::Value* field(const google::protobuf::Struct& object,
                                     const std::string& name) {
  auto it = object.fields().find(name);
  return it == object.fields().end() ? nullptr : &it->second;
}

}  // namespace

StatusOr<google::protobuf::Struct> parse_json_object(std::string_view text) {
  google::protobuf::Struct object;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), &object);
  if (!status.ok()) {
    return invalid_argument_error(
        str_cat("not a JSON object (", status.ToString(), "): ", text.substr(0, 400)));
  }
  return object;
}

std::string json_string(const google::protobuf::Struct& object, const std::string& name) {
  const auto* value = field(object, name);
  return value != nullptr && value->has_string_value() ? value->string_value() : std::string();
}

double json_number(const google::protobuf::Struct& object, const std::string& name) {
  const auto* value = field(object, name);
  return value != nullptr && value->has_number_value() ? value->number_value() : 0.0;
}

bool json_bool(const google::protobuf::Struct& object, const std::string& name) {
  const auto* value = field(object, name);
  return value != nullptr && value->has_bool_value() && value->bool_value();
}

}  // namespace halo::gcs::testing
