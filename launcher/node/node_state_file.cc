#include "launcher/node/node_state_file.h"

#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace halo::node {
namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::string to_json(const NodeStateRecord& r) {
  return str_cat(
      "{\"node_id\": ", quoted(r.node_id), ", \"incarnation\": ", r.incarnation,
      ", \"state\": ", quoted(r.state), ", \"gcs_connected\": ", r.gcs_connected ? "true" : "false",
      ", \"address\": ", quoted(r.address), ", \"gcs_address\": ", quoted(r.gcs_address),
      ", \"pid\": ", r.pid, ", \"cluster_id\": ", quoted(r.cluster_id),
      ", \"reason\": ", quoted(r.reason), ", \"updated_at_ms\": ", r.updated_at_ms, "}\n");
}

Status write_node_state_file(const std::string& path, const NodeStateRecord& record) {
  const std::string tmp = path + ".tmp";
  const std::string text = to_json(record);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, str_cat("cannot write the node state file ", tmp));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return errno_error(err, str_cat("cannot write the node state file ", tmp));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return errno_error(errno, str_cat("cannot rename ", tmp, " to ", path));
  }
  return Status();
}

StatusOr<NodeStateRecord> read_node_state_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found_error(str_cat("no node state file at ", path));
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct object;
  auto parsed = google::protobuf::util::JsonStringToMessage(text.str(), &object);
  if (!parsed.ok()) {
    return invalid_argument_error(
        str_cat("the node state file ", path, " is not a JSON object: ", parsed.ToString()));
  }
  const auto& f = object.fields();
  auto str = [&](const char* key) {
    auto it = f.find(key);
    return it == f.end() ? std::string() : it->second.string_value();
  };
  auto num = [&](const char* key) {
    auto it = f.find(key);
    return it == f.end() ? 0.0 : it->second.number_value();
  };
  NodeStateRecord r;
  r.node_id = str("node_id");
  r.incarnation = static_cast<uint64_t>(num("incarnation"));
  r.state = str("state");
  auto connected = f.find("gcs_connected");
  r.gcs_connected = connected != f.end() && connected->second.bool_value();
  r.address = str("address");
  r.gcs_address = str("gcs_address");
  r.pid = static_cast<int64_t>(num("pid"));
  r.cluster_id = str("cluster_id");
  r.reason = str("reason");
  r.updated_at_ms = static_cast<int64_t>(num("updated_at_ms"));
  if (r.node_id.empty() || r.state.empty()) {
    return invalid_argument_error(
        str_cat("the node state file ", path, " lacks node_id or state: ", text.str()));
  }
  return r;
}

}  // namespace halo::node
