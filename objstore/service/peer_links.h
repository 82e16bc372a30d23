// Connections from this node daemon to the other nodes' daemons, by transport address: made
// once, shared by every transfer and reference message, made again after one fails.
// Concurrent requests for a peer that is still connecting wait for the same attempt.
//
//   links.with_peer(owner_address, [](StatusOr<transport::EndpointPtr> peer) { ... });
//
// Thread-safe. `done` runs once, on the transport's progress thread or inline. Held by
// shared_ptr: a connection attempt keeps the object alive until it completes.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "halo/base/status.h"
#include "halo/transport/transport.h"

namespace halo::objstore {

class PeerLinks : public std::enable_shared_from_this<PeerLinks> {
 public:
  using Done = std::function<void(StatusOr<transport::EndpointPtr>)>;

  PeerLinks(transport::Transport& transport, std::chrono::milliseconds connect_timeout)
      : transport_(transport), connect_timeout_(connect_timeout) {}

  void with_peer(const std::string& address, Done done);
  // Forgets the endpoint (it failed); the next request connects again.
  void forget(const transport::EndpointPtr& endpoint);
  // Closes the connection to `address` (its node was declared DEAD): calls on it fail with
  // UNAVAILABLE instead of waiting for a peer that may never answer, and requests waiting for
  // a connection attempt fail at once with `why`. The next request connects again.
  void close(const std::string& address, const Status& why);
  // Closes every connection; later requests fail with CANCELLED.
  void close_all();

 private:
  struct Link {
    transport::EndpointPtr endpoint;
    std::vector<Done> waiting;  // Non-empty while a connection attempt runs.
  };
  transport::Transport& transport_;
  const std::chrono::milliseconds connect_timeout_;
  std::mutex mu_;
  bool closed_ = false;
  std::unordered_map<std::string, Link> links_;
};

}  // namespace halo::objstore
