#include "launcher/node/gcs_ha_directory.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace halo::node {
namespace {

Status stopped_error() { return unavailable_error("the node daemon is stopping"); }

}  // namespace

GcsHaDirectory::GcsHaDirectory(gcs::GcsClient& client, NodeId self, std::string own_failure_domain,
                               std::function<Status()> admit,
                               std::chrono::milliseconds call_timeout)
    : client_(client),
      self_(self),
      own_failure_domain_(std::move(own_failure_domain)),
      admit_(std::move(admit)),
      call_timeout_(call_timeout),
      thread_([this] { run(); }) {}

GcsHaDirectory::~GcsHaDirectory() { stop(); }

void GcsHaDirectory::stop() {
  subscription_.reset();  // Cancels its poll in flight and joins its thread.
  std::deque<std::pair<std::function<void()>, std::function<void()>>> left;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    left.swap(jobs_);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& [job, refused] : left) refused();
}

void GcsHaDirectory::enqueue(std::function<void()> job, std::function<void()> refused) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      jobs_.emplace_back(std::move(job), std::move(refused));
      cv_.notify_one();
      return;
    }
  }
  refused();
}

void GcsHaDirectory::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    auto job = std::move(jobs_.front().first);
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

bool GcsHaDirectory::with_cached_nodes(const std::function<void(const NodeTable&)>& use) const {
  std::lock_guard lock(table_mu_);
  if (!table_ready_) return false;
  use(table_);
  return true;
}

Status GcsHaDirectory::with_nodes(const std::function<void(const NodeTable&)>& use) {
  if (with_cached_nodes(use)) return Status();
  auto fetched = client_.call<gcs::proto::GetNodesRequest, gcs::proto::GetNodesResponse>(
      "gcs.get_nodes", gcs::proto::GetNodesRequest(), call_timeout_);
  if (!fetched.ok()) return fetched.status();
  NodeTable table;
  for (const gcs::proto::NodeInfo& node : fetched->nodes()) table[node.node_id()] = node;
  use(table);
  return Status();
}

objstore::HaDirectory::Candidates GcsHaDirectory::candidates_in(const NodeTable& table) const {
  Candidates found;
  found.own_failure_domain = own_failure_domain_;
  for (const auto& [binary_id, node] : table) {
    if (node.state() != gcs::proto::ALIVE || node.address().empty()) continue;
    auto id = NodeId::from_binary(node.node_id());
    if (!id.ok() || *id == self_) continue;
    auto domain = node.labels().find("failure_domain");
    found.nodes.push_back(objstore::HaCandidate{
        *id, node.address(), domain == node.labels().end() ? "" : domain->second});
  }
  // The table's order is a hash map's: sort, so that order_for_copies sees a stable order.
  std::sort(found.nodes.begin(), found.nodes.end(),
            [](const auto& a, const auto& b) { return a.node < b.node; });
  return found;
}

Status GcsHaDirectory::admit_copy() { return admit_(); }

void GcsHaDirectory::candidates(std::function<void(StatusOr<Candidates>)> done) {
  // From the subscription's copy of the node table, at once: an HA put makes no GCS call to
  // choose its nodes.
  Candidates found;
  if (with_cached_nodes([&](const NodeTable& table) { found = candidates_in(table); })) {
    return done(std::move(found));
  }
  enqueue(
      [this, done] {
        Candidates fetched;
        Status listed = with_nodes([&](const NodeTable& table) { fetched = candidates_in(table); });
        if (!listed.ok()) return done(listed);
        done(std::move(fetched));
      },
      [done] { done(stopped_error()); });
}

void GcsHaDirectory::record(const ObjectId& id, uint64_t size, const NodeId& owner,
                            const std::vector<NodeId>& holders, uint32_t copies_wanted,
                            std::function<void(Status)> done) {
  gcs::proto::PutHaObjectRequest request;
  gcs::proto::HaObjectInfo* object = request.mutable_object();
  object->set_object_id(id.binary());
  object->set_size(size);
  object->set_owner_node_id(owner.binary());
  for (const NodeId& holder : holders) object->add_holders(holder.binary());
  object->set_copies_wanted(copies_wanted);
  enqueue(
      [this, request = std::move(request), done] {
        done(client_
                 .call<gcs::proto::PutHaObjectRequest, gcs::proto::PutHaObjectResponse>(
                     "gcs.put_ha_object", request, call_timeout_)
                 .status());
      },
      [done] { done(stopped_error()); });
}

void GcsHaDirectory::forget(const ObjectId& id, std::function<void(Status)> done) {
  gcs::proto::RemoveHaObjectRequest request;
  request.set_object_id(id.binary());
  enqueue(
      [this, request = std::move(request), done] {
        done(client_
                 .call<gcs::proto::RemoveHaObjectRequest, gcs::proto::RemoveHaObjectResponse>(
                     "gcs.remove_ha_object", request, call_timeout_)
                 .status());
      },
      [done] { done(stopped_error()); });
}

void GcsHaDirectory::lookup(const ObjectId& id,
                            std::function<void(StatusOr<objstore::HaRecord>)> done) {
  enqueue(
      [this, id, done] {
        gcs::proto::GetHaObjectRequest request;
        request.set_object_id(id.binary());
        auto object = client_.call<gcs::proto::GetHaObjectRequest, gcs::proto::GetHaObjectResponse>(
            "gcs.get_ha_object", request, call_timeout_);
        if (!object.ok()) return done(object.status());
        const gcs::proto::HaObjectInfo& info = object->object();
        objstore::HaRecord record;
        record.size = info.size();
        record.copies_wanted = info.copies_wanted();
        if (auto owner = NodeId::from_binary(info.owner_node_id()); owner.ok()) {
          record.owner = *owner;
        }
        Status listed = with_nodes([&](const NodeTable& table) {
          for (const std::string& holder : info.holders()) {
            auto node_id = NodeId::from_binary(holder);
            if (!node_id.ok()) continue;
            objstore::HaRecord::Holder h{*node_id, "", false};
            if (auto node = table.find(holder); node != table.end()) {
              const gcs::proto::NodeState state = node->second.state();
              h.address = node->second.address();
              h.alive = state != gcs::proto::DEAD && state != gcs::proto::REMOVED;
            }
            record.holders.push_back(std::move(h));
          }
        });
        if (!listed.ok()) return done(listed);
        done(std::move(record));
      },
      [done] { done(stopped_error()); });
}

void GcsHaDirectory::on_node_dead(
    std::function<void(const NodeId&, const std::string& address)> listener) {
  subscription_ =
      client_.subscribe_nodes([this, listener](const gcs::proto::PollResponse& response) {
        {
          std::lock_guard lock(table_mu_);
          if (response.resync()) table_.clear();
          for (const gcs::proto::NodeChange& change : response.node_changes()) {
            table_[change.node().node_id()] = change.node();
          }
          table_ready_ = true;
        }
        for (const gcs::proto::NodeChange& change : response.node_changes()) {
          if (change.node().state() != gcs::proto::DEAD) continue;
          if (auto id = NodeId::from_binary(change.node().node_id()); id.ok()) {
            listener(*id, change.node().address());
          }
        }
      });
}

}  // namespace halo::node
