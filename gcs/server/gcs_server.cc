#include "gcs/server/gcs_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <future>

#include "halo/base/logging.h"

namespace halo::gcs {

namespace {

using Clock = std::chrono::steady_clock;

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How often the snapshot thread looks at the record count; cheap (two counters).
constexpr auto kSnapshotCheckInterval = std::chrono::milliseconds(100);

}  // namespace

Status write_file_atomically(const std::string& path, const std::string& contents) {
  const std::string temp = str_cat(path, ".tmp.", static_cast<long long>(::getpid()));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, str_cat("creating ", temp));
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      return errno_error(err, str_cat("writing ", temp));
    }
    written += static_cast<size_t>(n);
  }
  // The umask may have narrowed the mode, never widened it; make it exactly owner-only.
  if (::fchmod(fd, 0600) != 0 || ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return errno_error(err, str_cat("syncing ", temp));
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return errno_error(err, str_cat("renaming ", temp, " to ", path));
  }
  return Status();
}

StatusOr<std::unique_ptr<GcsServer>> GcsServer::start(const GcsConfig& config,
                                                      const transport::TransportConfig& transport,
                                                      const transport::RpcConfig& rpc,
                                                      std::string cluster_secret) {
  std::unique_ptr<GcsServer> server(new GcsServer());
  Status s = server->start_impl(config, transport, rpc, std::move(cluster_secret));
  if (!s.ok()) {
    server->stop();
    return s;
  }
  return server;
}

Status GcsServer::start_impl(const GcsConfig& config,
                             const transport::TransportConfig& transport_config,
                             const transport::RpcConfig& rpc_config, std::string cluster_secret) {
  HALO_RETURN_IF_ERROR(config.validate());
  config_ = config;
  const int64_t started_at_ms = wall_now_ms();

  // Storage first: nothing is served until the tables hold everything acknowledged before.
  DurableLogOptions log_options;
  log_options.dir = config.data_dir;
  log_options.fsync_policy =
      config.fsync_policy == "group" ? FsyncPolicy::kGroup : FsyncPolicy::kAlways;
  log_options.group_commit_delay_us = config.group_commit_delay_us;
  log_options.segment_bytes = config.wal_segment_bytes;
  const auto t0 = Clock::now();
  auto opened = DurableLog::open(log_options);
  if (!opened.ok()) {
    return opened.status().with_context(
        str_cat("recovering the GCS's data directory ", config.data_dir));
  }
  log_ = std::move(opened->log);
  GcsTables::Limits limits;
  limits.kv_max_key_bytes = config.kv_max_key_bytes;
  limits.kv_max_value_bytes = config.kv_max_value_bytes;
  auto built = GcsTables::from(opened->recovered, limits);
  if (!built.ok()) {
    return built.status().with_context(
        str_cat("rebuilding the GCS's tables from ", config.data_dir));
  }
  GcsTables tables = std::move(*built);
  recovery_.snapshot_index = opened->recovered.snapshot.last_index();
  recovery_.replayed = opened->recovered.records.size();
  recovery_.last_index = tables.last_index();
  recovery_.millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  // The storage logs each of its notes (torn tail cut, snapshot fallen back from) itself.
  log::info("recovered {} in {} ms: snapshot {} (index {}) + {} log records -> index {}",
            config.data_dir, recovery_.millis,
            opened->recovered.snapshot_file.empty() ? "none" : opened->recovered.snapshot_file,
            recovery_.snapshot_index, recovery_.replayed, recovery_.last_index);
  opened->recovered = RecoveredState();  // The tables have it now; free the copies.

  if (tables.cluster_id().empty()) {
    if (tables.last_index() != 0) {
      return data_loss_error(str_cat(
          "the data directory ", config.data_dir, " holds ", tables.last_index(),
          " records but no cluster id (its first record is missing): restore it from a backup "
          "or start the cluster over with an empty directory"));
    }
    // A new cluster: its id is the first record, durable before anyone can learn it.
    proto::Mutation created;
    created.set_at_ms(wall_now_ms());
    std::string cluster_id(16, '\0');
    internal_ids::fill_random(reinterpret_cast<uint8_t*>(cluster_id.data()), cluster_id.size());
    created.set_cluster_created(cluster_id);
    HALO_RETURN_IF_ERROR(tables.check(created));
    std::promise<Status> durable;
    const uint64_t index =
        log_->append(created, [&durable](Status s) { durable.set_value(std::move(s)); });
    HALO_RETURN_IF_ERROR(durable.get_future().get().with_context(
        str_cat("writing the first record to ", config.data_dir)));
    tables.apply(created, index);
    recovery_.new_cluster = true;
    recovery_.last_index = index;
    log::info("new cluster {} in {}",
              internal_ids::to_hex(reinterpret_cast<const uint8_t*>(tables.cluster_id().data()),
                                   tables.cluster_id().size()),
              config.data_dir);
  }
  cluster_id_ = tables.cluster_id();

  HALO_ASSIGN_OR_RETURN(transport_,
                        transport::Transport::create(transport_config, std::move(cluster_secret)));
  HALO_ASSIGN_OR_RETURN(rpc_, transport::RpcNode::create(*transport_, rpc_config));

  NodeFeed::Options feed_options;
  feed_options.history = config.node_feed_history;
  feed_options.max_wait = std::chrono::milliseconds(config.poll_max_wait_ms);
  feed_ = std::make_unique<NodeFeed>(cluster_id_, tables.nodes(false), tables.last_index(),
                                     feed_options);
  GcsService::Facts facts;
  facts.started_at_ms = started_at_ms;
  facts.recovered_in_ms = recovery_.millis;
  facts.data_dir = config.data_dir;
  facts.fsync_policy = config.fsync_policy;
  service_ =
      std::make_unique<GcsService>(std::move(tables), *log_, *feed_, config, rpc_->client(), facts);
  HALO_RETURN_IF_ERROR(service_->register_methods(rpc_->server()));

  Status listening = transport_->listen(config.host, config.port);
  if (!listening.ok()) {
    return listening.with_context(str_cat("listening on ", config.host, ":", config.port,
                                          " (choose another --port, or 0 for any free one)"));
  }
  address_ = transport_->local_address();
  service_->start_health_checks();
  snapshot_thread_ = std::thread([this] { snapshot_loop(); });

  if (!config.address_file.empty()) {
    HALO_RETURN_IF_ERROR(write_file_atomically(config.address_file, address_ + "\n")
                             .with_context("writing the GCS address file"));
  }
  return Status();
}

std::string GcsServer::cluster_id_hex() const {
  return internal_ids::to_hex(reinterpret_cast<const uint8_t*>(cluster_id_.data()),
                              cluster_id_.size());
}

void GcsServer::on_storage_failure(std::function<void(const Status&)> callback) {
  service_->on_storage_failure(std::move(callback));
}

Status GcsServer::take_snapshot() {
  std::lock_guard lock(snapshot_write_mu_);
  if (log_ == nullptr || service_ == nullptr) {
    return failed_precondition_error("the GCS is stopped; there is nothing to snapshot");
  }
  const auto t0 = Clock::now();
  proto::GcsSnapshot snapshot = service_->snapshot();
  const uint64_t index = snapshot.last_index();
  snapshot.set_taken_at_ms(wall_now_ms());
  Status s = log_->write_snapshot(snapshot);
  if (!s.ok()) {
    log::error("snapshot at index {} failed: {}", index, s);
    return s;
  }
  log::info("snapshot at index {} written in {} ms", index,
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
  return s;
}

void GcsServer::snapshot_loop() {
  auto last = Clock::now();
  std::unique_lock lock(snapshot_mu_);
  while (!stop_snapshots_) {
    snapshot_cv_.wait_for(lock, kSnapshotCheckInterval);
    if (stop_snapshots_) break;
    const uint64_t written = log_->last_index() - log_->snapshot_index();
    const bool due_by_count = written >= config_.snapshot_every_records;
    const bool due_by_time =
        written > 0 && Clock::now() - last >= std::chrono::seconds(config_.snapshot_interval_s);
    if (!due_by_count && !due_by_time) continue;
    if (!service_->storage_error().ok()) continue;
    lock.unlock();
    (void)take_snapshot();  // Logged; the next round tries again.
    last = Clock::now();
    lock.lock();
  }
}

void GcsServer::stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard lock(snapshot_mu_);
    stop_snapshots_ = true;
  }
  snapshot_cv_.notify_all();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  if (service_) service_->stop_health_checks();
  if (feed_) feed_->stop();
  rpc_.reset();
  {
    std::lock_guard lock(snapshot_write_mu_);
    log_.reset();
  }
  service_.reset();
  feed_.reset();
  transport_.reset();
  if (!config_.address_file.empty() && !address_.empty()) {
    ::unlink(config_.address_file.c_str());
  }
}

GcsServer::~GcsServer() { stop(); }

}  // namespace halo::gcs
