// halo.h's functions: init/shutdown and the entry points of internal/client.h, over the
// process's ClientRuntime, with errors turned into the API's exceptions.
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "core/runtime/client_runtime.h"
#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_address.h"
#include "gcs/client/gcs_client.h"
#include "gcs/proto/gcs.pb.h"
#include "halo/base/config.h"
#include "halo/base/ipv4_interfaces.h"
#include "halo/base/logging.h"
#include "halo/halo.h"
#include "launcher/local_cluster/local_cluster.h"
#include "launcher/session/session.h"

extern char** environ;

namespace halo {
namespace {

using internal::ClientRuntime;

// The process's state between init() and shutdown().
struct Process {
  std::mutex mu;
  std::string secret_file;                          // Of the cluster joined or started.
  std::unique_ptr<launcher::LocalCluster> cluster;  // An embedded cluster, if init started one.
  std::unique_ptr<ClientRuntime> runtime;
  std::function<void()> at_shutdown;  // Set by halo::init(MPI_Comm).
};

Process& process() {
  static Process* p = new Process();  // Never destroyed: RefStates may outlive main().
  return *p;
}

std::atomic<ClientRuntime*> current{nullptr};

[[noreturn]] void raise(const Status& status) {
  switch (status.code()) {
    case StatusCode::kDeadlineExceeded:
      throw GetTimeoutError(status.to_string());
    case StatusCode::kNotFound:
    case StatusCode::kDataLoss:
    case StatusCode::kUnavailable:
    case StatusCode::kAborted:
      throw ObjectLostError(status.to_string());
    case StatusCode::kResourceExhausted:
    case StatusCode::kOutOfRange:
      throw ObjectStoreFullError(status.to_string());
    default:
      throw Error(status.to_string());
  }
}

ClientRuntime& runtime() {
  ClientRuntime* rt = current.load(std::memory_order_acquire);
  if (rt == nullptr) throw Error("halo is not initialized: call halo::init() first");
  return *rt;
}

std::string env_or(const std::string& value, const char* name) {
  if (!value.empty()) return value;
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// The host part of a transport address ("ucx://10.0.0.2:4000" -> "10.0.0.2").
std::string host_of(const std::string& address) {
  std::string rest =
      address.substr(address.find("://") == std::string::npos ? 0 : address.find("://") + 3);
  return rest.substr(0, rest.rfind(':'));
}

std::set<std::string> local_hosts() {
  std::set<std::string> hosts = {"127.0.0.1", "localhost"};
  for (const Ipv4Interface& i : ipv4_interfaces()) hosts.insert(i.address);
  return hosts;
}

// The node table of the GCS at `gcs_address`.
StatusOr<gcs::proto::GetNodesResponse> nodes_of(const std::string& gcs_address,
                                                const std::string& secret,
                                                const transport::TransportConfig& transport) {
  gcs::GcsClientOptions options;
  options.address = gcs_address;
  options.cluster_secret = secret;
  options.transport = transport;
  options.reconnect_timeout = std::chrono::seconds(10);
  HALO_ASSIGN_OR_RETURN(auto client, gcs::GcsClient::create(std::move(options)));
  HALO_RETURN_IF_ERROR(client->connect());
  return client->call<gcs::proto::GetNodesRequest, gcs::proto::GetNodesResponse>(
      "gcs.get_nodes", gcs::proto::GetNodesRequest());
}

// The first ALIVE node of the cluster on this machine.
StatusOr<std::string> local_node_of(const std::string& gcs_address, const std::string& secret,
                                    const transport::TransportConfig& transport) {
  HALO_ASSIGN_OR_RETURN(auto nodes, nodes_of(gcs_address, secret, transport));
  const std::set<std::string> hosts = local_hosts();
  for (const auto& node : nodes.nodes()) {
    if (node.state() == gcs::proto::ALIVE && hosts.contains(host_of(node.address()))) {
      return node.address();
    }
  }
  return not_found_error(str_cat("no ALIVE node daemon of the cluster at ", gcs_address,
                                 " runs on this machine: start one (halo start --address ...) or "
                                 "set HALO_NODE_ADDRESS"));
}

Status init_locked(Process& p, const InitOptions& options) {
  internal::ClientOptions client;
  // A driver or worker shares its cores with the application's own threads: its progress
  // thread sleeps rather than spins (HALO_PROGRESS_MODE=hybrid or poll to change that).
  client.transport.progress_mode = "event";
  ConfigLoader loader;
  loader.add(client.transport);
  auto loaded = loader.load({.file = "", .env = environ, .args = {}});
  if (!loaded.ok()) return loaded.status().with_context("transport settings from HALO_*");
  client.put_timeout = options.put_timeout;
  const std::string address = env_or(options.address, "HALO_ADDRESS");
  if (address.empty()) {
    launcher::LocalClusterOptions cluster;
    const std::string num_nodes = env_or("", "HALO_NUM_NODES");
    cluster.num_nodes = num_nodes.empty() ? options.num_nodes : std::atoi(num_nodes.c_str());
    uint64_t store_bytes = options.object_store_memory;
    if (const std::string env = env_or("", "HALO_OBJECT_STORE_MEMORY");
        store_bytes == 0 && !env.empty()) {
      store_bytes = std::strtoull(env.c_str(), nullptr, 10);
    }
    if (store_bytes != 0) {
      cluster.node_flags.push_back("--object-store-memory=" + std::to_string(store_bytes));
    }
    for (const std::string& flag : options.node_flags) cluster.node_flags.push_back(flag);
    HALO_ASSIGN_OR_RETURN(p.cluster, launcher::LocalCluster::start(std::move(cluster)));
    if (p.cluster->nodes().empty()) {
      return invalid_argument_error("an embedded cluster needs at least one node (num_nodes)");
    }
    client.node_address = p.cluster->nodes().front().address;
    client.gcs_address = p.cluster->gcs_address();
    p.secret_file = p.cluster->secret_file();
    HALO_ASSIGN_OR_RETURN(client.secret, gcs::read_secret_file(p.secret_file));
  } else {
    HALO_ASSIGN_OR_RETURN(client.gcs_address,
                          gcs::gcs_transport_address(address, client.transport));
    std::string secret_file = env_or(options.secret_file, "HALO_SECRET_FILE");
    if (secret_file.empty()) {
      secret_file = launcher::temp_dir() + "/session_latest/cluster_secret";
    }
    HALO_ASSIGN_OR_RETURN(client.secret, gcs::read_secret_file(secret_file));
    p.secret_file = secret_file;
    client.node_address = env_or(options.node_address, "HALO_NODE_ADDRESS");
    if (client.node_address.empty()) {
      HALO_ASSIGN_OR_RETURN(client.node_address,
                            local_node_of(client.gcs_address, client.secret, client.transport));
    }
  }
  HALO_ASSIGN_OR_RETURN(p.runtime, ClientRuntime::connect(std::move(client)));
  return Status();
}

}  // namespace

void init(const InitOptions& options) {
  Process& p = process();
  std::lock_guard lock(p.mu);
  if (p.runtime) throw Error("halo::init() called twice: call halo::shutdown() first");
  Status s = init_locked(p, options);
  if (!s.ok()) {
    p.runtime.reset();
    if (p.cluster) (void)p.cluster->stop();
    p.cluster.reset();
    throw Error(s.with_context("halo::init").to_string());
  }
  current.store(p.runtime.get(), std::memory_order_release);
}

void shutdown() {
  Process& p = process();
  std::lock_guard lock(p.mu);
  current.store(nullptr, std::memory_order_release);
  p.runtime.reset();
  if (p.cluster) {
    Status stopped = p.cluster->stop();
    if (!stopped.ok()) log::warn("stopping the embedded cluster: {}", stopped);
    p.cluster.reset();
  }
  if (p.at_shutdown) std::exchange(p.at_shutdown, nullptr)();
}

bool is_initialized() { return current.load(std::memory_order_acquire) != nullptr; }

StoreInfo store_info() {
  ClientRuntime& rt = runtime();
  auto stats = rt.stats();
  if (!stats.ok()) raise(stats.status());
  StoreInfo info;
  info.node_id_hex = rt.node_id_hex();
  info.node_address = rt.node_address();
  info.gcs_address = rt.gcs_address();
  info.capacity_bytes = stats->capacity_bytes();
  info.used_bytes = stats->used_bytes();
  info.objects = stats->objects();
  info.referenced_objects = stats->referenced_objects();
  info.fetches = stats->fetches();
  info.spilled_objects = stats->spilled_objects();
  info.evictions = stats->evictions();
  info.puts_waiting_for_room = stats->puts_waiting_for_room();
  info.rooms_created_ahead = stats->rooms_created_ahead();
  return info;
}

ClusterInfo cluster_info() {
  ClientRuntime& rt = runtime();
  ClusterInfo info;
  info.gcs_address = rt.gcs_address();
  {
    std::lock_guard lock(process().mu);
    info.secret_file = process().secret_file;
  }
  auto nodes = nodes_of(rt.gcs_address(), rt.secret(), rt.transport_config());
  if (!nodes.ok()) raise(nodes.status().with_context("listing the cluster's nodes"));
  for (const auto& n : nodes->nodes()) {
    info.nodes.push_back({internal_ids::to_hex(reinterpret_cast<const uint8_t*>(n.node_id().data()),
                                               n.node_id().size()),
                          n.address(), n.hostname(), gcs::proto::NodeState_Name(n.state())});
  }
  return info;
}

namespace internal {

RefState::~RefState() {
  if (ClientRuntime* rt = current.load(std::memory_order_acquire)) rt->release(id_);
}

PinToken::~PinToken() {
  if (ClientRuntime* rt = current.load(std::memory_order_acquire)) rt->unpin(id, small);
}

std::shared_ptr<RefState> put_object(size_t size,
                                     const std::function<void(std::span<std::byte>)>& write,
                                     const PutParams& params) {
  auto ref = runtime().put(size, write, params);
  if (!ref.ok()) raise(ref.status());
  return std::move(*ref);
}

std::vector<PinnedObject> get_objects(const std::vector<const RefState*>& refs,
                                      std::chrono::milliseconds timeout) {
  auto objects = runtime().get(refs, timeout);
  if (!objects.ok()) raise(objects.status());
  return std::move(*objects);
}

std::vector<bool> wait_objects(const std::vector<const RefState*>& refs, size_t num_ready,
                               std::chrono::milliseconds timeout) {
  auto ready = runtime().wait(refs, num_ready, timeout);
  if (!ready.ok()) raise(ready.status());
  return std::move(*ready);
}

StatusOr<std::string> find_local_node(const std::string& gcs_address,
                                      const std::string& secret_file) {
  transport::TransportConfig transport;
  transport.progress_mode = "event";
  ConfigLoader loader;
  loader.add(transport);
  auto loaded = loader.load({.file = "", .env = environ, .args = {}});
  if (!loaded.ok()) return loaded.status().with_context("transport settings from HALO_*");
  HALO_ASSIGN_OR_RETURN(const std::string address,
                        gcs::gcs_transport_address(gcs_address, transport));
  HALO_ASSIGN_OR_RETURN(const std::string secret, gcs::read_secret_file(secret_file));
  auto node = local_node_of(address, secret, transport);
  if (node.ok()) return *node;
  if (node.status().code() == StatusCode::kNotFound) return std::string();
  return node.status().with_context(str_cat("asking the GCS at ", gcs_address, " for its nodes"));
}

void at_shutdown(std::function<void()> hook) {
  std::lock_guard lock(process().mu);
  process().at_shutdown = std::move(hook);
}

void publish_refs() {
  Status synced = runtime().sync();
  if (!synced.ok()) raise(synced.with_context("publishing references"));
}

std::shared_ptr<RefState> adopt_ref(ObjectId id, std::string owner_address) {
  auto ref = runtime().adopt(id, owner_address);
  if (!ref.ok()) raise(ref.status());
  return std::move(*ref);
}

std::span<const std::byte> checked_payload(std::span<const std::byte> object,
                                           const ObjectHeader& expected,
                                           std::string_view object_id_hex) {
  ObjectHeader header;
  if (object.size() < kHeaderBytes) {
    throw Error(str_cat("object ", object_id_hex, " has ", object.size(),
                        " bytes: too short to be a halo value"));
  }
  std::memcpy(&header, object.data(), kHeaderBytes);
  if (header.magic != kObjectMagic) {
    throw Error(str_cat("object ", object_id_hex, " was not written by halo::put"));
  }
  if (header.encoding != expected.encoding ||
      header.type_fingerprint != expected.type_fingerprint) {
    throw Error(str_cat("object ", object_id_hex,
                        " holds a value of another C++ type than the ObjectRef's"));
  }
  std::span<const std::byte> payload = object.subspan(kHeaderBytes);
  if (header.encoding == Encoding::kTrivial && payload.size() != 0 &&
      reinterpret_cast<uintptr_t>(payload.data()) % 16 != 0) {
    throw Error(str_cat("object ", object_id_hex, " is misaligned in the store"));
  }
  return payload;
}

}  // namespace internal
}  // namespace halo
