// The node daemon's state file: one small JSON object describing the node as it sees itself,
// rewritten atomically (temporary file, then rename) on every change, mode 0600. `halo start`
// waits on it, `halo stop` and the tests read it.
//
//   {"node_id": "5f0c...", "incarnation": 2, "state": "alive", "gcs_connected": true,
//    "address": "ucx://10.0.0.2:40123", "gcs_address": "ucx://10.0.0.1:6379", "pid": 4242,
//    "cluster_id": "9ab1...", "reason": "", "updated_at_ms": 1764000000000}
//
// state: "registering" (not yet, or no longer, a member: before the first registration and
// after being declared dead), "alive" (a member with a valid lease), "fenced" (lease ran out:
// takes no work until a renewal succeeds or it re-registers), "draining" (leaving on
// `halo drain`), "stopped" (exited; the reason says why). gcs_connected: the last call to the
// GCS succeeded. A reader never sees a half-written file.
#pragma once

#include <cstdint>
#include <string>

#include "halo/base/status.h"

namespace halo::node {

struct NodeStateRecord {
  std::string node_id;  // 32 hex digits.
  uint64_t incarnation = 0;
  std::string state;
  bool gcs_connected = false;
  std::string address;
  std::string gcs_address;
  int64_t pid = 0;
  std::string cluster_id;  // Hex; empty before the first registration.
  std::string reason;      // Why the node is in this state, when not obvious.
  int64_t updated_at_ms = 0;

  friend bool operator==(const NodeStateRecord&, const NodeStateRecord&) = default;
};

// Writes `record` to `path` atomically (PATH.tmp, then rename), mode 0600. Errors name the file.
Status write_node_state_file(const std::string& path, const NodeStateRecord& record);

// Reads a state file. NOT_FOUND when missing; INVALID_ARGUMENT naming the file when it is not
// such a JSON object.
StatusOr<NodeStateRecord> read_node_state_file(const std::string& path);

// The record as one line of JSON (what the file holds).
std::string to_json(const NodeStateRecord& record);

}  // namespace halo::node
