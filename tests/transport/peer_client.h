// The calling side of the transport tests' peer protocol (peer_protocol.h): sends requests to
// a peer over an Endpoint and matches replies to them by token, so that thousands can be in
// flight at once.
//
//   auto client = PeerClient::attach(*transport).value();   // before listen/connect
//   auto ep = transport->connect(peer_address, 10s).value();
//   RemoteRegion region = client->describe(*ep, 10s).value();
//   ep->put(*local, 0, region, 0, n).get();
//   ep->flush().get();
//   EXPECT_EQ(client->checksum(*ep, 0, n, 10s).value(), checksum(local_bytes));
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "halo/base/status.h"
#include "halo/transport/transport.h"

namespace halo::transport::testing {

// A reply as received: its header without the token, and its payload.
struct PeerReply {
  std::string header;
  std::vector<std::byte> payload;
};

class PeerClient {
 public:
  // Installs the reply handlers on `transport`, which must not have listened or connected
  // yet. The handlers keep what they need alive, so the client may go before the transport.
  static StatusOr<std::unique_ptr<PeerClient>> attach(Transport& transport);

  // Sends request `am_id` with header `token + header_body` and `payload` (which must stay
  // valid until the future is ready). The future holds the reply, or why the request could
  // not be sent. A request whose reply never comes (the peer died) never becomes ready: wait
  // on it with a time limit.
  std::future<StatusOr<PeerReply>> request(Endpoint& ep, uint16_t am_id,
                                           std::span<const std::byte> header_body,
                                           std::span<const std::byte> payload);

  // Blocking forms with a time limit (DEADLINE_EXCEEDED when the reply does not come).
  StatusOr<PeerReply> echo(Endpoint& ep, std::span<const std::byte> header_body,
                           std::span<const std::byte> payload, std::chrono::milliseconds timeout);
  StatusOr<RemoteRegion> describe(Endpoint& ep, std::chrono::milliseconds timeout);
  // The checksum of the peer's region bytes [offset, offset + length).
  StatusOr<uint64_t> checksum(Endpoint& ep, uint64_t offset, uint64_t length,
                              std::chrono::milliseconds timeout);
  // Makes the peer fill its region range with `seed`'s pattern (at their absolute offsets).
  Status fill(Endpoint& ep, uint64_t offset, uint64_t length, uint64_t seed,
              std::chrono::milliseconds timeout);

  // Requests sent whose reply has not arrived.
  size_t outstanding() const;

 private:
  struct State {
    mutable std::mutex mu;
    uint64_t next_token = 1;
    std::unordered_map<uint64_t, std::promise<StatusOr<PeerReply>>> waiting;
  };

  explicit PeerClient(std::shared_ptr<State> state) : state_(std::move(state)) {}
  static void on_reply(State& state, AmMessage& m);
  static StatusOr<PeerReply> await(std::future<StatusOr<PeerReply>> reply,
                                   std::chrono::milliseconds timeout, std::string_view what);

  std::shared_ptr<State> state_;
};

}  // namespace halo::transport::testing
