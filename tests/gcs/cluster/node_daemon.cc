#include "tests/gcs/cluster/node_daemon.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "tests/gcs/cluster/json_object.h"
#include "tests/support/test_store_size.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {

std::string node_program() { return HALO_NODE_PROGRAM; }

StatusOr<NodeStateFile> read_node_state_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found_error(str_cat("no node state file ", path));
  std::stringstream contents;
  contents << in.rdbuf();
  NodeStateFile state;
  state.text = contents.str();
  auto object = parse_json_object(state.text);
  if (!object.ok()) return object.status().with_context(str_cat("node state file ", path));
  state.node_id = json_string(*object, "node_id");
  state.address = json_string(*object, "address");
  state.incarnation = static_cast<uint64_t>(json_number(*object, "incarnation"));
  state.state = json_string(*object, "state");
  state.gcs_connected = json_bool(*object, "gcs_connected");
  state.pid = static_cast<int64_t>(json_number(*object, "pid"));
  state.updated_at_ms = static_cast<int64_t>(json_number(*object, "updated_at_ms"));
  return state;
}

StatusOr<std::unique_ptr<NodeDaemon>> NodeDaemon::start(Options options) {
  std::unique_ptr<NodeDaemon> node(new NodeDaemon(std::move(options)));
  const Options& o = node->options_;
  std::error_code ignored;
  std::filesystem::remove(o.state_file, ignored);
  std::vector<std::string> argv = {
      node_program(),
      "--gcs-address=" + o.gcs_address,
      "--secret-file=" + o.secret_file,
      "--host=" + o.where.address(),
      "--port=0",
      "--state-file=" + o.state_file,
      // A store small enough for many nodes on one test machine.
      "--object-store-memory=" + std::to_string(test::kTestStoreBytes),
  };
  for (auto& flag : o.where.transport_flags()) argv.push_back(std::move(flag));
  for (const auto& flag : o.extra_flags) argv.push_back(flag);
  test::ChildOptions child_options;
  child_options.echo_label = o.name;
  auto child = o.where.spawn(std::move(argv), std::move(child_options));
  if (!child.ok()) return child.status().with_context(str_cat("starting halo-node ", o.name));
  node->process_ = std::make_unique<test::ChildProcess>(*std::move(child));

  auto alive = node->wait_for_state(
      [&](const NodeStateFile& s) {
        return s.state == "alive" && s.gcs_connected && !s.node_id.empty();
      },
      o.start_timeout, "alive and connected to the GCS");
  if (!alive.ok()) {
    return alive.status().with_context(str_cat("starting halo-node ", o.name, " on ",
                                               o.where.describe(), "; its output:\n",
                                               node->process_->output_text()));
  }
  return node;
}

StatusOr<NodeStateFile> NodeDaemon::wait_for_state(
    const std::function<bool(const NodeStateFile&)>& condition,
    std::chrono::steady_clock::duration timeout, std::string_view what) const {
  StatusOr<NodeStateFile> last = not_found_error("not read yet");
  // A reading that does not parse is a file caught while being rewritten: read it again.
  const bool held = test::wait_for(
      [&] {
        last = state();
        return last.ok() && condition(*last);
      },
      timeout);
  if (held) return last;
  return deadline_exceeded_error(str_cat(
      "halo-node ", options_.name, " did not become ", what, " within ",
      std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(),
      " ms; last state file reading: ", last.ok() ? last->text : last.status().to_string()));
}

}  // namespace halo::gcs::testing
