#include "peer_service.h"

#include <cstdio>
#include <future>
#include <vector>

namespace halo::transport::testing {
namespace {

// Bytes of a reply that must stay alive until its send completes.
struct Reply {
  std::string header;
  std::vector<std::byte> payload;
};

void send_reply(const EndpointPtr& to, uint16_t am_id, std::shared_ptr<Reply> reply) {
  to->send_am(am_id, as_bytes(reply->header), reply->payload, [reply, am_id](Status status) {
    if (!status.ok()) {
      std::fprintf(stderr, "peer service: reply %#x not sent: %s\n", am_id,
                   status.to_string().c_str());
    }
  });
}

Status check_range(uint64_t offset, uint64_t length, size_t region_size) {
  if (offset > region_size || length > region_size - offset) {
    return out_of_range_error(str_cat("range [", offset, ", +", length,
                                      ") exceeds the peer's region of ", region_size, " bytes"));
  }
  return Status();
}

}  // namespace

StatusOr<std::unique_ptr<PeerService>> PeerService::start(const Options& options) {
  HALO_ASSIGN_OR_RETURN(PageBuffer memory, PageBuffer::allocate(options.region_bytes));
  fill_pattern(memory.span(), options.pattern_seed, 0);
  std::unique_ptr<PeerService> service(new PeerService(std::move(memory)));
  HALO_ASSIGN_OR_RETURN(service->transport_, Transport::create(options.config, options.secret));
  HALO_ASSIGN_OR_RETURN(service->region_, service->transport_->register_memory(
                                              service->memory_.data(), service->memory_.size()));
  HALO_RETURN_IF_ERROR(service->install_handlers());
  HALO_RETURN_IF_ERROR(service->transport_->listen(options.host, options.port));
  return service;
}

PeerService::~PeerService() {
  if (transport_) {
    std::promise<void> stopped;
    transport_->run_on_progress_thread([&] {
      stopping_ = true;
      stopped.set_value();
    });
    stopped.get_future().wait();
  }
  region_.reset();
  transport_.reset();
}

Status PeerService::install_handlers() {
  auto counters = counters_;
  transport_->set_accept_handler([counters](const EndpointPtr&) { counters->accepted++; });

  HALO_RETURN_IF_ERROR(transport_->set_am_handler(kEchoAm, [this](AmMessage& m) {
    if (stopping_) return;
    auto reply = std::make_shared<Reply>();
    reply->header.assign(reinterpret_cast<const char*>(m.header.data()), m.header.size());
    reply->payload.assign(m.payload.begin(), m.payload.end());
    counters_->served++;
    send_reply(m.from, kEchoReplyAm, std::move(reply));
  }));

  HALO_RETURN_IF_ERROR(transport_->set_am_handler(kDescribeAm, [this](AmMessage& m) {
    if (stopping_) return;
    auto token = token_of(m.header);
    if (!token.ok()) return;
    auto reply = std::make_shared<Reply>();
    reply->header = to_bytes(*token) + encode_region(region_->remote());
    counters_->served++;
    send_reply(m.from, kDescribeReplyAm, std::move(reply));
  }));

  HALO_RETURN_IF_ERROR(transport_->set_am_handler(kChecksumAm, [this](AmMessage& m) {
    if (stopping_) return;
    auto request = from_bytes<ChecksumRequest>(m.header);
    if (!request.ok()) return;
    ChecksumReply answer{};
    answer.token = request->token;
    Status range = check_range(request->offset, request->length, memory_.size());
    answer.status_code = static_cast<uint32_t>(range.code());
    if (range.ok()) {
      answer.checksum = checksum(memory_.span().subspan(request->offset, request->length));
    }
    auto reply = std::make_shared<Reply>();
    reply->header = to_bytes(answer);
    counters_->served++;
    send_reply(m.from, kChecksumReplyAm, std::move(reply));
  }));

  HALO_RETURN_IF_ERROR(transport_->set_am_handler(kFillAm, [this](AmMessage& m) {
    if (stopping_) return;
    auto request = from_bytes<FillRequest>(m.header);
    if (!request.ok()) return;
    FillReply answer{};
    answer.token = request->token;
    Status range = check_range(request->offset, request->length, memory_.size());
    answer.status_code = static_cast<uint32_t>(range.code());
    if (range.ok()) {
      fill_pattern(memory_.span().subspan(request->offset, request->length), request->seed,
                   request->offset);
    }
    auto reply = std::make_shared<Reply>();
    reply->header = to_bytes(answer);
    counters_->served++;
    send_reply(m.from, kFillReplyAm, std::move(reply));
  }));

  return Status();
}

}  // namespace halo::transport::testing
