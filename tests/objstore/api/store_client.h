// Client processes of the object store tests: objstore_tool (a program linked with libhalo)
// started on a chosen node, with what it printed parsed.
//
//   StoreClient on_node1{spawn_in_host_1, {"HALO_ADDRESS=...", "HALO_NODE_ADDRESS=..."}, "n1"};
//   StoreClient::Put p = on_node1.put(1 << 20, /*seed=*/7);   // Holds the ref until p.release()
//   EXPECT_EQ(on_node2.run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 1048576");
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "halo/base/status.h"
#include "tests/support/child_process.h"

namespace halo::test {

class StoreClient {
 public:
  using Spawn =
      std::function<StatusOr<ChildProcess>(std::vector<std::string> argv, ChildOptions options)>;

  // `env` names the cluster and the node (HALO_ADDRESS, HALO_SECRET_FILE, HALO_NODE_ADDRESS,
  // transport settings); `label` prefixes the client's output in the test log.
  StoreClient(Spawn spawn, std::vector<std::string> env, std::string label)
      : spawn_(std::move(spawn)), env_(std::move(env)), label_(std::move(label)) {}

  // The path of objstore_tool.
  static std::string program();

  // objstore_tool with `args`, running.
  StatusOr<ChildProcess> start(std::vector<std::string> args, bool pipe_stdin = false) const;
  // Runs objstore_tool to the line starting with `prefix` and returns it ("" after a failed
  // EXPECT naming what the client printed).
  std::string run(std::vector<std::string> args, std::string_view prefix,
                  std::chrono::seconds timeout = std::chrono::seconds(60)) const;

  // An object of `size` pattern bytes put by a client that holds its reference until
  // release() (or until it is killed).
  struct Put {
    std::unique_ptr<ChildProcess> holder;
    std::string ref;  // ObjectRef::binary() in hex.
    std::string sum;  // The pattern's checksum, as `get` expects it.
    void release() const { holder->close_stdin(); }
  };
  // With `ha_copies` >= 0, an HA put of that many primary copies (0: the node's default).
  Put put(uint64_t size, uint64_t seed, int ha_copies = -1) const;

  // The node's store: bytes used and objects referenced (~0 if it could not be read).
  std::pair<uint64_t, uint64_t> usage() const;
  // One field of the tool's "STATS" line (~0 if it could not be read).
  uint64_t stat(const std::string& key) const;

 private:
  Spawn spawn_;
  std::vector<std::string> env_;
  std::string label_;
};

}  // namespace halo::test
