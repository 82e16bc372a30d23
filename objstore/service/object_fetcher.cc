#include "objstore/service/object_fetcher.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "halo/base/logging.h"

namespace halo::objstore {

std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point deadline) {
  if (deadline == std::chrono::steady_clock::time_point::max()) return std::chrono::hours(24);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

void ObjectFetcher::fetch(const ObjectId& id, const std::string& owner_address,
                          Clock::time_point deadline, Done done) {
  auto [it, first] = in_flight_.try_emplace(id);
  it->second.push_back(std::move(done));
  if (!first) return;
  ++fetches_;
  links_->with_peer(owner_address, [this, id, deadline](StatusOr<transport::EndpointPtr> peer) {
    post_([this, id, deadline, peer = std::move(peer)]() mutable {
      if (!peer.ok()) return finish(id, peer.status());
      proto::LookupRequest request;
      request.set_object_id(id.binary());
      request.set_timeout_ms(time_left(deadline).count());
      request.set_want_data(true);
      transport::EndpointPtr owner = *peer;
      rpc_.call<proto::LookupRequest, proto::LookupResponse>(
          owner, "peer.lookup", request, time_left(deadline),
          [this, id, owner, deadline](StatusOr<proto::LookupResponse> lookup) {
            post_([this, id, owner, deadline, lookup = std::move(lookup)]() mutable {
              looked_up(id, owner, deadline, std::move(lookup));
            });
          });
    });
  });
}

void ObjectFetcher::looked_up(const ObjectId& id, const transport::EndpointPtr& owner,
                              Clock::time_point deadline, StatusOr<proto::LookupResponse> lookup) {
  if (!lookup.ok()) {
    return finish(id,
                  lookup.status().with_context(str_cat("looking up object ", id.to_hex(),
                                                       " at its owner ", owner->peer_address())));
  }
  const uint64_t size = lookup->size();
  auto inline_data = std::make_shared<std::string>(std::move(*lookup->mutable_inline_data()));
  const bool has_inline = lookup->inline_data_present();
  if (has_inline && inline_data->size() != size) {
    return finish(
        id, internal_error(str_cat("owner ", owner->peer_address(), " sent ", inline_data->size(),
                                   " bytes of object ", id.to_hex(), ", which has ", size)));
  }
  reserve_(
      id, size, deadline,
      [this, id, owner, size, deadline, has_inline, inline_data](StatusOr<Placement> placement) {
        post_([=, this, placement = std::move(placement)] {
          if (!placement.ok()) return finish(id, placement.status());
          if (has_inline) {
            if (size > 0)
              std::memcpy(region_.data() + placement->offset, inline_data->data(), size);
            fetched_bytes_ += size;
            return complete(id, Status());
          }
          pull(id, owner, size, *placement, deadline);
        });
      });
}

void ObjectFetcher::pull(const ObjectId& id, const transport::EndpointPtr& owner, uint64_t size,
                         Placement placement, Clock::time_point deadline) {
  proto::PullRequest request;
  request.set_object_id(id.binary());
  const transport::RemoteRegion& remote = region_.remote();
  request.mutable_into()->set_addr(remote.addr);
  request.mutable_into()->set_length(remote.length);
  request.mutable_into()->set_rkey(remote.rkey);
  request.set_offset(placement.offset);
  request.set_size(size);
  rpc_.call<proto::PullRequest, proto::PullResponse>(
      owner, "peer.pull", request, time_left(deadline),
      [this, id, size, owner](StatusOr<proto::PullResponse> pulled) {
        post_([this, id, size, owner, status = pulled.status()] {
          if (!status.ok()) {
            // A call that only timed out here may still have the owner writing into the
            // range: closing the connection stops its puts before the range is reused.
            if (status.code() == StatusCode::kDeadlineExceeded) owner->close();
            return complete(id, status.with_context(str_cat("pulling object ", id.to_hex(),
                                                            " from ", owner->peer_address())));
          }
          fetched_bytes_ += size;
          complete(id, Status());
        });
      });
}

void ObjectFetcher::complete(const ObjectId& id, Status status) {
  if (status.ok()) {
    status = store_.seal(id);
  } else {
    (void)store_.abort(id);
  }
  sealed_(id, status);
  finish(id, std::move(status));
}

void ObjectFetcher::finish(const ObjectId& id, Status status) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  std::vector<Done> waiting = std::move(it->second);
  in_flight_.erase(it);
  if (!status.ok()) log::debug("fetch of object {} failed: {}", id, status);
  for (Done& done : waiting) done(status);
}

}  // namespace halo::objstore
