#include "objstore/service/peer_links.h"

#include <utility>

namespace halo::objstore {

void PeerLinks::with_peer(const std::string& address, Done done) {
  {
    std::unique_lock lock(mu_);
    if (closed_) {
      lock.unlock();
      return done(cancelled_error("the node daemon is stopping"));
    }
    Link& link = links_[address];
    if (link.endpoint && link.endpoint->is_open()) {
      transport::EndpointPtr endpoint = link.endpoint;
      lock.unlock();
      return done(std::move(endpoint));
    }
    link.endpoint.reset();
    link.waiting.push_back(std::move(done));
    if (link.waiting.size() > 1) return;  // An attempt is under way.
  }
  transport_.connect(address, connect_timeout_,
                     [self = shared_from_this(), address](StatusOr<transport::EndpointPtr> result) {
                       std::vector<Done> waiting;
                       {
                         std::lock_guard lock(self->mu_);
                         Link& link = self->links_[address];
                         waiting.swap(link.waiting);
                         if (result.ok() && !self->closed_) link.endpoint = *result;
                       }
                       if (!result.ok()) {
                         result = result.status().with_context(
                             str_cat("cannot reach the node daemon at ", address));
                       }
                       for (Done& d : waiting) d(result);
                     });
}

void PeerLinks::forget(const transport::EndpointPtr& endpoint) {
  std::lock_guard lock(mu_);
  for (auto& [address, link] : links_) {
    if (link.endpoint == endpoint) link.endpoint.reset();
  }
}

void PeerLinks::close(const std::string& address, const Status& why) {
  Link link;
  {
    std::lock_guard lock(mu_);
    auto it = links_.find(address);
    if (it == links_.end()) return;
    link = std::move(it->second);
    links_.erase(it);
  }
  if (link.endpoint) link.endpoint->close();
  for (Done& d : link.waiting) d(why);
}

void PeerLinks::close_all() {
  std::unordered_map<std::string, Link> links;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    links.swap(links_);
  }
  for (auto& [address, link] : links) {
    if (link.endpoint) link.endpoint->close();
    for (Done& d : link.waiting) d(cancelled_error("the node daemon is stopping"));
  }
}

}  // namespace halo::objstore
