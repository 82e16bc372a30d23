#include "peer_client.h"

#include <cstring>

#include "peer_protocol.h"

namespace halo::transport::testing {

StatusOr<std::unique_ptr<PeerClient>> PeerClient::attach(Transport& transport) {
  auto state = std::make_shared<State>();
  for (uint16_t id : {kEchoReplyAm, kDescribeReplyAm, kChecksumReplyAm, kFillReplyAm}) {
    HALO_RETURN_IF_ERROR(
        transport.set_am_handler(id, [state](AmMessage& m) { on_reply(*state, m); }));
  }
  return std::unique_ptr<PeerClient>(new PeerClient(std::move(state)));
}

void PeerClient::on_reply(State& state, AmMessage& m) {
  auto token = token_of(m.header);
  if (!token.ok()) return;
  std::promise<StatusOr<PeerReply>> promise;
  {
    std::lock_guard lock(state.mu);
    auto it = state.waiting.find(*token);
    if (it == state.waiting.end()) return;  // Unknown token or already failed: drop it.
    promise = std::move(it->second);
    state.waiting.erase(it);
  }
  PeerReply reply;
  reply.header.assign(reinterpret_cast<const char*>(m.header.data()) + kTokenBytes,
                      m.header.size() - kTokenBytes);
  reply.payload.assign(m.payload.begin(), m.payload.end());
  promise.set_value(std::move(reply));
}

std::future<StatusOr<PeerReply>> PeerClient::request(Endpoint& ep, uint16_t am_id,
                                                     std::span<const std::byte> header_body,
                                                     std::span<const std::byte> payload) {
  std::future<StatusOr<PeerReply>> reply;
  uint64_t token;
  {
    std::lock_guard lock(state_->mu);
    token = state_->next_token++;
    reply = state_->waiting[token].get_future();
  }
  std::string header = to_bytes(token);
  header.append(reinterpret_cast<const char*>(header_body.data()), header_body.size());
  ep.send_am(am_id, as_bytes(header), payload, [state = state_, token, am_id](Status status) {
    if (status.ok()) return;
    std::promise<StatusOr<PeerReply>> promise;
    {
      std::lock_guard lock(state->mu);
      auto it = state->waiting.find(token);
      if (it == state->waiting.end()) return;
      promise = std::move(it->second);
      state->waiting.erase(it);
    }
    promise.set_value(status.with_context(str_cat("sending request ", am_id)));
  });
  return reply;
}

StatusOr<PeerReply> PeerClient::await(std::future<StatusOr<PeerReply>> reply,
                                      std::chrono::milliseconds timeout, std::string_view what) {
  if (reply.wait_for(timeout) != std::future_status::ready) {
    return deadline_exceeded_error(
        str_cat("no reply to ", what, " within ", timeout.count(), " ms"));
  }
  return reply.get();
}

StatusOr<PeerReply> PeerClient::echo(Endpoint& ep, std::span<const std::byte> header_body,
                                     std::span<const std::byte> payload,
                                     std::chrono::milliseconds timeout) {
  return await(request(ep, kEchoAm, header_body, payload), timeout, "echo");
}

StatusOr<RemoteRegion> PeerClient::describe(Endpoint& ep, std::chrono::milliseconds timeout) {
  HALO_ASSIGN_OR_RETURN(PeerReply reply,
                        await(request(ep, kDescribeAm, {}, {}), timeout, "describe region"));
  return decode_region(as_bytes(reply.header));
}

StatusOr<uint64_t> PeerClient::checksum(Endpoint& ep, uint64_t offset, uint64_t length,
                                        std::chrono::milliseconds timeout) {
  ChecksumRequest body{0, offset, length};
  // The token goes in front: the request's fields after it are what the peer parses.
  std::string fields = to_bytes(body).substr(kTokenBytes);
  HALO_ASSIGN_OR_RETURN(PeerReply reply, await(request(ep, kChecksumAm, as_bytes(fields), {}),
                                               timeout, "checksum region"));
  std::string full = to_bytes(uint64_t{0}) + reply.header;
  HALO_ASSIGN_OR_RETURN(ChecksumReply answer, from_bytes<ChecksumReply>(as_bytes(full)));
  if (answer.status_code != 0) {
    return Status(static_cast<StatusCode>(answer.status_code),
                  str_cat("peer refused to checksum [", offset, ", +", length, ")"));
  }
  return answer.checksum;
}

Status PeerClient::fill(Endpoint& ep, uint64_t offset, uint64_t length, uint64_t seed,
                        std::chrono::milliseconds timeout) {
  FillRequest body{0, offset, length, seed};
  std::string fields = to_bytes(body).substr(kTokenBytes);
  HALO_ASSIGN_OR_RETURN(PeerReply reply,
                        await(request(ep, kFillAm, as_bytes(fields), {}), timeout, "fill region"));
  std::string full = to_bytes(uint64_t{0}) + reply.header;
  HALO_ASSIGN_OR_RETURN(FillReply answer, from_bytes<FillReply>(as_bytes(full)));
  if (answer.status_code != 0) {
    return Status(static_cast<StatusCode>(answer.status_code),
                  str_cat("peer refused to fill [", offset, ", +", length, ")"));
  }
  return Status();
}

size_t PeerClient::outstanding() const {
  std::lock_guard lock(state_->mu);
  return state_->waiting.size();
}

}  // namespace halo::transport::testing
