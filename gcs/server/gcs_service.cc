#include "gcs/server/gcs_service.h"

#include "halo/base/logging.h"

namespace halo::gcs {

namespace {

using transport::RpcContext;
using transport::RpcResponder;

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

StatusOr<NodeId> parse_node_id(const std::string& bytes, std::string_view field) {
  auto id = NodeId::from_binary(bytes);
  if (!id.ok()) return id.status().with_context(field);
  return id;
}

Status must_reregister(const NodeId& id, uint64_t incarnation, const proto::NodeInfo* row) {
  if (row == nullptr) {
    return failed_precondition_error(str_cat("node ", id.to_hex(),
                                             " is not registered with this GCS: register it "
                                             "(gcs.register_node) before renewing its lease"));
  }
  if (row->incarnation() != incarnation) {
    return failed_precondition_error(
        str_cat("node ", id.to_hex(), " incarnation ", incarnation,
                " is not current (the GCS knows incarnation ", row->incarnation(), ", ",
                node_state_name(row->state()), "): fence and re-register under a new incarnation"));
  }
  if (row->state() == proto::DEAD || row->state() == proto::REMOVED) {
    return failed_precondition_error(
        str_cat("node ", id.to_hex(), " incarnation ", incarnation, " was declared ",
                node_state_name(row->state()), " (", row->state_reason(),
                "): it must fence itself and re-register under a new incarnation"));
  }
  return Status();
}

}  // namespace

GcsService::GcsService(GcsTables tables, DurableLog& log, NodeFeed& feed, const GcsConfig& config,
                       transport::RpcClient& rpc_client, Facts facts)
    : log_(log),
      feed_(feed),
      config_(config),
      facts_(std::move(facts)),
      tables_(std::move(tables)) {
  HealthChecker::Options options;
  options.initial_delay = std::chrono::milliseconds(config.health_check_initial_delay_ms);
  options.period = std::chrono::milliseconds(config.health_check_period_ms);
  options.timeout = std::chrono::milliseconds(config.health_check_timeout_ms);
  options.failure_threshold = config.health_check_failure_threshold;
  options.dead_node_remove_after = std::chrono::milliseconds(config.dead_node_remove_after_ms);
  checker_ = std::make_unique<HealthChecker>(
      rpc_client, options, [this](const StateProposal& p) { propose_node_state(p); });
  for (const auto& row : tables_.nodes(true)) checker_->on_node_row(row);
}

GcsService::~GcsService() { stop_health_checks(); }

void GcsService::start_health_checks() { checker_->start(); }
void GcsService::stop_health_checks() { checker_->stop(); }

uint64_t GcsService::last_index() const {
  std::lock_guard lock(mu_);
  return tables_.last_index();
}

std::string GcsService::cluster_id() const {
  std::lock_guard lock(mu_);
  return tables_.cluster_id();
}

proto::GcsSnapshot GcsService::snapshot() const {
  std::lock_guard lock(mu_);
  return tables_.to_snapshot();
}

Status GcsService::storage_error() const {
  std::lock_guard lock(storage_mu_);
  return storage_error_;
}

void GcsService::on_storage_failure(std::function<void(const Status&)> callback) {
  std::lock_guard lock(storage_mu_);
  on_storage_failure_ = std::move(callback);
}

void GcsService::storage_failed(const Status& status) {
  std::function<void(const Status&)> callback;
  {
    std::lock_guard lock(storage_mu_);
    if (!storage_error_.ok()) return;
    storage_error_ = status;
    callback = on_storage_failure_;
  }
  log::error(
      "the write-ahead log failed: {}; the GCS refuses writes from now on and must be "
      "restarted (it recovers everything it acknowledged)",
      status);
  if (callback) callback(status);
}

Status GcsService::writable() const {
  Status s = storage_error();
  if (s.ok()) return s;
  return unavailable_error(str_cat("the GCS's write-ahead log failed (", s.to_string(),
                                   "); retry once the GCS has been restarted"));
}

Status GcsService::commit(proto::Mutation mutation, std::function<void(Status)> done) {
  std::lock_guard lock(mu_);
  return commit_locked(std::move(mutation), std::move(done));
}

Status GcsService::commit_locked(proto::Mutation m, Done done) {
  HALO_RETURN_IF_ERROR(writable());
  if (m.at_ms() == 0) m.set_at_ms(wall_now_ms());
  HALO_RETURN_IF_ERROR(tables_.check(m));
  const uint64_t index = tables_.last_index() + 1;
  tables_.apply(m, index);
  std::shared_ptr<const proto::NodeInfo> row;
  const std::string* node_id = nullptr;
  if (m.has_node_put()) node_id = &m.node_put().node_id();
  if (m.has_node_state()) node_id = &m.node_state().node_id();
  if (node_id != nullptr) {
    if (const proto::NodeInfo* r = tables_.node(*NodeId::from_binary(*node_id))) {
      row = std::make_shared<const proto::NodeInfo>(*r);
      checker_->on_node_row(*row);
    }
  }
  const uint64_t appended =
      log_.append(m, [this, index, row, done = std::move(done)](Status status) {
        if (!status.ok()) {
          storage_failed(status);
          done(unavailable_error(
              str_cat("the GCS could not make the change durable: ", status.to_string())));
          return;
        }
        feed_.publish(index, row.get());
        done(Status());
      });
  if (appended != index) {
    // The tables and the log disagree on positions: every later record would be replayed
    // onto the wrong state. Stop writing rather than corrupt the cluster's history.
    storage_failed(internal_error(str_cat("the log placed record ", index, " at index ", appended,
                                          "; the GCS's tables and log disagree")));
  }
  return Status();
}

void GcsService::propose_node_state(const StateProposal& p) {
  proto::Mutation m;
  proto::NodeStateChange* change = m.mutable_node_state();
  change->set_node_id(p.node_id.binary());
  change->set_incarnation(p.incarnation);
  change->set_state(p.state);
  change->set_reason(p.reason);
  std::lock_guard lock(mu_);
  const proto::NodeInfo* row = tables_.node(p.node_id);
  if (row == nullptr || row->incarnation() != p.incarnation || row->state() == p.state) return;
  Status s = commit_locked(std::move(m), [](Status) {});
  if (!s.ok()) {
    log::debug("health check verdict {} for node {} dropped: {}", node_state_name(p.state),
               p.node_id, s);
  } else {
    log::info("node {} incarnation {} is {}: {}", p.node_id, p.incarnation,
              node_state_name(p.state), p.reason);
  }
}

template <typename Resp>
void GcsService::commit_then_reply(proto::Mutation mutation, Resp response,
                                   RpcResponder<Resp> reply) {
  Status s;
  {
    std::lock_guard lock(mu_);
    s = commit_locked(std::move(mutation),
                      [reply, response = std::move(response)](Status status) mutable {
                        if (!status.ok()) return reply.respond(status);
                        reply.respond(std::move(response));
                      });
  }
  if (!s.ok()) reply.respond(s);
}

// ---------------------------------------------------------------------------------------------
// Nodes

void GcsService::register_node(const proto::RegisterNodeRequest& request,
                               RpcResponder<proto::RegisterNodeResponse> reply) {
  if (!request.has_node()) {
    return reply.respond(invalid_argument_error("register_node without a node"));
  }
  auto id = parse_node_id(request.node().node_id(), "node.node_id");
  if (!id.ok()) return reply.respond(id.status());
  proto::Mutation m;
  proto::NodeInfo* node = m.mutable_node_put();
  node->set_node_id(request.node().node_id());
  node->set_address(request.node().address());
  node->set_hostname(request.node().hostname());
  *node->mutable_resources() = request.node().resources();
  *node->mutable_labels() = request.node().labels();
  node->set_pid(request.node().pid());
  node->set_topology(request.node().topology());
  node->set_state(proto::ALIVE);
  node->set_state_reason("registered");

  proto::RegisterNodeResponse response;
  response.set_lease_ms(config_.lease_ms());
  response.set_health_check_period_ms(config_.health_check_period_ms);
  response.set_health_check_timeout_ms(config_.health_check_timeout_ms);
  Status s;
  {
    std::lock_guard lock(mu_);
    const uint64_t incarnation = tables_.next_incarnation(*id);
    node->set_incarnation(incarnation);
    response.set_incarnation(incarnation);
    response.set_cluster_id(tables_.cluster_id());
    const std::string address = node->address();
    s = commit_locked(std::move(m), [reply, response, address, node_id = *id](Status status) {
      if (!status.ok()) return reply.respond(status);
      log::info("node {} registered as incarnation {} at {}", node_id, response.incarnation(),
                address);
      reply.respond(response);
    });
    if (s.ok()) checker_->on_node_endpoint(*id, incarnation, reply.context().peer());
  }
  if (!s.ok()) reply.respond(s);
}

StatusOr<proto::RenewLeaseResponse> GcsService::renew_lease(const proto::RenewLeaseRequest& request,
                                                            RpcContext& context) {
  HALO_ASSIGN_OR_RETURN(NodeId id, parse_node_id(request.node_id(), "node_id"));
  std::lock_guard lock(mu_);
  const proto::NodeInfo* row = tables_.node(id);
  HALO_RETURN_IF_ERROR(must_reregister(id, request.incarnation(), row));
  checker_->on_node_endpoint(id, row->incarnation(), context.peer());
  proto::RenewLeaseResponse response;
  response.set_lease_ms(config_.lease_ms());
  response.set_state(row->state());
  return response;
}

void GcsService::drain_node(const proto::DrainNodeRequest& request,
                            RpcResponder<proto::DrainNodeResponse> reply) {
  Status s;
  {
    std::lock_guard lock(mu_);
    NodeId id;
    if (!request.node_id().empty()) {
      auto parsed = parse_node_id(request.node_id(), "node_id");
      if (!parsed.ok()) return reply.respond(parsed.status());
      id = *parsed;
    } else {
      const std::string& prefix = request.node_id_prefix();
      if (prefix.empty() || prefix.size() > 2 * NodeId::kSize) {
        return reply.respond(invalid_argument_error(
            "drain_node needs node_id (16 bytes) or node_id_prefix (1 to 32 hex digits)"));
      }
      std::vector<NodeId> matches = tables_.nodes_with_prefix(prefix);
      if (matches.empty()) {
        return reply.respond(not_found_error(
            str_cat("no node in the cluster has an id starting with \"", prefix, "\"")));
      }
      if (matches.size() > 1) {
        return reply.respond(invalid_argument_error(
            str_cat("node id prefix \"", prefix, "\" matches ", matches.size(), " nodes (",
                    matches[0].to_hex(), ", ", matches[1].to_hex(), ", ...): give more digits")));
      }
      id = matches[0];
    }
    const proto::NodeInfo* row = tables_.node(id);
    if (row == nullptr) {
      return reply.respond(not_found_error(str_cat("node ", id.to_hex(), " is not registered")));
    }
    proto::DrainNodeResponse response;
    if (row->state() == proto::DRAINING) {
      *response.mutable_node() = *row;  // Asked twice: already draining.
      return reply.respond(response);
    }
    if (row->state() != proto::ALIVE && row->state() != proto::SUSPECTED) {
      return reply.respond(failed_precondition_error(
          str_cat("node ", id.to_hex(), " is ", node_state_name(row->state()),
                  ", not ALIVE: there is nothing to drain")));
    }
    proto::Mutation m;
    proto::NodeStateChange* change = m.mutable_node_state();
    change->set_node_id(id.binary());
    change->set_incarnation(row->incarnation());
    change->set_state(proto::DRAINING);
    change->set_reason(request.reason().empty() ? "drain requested" : request.reason());
    // The row as the change leaves it, built here: `done` runs on the log's thread and must
    // not take the lock.
    m.set_at_ms(wall_now_ms());
    proto::NodeInfo* after = response.mutable_node();
    *after = *row;
    after->set_state(proto::DRAINING);
    after->set_state_reason(change->reason());
    after->set_state_changed_at_ms(m.at_ms());
    s = commit_locked(std::move(m), [reply, response](Status status) {
      if (!status.ok()) return reply.respond(status);
      reply.respond(response);
    });
  }
  if (!s.ok()) reply.respond(s);
}

void GcsService::unregister_node(const proto::UnregisterNodeRequest& request,
                                 RpcResponder<proto::UnregisterNodeResponse> reply) {
  auto id = parse_node_id(request.node_id(), "node_id");
  if (!id.ok()) return reply.respond(id.status());
  Status s;
  {
    std::lock_guard lock(mu_);
    const proto::NodeInfo* row = tables_.node(*id);
    if (row == nullptr) {
      return reply.respond(not_found_error(str_cat("node ", id->to_hex(), " is not registered")));
    }
    if (row->incarnation() != request.incarnation()) {
      return reply.respond(failed_precondition_error(
          str_cat("node ", id->to_hex(), " incarnation ", request.incarnation(),
                  " is not current (the GCS knows incarnation ", row->incarnation(), ")")));
    }
    if (row->state() == proto::REMOVED) return reply.respond(proto::UnregisterNodeResponse());
    proto::Mutation m;
    proto::NodeStateChange* change = m.mutable_node_state();
    change->set_node_id(id->binary());
    change->set_incarnation(row->incarnation());
    change->set_state(proto::REMOVED);
    change->set_reason(request.reason().empty() ? "left the cluster" : request.reason());
    s = commit_locked(std::move(m), [reply](Status status) {
      if (!status.ok()) return reply.respond(status);
      reply.respond(proto::UnregisterNodeResponse());
    });
  }
  if (!s.ok()) reply.respond(s);
}

proto::GetNodesResponse GcsService::get_nodes(const proto::GetNodesRequest& request) const {
  proto::GetNodesResponse response;
  std::lock_guard lock(mu_);
  for (auto& row : tables_.nodes(request.include_removed())) {
    *response.add_nodes() = std::move(row);
  }
  response.set_index(tables_.last_index());
  return response;
}

// ---------------------------------------------------------------------------------------------
// Jobs, actors, HA objects

void GcsService::add_job(const proto::AddJobRequest& request,
                         RpcResponder<proto::AddJobResponse> reply) {
  if (!request.has_job()) return reply.respond(invalid_argument_error("add_job without a job"));
  proto::Mutation m;
  proto::JobInfo* job = m.mutable_job_put();
  *job = request.job();
  if (job->state() == proto::JOB_STATE_UNSPECIFIED) job->set_state(proto::JOB_RUNNING);
  if (job->started_at_ms() == 0) job->set_started_at_ms(wall_now_ms());
  Status s;
  {
    std::lock_guard lock(mu_);
    if (job->job_id() == 0) {
      job->set_job_id(tables_.next_job_id());
    } else if (tables_.job(job->job_id()) != nullptr) {
      return reply.respond(already_exists_error(str_cat("job ", job->job_id(), " already exists")));
    }
    proto::AddJobResponse response;
    response.set_job_id(job->job_id());
    s = commit_locked(std::move(m), [reply, response](Status status) {
      if (!status.ok()) return reply.respond(status);
      reply.respond(response);
    });
  }
  if (!s.ok()) reply.respond(s);
}

void GcsService::finish_job(const proto::FinishJobRequest& request,
                            RpcResponder<proto::FinishJobResponse> reply) {
  proto::Mutation m;
  {
    std::lock_guard lock(mu_);
    const proto::JobInfo* job = tables_.job(request.job_id());
    if (job == nullptr) {
      return reply.respond(not_found_error(str_cat("job ", request.job_id(), " is not known")));
    }
    *m.mutable_job_put() = *job;
  }
  m.mutable_job_put()->set_state(request.failed() ? proto::JOB_FAILED : proto::JOB_FINISHED);
  m.mutable_job_put()->set_finished_at_ms(wall_now_ms());
  commit_then_reply(std::move(m), proto::FinishJobResponse(), std::move(reply));
}

void GcsService::put_actor(const proto::PutActorRequest& request,
                           RpcResponder<proto::PutActorResponse> reply) {
  if (!request.has_actor()) {
    return reply.respond(invalid_argument_error("put_actor without an actor"));
  }
  proto::Mutation m;
  *m.mutable_actor_put() = request.actor();
  commit_then_reply(std::move(m), proto::PutActorResponse(), std::move(reply));
}

void GcsService::remove_actor(const proto::RemoveActorRequest& request,
                              RpcResponder<proto::RemoveActorResponse> reply) {
  auto id = ActorId::from_binary(request.actor_id());
  if (!id.ok()) return reply.respond(id.status().with_context("actor_id"));
  {
    std::lock_guard lock(mu_);
    // Removing what is not there is done already (a retried call lands here).
    if (tables_.actor(*id) == nullptr) return reply.respond(proto::RemoveActorResponse());
  }
  proto::Mutation m;
  m.set_actor_remove(request.actor_id());
  commit_then_reply(std::move(m), proto::RemoveActorResponse(), std::move(reply));
}

void GcsService::put_ha_object(const proto::PutHaObjectRequest& request,
                               RpcResponder<proto::PutHaObjectResponse> reply) {
  if (!request.has_object()) {
    return reply.respond(invalid_argument_error("put_ha_object without an object"));
  }
  proto::Mutation m;
  *m.mutable_ha_object_put() = request.object();
  commit_then_reply(std::move(m), proto::PutHaObjectResponse(), std::move(reply));
}

void GcsService::remove_ha_object(const proto::RemoveHaObjectRequest& request,
                                  RpcResponder<proto::RemoveHaObjectResponse> reply) {
  auto id = ObjectId::from_binary(request.object_id());
  if (!id.ok()) return reply.respond(id.status().with_context("object_id"));
  {
    std::lock_guard lock(mu_);
    if (tables_.ha_object(*id) == nullptr) return reply.respond(proto::RemoveHaObjectResponse());
  }
  proto::Mutation m;
  m.set_ha_object_remove(request.object_id());
  commit_then_reply(std::move(m), proto::RemoveHaObjectResponse(), std::move(reply));
}

proto::GetJobsResponse GcsService::get_jobs() const {
  proto::GetJobsResponse response;
  std::lock_guard lock(mu_);
  for (auto& job : tables_.jobs()) *response.add_jobs() = std::move(job);
  return response;
}

proto::GetActorsResponse GcsService::get_actors() const {
  proto::GetActorsResponse response;
  std::lock_guard lock(mu_);
  for (auto& actor : tables_.actors()) *response.add_actors() = std::move(actor);
  return response;
}

StatusOr<proto::GetHaObjectResponse> GcsService::get_ha_object(
    const proto::GetHaObjectRequest& request) {
  auto id = ObjectId::from_binary(request.object_id());
  if (!id.ok()) return id.status().with_context("object_id");
  std::lock_guard lock(mu_);
  const proto::HaObjectInfo* object = tables_.ha_object(*id);
  if (object == nullptr) {
    return not_found_error(str_cat("HA object ", id->to_hex(), " is not in the directory"));
  }
  proto::GetHaObjectResponse response;
  *response.mutable_object() = *object;
  return response;
}

// ---------------------------------------------------------------------------------------------
// KV

void GcsService::kv_put(const proto::KvPutRequest& request,
                        RpcResponder<proto::KvPutResponse> reply) {
  proto::Mutation m;
  proto::KvEntry* entry = m.mutable_kv_put();
  entry->set_namespace_(request.namespace_());
  entry->set_key(request.key());
  entry->set_value(request.value());
  Status s;
  {
    std::lock_guard lock(mu_);
    const bool existed = tables_.kv_get(request.namespace_(), request.key()) != nullptr;
    if (existed && !request.overwrite()) {
      return reply.respond(
          already_exists_error(str_cat("KV key exists in namespace \"", request.namespace_(),
                                       "\"; set overwrite to replace it")));
    }
    proto::KvPutResponse response;
    response.set_added(!existed);
    s = commit_locked(std::move(m), [reply, response](Status status) {
      if (!status.ok()) return reply.respond(status);
      reply.respond(response);
    });
  }
  if (!s.ok()) reply.respond(s);
}

StatusOr<proto::KvGetResponse> GcsService::kv_get(const proto::KvGetRequest& request) {
  std::lock_guard lock(mu_);
  const std::string* value = tables_.kv_get(request.namespace_(), request.key());
  if (value == nullptr) {
    return not_found_error(
        str_cat("no KV entry for that key in namespace \"", request.namespace_(), "\""));
  }
  proto::KvGetResponse response;
  response.set_value(*value);
  return response;
}

void GcsService::kv_del(const proto::KvDelRequest& request,
                        RpcResponder<proto::KvDelResponse> reply) {
  proto::Mutation m;
  m.mutable_kv_remove()->set_namespace_(request.namespace_());
  m.mutable_kv_remove()->set_key(request.key());
  Status s;
  {
    std::lock_guard lock(mu_);
    if (tables_.kv_get(request.namespace_(), request.key()) == nullptr) {
      // Nothing to delete; still validate, so a malformed request is not answered as fine.
      Status valid = tables_.check(m);
      if (!valid.ok()) return reply.respond(valid);
      return reply.respond(proto::KvDelResponse());
    }
    proto::KvDelResponse response;
    response.set_deleted(true);
    s = commit_locked(std::move(m), [reply, response](Status status) {
      if (!status.ok()) return reply.respond(status);
      reply.respond(response);
    });
  }
  if (!s.ok()) reply.respond(s);
}

StatusOr<proto::KvKeysResponse> GcsService::kv_keys(const proto::KvKeysRequest& request) {
  if (request.prefix().size() > config_.kv_max_key_bytes) {
    return invalid_argument_error(str_cat("KV key prefix has ", request.prefix().size(),
                                          " bytes; keys have at most ", config_.kv_max_key_bytes));
  }
  proto::KvKeysResponse response;
  std::lock_guard lock(mu_);
  for (auto& key : tables_.kv_keys(request.namespace_(), request.prefix())) {
    response.add_keys(std::move(key));
  }
  return response;
}

proto::GcsStatusResponse GcsService::status() const {
  proto::GcsStatusResponse response;
  response.set_started_at_ms(facts_.started_at_ms);
  response.set_recovered_in_ms(facts_.recovered_in_ms);
  response.set_data_dir(facts_.data_dir);
  response.set_fsync_policy(facts_.fsync_policy);
  response.set_snapshot_index(log_.snapshot_index());
  std::lock_guard lock(mu_);
  response.set_cluster_id(tables_.cluster_id());
  response.set_last_index(tables_.last_index());
  response.set_kv_entries(tables_.kv_size());
  response.set_jobs(tables_.jobs().size());
  response.set_actors(tables_.actors().size());
  const GcsTables::HaHealth ha = tables_.ha_health();
  response.set_ha_objects(ha.objects);
  response.set_ha_bytes(ha.bytes);
  response.set_ha_objects_short(ha.short_objects);
  response.set_ha_bytes_short(ha.short_bytes);
  response.set_ha_objects_lost(ha.lost_objects);
  return response;
}

// ---------------------------------------------------------------------------------------------
// Registration

Status GcsService::register_methods(transport::RpcServer& server) {
  using namespace proto;
  // One line per method below; a macro because each needs its own lambda types.
#define HALO_GCS_ASYNC(name, Req, Resp, fn)                                           \
  if (Status added = server.handle_async<Req, Resp>(                                  \
          name, [this](const Req& request,                                            \
                       RpcResponder<Resp> reply) { fn(request, std::move(reply)); }); \
      !added.ok())                                                                    \
  return added
#define HALO_GCS_SYNC(name, Req, Resp, expr)                                  \
  if (Status added = server.handle<Req, Resp>(                                \
          name,                                                               \
          [this](const Req& request, RpcContext& context) -> StatusOr<Resp> { \
            (void)request;                                                    \
            (void)context;                                                    \
            return expr;                                                      \
          });                                                                 \
      !added.ok())                                                            \
  return added

  HALO_GCS_ASYNC("gcs.register_node", RegisterNodeRequest, RegisterNodeResponse, register_node);
  HALO_GCS_SYNC("gcs.renew_lease", RenewLeaseRequest, RenewLeaseResponse,
                renew_lease(request, context));
  HALO_GCS_ASYNC("gcs.drain_node", DrainNodeRequest, DrainNodeResponse, drain_node);
  HALO_GCS_ASYNC("gcs.unregister_node", UnregisterNodeRequest, UnregisterNodeResponse,
                 unregister_node);
  HALO_GCS_SYNC("gcs.get_nodes", GetNodesRequest, GetNodesResponse, get_nodes(request));
  HALO_GCS_ASYNC("gcs.add_job", AddJobRequest, AddJobResponse, add_job);
  HALO_GCS_ASYNC("gcs.finish_job", FinishJobRequest, FinishJobResponse, finish_job);
  HALO_GCS_SYNC("gcs.get_jobs", GetJobsRequest, GetJobsResponse, get_jobs());
  HALO_GCS_ASYNC("gcs.put_actor", PutActorRequest, PutActorResponse, put_actor);
  HALO_GCS_ASYNC("gcs.remove_actor", RemoveActorRequest, RemoveActorResponse, remove_actor);
  HALO_GCS_SYNC("gcs.get_actors", GetActorsRequest, GetActorsResponse, get_actors());
  HALO_GCS_ASYNC("gcs.put_ha_object", PutHaObjectRequest, PutHaObjectResponse, put_ha_object);
  HALO_GCS_ASYNC("gcs.remove_ha_object", RemoveHaObjectRequest, RemoveHaObjectResponse,
                 remove_ha_object);
  HALO_GCS_SYNC("gcs.get_ha_object", GetHaObjectRequest, GetHaObjectResponse,
                get_ha_object(request));
  HALO_GCS_ASYNC("gcs.kv_put", KvPutRequest, KvPutResponse, kv_put);
  HALO_GCS_SYNC("gcs.kv_get", KvGetRequest, KvGetResponse, kv_get(request));
  HALO_GCS_ASYNC("gcs.kv_del", KvDelRequest, KvDelResponse, kv_del);
  HALO_GCS_SYNC("gcs.kv_keys", KvKeysRequest, KvKeysResponse, kv_keys(request));
  HALO_GCS_ASYNC("gcs.poll", PollRequest, PollResponse, feed_.poll);
  HALO_GCS_SYNC("gcs.status", GcsStatusRequest, GcsStatusResponse, status());
#undef HALO_GCS_ASYNC
#undef HALO_GCS_SYNC
  return Status();
}

}  // namespace halo::gcs
