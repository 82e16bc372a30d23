#include "launcher/node/node_daemon.h"

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <utility>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_address.h"
#include "halo/base/logging.h"
#include "launcher/node/node_topology.h"

namespace halo::node {
namespace {

using std::chrono::milliseconds;

// Between registration attempts while the GCS does not answer.
constexpr milliseconds kRegisterRetry{200};
// Time limit of one registration call (it may include reconnecting).
constexpr milliseconds kRegisterTimeout{2000};
// Time limit of the goodbye on the way out.
constexpr milliseconds kUnregisterTimeout{2000};

int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Ids and cluster ids in messages and files: lower-case hex, as halo prints ids.
std::string hex(const std::string& bytes) {
  return internal_ids::to_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

bool refused(const Status& s) {
  return s.code() == StatusCode::kFailedPrecondition || s.code() == StatusCode::kNotFound;
}

}  // namespace

StatusOr<std::unique_ptr<NodeDaemon>> NodeDaemon::start(NodeConfig config,
                                                        objstore::StoreConfig store,
                                                        transport::TransportConfig transport,
                                                        transport::RpcConfig rpc) {
  if (config.gcs_rpc_server_reconnect_timeout_s <= 0) {
    return invalid_argument_error("--gcs-rpc-server-reconnect-timeout-s must be positive");
  }
  HALO_ASSIGN_OR_RETURN(NodeResources resources, node_resources(config));
  if (config.cpu_binding != "nic" && config.cpu_binding != "none") {
    return invalid_argument_error(
        str_cat("--cpu-binding '", config.cpu_binding, "': expected nic or none"));
  }
  auto topology = discover_topology(config.host, transport.net_interface);
  if (!topology.ok()) {
    log::warn("{}; the progress thread is not bound", topology.status());
  } else {
    resources.topology = topology->summary();
    if (config.cpu_binding == "nic" && transport.progress_core < 0) {
      transport.progress_core = topology->progress_pu(::getpid());
    }
    if (transport.progress_core >= 0) {
      resources.topology += str_cat("; progress thread on PU ", transport.progress_core);
    }
    log::info("topology: {}", resources.topology);
  }
  HALO_ASSIGN_OR_RETURN(std::string secret, gcs::read_secret_file(config.secret_file));
  HALO_ASSIGN_OR_RETURN(std::string gcs_address,
                        gcs::gcs_transport_address(config.gcs_address, transport));

  auto daemon = std::unique_ptr<NodeDaemon>(new NodeDaemon(config, std::move(resources)));
  daemon->gcs_address_ = gcs_address;
  gcs::GcsClientOptions options;
  options.address = gcs_address;
  options.cluster_secret = std::move(secret);
  options.transport = transport;
  options.rpc = rpc;
  options.reconnect_timeout = std::chrono::seconds(config.gcs_rpc_server_reconnect_timeout_s);
  HALO_ASSIGN_OR_RETURN(daemon->client_, gcs::GcsClient::create(std::move(options)));

  NodeDaemon* self = daemon.get();
  using HealthCheckHandler = std::function<StatusOr<gcs::proto::HealthCheckResponse>(
      const gcs::proto::HealthCheckRequest&, transport::RpcContext&)>;
  HealthCheckHandler health_check = [self](const gcs::proto::HealthCheckRequest&,
                                           transport::RpcContext&) {
    gcs::proto::HealthCheckResponse response;
    response.set_node_id(self->node_id_.binary());
    response.set_incarnation(self->incarnation());
    response.set_fenced(self->fenced());
    return StatusOr<gcs::proto::HealthCheckResponse>(response);
  };
  // The GCS checks the node over the connection the node renews on.
  Status handled = daemon->client_->rpc()
                       .server()
                       .handle<gcs::proto::HealthCheckRequest, gcs::proto::HealthCheckResponse>(
                           "node.health_check", std::move(health_check));
  HALO_RETURN_IF_ERROR(handled);
  // A reconnection means the GCS may have restarted: renew at once rather than at the next
  // period, so that it hears from this node (and learns its connection) early.
  daemon->client_->on_reconnect([self] {
    {
      std::lock_guard lock(self->mu_);
      self->wake_ = true;
    }
    self->cv_.notify_all();
  });
  HALO_ASSIGN_OR_RETURN(
      daemon->store_,
      objstore::StoreService::start(
          store, daemon->node_id_, daemon->client_->transport(), daemon->client_->rpc(),
          static_cast<uint64_t>(daemon->resources_.resources.at("memory")),
          transport.net_interface));
  objstore::StoreService* store_service = daemon->store_.get();
  auto domain = daemon->resources_.labels.find("failure_domain");
  daemon->ha_directory_ = std::make_unique<GcsHaDirectory>(
      *daemon->client_, daemon->node_id_,
      domain == daemon->resources_.labels.end() ? "" : domain->second,
      [self] { return self->admit_ha_copy(); }, std::chrono::milliseconds(5000));
  store_service->set_ha_directory(daemon->ha_directory_.get());
  daemon->client_->on_endpoint_failure(
      [store_service](const transport::EndpointPtr& ep, const Status&) {
        store_service->endpoint_failed(ep);
      });
  Status listening = daemon->client_->transport().listen(config.host, config.port);
  if (!listening.ok()) {
    return listening.with_context(
        str_cat("halo-node cannot listen on ", config.host, ":", config.port, " (--host/--port)"));
  }
  daemon->address_ = daemon->client_->transport().local_address();
  daemon->store_->set_address(daemon->address_);
  {
    std::lock_guard lock(daemon->mu_);
    daemon->publish_locked();
  }
  log::info("node {} listening on {}; joining the GCS at {}", daemon->node_id_, daemon->address_,
            gcs_address);
  daemon->thread_ = std::thread([self] { self->run(); });
  return daemon;
}

NodeDaemon::NodeDaemon(NodeConfig config, NodeResources resources)
    : config_(std::move(config)), resources_(std::move(resources)) {}

NodeDaemon::~NodeDaemon() {
  request_stop();
  if (thread_.joinable()) thread_.join();
  if (store_) store_->stop();
  if (ha_directory_) ha_directory_->stop();
  client_.reset();
  store_.reset();
}

void NodeDaemon::request_stop() {
  {
    std::lock_guard lock(mu_);
    stop_requested_ = true;
  }
  cv_.notify_all();
}

Status NodeDaemon::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return done_; });
  return exit_status_;
}

bool NodeDaemon::fenced() const {
  std::lock_guard lock(mu_);
  return lease_.fenced(Clock::now()) || draining_ || stop_requested_;
}

Status NodeDaemon::admit_ha_copy() const {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  if (!lease_.fenced(now) && !draining_ && !stop_requested_) return Status();
  return failed_precondition_error(
      str_cat("node ", node_id_.to_hex(), " refuses a new HA copy: ", why_fenced_locked(now)));
}

uint64_t NodeDaemon::incarnation() const {
  std::lock_guard lock(mu_);
  return lease_.incarnation();
}

std::string NodeDaemon::why_fenced_locked(Clock::time_point now) const {
  if (stop_requested_) return "it is stopping";
  if (draining_) return "it is draining";
  if (lease_.state() == Lease::State::kUnregistered) {
    return "it is not registered with the GCS (yet, or again after being declared dead)";
  }
  if (lease_.fenced(now)) return "its lease ran out: the GCS has not been reachable";
  return "";
}

std::string NodeDaemon::state_name_locked(Clock::time_point now) const {
  if (done_) return "stopped";
  if (draining_) return "draining";
  if (lease_.state() == Lease::State::kUnregistered) return "registering";
  return lease_.fenced(now) ? "fenced" : "alive";
}

void NodeDaemon::publish_locked(const std::string& reason) {
  const auto now = Clock::now();
  NodeStateRecord record;
  record.node_id = node_id_.to_hex();
  record.incarnation = lease_.incarnation();
  record.state = state_name_locked(now);
  record.gcs_connected = gcs_connected_;
  record.address = address_;
  record.gcs_address = gcs_address_;
  record.pid = ::getpid();
  record.cluster_id = hex(cluster_id_);
  record.reason = reason.empty() ? why_fenced_locked(now) : reason;
  record.updated_at_ms = published_.updated_at_ms;
  const bool fenced_now = record.state == "fenced";
  if (fenced_now != fenced_published_) {
    if (fenced_now) {
      log::warn(
          "node {} incarnation {} FENCED: no lease renewal succeeded within the lease; it "
          "takes no work and refuses HA copies until the GCS answers",
          node_id_, lease_.incarnation());
    } else if (record.state == "alive") {
      log::info("node {} incarnation {} unfenced: the GCS renewed its lease", node_id_,
                lease_.incarnation());
    }
    fenced_published_ = fenced_now;
  }
  if (record == published_) return;
  record.updated_at_ms = wall_ms();
  published_ = record;
  if (config_.state_file.empty()) return;
  Status written = write_node_state_file(config_.state_file, record);
  if (!written.ok()) log::error("{}", written);
}

Status NodeDaemon::register_node(Clock::time_point sent) {
  gcs::proto::RegisterNodeRequest request;
  gcs::proto::NodeInfo& node = *request.mutable_node();
  node.set_node_id(node_id_.binary());
  node.set_address(address_);
  node.set_hostname(hostname());
  node.set_pid(static_cast<uint32_t>(::getpid()));
  for (const auto& [name, amount] : resources_.resources)
    (*node.mutable_resources())[name] = amount;
  for (const auto& [key, value] : resources_.labels) (*node.mutable_labels())[key] = value;
  node.set_topology(resources_.topology);
  auto response = client_->call<gcs::proto::RegisterNodeRequest, gcs::proto::RegisterNodeResponse>(
      "gcs.register_node", request, kRegisterTimeout);
  if (!response.ok()) return response.status();
  std::unique_lock lock(mu_);
  if (!cluster_id_.empty() && response->cluster_id() != cluster_id_) {
    return failed_precondition_error(str_cat(
        "the GCS at ", gcs_address_, " now belongs to cluster ", hex(response->cluster_id()),
        ", but node ", node_id_.to_hex(), " joined cluster ", hex(cluster_id_),
        " (the GCS was started on another data directory?); start halo-node again to join the "
        "new cluster"));
  }
  cluster_id_ = response->cluster_id();
  period_ = milliseconds(std::max<int64_t>(response->health_check_period_ms(), 10));
  lease_.registered(response->incarnation(), sent,
                    milliseconds(std::max<int64_t>(response->lease_ms(), 1)));
  log::info(
      "node {} registered with the GCS at {} as incarnation {} (lease {} ms, renewed every "
      "{} ms)",
      node_id_, gcs_address_, response->incarnation(), response->lease_ms(), period_.count());
  lock.unlock();
  // Registering again: while this node was DEAD its HA copies may have been replaced.
  if (response->incarnation() > 1 && store_) store_->recheck_ha_copies();
  return Status();
}

Status NodeDaemon::renew(Clock::time_point sent) {
  gcs::proto::RenewLeaseRequest request;
  milliseconds timeout;
  {
    std::lock_guard lock(mu_);
    request.set_node_id(node_id_.binary());
    request.set_incarnation(lease_.incarnation());
    request.set_fenced(lease_.fenced(sent));
    timeout = std::max(period_, milliseconds(200));
  }
  auto response = client_->call<gcs::proto::RenewLeaseRequest, gcs::proto::RenewLeaseResponse>(
      "gcs.renew_lease", request, timeout);
  std::lock_guard lock(mu_);
  if (lease_.incarnation() != request.incarnation()) return Status();  // Superseded meanwhile.
  const bool dead = response.ok() && (response->state() == gcs::proto::DEAD ||
                                      response->state() == gcs::proto::REMOVED);
  if ((!response.ok() && refused(response.status())) || dead) {
    log::warn(
        "node {} incarnation {} was refused by the GCS ({}): it was declared dead; fenced, "
        "registering again under a new incarnation",
        node_id_, request.incarnation(),
        response.ok() ? std::string(gcs::proto::NodeState_Name(response->state()))
                      : response.status().to_string());
    lease_.refused();
    return Status();  // The GCS answered: it is reachable.
  }
  if (!response.ok()) return response.status();
  lease_.renewed(sent, milliseconds(std::max<int64_t>(response->lease_ms(), 1)));
  if (response->state() == gcs::proto::DRAINING && !draining_) {
    log::info("node {} is being drained: it takes no more work and leaves the cluster", node_id_);
    draining_ = true;
  }
  return Status();
}

void NodeDaemon::unregister(const std::string& reason) {
  gcs::proto::UnregisterNodeRequest request;
  {
    std::lock_guard lock(mu_);
    if (lease_.state() != Lease::State::kHeld) return;
    request.set_node_id(node_id_.binary());
    request.set_incarnation(lease_.incarnation());
    request.set_reason(reason);
  }
  auto response =
      client_->call<gcs::proto::UnregisterNodeRequest, gcs::proto::UnregisterNodeResponse>(
          "gcs.unregister_node", request, kUnregisterTimeout);
  if (!response.ok()) {
    log::warn(
        "node {} could not unregister from the GCS ({}); the GCS will find it gone by its "
        "health checks",
        node_id_, response.status());
  } else {
    log::info("node {} unregistered from the GCS: {}", node_id_, reason);
  }
}

void NodeDaemon::run() {
  const auto reconnect_timeout = std::chrono::seconds(config_.gcs_rpc_server_reconnect_timeout_s);
  Clock::time_point last_contact = Clock::now();
  Status last_error;
  Status exit_status;
  std::string exit_reason = "stopped on request";
  while (true) {
    bool registered;
    {
      std::lock_guard lock(mu_);
      if (stop_requested_) break;
      registered = lease_.state() == Lease::State::kHeld;
    }
    const Clock::time_point sent = Clock::now();
    Status result = registered ? renew(sent) : register_node(sent);
    const Clock::time_point now = Clock::now();
    bool again_now = false;
    {
      std::lock_guard lock(mu_);
      if (result.ok()) {
        last_contact = now;
        gcs_connected_ = true;
        again_now = lease_.state() != Lease::State::kHeld;  // Refused: register at once.
      } else if (result.code() == StatusCode::kFailedPrecondition && !registered) {
        exit_status = result;  // Another cluster's GCS.
        exit_reason = result.to_string();
        break;
      } else {
        gcs_connected_ = false;
        last_error = result;
      }
      publish_locked();
      if (draining_) {
        exit_reason = "drained";
        break;
      }
    }
    if (!result.ok()) {
      log::warn("node {}: the GCS at {} did not answer: {}", node_id_, gcs_address_, result);
      if (now - last_contact >= reconnect_timeout) {
        exit_status = unavailable_error(
            str_cat("node ", node_id_.to_hex(), " could not reach the GCS at ", gcs_address_,
                    " for ", config_.gcs_rpc_server_reconnect_timeout_s,
                    " s (gcs_rpc_server_reconnect_timeout_s); last error: ", last_error.to_string(),
                    ". Exiting: restart halo-node once the GCS is back"));
        exit_reason = exit_status.to_string();
        break;
      }
    }
    // Sleep until the next renewal, waking at the lease's end to publish the fence on time.
    std::unique_lock lock(mu_);
    Clock::time_point next = sent + (registered || result.ok() ? period_ : kRegisterRetry);
    if (again_now) next = now;
    const Clock::time_point expiry = lease_.expires_at();
    if (expiry > now && expiry < next) next = expiry;
    cv_.wait_until(lock, next, [this] { return stop_requested_ || wake_; });
    wake_ = false;
    publish_locked();
  }
  {
    std::lock_guard lock(mu_);
    draining_ = draining_ || stop_requested_;
    publish_locked();
  }
  if (exit_status.ok()) unregister(exit_reason);
  std::lock_guard lock(mu_);
  exit_status_ = exit_status;
  done_ = true;
  publish_locked(exit_reason);
  cv_.notify_all();
}

}  // namespace halo::node
