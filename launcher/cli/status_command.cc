// `halo status`: the node table (states, incarnations, resources, labels) and the GCS's own
// status, as text or JSON (--json).
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include "halo/base/ids.h"
#include "launcher/cli/commands.h"
#include "launcher/cli/gcs_connection.h"

namespace halo::launcher::cli {
namespace {

// Ids and cluster ids in messages and files: lower-case hex, as halo prints ids.
std::string hex(const std::string& bytes) {
  return internal_ids::to_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Protobuf maps iterate in no particular order; output is sorted so it reads the same each time.
template <typename K, typename V>
std::map<K, V> sorted(const google::protobuf::Map<K, V>& map) {
  std::map<K, V> out;
  for (const auto& [key, value] : map) out.emplace(key, value);
  return out;
}

std::string number(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  return out.str();
}

std::string node_json(const gcs::proto::NodeInfo& n) {
  std::string resources;
  for (const auto& [name, amount] : sorted(n.resources())) {
    resources += str_cat(resources.empty() ? "" : ", ", quoted(name), ": ", number(amount));
  }
  std::string labels;
  for (const auto& [key, value] : sorted(n.labels())) {
    labels += str_cat(labels.empty() ? "" : ", ", quoted(key), ": ", quoted(value));
  }
  return str_cat("{\"node_id\": ", quoted(hex(n.node_id())), ", \"incarnation\": ", n.incarnation(),
                 ", \"state\": ", quoted(gcs::proto::NodeState_Name(n.state())),
                 ", \"state_reason\": ", quoted(n.state_reason()),
                 ", \"address\": ", quoted(n.address()), ", \"hostname\": ", quoted(n.hostname()),
                 ", \"pid\": ", n.pid(), ", \"resources\": {", resources, "}, \"labels\": {",
                 labels, "}, \"topology\": ", quoted(n.topology()),
                 ", \"registered_at_ms\": ", n.registered_at_ms(),
                 ", \"state_changed_at_ms\": ", n.state_changed_at_ms(), "}");
}

std::string human_amount(const std::string& name, double v) {
  if (name == "memory") {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
      v /= 1024;
      ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f%s", v, units[u]);
    return buf;
  }
  return number(v);
}

// "  HA objects: 120 (3.0GiB); restoring 8 (256.0MiB) whose copies died" -- or "all at full
// copy count", and the lost ones, which no re-replication can bring back.
std::string ha_line(const gcs::proto::GcsStatusResponse& s) {
  std::string line = str_cat("  HA objects: ", s.ha_objects(), " (",
                             human_amount("memory", static_cast<double>(s.ha_bytes())), ")");
  if (s.ha_objects_short() > 0) {
    line += str_cat("; restoring ", s.ha_objects_short(), " (",
                    human_amount("memory", static_cast<double>(s.ha_bytes_short())),
                    ") whose copies died");
  } else if (s.ha_objects() > 0) {
    line += "; all at full copy count";
  }
  if (s.ha_objects_lost() > 0) line += str_cat("; LOST ", s.ha_objects_lost(), " (no live copy)");
  return line + "\n";
}

}  // namespace

Status run_status(const StatusOptions& options) {
  HALO_ASSIGN_OR_RETURN(GcsConnection connection, connect_to_gcs(options.cluster));
  gcs::proto::GetNodesRequest request;
  request.set_include_removed(options.all);
  auto nodes = connection.client->call<gcs::proto::GetNodesRequest, gcs::proto::GetNodesResponse>(
      "gcs.get_nodes", request);
  if (!nodes.ok()) {
    return nodes.status().with_context(str_cat("reading the node table from ", connection.address));
  }
  auto status =
      connection.client->call<gcs::proto::GcsStatusRequest, gcs::proto::GcsStatusResponse>(
          "gcs.status", {});
  std::string out;
  if (options.json) {
    out = str_cat("{\"gcs\": {\"address\": ", quoted(connection.address));
    if (status.ok()) {
      out += str_cat(", \"cluster_id\": ", quoted(hex(status->cluster_id())),
                     ", \"last_index\": ", status->last_index(),
                     ", \"snapshot_index\": ", status->snapshot_index(),
                     ", \"started_at_ms\": ", status->started_at_ms(),
                     ", \"recovered_in_ms\": ", status->recovered_in_ms(),
                     ", \"kv_entries\": ", status->kv_entries(), ", \"jobs\": ", status->jobs(),
                     ", \"actors\": ", status->actors(), ", \"ha_objects\": ", status->ha_objects(),
                     ", \"ha_bytes\": ", status->ha_bytes(),
                     ", \"ha_objects_short\": ", status->ha_objects_short(),
                     ", \"ha_bytes_short\": ", status->ha_bytes_short(),
                     ", \"ha_objects_lost\": ", status->ha_objects_lost(),
                     ", \"data_dir\": ", quoted(status->data_dir()),
                     ", \"fsync_policy\": ", quoted(status->fsync_policy()));
    } else {
      out += str_cat(", \"error\": ", quoted(status.status().to_string()));
    }
    out += str_cat("}, \"index\": ", nodes->index(), ", \"nodes\": [");
    for (int i = 0; i < nodes->nodes_size(); ++i) {
      out += str_cat(i == 0 ? "" : ", ", node_json(nodes->nodes(i)));
    }
    out += "]}\n";
  } else {
    out = str_cat("GCS ", connection.address);
    if (status.ok()) {
      out += str_cat("  cluster ", hex(status->cluster_id()), "\n  log index ",
                     status->last_index(), ", snapshot at ", status->snapshot_index(),
                     ", data dir ", status->data_dir(), ", fsync ", status->fsync_policy(),
                     ", recovered in ", status->recovered_in_ms(), " ms\n");
      out += ha_line(*status);
    } else {
      out += str_cat("\n  (gcs.status failed: ", status.status().to_string(), ")\n");
    }
    out += str_cat(nodes->nodes_size(), " node(s)\n");
    char line[512];
    std::snprintf(line, sizeof(line), "%-32s %4s %-10s %-28s %s\n", "NODE", "INC", "STATE",
                  "ADDRESS", "RESOURCES / LABELS");
    out += line;
    for (const auto& n : nodes->nodes()) {
      std::string resources;
      for (const auto& [name, amount] : sorted(n.resources())) {
        resources += str_cat(resources.empty() ? "" : " ", name, "=", human_amount(name, amount));
      }
      for (const auto& [key, value] : sorted(n.labels())) {
        resources += str_cat(" ", key, ":", value);
      }
      std::snprintf(line, sizeof(line), "%-32s %4" PRIu64 " %-10s %-28s %s\n",
                    hex(n.node_id()).c_str(), static_cast<uint64_t>(n.incarnation()),
                    gcs::proto::NodeState_Name(n.state()).c_str(), n.address().c_str(),
                    resources.c_str());
      out += line;
      if (!n.state_reason().empty() && n.state() != gcs::proto::ALIVE) {
        out += str_cat("    ", n.state_reason(), "\n");
      }
      if (options.verbose) {
        out +=
            str_cat("    topology: ", n.topology().empty() ? "not reported" : n.topology(), "\n");
      }
    }
  }
  std::cout << out << std::flush;
  return Status();
}

}  // namespace halo::launcher::cli
