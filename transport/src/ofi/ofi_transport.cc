#include "ofi/ofi_transport.h"

#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>

#include "backends.h"
#include "ofi/ofi_address.h"
#include "ofi/ofi_endpoint.h"
#include "ofi/ofi_library.h"
#include "ofi/ofi_memory_region.h"

namespace halo::transport::internal {

StatusOr<std::unique_ptr<Transport>> create_ofi_transport(const TransportConfig& config,
                                                          std::string cluster_secret) {
  auto transport = ofi::OfiTransport::create(config, std::move(cluster_secret));
  if (!transport.ok()) return transport.status();
  return std::unique_ptr<Transport>(std::move(*transport));
}

namespace ofi {
namespace {

// Pre-posted receive buffers. Each holds one whole frame; messages that do not fit go by
// rendezvous, so the pool bounds receive memory at kReceiveBuffers x receive_buffer_bytes_.
constexpr size_t kReceiveBuffers = 64;
constexpr size_t kDefaultReceiveBufferBytes = 64 * 1024;
// Room in a receive buffer beyond the largest AM header: the frame header plus a Hello's
// address or a rendezvous descriptor.
constexpr size_t kFrameOverhead = sizeof(FrameHeader) + kMaxAddressBytes + 64;
// Largest single fi_write/fi_read; larger transfers are split and pipelined.
constexpr uint64_t kMaxChunkBytes = 8ull << 20;
// Largest fi_inject halo attempts (the stack buffer it is assembled in).
constexpr size_t kMaxInjectBytes = 4096;
constexpr size_t kCqBatch = 16;
// Frames one peer may have ahead of a missing earlier one before it is dropped.
constexpr size_t kMaxEarlyFrames = 4096;
// How long a destroyed transport keeps progressing so that its close notices leave.
constexpr auto kShutdownDrain = std::chrono::milliseconds(200);
// How often the shm peer watch looks for regions whose owner died holding their lock.
constexpr auto kShmPeerWatchPeriod = std::chrono::milliseconds(100);

// shm endpoint names must be unique on the machine; every transport of the process draws from
// this counter.
std::atomic<uint64_t> shm_name_counter{0};

struct InfoDeleter {
  void operator()(fi_info* info) const { OfiLibrary::api().freeinfo(info); }
};

constexpr size_t kFlushScratchBytes = 64;

// The fabric objects of a destroyed transport, closed in the order libfabric needs: addresses
// removed first (while every peer region is still mapped), then endpoint, memory, address
// vector, completion queue, and last (by dropping the shared_ptr) domain and fabric.
struct RetiredFabric {
  std::shared_ptr<OfiDomain> domain;
  fid_ep* ep = nullptr;
  fid_av* av = nullptr;
  fid_cq* cq = nullptr;
  std::vector<fi_addr_t> addresses;
  std::vector<fid_mr*> mrs;
  std::unique_ptr<std::byte[]> receive_memory;
  std::unique_ptr<std::byte[]> flush_scratch;
  std::vector<std::unique_ptr<OfiOperation>> operations;

  void remove_addresses() {
    if (av != nullptr && !addresses.empty()) {
      fi_av_remove(av, addresses.data(), addresses.size(), 0);
    }
    addresses.clear();
  }
  void close() {
    remove_addresses();
    if (ep != nullptr) fi_close(&ep->fid);
    for (fid_mr* mr : mrs) fi_close(&mr->fid);
    if (av != nullptr) fi_close(&av->fid);
    if (cq != nullptr) fi_close(&cq->fid);
    ep = nullptr;
    av = nullptr;
    cq = nullptr;
    mrs.clear();
    operations.clear();
    receive_memory.reset();
    flush_scratch.reset();
    domain.reset();
  }
};

// The shm provider maps a peer endpoint of the same process by sharing that endpoint's own
// region pointer (smr_map_to_region), so closing one shm endpoint leaves every other endpoint
// of the process that knew it with a dangling pointer, which its next progress call follows.
// A destroyed shm transport therefore parks its fabric objects here; they are closed when the
// last shm transport of the process is destroyed, when no progress thread runs any more. With
// one transport per process (the normal case) that is at once.
class ShmGraveyard {
 public:
  static void enter() {
    std::lock_guard lock(mu());
    ++live();
  }
  static void leave(RetiredFabric fabric) {
    std::vector<RetiredFabric> to_close;
    {
      std::lock_guard lock(mu());
      parked().push_back(std::move(fabric));
      if (--live() > 0) return;
      to_close.swap(parked());
    }
    for (RetiredFabric& f : to_close) f.remove_addresses();
    for (RetiredFabric& f : to_close) f.close();
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static int& live() {
    static int n = 0;
    return n;
  }
  static std::vector<RetiredFabric>& parked() {
    static std::vector<RetiredFabric> p;
    return p;
  }
};

bool parks_on_close(const OfiDomain& domain) { return domain.provider() == "shm"; }
bool removes_addresses(const OfiDomain& domain) { return domain.provider() != "shm"; }

std::string shm_name_part(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_' || c == '.';
    out.push_back(plain ? c : '_');
  }
  return out.empty() ? "local" : out;
}

}  // namespace

StatusOr<std::unique_ptr<OfiTransport>> OfiTransport::create(const TransportConfig& config,
                                                             std::string cluster_secret) {
  HALO_ASSIGN_OR_RETURN(std::shared_ptr<OfiDomain> domain, OfiDomain::open(config));
  const fi_info& info = domain->info();

  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.size = info.tx_attr->size + info.rx_attr->size + 2 * kReceiveBuffers;
  // A CQ with a wait fd lets an idle progress thread sleep; shm offers none (FI_ENOSYS).
  cq_attr.wait_obj = config.progress_mode == "poll" ? FI_WAIT_NONE : FI_WAIT_FD;
  fid_cq* cq = nullptr;
  int ret = fi_cq_open(domain->domain(), &cq_attr, &cq, nullptr);
  if (ret != 0 && cq_attr.wait_obj != FI_WAIT_NONE) {
    cq_attr.wait_obj = FI_WAIT_NONE;
    ret = fi_cq_open(domain->domain(), &cq_attr, &cq, nullptr);
  }
  if (ret != 0) return fi_status("fi_cq_open", ret).with_context("libfabric " + domain->provider());
  int wait_fd = -1;
  if (cq_attr.wait_obj == FI_WAIT_FD && fi_control(&cq->fid, FI_GETWAIT, &wait_fd) != 0) {
    wait_fd = -1;
  }

  fi_av_attr av_attr{};
  av_attr.type =
      info.domain_attr->av_type == FI_AV_UNSPEC ? FI_AV_TABLE : info.domain_attr->av_type;
  fid_av* av = nullptr;
  ret = fi_av_open(domain->domain(), &av_attr, &av, nullptr);
  if (ret != 0) {
    fi_close(&cq->fid);
    return fi_status("fi_av_open", ret).with_context("libfabric " + domain->provider());
  }
  return std::unique_ptr<OfiTransport>(
      new OfiTransport(config, std::move(cluster_secret), std::move(domain), cq, av, wait_fd));
}

OfiTransport::OfiTransport(const TransportConfig& config, std::string cluster_secret,
                           std::shared_ptr<OfiDomain> domain, fid_cq* cq, fid_av* av, int wait_fd)
    : TransportBase(config, std::move(cluster_secret)),
      domain_(std::move(domain)),
      cq_(cq),
      av_(av),
      wait_fd_(wait_fd) {
  const fi_info& info = domain_->info();
  if (domain_->provider() == "shm") {
    shm_peer_watch_ = std::make_unique<ShmPeerWatch>(kShmPeerWatchPeriod);
    // Regions of halo processes that were killed on this machine (they cannot remove their own).
    ShmPeerWatch::remove_regions_of_dead_owners("halo.");
  }
  const uint64_t max_msg = info.ep_attr->max_msg_size;
  receive_buffer_bytes_ =
      std::max<size_t>(kDefaultReceiveBufferBytes, config.max_am_header_bytes + kFrameOverhead);
  receive_buffer_bytes_ = static_cast<size_t>(std::min<uint64_t>(receive_buffer_bytes_, max_msg));
  inject_bytes_ = std::min<size_t>(info.tx_attr->inject_size, kMaxInjectBytes);
  iov_limit_ = info.tx_attr->iov_limit;
  chunk_bytes_ = std::min<uint64_t>(max_msg, kMaxChunkBytes);
  std::random_device entropy;
  key_random_.seed((static_cast<uint64_t>(entropy()) << 32) ^ entropy() ^
                   static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  if (parks_on_close(*domain_)) ShmGraveyard::enter();
  start();
  domain_->attach([this](std::function<void()> fn) { run_on_progress_thread(std::move(fn)); },
                  [this] { return on_progress_thread(); }, &registered_bytes_);
}

OfiTransport::~OfiTransport() {
  stop();
  shutting_down_ = true;
  deferred_.clear();
  // Close notices and other sends the base issued while stopping may still sit in libfabric;
  // a short drain lets them leave, so peers fail their operations at once.
  const auto deadline = Clock::now() + kShutdownDrain;
  while (operations_posted_ > 0 && Clock::now() < deadline) progress_backend();
  deferred_.clear();
  domain_->detach();

  RetiredFabric retired;
  retired.ep = ep_;
  retired.av = av_;
  retired.cq = cq_;
  for (auto& [raw, entry] : av_by_raw_) {
    if (!entry->removed) retired.addresses.push_back(entry->addr);
  }
  for (auto& op : operations_) {
    for (fid_mr* mr : {op->buffer_mr, op->payload_mr, op->owned_mr}) {
      if (mr != nullptr) retired.mrs.push_back(mr);
    }
  }
  if (receive_mr_ != nullptr) retired.mrs.push_back(receive_mr_);
  if (flush_mr_ != nullptr) retired.mrs.push_back(flush_mr_);
  retired.receive_memory = std::move(receive_memory_);
  retired.flush_scratch = std::move(flush_scratch_);
  retired.operations = std::move(operations_);
  retired.domain = domain_;
  if (parks_on_close(*domain_)) {
    ShmGraveyard::leave(std::move(retired));
  } else if (operations_posted_ > 0) {
    // libfabric still holds operations to a peer that stopped answering (its link went down:
    // no error, no reset, so the provider's socket never drains). Closing the endpoint now
    // makes rxm close that connection; the tcp provider then reports a transfer still queued
    // on it as cancelled with a null context, which rxm's error handler dereferences
    // (libfabric 1.17: rxm_close_conn -> rxm_flush_msg_cq -> rxm_handle_comp_error). Nothing
    // progresses these objects any more, so they are left open, with every buffer the
    // provider may still reference, until the process exits.
    spdlog::warn(
        "ofi transport: destroyed while libfabric still holds {} operation(s) to unreachable "
        "peers; leaving its fabric objects open so that closing them cannot crash the provider",
        operations_posted_);
    static std::mutex abandoned_mu;
    static auto* abandoned = new std::vector<RetiredFabric>();
    std::lock_guard lock(abandoned_mu);
    abandoned->push_back(std::move(retired));
  } else {
    retired.close();
  }
  // Peers killed after the watch last looked at them (or killed just before this process
  // stops) leave their regions too; the last transport of a job sweeps them, so that nothing
  // of halo stays in /dev/shm.
  if (shm_peer_watch_ != nullptr) {
    shm_peer_watch_.reset();
    ShmPeerWatch::remove_regions_of_dead_owners("halo.");
  }
}

std::string OfiTransport::raw_address() const {
  std::lock_guard lock(address_mu_);
  return self_raw_;
}

// -------------------------------------------------------------------------------------------
// Endpoint and addresses

Status OfiTransport::open_endpoint(const std::string& source) {
  const fi_info& base = domain_->info();
  std::unique_ptr<fi_info, InfoDeleter> info(OfiLibrary::api().dupinfo(&base));
  if (!info) return resource_exhausted_error("fi_dupinfo: out of memory");
  const std::string where =
      source.empty()
          ? std::string("the provider's default address")
          : format_address(domain_->scheme(), base.addr_format,
                           {reinterpret_cast<const std::byte*>(source.data()), source.size()});
  if (!source.empty()) {
    std::free(info->src_addr);
    info->src_addr = std::malloc(source.size());
    if (info->src_addr == nullptr) return resource_exhausted_error("out of memory");
    std::memcpy(info->src_addr, source.data(), source.size());
    info->src_addrlen = source.size();
    if (is_sockaddr_format(base.addr_format)) {
      sockaddr_storage ss{};
      std::memcpy(&ss, source.data(), std::min(source.size(), sizeof(ss)));
      info->addr_format = ss.ss_family == AF_INET6 ? FI_SOCKADDR_IN6 : FI_SOCKADDR_IN;
    }
  }
  const auto fail = [&](fid_ep* ep, std::string_view call, int ret) {
    if (ep != nullptr) fi_close(&ep->fid);
    return fi_status(call, ret).with_context(
        str_cat("opening the libfabric ", domain_->provider(), " endpoint at ", where));
  };
  fid_ep* ep = nullptr;
  int ret = fi_endpoint(domain_->domain(), info.get(), &ep, nullptr);
  if (ret != 0) return fail(nullptr, "fi_endpoint", ret);
  if ((ret = fi_ep_bind(ep, &av_->fid, 0)) != 0) return fail(ep, "fi_ep_bind(av)", ret);
  if ((ret = fi_ep_bind(ep, &cq_->fid, FI_TRANSMIT | FI_RECV)) != 0) {
    return fail(ep, "fi_ep_bind(cq)", ret);
  }
  if ((ret = fi_enable(ep)) != 0) return fail(ep, "fi_enable", ret);
  size_t name_len = 0;
  fi_getname(&ep->fid, nullptr, &name_len);
  std::string name(name_len, '\0');
  if ((ret = fi_getname(&ep->fid, name.data(), &name_len)) != 0) {
    return fail(ep, "fi_getname", ret);
  }
  name.resize(name_len);
  ep_ = ep;
  {
    std::lock_guard lock(address_mu_);
    self_raw_ = std::move(name);
  }

  receive_memory_.reset(new std::byte[kReceiveBuffers * receive_buffer_bytes_]);
  flush_scratch_.reset(new std::byte[kFlushScratchBytes]);
  void* receive_desc = nullptr;
  if (domain_->needs_local_desc() || domain_->mr_endpoint()) {
    auto mr = domain_->register_buffer(receive_memory_.get(),
                                       kReceiveBuffers * receive_buffer_bytes_, ep_);
    if (!mr.ok()) return mr.status().with_context("registering receive buffers");
    receive_mr_ = *mr;
    receive_desc = fi_mr_desc(receive_mr_);
    auto scratch = domain_->register_buffer(flush_scratch_.get(), kFlushScratchBytes, ep_);
    if (!scratch.ok()) return scratch.status().with_context("registering the flush buffer");
    flush_mr_ = *scratch;
    flush_desc_ = fi_mr_desc(flush_mr_);
  }
  receive_buffers_.resize(kReceiveBuffers);
  for (size_t i = 0; i < kReceiveBuffers; ++i) {
    ReceiveBuffer& buffer = receive_buffers_[i];
    buffer.context.kind = ContextKind::kReceive;
    buffer.context.owner = &buffer;
    buffer.data = receive_memory_.get() + i * receive_buffer_bytes_;
    buffer.desc = receive_desc;
    HALO_RETURN_IF_ERROR(post_receive(buffer));
  }
  return Status();
}

Status OfiTransport::post_receive(ReceiveBuffer& buffer) {
  int ret = fi_recv(ep_, buffer.data, receive_buffer_bytes_, buffer.desc, FI_ADDR_UNSPEC,
                    &buffer.context.fi);
  if (ret == 0) {
    buffer.context.busy = true;
    return Status();
  }
  if (ret == -FI_EAGAIN) {
    repost_.push_back(&buffer);
    return Status();
  }
  return fi_status("fi_recv", ret);
}

StatusOr<std::string> OfiTransport::do_listen(const std::string& host, uint16_t port) {
  const uint32_t format = domain_->info().addr_format;
  std::string source;
  if (is_sockaddr_format(format)) {
    HALO_ASSIGN_OR_RETURN(source, resolve_socket_address(host, port));
  } else if (format == FI_ADDR_STR) {
    // shm has no ports: the listener's name is derived from host and port, or made unique
    // from the process id when the port is 0.
    std::string name = "halo." + shm_name_part(host) + ".";
    name += port != 0 ? std::to_string(port)
                      : std::to_string(::getpid()) + "." +
                            std::to_string(shm_name_counter.fetch_add(1) + 1);
    source = name + '\0';
  }
  if (ep_ != nullptr) {
    bool compatible = true;
    if (is_sockaddr_format(format)) {
      compatible = socket_host(self_raw_) == socket_host(source) &&
                   (port == 0 || port == socket_port(self_raw_));
    } else if (format == FI_ADDR_STR) {
      compatible = port == 0 || self_raw_ == source;
    }
    if (!compatible) {
      return failed_precondition_error(str_cat(
          "the libfabric endpoint is already open at ",
          format_address(domain_->scheme(), format,
                         {reinterpret_cast<const std::byte*>(self_raw_.data()), self_raw_.size()}),
          " (opened by an earlier connect); call listen() before connect(), or listen on the "
          "same host with port 0"));
    }
  } else {
    HALO_RETURN_IF_ERROR(open_endpoint(source));
  }
  return format_address(domain_->scheme(), format,
                        {reinterpret_cast<const std::byte*>(self_raw_.data()), self_raw_.size()});
}

void OfiTransport::do_connect(const std::string& address,
                              std::function<void(StatusOr<std::shared_ptr<EndpointBase>>)> done) {
  const uint32_t format = domain_->info().addr_format;
  auto raw = parse_address(address, domain_->scheme(), format);
  if (!raw.ok()) return done(raw.status());
  if (ep_ == nullptr) {
    std::string source;
    if (is_sockaddr_format(format)) {
      auto local = source_address_for(*raw, config().net_interface);
      if (!local.ok()) return done(local.status());
      source = *std::move(local);
    } else if (format == FI_ADDR_STR) {
      source = "halo.c." + std::to_string(::getpid()) + "." +
               std::to_string(shm_name_counter.fetch_add(1) + 1) + '\0';
    }
    Status opened = open_endpoint(source);
    if (!opened.ok()) return done(opened);
  }
  auto av = acquire_av(*raw);
  if (!av.ok()) return done(av.status());
  auto ep = std::make_shared<OfiEndpoint>(*this, /*outbound=*/true, address, *av, new_conn_key(),
                                          /*peer_conn_key=*/0);
  connections_[ep->conn_key_] = ep.get();
  done(std::shared_ptr<EndpointBase>(std::move(ep)));
}

StatusOr<AvEntry*> OfiTransport::acquire_av(const std::string& raw) {
  auto it = av_by_raw_.find(raw);
  if (it != av_by_raw_.end()) {
    ++it->second->endpoints;
    return it->second.get();
  }
  auto entry = std::make_unique<AvEntry>();
  entry->raw = raw;
  int n = fi_av_insert(av_, raw.data(), 1, &entry->addr, 0, nullptr);
  if (n != 1) {
    return unavailable_error(
        str_cat("fi_av_insert refused the peer address ",
                format_address(domain_->scheme(), domain_->info().addr_format,
                               {reinterpret_cast<const std::byte*>(raw.data()), raw.size()}),
                " (", n, ")"));
  }
  entry->endpoints = 1;
  if (shm_peer_watch_ != nullptr) shm_peer_watch_->watch(std::string(raw.c_str()));
  AvEntry* out = entry.get();
  av_by_raw_.emplace(raw, std::move(entry));
  return out;
}

void OfiTransport::release_av(AvEntry* av, bool force) {
  --av->endpoints;
  maybe_remove_av(av, force);
}

void OfiTransport::maybe_remove_av(AvEntry* av, bool force) {
  if (av->removed) {
    if (av->operations == 0) {
      std::erase_if(retired_av_, [av](const auto& entry) { return entry.get() == av; });
    }
    return;
  }
  if (av->endpoints > 0 || (av->operations > 0 && !force)) return;
  // shm unmaps the peer's region on removal, yet still follows it for responses to commands
  // it sent there earlier (returning inject buffers): its addresses stay until the transport
  // closes, and a new connection to the same peer reuses the entry.
  if (!removes_addresses(*domain_)) return;
  // Removing the address lets the provider drop its connection to the peer (rxm closes it).
  fi_av_remove(av_, &av->addr, 1, 0);
  av->removed = true;
  auto it = av_by_raw_.find(av->raw);
  if (it == av_by_raw_.end()) return;
  if (av->operations > 0) retired_av_.push_back(std::move(it->second));
  av_by_raw_.erase(it);
}

uint64_t OfiTransport::new_conn_key() {
  for (;;) {
    const uint64_t key = key_random_();
    if (key != 0 && !connections_.contains(key)) return key;
  }
}

// -------------------------------------------------------------------------------------------
// Memory

StatusOr<std::unique_ptr<MemoryRegion>> OfiTransport::register_memory(void* data, size_t size) {
  if (data == nullptr && size > 0) return invalid_argument_error("register_memory: null buffer");
  auto* bytes = static_cast<std::byte*>(data);
  if (size == 0)
    return std::unique_ptr<MemoryRegion>(new OfiMemoryRegion(domain_, bytes, 0, nullptr));
  auto reg = [this, data, size]() -> StatusOr<fid_mr*> {
    if (domain_->mr_endpoint() && ep_ == nullptr) {
      return failed_precondition_error(
          str_cat("libfabric provider ", domain_->provider(),
                  " binds memory to an endpoint: call listen() or connect() before "
                  "register_memory()"));
    }
    return domain_->register_buffer(data, size, ep_);
  };
  std::optional<StatusOr<fid_mr*>> mr;
  if (on_progress_thread() || (domain_->thread_safe() && !domain_->mr_endpoint())) {
    mr.emplace(reg());
  } else {
    std::promise<StatusOr<fid_mr*>> promise;
    auto result = promise.get_future();
    run_on_progress_thread([&] { promise.set_value(reg()); });
    mr.emplace(result.get());
  }
  if (!mr->ok()) {
    return mr->status().with_context(str_cat("registering ", size, " bytes with libfabric"));
  }
  return std::unique_ptr<MemoryRegion>(new OfiMemoryRegion(domain_, bytes, size, **mr));
}

// -------------------------------------------------------------------------------------------
// Progress

unsigned OfiTransport::progress_backend() {
  unsigned handled = 0;
  fi_cq_data_entry entries[kCqBatch];
  for (int round = 0; round < 8; ++round) {
    const ssize_t n = fi_cq_read(cq_, entries, kCqBatch);
    if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) dispatch(entries[i]);
      handled += static_cast<unsigned>(n);
      if (static_cast<size_t>(n) < kCqBatch) break;
      continue;
    }
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry error{};
      if (fi_cq_readerr(cq_, &error, 0) == 1) {
        dispatch_error(error);
        ++handled;
        continue;
      }
    }
    break;
  }
  if (!repost_.empty() && !shutting_down_) {
    std::vector<ReceiveBuffer*> again;
    again.swap(repost_);
    for (ReceiveBuffer* buffer : again) {
      Status s = post_receive(*buffer);
      if (!s.ok())
        spdlog::error("ofi transport: cannot repost a receive buffer: {}", s.to_string());
    }
  }
  if (!retry_.empty()) retry_blocked();
  run_deferred();
  return handled;
}

bool OfiTransport::arm_backend() {
  if (!retry_.empty() || !repost_.empty() || !deferred_.empty()) return false;
  if (wait_fd_ < 0) return true;
  fid* fids[1] = {&cq_->fid};
  return fi_trywait(domain_->fabric(), fids, 1) == FI_SUCCESS;
}

void OfiTransport::retry_later(OfiEndpoint& ep) {
  if (ep.awaiting_retry_) return;
  ep.awaiting_retry_ = true;
  retry_.push_back(std::static_pointer_cast<OfiEndpoint>(ep.shared_from_this()));
}

unsigned OfiTransport::retry_blocked() {
  std::vector<std::shared_ptr<OfiEndpoint>> blocked;
  blocked.swap(retry_);
  for (auto& ep : blocked) {
    ep->awaiting_retry_ = false;
    if (!ep->closed_) ep->pump();
  }
  return 0;
}

void OfiTransport::dispatch(const fi_cq_data_entry& entry) {
  auto* context = static_cast<OfiContext*>(entry.op_context);
  if (context == nullptr) return;
  context->busy = false;
  if (context->kind == ContextKind::kReceive) {
    handle_receive(*static_cast<ReceiveBuffer*>(context->owner), entry.len);
  } else {
    complete_context(*context, Status());
  }
  if (!deferred_.empty()) run_deferred();
}

void OfiTransport::dispatch_error(const fi_cq_err_entry& entry) {
  auto* context = static_cast<OfiContext*>(entry.op_context);
  char provider_text[256] = {};
  const char* detail =
      fi_cq_strerror(cq_, entry.prov_errno, entry.err_data, provider_text, sizeof(provider_text));
  Status status = fi_status("libfabric operation", -entry.err)
                      .with_context(str_cat("provider says: ", detail ? detail : "nothing more"));
  if (context == nullptr) {
    spdlog::warn("ofi transport: completion error without a context: {}", status.to_string());
    return;
  }
  context->busy = false;
  if (context->kind == ContextKind::kReceive) {
    auto& buffer = *static_cast<ReceiveBuffer*>(context->owner);
    if (shutting_down_ || entry.err == FI_ECANCELED) return;
    // A message larger than a receive buffer (FI_ETRUNC) is not one halo sent.
    drop_frame(str_cat("receive failed: ", status.to_string()));
    Status s = post_receive(buffer);
    if (!s.ok()) spdlog::error("ofi transport: cannot repost a receive buffer: {}", s.to_string());
    return;
  }
  complete_context(*context, status);
  if (!deferred_.empty()) run_deferred();
}

void OfiTransport::drop_frame(std::string_view why) {
  const uint64_t n = frames_dropped_.fetch_add(1) + 1;
  // Logged sparingly: a flood of garbage must not become a flood of log lines.
  if ((n & (n - 1)) == 0) spdlog::warn("ofi transport: dropped frame #{}: {}", n, why);
}

void OfiTransport::handle_receive(ReceiveBuffer& buffer, size_t length) {
  if (shutting_down_) return;
  const ParsedFrame frame = parse_frame({buffer.data, std::min(length, receive_buffer_bytes_)});
  if (frame.error != FrameError::kNone) {
    drop_frame(frame.error == FrameError::kTooShort   ? "shorter than a frame header"
               : frame.error == FrameError::kBadMagic ? "not a halo frame (magic or version)"
               : frame.error == FrameError::kBadKind  ? "unknown frame kind"
                                                      : "lengths disagree with the bytes received");
  } else if (static_cast<FrameKind>(frame.header.kind) == FrameKind::kHello) {
    handle_hello(frame);
  } else {
    const FrameHeader& h = frame.header;
    auto it = connections_.find(h.dst_conn);
    OfiEndpoint* ep = it == connections_.end() ? nullptr : it->second;
    if (ep != nullptr && ep->peer_conn_key_ != h.src_conn) {
      if (ep->peer_conn_key_ == 0 && ep->outbound() && h.src_conn != 0) {
        ep->peer_conn_key_ = h.src_conn;  // The peer's first frame (its Challenge).
      } else {
        ep = nullptr;
      }
    }
    if (ep == nullptr) {
      drop_frame("names no connection of this transport (stale or forged)");
    } else {
      take_in_order(*ep, frame, {buffer.data, std::min(length, receive_buffer_bytes_)});
    }
  }
  if (shutting_down_) return;
  Status s = post_receive(buffer);
  if (!s.ok()) spdlog::error("ofi transport: cannot repost a receive buffer: {}", s.to_string());
}

void OfiTransport::take_in_order(OfiEndpoint& ep, const ParsedFrame& frame,
                                 std::span<const std::byte> bytes) {
  const uint64_t seq = frame.header.seq;
  if (ep.next_receive_seq_ == 0) ep.next_receive_seq_ = seq;  // The peer's first frame.
  if (seq != ep.next_receive_seq_) {
    if (seq < ep.next_receive_seq_) return drop_frame("repeats an earlier sequence number");
    if (ep.early_frames_.size() >= kMaxEarlyFrames) {
      return reject(ep, internal_error("too many frames arrived ahead of an earlier one"));
    }
    ep.early_frames_.emplace(seq, std::vector<std::byte>(bytes.begin(), bytes.end()));
    return;
  }
  ++ep.next_receive_seq_;
  if (ep.early_frames_.empty()) return take_frame(ep, frame);
  auto keep = ep.shared_from_this();  // Handlers may close the endpoint meanwhile.
  take_frame(ep, frame);
  while (!ep.closed_) {
    auto it = ep.early_frames_.find(ep.next_receive_seq_);
    if (it == ep.early_frames_.end()) break;
    std::vector<std::byte> held = std::move(it->second);
    ep.early_frames_.erase(it);
    ++ep.next_receive_seq_;
    take_frame(ep, parse_frame(held));
  }
}

void OfiTransport::take_frame(OfiEndpoint& ep, const ParsedFrame& frame) {
  const FrameHeader& h = frame.header;
  if (h.header_len > config().max_am_header_bytes ||
      h.payload_len > config().max_am_payload_bytes) {
    return reject(
        ep, invalid_argument_error(
                str_cat("peer sent a message of ", h.header_len, " header and ", h.payload_len,
                        " payload bytes, over max_am_header_bytes (", config().max_am_header_bytes,
                        ") or max_am_payload_bytes (", config().max_am_payload_bytes, ")")));
  }
  switch (static_cast<FrameKind>(h.kind)) {
    case FrameKind::kEager:
      ep.hold_or_deliver(h.am_id, frame.am_header, frame.payload);
      break;
    case FrameKind::kRendezvous:
      handle_rendezvous(ep, frame);
      break;
    case FrameKind::kRendezvousDone:
      handle_rendezvous_done(ep, frame);
      break;
    case FrameKind::kHello:
      drop_frame("hello on an existing connection");
      break;
  }
}

void OfiTransport::handle_hello(const ParsedFrame& frame) {
  const FrameHeader& h = frame.header;
  if (h.am_id != kAmHello || h.src_conn == 0) {
    return drop_frame("hello frame without a handshake hello");
  }
  if (h.header_len > config().max_am_header_bytes ||
      h.payload_len > config().max_am_payload_bytes) {
    return drop_frame("hello frame over the message size limits");
  }
  if (!valid_raw_address(domain_->info().addr_format, frame.extra, self_raw_.size())) {
    return drop_frame("hello frame with a malformed sender address");
  }
  const std::string raw(reinterpret_cast<const char*>(frame.extra.data()), frame.extra.size());
  auto av = acquire_av(raw);
  if (!av.ok()) return drop_frame(av.status().to_string());
  auto ep = std::make_shared<OfiEndpoint>(
      *this, /*outbound=*/false,
      format_address(domain_->scheme(), domain_->info().addr_format, frame.extra), *av,
      new_conn_key(), h.src_conn);
  ep->next_receive_seq_ = h.seq + 1;
  connections_[ep->conn_key_] = ep.get();
  OfiEndpoint& endpoint = *ep;
  on_inbound(std::move(ep));
  on_am(endpoint, h.am_id, frame.am_header, frame.payload);
}

void OfiTransport::handle_rendezvous(OfiEndpoint& ep, const ParsedFrame& frame) {
  RendezvousDescriptor descriptor;
  std::memcpy(&descriptor, frame.extra.data(), sizeof(descriptor));
  const uint64_t length = frame.header.payload_len;
  std::unique_ptr<std::byte[]> buffer(new (std::nothrow) std::byte[std::max<uint64_t>(length, 1)]);
  if (!buffer) {
    return reject(ep, resource_exhausted_error(str_cat("cannot allocate ", length,
                                                       " bytes for a message from the peer")));
  }
  fid_mr* mr = nullptr;
  if (domain_->needs_local_desc() && length > 0) {
    auto registered = domain_->register_buffer(buffer.get(), length, ep_);
    if (!registered.ok()) return reject(ep, registered.status());
    mr = *registered;
  }
  on_heard_from(ep);
  InboundMessage& slot = ep.inbound_.emplace_back();
  slot.am_id = frame.header.am_id;
  slot.header.assign(frame.am_header.begin(), frame.am_header.end());
  slot.payload_len = length;
  OfiOperation* op = acquire(OpKind::kRendezvousRead, ep);
  op->owned = std::move(buffer);
  op->owned_mr = mr;
  op->local = op->owned.get();
  op->local_desc = mr != nullptr ? fi_mr_desc(mr) : nullptr;
  op->remote_target = descriptor.addr;
  op->key = descriptor.key;
  op->length = length;
  op->rendezvous_id = descriptor.request_id;
  op->slot = &slot;
  op->queued = true;
  ep.rma_queue_.push_back(op);
  ep.pump_rma();
}

void OfiTransport::handle_rendezvous_done(OfiEndpoint& ep, const ParsedFrame& frame) {
  RendezvousDone message;
  std::memcpy(&message, frame.extra.data(), sizeof(message));
  auto it = ep.rendezvous_sends_.find(message.request_id);
  if (it == ep.rendezvous_sends_.end()) {
    return reject(ep, invalid_argument_error("peer acknowledged a message it was never sent"));
  }
  on_heard_from(ep);
  OfiOperation* op = it->second;
  if (message.ok != 1 && op->status.ok()) {
    op->status =
        data_loss_error(str_cat("peer ", ep.peer_address(), " could not read the message payload"));
  }
  op->awaiting_done = false;
  if (op->inflight == 0) finish_operation(op);
}

void OfiTransport::complete_context(OfiContext& context, const Status& status) {
  auto* op = static_cast<OfiOperation*>(context.owner);
  AvEntry* av = op->av;
  --op->inflight;
  --operations_posted_;
  --av->operations;
  if (!status.ok() && op->status.ok()) op->status = status;
  if (op->ep == nullptr) {  // Orphaned: its endpoint closed; nobody waits for it.
    if (op->inflight == 0) release(op);
  } else {
    OfiEndpoint& ep = *op->ep;
    bool finished = false;
    switch (op->kind) {
      case OpKind::kSend:
      case OpKind::kFlush:
        finished = true;
        break;
      case OpKind::kRendezvousSend:
        if (!op->status.ok()) op->awaiting_done = false;
        finished = !op->awaiting_done;
        break;
      case OpKind::kPut:
      case OpKind::kGet:
      case OpKind::kRendezvousRead:
        if (status.ok() && op->kind != OpKind::kPut) on_heard_from(ep);
        finished = op->inflight == 0 && !op->queued;
        break;
    }
    if (finished) finish_operation(op);
    if (!ep.closed_) ep.pump();
  }
  if (av->operations == 0 && av->endpoints == 0) maybe_remove_av(av, /*force=*/false);
}

void OfiTransport::finish_operation(OfiOperation* op) {
  OfiEndpoint& ep = *op->ep;
  ep.unlink(op);
  Status status = std::move(op->status);
  Completion done = std::move(op->done);
  const OpKind kind = op->kind;
  switch (kind) {
    case OpKind::kPut:
      if (op->started) --ep.puts_in_flight_;
      break;
    case OpKind::kRendezvousSend:
      ep.rendezvous_sends_.erase(op->rendezvous_id);
      break;
    case OpKind::kRendezvousRead:
      if (status.ok() && op->slot != nullptr) {
        op->slot->payload = std::move(op->owned);
        op->slot->ready = true;
        RendezvousDone message{op->rendezvous_id, 1, 0};
        ep.send_frame(static_cast<uint8_t>(FrameKind::kRendezvousDone), 0,
                      {reinterpret_cast<const std::byte*>(&message), sizeof(message)}, {}, {},
                      nullptr);
        deferred_.push_back(
            {nullptr, Status(), std::static_pointer_cast<OfiEndpoint>(ep.shared_from_this())});
      }
      break;
    default:
      break;
  }
  release(op);
  if (done) defer(std::move(done), status);
  if (!status.ok()) {
    if (status.code() == StatusCode::kUnavailable) {
      defer_failure(ep, status);
    } else if (kind == OpKind::kRendezvousRead) {
      // The peer described a payload that cannot be read: its descriptor was bad.
      defer_failure(ep, status.with_context("reading a message payload from the peer"));
    }
  }
}

// -------------------------------------------------------------------------------------------
// Operations and posting

OfiOperation* OfiTransport::acquire(OpKind kind, OfiEndpoint& ep) {
  OfiOperation* op;
  if (free_operations_.empty()) {
    operations_.push_back(std::make_unique<OfiOperation>());
    op = operations_.back().get();
    for (OfiContext& context : op->contexts) context.owner = op;
  } else {
    op = free_operations_.back();
    free_operations_.pop_back();
  }
  op->kind = kind;
  op->ep = &ep;
  op->av = ep.av_;
  ep.link(op);
  return op;
}

void OfiTransport::release(OfiOperation* op) {
  if (op->payload_mr != nullptr) {
    fi_close(&op->payload_mr->fid);
    op->payload_mr = nullptr;
  }
  if (op->owned_mr != nullptr) {
    fi_close(&op->owned_mr->fid);
    op->owned_mr = nullptr;
  }
  op->owned.reset();
  op->done = nullptr;
  op->status = Status();
  op->ep = nullptr;
  op->av = nullptr;
  op->prev = op->next = nullptr;
  op->inflight = 0;
  op->queued = false;
  op->frame_bytes = 0;
  op->payload = {};
  op->rendezvous_id = 0;
  op->awaiting_done = false;
  op->local = nullptr;
  op->local_desc = nullptr;
  op->remote_target = op->key = op->length = op->issued = 0;
  op->started = false;
  op->slot = nullptr;
  free_operations_.push_back(op);
}

Status OfiTransport::prepare_send_buffer(OfiOperation& op, size_t size) {
  // The buffer only grows, so steady traffic reuses it without allocating or zero-filling.
  if (op.buffer.size() < size) op.buffer.resize(std::max<size_t>(size, 256));
  if (!domain_->needs_local_desc()) return Status();
  if (op.buffer_mr != nullptr && op.buffer_mr_base == op.buffer.data() &&
      op.buffer_mr_size >= size) {
    return Status();
  }
  if (op.buffer_mr != nullptr) fi_close(&op.buffer_mr->fid);
  op.buffer_mr = nullptr;
  HALO_ASSIGN_OR_RETURN(op.buffer_mr,
                        domain_->register_buffer(op.buffer.data(), op.buffer.size(), ep_));
  op.buffer_mr_base = op.buffer.data();
  op.buffer_mr_size = op.buffer.size();
  return Status();
}

int OfiTransport::post_send(OfiOperation& op) {
  OfiContext& context = op.contexts[0];
  void* desc[2] = {op.buffer_mr != nullptr ? fi_mr_desc(op.buffer_mr) : nullptr, nullptr};
  int ret;
  if (op.payload.empty()) {
    ret = static_cast<int>(
        fi_send(ep_, op.buffer.data(), op.frame_bytes, desc[0], op.av->addr, &context.fi));
  } else {
    iovec iov[2] = {{op.buffer.data(), op.frame_bytes},
                    {const_cast<std::byte*>(op.payload.data()), op.payload.size()}};
    ret = static_cast<int>(fi_sendv(ep_, iov, desc, 2, op.av->addr, &context.fi));
  }
  if (ret == 0) {
    context.busy = true;
    ++op.inflight;
    ++operations_posted_;
    ++op.av->operations;
  }
  return ret;
}

int OfiTransport::post_rma_chunk(OfiOperation& op) {
  OfiContext* context = nullptr;
  for (OfiContext& c : op.contexts) {
    if (!c.busy) {
      context = &c;
      break;
    }
  }
  if (context == nullptr) return -FI_EAGAIN;
  const uint64_t length = std::min<uint64_t>(chunk_bytes_, op.length - op.issued);
  std::byte* local = op.local + op.issued;
  const uint64_t target = op.remote_target + op.issued;
  const int ret = static_cast<int>(
      op.kind == OpKind::kPut
          ? fi_write(ep_, local, length, op.local_desc, op.av->addr, target, op.key, &context->fi)
          : fi_read(ep_, local, length, op.local_desc, op.av->addr, target, op.key, &context->fi));
  if (ret == 0) {
    context->busy = true;
    context->bytes = length;
    op.issued += length;
    ++op.inflight;
    ++operations_posted_;
    ++op.av->operations;
  }
  return ret;
}

int OfiTransport::post_flush_read(OfiOperation& op, uint64_t target, uint64_t key) {
  OfiContext& context = op.contexts[0];
  const int ret = static_cast<int>(
      fi_read(ep_, flush_scratch_.get(), 1, flush_desc_, op.av->addr, target, key, &context.fi));
  if (ret == 0) {
    context.busy = true;
    ++op.inflight;
    ++operations_posted_;
    ++op.av->operations;
  }
  return ret;
}

// -------------------------------------------------------------------------------------------
// Deferred calls

void OfiTransport::defer(Completion done, Status status) {
  deferred_.push_back({std::move(done), std::move(status), nullptr});
}

void OfiTransport::defer_failure(OfiEndpoint& ep, Status why) {
  deferred_.push_back(
      {nullptr, std::move(why), std::static_pointer_cast<OfiEndpoint>(ep.shared_from_this())});
}

void OfiTransport::run_deferred() {
  if (running_deferred_) return;  // The outer call picks up whatever is added meanwhile.
  running_deferred_ = true;
  while (!deferred_.empty()) {
    running_.swap(deferred_);
    for (Deferred& d : running_) {
      if (d.done) {
        d.done(std::move(d.status));
      } else if (d.failed && !d.failed->closed_) {
        if (d.status.ok()) {
          d.failed->deliver_ready();  // A rendezvous payload arrived.
        } else {
          on_endpoint_error(*d.failed, d.status);
        }
      }
    }
    running_.clear();
  }
  running_deferred_ = false;
}

void OfiTransport::deliver(OfiEndpoint& ep, uint16_t am_id, std::span<const std::byte> header,
                           std::span<const std::byte> payload) {
  on_am(ep, am_id, header, payload);
}

}  // namespace ofi
}  // namespace halo::transport::internal
