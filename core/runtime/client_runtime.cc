#include "core/runtime/client_runtime.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <utility>

#include "halo/base/logging.h"

namespace halo::internal {
namespace {

using namespace std::chrono_literals;

// The RPC timeout for a request the node answers by `timeout` itself: a margin more, or a day
// for "for ever".
std::chrono::milliseconds call_timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) return std::chrono::hours(24);
  return timeout + 5s;
}

// One reply, waited for by the calling thread: spins for a few microseconds (a store call on
// the same machine takes about that), then sleeps on the atomic.
template <typename Resp>
struct Reply {
  std::atomic<uint32_t> ready{0};
  StatusOr<Resp> result{internal_error("no reply")};

  void set(StatusOr<Resp> r) {
    result = std::move(r);
    ready.store(1, std::memory_order_release);
    ready.notify_one();
  }
  StatusOr<Resp> take() {
    for (int i = 0; i < 2000 && ready.load(std::memory_order_acquire) == 0; ++i) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    ready.wait(0, std::memory_order_acquire);
    return std::move(result);
  }
};

objstore::proto::ObjectRefProto ref_proto(const RefState& ref) {
  objstore::proto::ObjectRefProto p;
  p.set_object_id(ref.id().binary());
  p.set_owner_address(ref.owner_address());
  return p;
}

}  // namespace

template <typename Req, typename Resp>
StatusOr<Resp> ClientRuntime::call(const char* method, const Req& request,
                                   std::chrono::milliseconds timeout) {
  auto reply = std::make_shared<Reply<Resp>>();
  rpc_->client().call<Req, Resp>(node_, method, request, timeout,
                                 [reply](StatusOr<Resp> r) { reply->set(std::move(r)); });
  return reply->take();
}

StatusOr<std::unique_ptr<ClientRuntime>> ClientRuntime::connect(ClientOptions options) {
  auto rt = std::unique_ptr<ClientRuntime>(new ClientRuntime(std::move(options)));
  HALO_ASSIGN_OR_RETURN(rt->transport_,
                        transport::Transport::create(rt->options_.transport, rt->options_.secret));
  HALO_ASSIGN_OR_RETURN(rt->rpc_, transport::RpcNode::create(*rt->transport_));
  auto node = rt->transport_->connect(rt->options_.node_address, rt->options_.connect_timeout);
  if (!node.ok()) {
    return node.status().with_context(
        str_cat("connecting to the node daemon at ", rt->options_.node_address));
  }
  rt->node_ = *node;
  objstore::proto::StoreConnectRequest request;
  request.set_pid(::getpid());
  request.set_client_name("driver");
  HALO_ASSIGN_OR_RETURN(
      auto connected,
      (rt->call<objstore::proto::StoreConnectRequest, objstore::proto::StoreConnectResponse>(
          "store.connect", request, 10s)));
  auto segment = objstore::ShmSegment::attach(connected.segment_owner_pid(), connected.segment_fd(),
                                              connected.segment_size());
  if (!segment.ok()) {
    return segment.status().with_context(
        str_cat("mapping the object store of the node daemon at ", rt->options_.node_address,
                " (it must run on this machine, as the same user)"));
  }
  rt->segment_ = std::move(*segment);
  rt->node_address_ = connected.node_address();
  rt->node_id_hex_ = internal_ids::to_hex(
      reinterpret_cast<const uint8_t*>(connected.node_id().data()), connected.node_id().size());
  rt->max_inline_bytes_ = connected.max_inline_bytes();
  return rt;
}

ClientRuntime::~ClientRuntime() {
  // The node drops this client's references and pins when the connection goes.
  if (node_) node_->close();
  rpc_.reset();
  transport_.reset();
}

StatusOr<std::shared_ptr<RefState>> ClientRuntime::put(
    size_t size, const std::function<void(std::span<std::byte>)>& write, const PutParams& params) {
  const ObjectId id = ObjectId::random();
  const std::chrono::milliseconds timeout = params.timeout.value_or(options_.put_timeout);
  if (size <= max_inline_bytes_) {
    objstore::proto::PutInlineRequest request;
    request.set_object_id(id.binary());
    request.set_timeout_ms(timeout.count());
    std::string* data = request.mutable_data();
    data->resize(size);
    write(std::span<std::byte>(reinterpret_cast<std::byte*>(data->data()), size));
    HALO_RETURN_IF_ERROR(
        (call<objstore::proto::PutInlineRequest, objstore::proto::PutInlineResponse>(
             "store.put_inline", request, call_timeout(timeout)))
            .status());
  } else {
    objstore::proto::CreateRequest create;
    create.set_object_id(id.binary());
    create.set_size(size);
    create.set_timeout_ms(timeout.count());
    HALO_ASSIGN_OR_RETURN(auto created,
                          (call<objstore::proto::CreateRequest, objstore::proto::CreateResponse>(
                              "store.create", create, call_timeout(timeout))));
    if (created.offset() > segment_->size() || size > segment_->size() - created.offset()) {
      return internal_error(str_cat("the node placed object ", id.to_hex(), " (", size,
                                    " bytes) at offset ", created.offset(),
                                    ", outside its segment of ", segment_->size()));
    }
    write(std::span<std::byte>(segment_->data() + created.offset(), size));
    // The seal is not waited for: nothing can refuse it (this client created the object and
    // holds its connection), and whoever reads the object meanwhile waits at the node for the
    // seal. Messages on the connection stay in order, so this client's later calls come after
    // it. If the connection fails first, the node aborts the object as its creator's.
    objstore::proto::SealRequest seal;
    seal.set_object_id(id.binary());
    rpc_->client().call<objstore::proto::SealRequest, objstore::proto::SealResponse>(
        node_, "store.seal", seal, 30s, [id](StatusOr<objstore::proto::SealResponse> sealed) {
          if (!sealed.ok()) log::warn("sealing object {} failed: {}", id, sealed.status());
        });
  }
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[id];
    e.refs += 1;
    e.owner = node_address_;
  }
  return std::make_shared<RefState>(id, node_address_);
}

StatusOr<std::vector<PinnedObject>> ClientRuntime::get(const std::vector<const RefState*>& refs,
                                                       std::chrono::milliseconds timeout) {
  std::vector<PinnedObject> out(refs.size());
  objstore::proto::GetRequest request;
  std::vector<size_t> missing;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < refs.size(); ++i) {
      auto it = entries_.find(refs[i]->id());
      if (it != entries_.end()) {
        if (auto pin = it->second.pin.lock()) {
          out[i] = {it->second.bytes, std::move(pin)};
          continue;
        }
      }
      missing.push_back(i);
      *request.add_refs() = ref_proto(*refs[i]);
    }
  }
  if (missing.empty()) return out;
  request.set_timeout_ms(timeout.count() < 0 ? 0 : std::max<int64_t>(timeout.count(), 1));
  HALO_ASSIGN_OR_RETURN(auto response,
                        (call<objstore::proto::GetRequest, objstore::proto::GetResponse>(
                            "store.get", request, call_timeout(timeout))));
  if (response.objects_size() != static_cast<int>(missing.size())) {
    return internal_error(str_cat("the node answered a get of ", missing.size(), " objects with ",
                                  response.objects_size()));
  }
  // Every object the node pinned gets its token before any error is returned, so that no pin
  // is left behind.
  std::vector<std::shared_ptr<PinToken>> pins(missing.size());
  for (size_t k = 0; k < missing.size(); ++k) {
    if (response.objects(static_cast<int>(k)).code() == 0) {
      pins[k] = std::make_shared<PinToken>(refs[missing[k]]->id());
    }
  }
  std::lock_guard lock(mu_);
  for (size_t k = 0; k < missing.size(); ++k) {
    const objstore::proto::ObjectLocation& location = response.objects(static_cast<int>(k));
    const RefState& ref = *refs[missing[k]];
    if (location.code() != 0) {
      return Status(static_cast<StatusCode>(location.code()), location.message())
          .with_context(str_cat("getting object ", ref.id().to_hex()));
    }
    if (location.offset() > segment_->size() ||
        location.size() > segment_->size() - location.offset()) {
      return internal_error(
          str_cat("the node placed object ", ref.id().to_hex(), " outside its segment"));
    }
    std::span<const std::byte> bytes(segment_->data() + location.offset(), location.size());
    out[missing[k]] = {bytes, pins[k]};
    Entry& e = entries_[ref.id()];
    e.pin = pins[k];
    e.bytes = bytes;
  }
  return out;
}

StatusOr<std::vector<bool>> ClientRuntime::wait(const std::vector<const RefState*>& refs,
                                                size_t num_ready,
                                                std::chrono::milliseconds timeout) {
  objstore::proto::WaitRequest request;
  for (const RefState* ref : refs) *request.add_refs() = ref_proto(*ref);
  request.set_num_ready(static_cast<uint32_t>(num_ready));
  request.set_timeout_ms(timeout.count() < 0 ? 0 : std::max<int64_t>(timeout.count(), 1));
  HALO_ASSIGN_OR_RETURN(auto response,
                        (call<objstore::proto::WaitRequest, objstore::proto::WaitResponse>(
                            "store.wait", request, call_timeout(timeout))));
  std::vector<bool> ready(refs.size(), false);
  for (int i = 0; i < response.ready_size() && i < static_cast<int>(ready.size()); ++i) {
    ready[i] = response.ready(i) || response.lost(i);
  }
  return ready;
}

StatusOr<std::shared_ptr<RefState>> ClientRuntime::adopt(const ObjectId& id,
                                                         const std::string& owner) {
  bool first = false;
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[id];
    first = e.refs++ == 0;
    e.owner = owner;
  }
  if (first) {
    objstore::proto::RefsRequest request;
    auto* ref = request.add_refs();
    ref->set_object_id(id.binary());
    ref->set_owner_address(owner);
    auto added = call<objstore::proto::RefsRequest, objstore::proto::RefsResponse>("store.add_refs",
                                                                                   request, 30s);
    if (!added.ok()) {
      std::lock_guard lock(mu_);
      if (--entries_[id].refs == 0) entries_.erase(id);
      return added.status();
    }
  }
  return std::make_shared<RefState>(id, owner);
}

void ClientRuntime::release(const ObjectId& id) {
  std::string owner;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || --it->second.refs > 0) return;
    owner = std::move(it->second.owner);
    entries_.erase(it);
  }
  objstore::proto::RefsRequest request;
  auto* ref = request.add_refs();
  ref->set_object_id(id.binary());
  ref->set_owner_address(owner);
  // Nobody waits for the answer: the node frees what nobody references.
  rpc_->client().call<objstore::proto::RefsRequest, objstore::proto::RefsResponse>(
      node_, "store.remove_refs", request, 30s, [](StatusOr<objstore::proto::RefsResponse>) {});
}

void ClientRuntime::unpin(const ObjectId& id) {
  objstore::proto::ReleaseRequest request;
  request.add_object_ids(id.binary());
  rpc_->client().call<objstore::proto::ReleaseRequest, objstore::proto::ReleaseResponse>(
      node_, "store.release", request, 30s, [](StatusOr<objstore::proto::ReleaseResponse>) {});
}

StatusOr<objstore::proto::StoreStatsResponse> ClientRuntime::stats() {
  return call<objstore::proto::StoreStatsRequest, objstore::proto::StoreStatsResponse>(
      "store.stats", objstore::proto::StoreStatsRequest(), 10s);
}

}  // namespace halo::internal
