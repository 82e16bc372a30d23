// `halo drain NODE`: asks the GCS to drain a node (ALIVE -> DRAINING); the node sees it at its
// next lease renewal, stops taking work, unregisters and exits (-> REMOVED). With --wait, waits
// until the node is REMOVED.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <thread>

#include "halo/base/ids.h"
#include "launcher/cli/commands.h"
#include "launcher/cli/gcs_connection.h"

namespace halo::launcher::cli {
namespace {

// Ids and cluster ids in messages and files: lower-case hex, as halo prints ids.
std::string hex(const std::string& bytes) {
  return internal_ids::to_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

Status run_drain(const DrainOptions& options) {
  std::string prefix;
  for (char c : options.node) {
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) {
      return invalid_argument_error(str_cat("'", options.node,
                                            "' is not a node id: give its hex digits (or a unique "
                                            "prefix of them) as `halo status` shows"));
    }
    prefix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (prefix.empty()) return invalid_argument_error("halo drain: which node? (see halo status)");
  HALO_ASSIGN_OR_RETURN(
      NodeId full, prefix.size() == 32 ? NodeId::from_hex(prefix) : StatusOr<NodeId>(NodeId()));
  HALO_ASSIGN_OR_RETURN(GcsConnection connection, connect_to_gcs(options.cluster));
  gcs::proto::DrainNodeRequest request;
  if (!full.is_nil()) {
    request.set_node_id(full.binary());
  } else {
    request.set_node_id_prefix(prefix);
  }
  request.set_reason(options.reason);
  auto response =
      connection.client->call<gcs::proto::DrainNodeRequest, gcs::proto::DrainNodeResponse>(
          "gcs.drain_node", request);
  if (!response.ok()) {
    return response.status().with_context(
        str_cat("draining node ", options.node, " through the GCS at ", connection.address));
  }
  const gcs::proto::NodeInfo& node = response->node();
  const std::string id = hex(node.node_id());
  std::printf("draining node %s (incarnation %llu, %s): it takes no new work and leaves\n",
              id.c_str(), static_cast<unsigned long long>(node.incarnation()),
              node.address().c_str());
  std::fflush(stdout);
  if (!options.wait) return Status();
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(options.cluster.timeout_s * 1000));
  auto interval = std::chrono::milliseconds(5);
  while (true) {
    gcs::proto::GetNodesRequest get;
    get.set_include_removed(true);
    auto nodes = connection.client->call<gcs::proto::GetNodesRequest, gcs::proto::GetNodesResponse>(
        "gcs.get_nodes", get);
    if (nodes.ok()) {
      for (const auto& n : nodes->nodes()) {
        if (n.node_id() == node.node_id() && n.incarnation() == node.incarnation() &&
            (n.state() == gcs::proto::REMOVED || n.state() == gcs::proto::DEAD)) {
          std::printf("node %s left the cluster (%s)\n", id.c_str(),
                      gcs::proto::NodeState_Name(n.state()).c_str());
          std::fflush(stdout);
          return Status();
        }
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return deadline_exceeded_error(str_cat("node ", id, " is still in the cluster after ",
                                             options.cluster.timeout_s,
                                             " s of draining; `halo status` shows its state"));
    }
    std::this_thread::sleep_for(interval);
    interval = std::min(interval * 2, std::chrono::milliseconds(100));
  }
}

}  // namespace halo::launcher::cli
