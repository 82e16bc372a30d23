// The GCS's RPC methods (gcs.proto, docs/gcs.md): each request is validated, turned into one
// Mutation, applied to the tables and appended to the write-ahead log under one lock (so the
// log's order is the tables' order), and answered only once the log reports it durable. Reads
// answer from the tables. Subscriptions ("gcs.poll") are served by the NodeFeed, health checks
// by the service's HealthChecker.
//
//   GcsService service(std::move(tables), log, feed, config, rpc.client());
//   HALO_RETURN_IF_ERROR(service.register_methods(rpc.server()));
//   HALO_RETURN_IF_ERROR(transport.listen(host, port));
//   service.start_health_checks();
//   ...
//   service.stop_health_checks();  // before the RpcNode goes
//
// Errors a caller sees: INVALID_ARGUMENT for a malformed request (wrong id sizes, missing
// fields, unknown enum values, oversized strings or KV entries), NOT_FOUND, ALREADY_EXISTS,
// FAILED_PRECONDITION for a node that must re-register (stale incarnation, declared DEAD or
// REMOVED), UNAVAILABLE once the log failed (the GCS must then be restarted). A malformed
// request changes nothing.
//
// Threads: handlers run where the RpcNode runs them and never block (writes are answered from
// the log's writer thread). Lock order: the service's lock, then the health checker's or the
// feed's; never the other way.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "gcs/proto/gcs.pb.h"
#include "gcs/server/gcs_config.h"
#include "gcs/server/gcs_tables.h"
#include "gcs/server/health_checker.h"
#include "gcs/server/node_feed.h"
#include "gcs/storage/durable_log.h"
#include "halo/transport/rpc.h"

namespace halo::gcs {

class GcsService {
 public:
  // What `gcs.status` reports about the process besides the tables.
  struct Facts {
    int64_t started_at_ms = 0;
    int64_t recovered_in_ms = 0;
    std::string data_dir;
    std::string fsync_policy;
  };

  // `log`, `feed` and `rpc_client` must outlive the service. The tables' nodes are handed to
  // the health checker (every live node gets the initial delay again).
  GcsService(GcsTables tables, DurableLog& log, NodeFeed& feed, const GcsConfig& config,
             transport::RpcClient& rpc_client, Facts facts);
  ~GcsService();
  GcsService(const GcsService&) = delete;
  GcsService& operator=(const GcsService&) = delete;

  // Registers every "gcs.*" method on `server`.
  Status register_methods(transport::RpcServer& server);

  void start_health_checks();
  void stop_health_checks();
  HealthChecker::Stats health_stats() const { return checker_->stats(); }

  // Applies and logs `mutation` as the server itself (start-up records, health-check verdicts);
  // `done` runs once it is durable or failed. Errors from validation are returned at once.
  Status commit(proto::Mutation mutation, std::function<void(Status)> done);
  // A state change the health checker wants; dropped (with a debug line) if the row moved on.
  void propose_node_state(const StateProposal& proposal);

  // A copy of every table at the last applied index, for a snapshot.
  proto::GcsSnapshot snapshot() const;
  uint64_t last_index() const;
  std::string cluster_id() const;

  // OK until a log write or sync failed; then that error: the GCS must stop.
  Status storage_error() const;
  // Called once, from the log's thread, when storage fails.
  void on_storage_failure(std::function<void(const Status&)> callback);

 private:
  using Done = std::function<void(Status)>;

  // Under mu_: validates, applies, hands live-node rows to the checker and appends. `done`
  // runs once the record is durable (after the feed has it) or the log failed.
  Status commit_locked(proto::Mutation mutation, Done done);
  void storage_failed(const Status& status);
  Status writable() const;

  // One function per method; the async ones answer through their responder.
  void register_node(const proto::RegisterNodeRequest& request,
                     transport::RpcResponder<proto::RegisterNodeResponse> reply);
  StatusOr<proto::RenewLeaseResponse> renew_lease(const proto::RenewLeaseRequest& request,
                                                  transport::RpcContext& context);
  void drain_node(const proto::DrainNodeRequest& request,
                  transport::RpcResponder<proto::DrainNodeResponse> reply);
  void unregister_node(const proto::UnregisterNodeRequest& request,
                       transport::RpcResponder<proto::UnregisterNodeResponse> reply);
  proto::GetNodesResponse get_nodes(const proto::GetNodesRequest& request) const;
  void add_job(const proto::AddJobRequest& request,
               transport::RpcResponder<proto::AddJobResponse> reply);
  void finish_job(const proto::FinishJobRequest& request,
                  transport::RpcResponder<proto::FinishJobResponse> reply);
  proto::GetJobsResponse get_jobs() const;
  proto::GetActorsResponse get_actors() const;
  void put_actor(const proto::PutActorRequest& request,
                 transport::RpcResponder<proto::PutActorResponse> reply);
  void remove_actor(const proto::RemoveActorRequest& request,
                    transport::RpcResponder<proto::RemoveActorResponse> reply);
  void put_ha_object(const proto::PutHaObjectRequest& request,
                     transport::RpcResponder<proto::PutHaObjectResponse> reply);
  void remove_ha_object(const proto::RemoveHaObjectRequest& request,
                        transport::RpcResponder<proto::RemoveHaObjectResponse> reply);
  StatusOr<proto::GetHaObjectResponse> get_ha_object(const proto::GetHaObjectRequest& request);
  void kv_put(const proto::KvPutRequest& request,
              transport::RpcResponder<proto::KvPutResponse> reply);
  StatusOr<proto::KvGetResponse> kv_get(const proto::KvGetRequest& request);
  void kv_del(const proto::KvDelRequest& request,
              transport::RpcResponder<proto::KvDelResponse> reply);
  StatusOr<proto::KvKeysResponse> kv_keys(const proto::KvKeysRequest& request);
  proto::GcsStatusResponse status() const;

  // Commits `mutation` and answers `reply` with `response` once durable.
  template <typename Resp>
  void commit_then_reply(proto::Mutation mutation, Resp response,
                         transport::RpcResponder<Resp> reply);

  DurableLog& log_;
  NodeFeed& feed_;
  const GcsConfig config_;
  const Facts facts_;

  mutable std::mutex mu_;
  GcsTables tables_;
  std::unique_ptr<HealthChecker> checker_;

  mutable std::mutex storage_mu_;
  Status storage_error_;
  std::function<void(const Status&)> on_storage_failure_;
};

}  // namespace halo::gcs
