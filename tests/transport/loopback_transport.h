// An in-process Transport for testing the layers above the transport (RPC) without a network
// library: transports in one process reach each other by "loop://NAME" addresses, each with
// its own progress thread, and follow the Transport contract the upper layers rely on —
// callbacks once each on the progress thread, handlers only for open endpoints, the failure
// handler for every open endpoint whose peer transport is destroyed, put/get as memcpy between
// registered regions. No authentication (there is nobody to authenticate) and no timeouts.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "halo/transport/transport.h"

namespace halo::transport::testing {

// A progress thread with a queue. Shared by the endpoints that post to it, so posting to the
// loop of a destroyed transport is safe (the work is dropped).
class LoopbackLoop {
 public:
  LoopbackLoop() : thread_([this] { run(); }) {}
  ~LoopbackLoop() { stop(); }

  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  // Runs what is queued, then stops; later posts are dropped.
  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }
  bool on_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      fn = nullptr;
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

class LoopbackTransport;

// What a transport leaves reachable for endpoints that outlive it.
struct LoopbackCore {
  std::shared_ptr<LoopbackLoop> loop = std::make_shared<LoopbackLoop>();
  std::mutex mu;
  LoopbackTransport* transport = nullptr;  // Null once the transport is gone.
};

class LoopbackEndpoint : public Endpoint {
 public:
  LoopbackEndpoint(std::shared_ptr<LoopbackCore> owner, std::string peer_address, uint64_t id)
      : owner_(std::move(owner)), peer_address_(std::move(peer_address)), id_(id) {}

  const std::string& peer_address() const override { return peer_address_; }
  uint64_t id() const override { return id_; }
  bool is_open() const override { return open_.load(); }

  void send_am(uint16_t am_id, std::span<const std::byte> header,
               std::span<const std::byte> payload, Completion done) override;
  void put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
           size_t remote_offset, size_t length, Completion done) override {
    copy(remote_offset + length <= remote.length && local_offset + length <= local.size(),
         reinterpret_cast<std::byte*>(remote.addr) + remote_offset, local.data() + local_offset,
         length, std::move(done));
  }
  void get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
           size_t remote_offset, size_t length, Completion done) override {
    copy(remote_offset + length <= remote.length && local_offset + length <= local.size(),
         local.data() + local_offset, reinterpret_cast<std::byte*>(remote.addr) + remote_offset,
         length, std::move(done));
  }
  void flush(Completion done) override { complete(std::move(done), status_now()); }
  void close() override;
  using Endpoint::flush;
  using Endpoint::get;
  using Endpoint::put;
  using Endpoint::send_am;

  // Set up by LoopbackTransport::connect.
  std::weak_ptr<LoopbackEndpoint> peer_;
  std::shared_ptr<LoopbackCore> peer_core_;
  std::atomic<bool> open_{true};

 private:
  friend class LoopbackTransport;
  Status status_now() const {
    return is_open() ? Status()
                     : unavailable_error("loopback endpoint " + peer_address_ + " is down");
  }
  void complete(Completion done, Status status) {
    owner_->loop->post([done = std::move(done), status = std::move(status)] { done(status); });
  }
  void copy(bool in_range, std::byte* to, const std::byte* from, size_t length, Completion done) {
    if (!in_range)
      return complete(std::move(done), out_of_range_error("loopback put/get out of range"));
    Status status = status_now();
    if (status.ok() && length > 0) std::memcpy(to, from, length);
    complete(std::move(done), std::move(status));
  }

  std::shared_ptr<LoopbackCore> owner_;
  std::string peer_address_;
  uint64_t id_;
};

class LoopbackRegion : public MemoryRegion {
 public:
  LoopbackRegion(void* data, size_t size)
      : MemoryRegion(static_cast<std::byte*>(data), size),
        remote_{reinterpret_cast<uint64_t>(data), size, "loopback"} {}
  const RemoteRegion& remote() const override { return remote_; }

 private:
  RemoteRegion remote_;
};

class LoopbackTransport : public Transport {
 public:
  LoopbackTransport() { core_->transport = this; }

  ~LoopbackTransport() override {
    // Like a real transport going away: every open endpoint closes, and each peer learns of
    // it as a failure.
    std::vector<std::shared_ptr<LoopbackEndpoint>> endpoints;
    {
      std::lock_guard lock(core_->mu);
      core_->transport = nullptr;
      for (auto& [id, ep] : endpoints_) endpoints.push_back(ep);
      endpoints_.clear();
    }
    {
      std::lock_guard lock(registry_mu());
      registry().erase(address_);
    }
    for (auto& ep : endpoints) {
      ep->open_.store(false);
      if (auto peer = ep->peer_.lock()) fail(peer, "peer transport destroyed");
    }
    core_->loop->stop();
  }

  std::string_view backend_name() const override { return "loopback"; }
  Status set_am_handler(uint16_t am_id, AmHandler handler) override {
    if (am_id >= kFirstReservedAmId) return invalid_argument_error("reserved id");
    if (started_) return failed_precondition_error("set handlers before listen/connect");
    handlers_[am_id] = std::move(handler);
    return Status();
  }
  void set_accept_handler(std::function<void(const EndpointPtr&)> handler) override {
    run_on_progress_thread([this, handler = std::move(handler)] { accept_ = handler; });
  }
  void set_failure_handler(
      std::function<void(const EndpointPtr&, const Status&)> handler) override {
    run_on_progress_thread([this, handler = std::move(handler)] { failure_ = handler; });
  }
  Status listen(const std::string& host, uint16_t port) override {
    started_ = true;
    static std::atomic<int> next{1};
    address_ = "loop://" + host + ":" + std::to_string(port == 0 ? next++ : port);
    std::lock_guard lock(registry_mu());
    registry()[address_] = core_;
    return Status();
  }
  std::string local_address() const override { return address_; }

  void connect(const std::string& address, std::chrono::milliseconds,
               std::function<void(StatusOr<EndpointPtr>)> done) override {
    started_ = true;
    std::shared_ptr<LoopbackCore> target;
    {
      std::lock_guard lock(registry_mu());
      auto it = registry().find(address);
      if (it != registry().end()) target = it->second;
    }
    if (target == nullptr) {
      core_->loop->post(
          [done, address] { done(unavailable_error("no loopback peer " + address)); });
      return;
    }
    auto mine = std::make_shared<LoopbackEndpoint>(core_, address, next_id());
    auto theirs = std::make_shared<LoopbackEndpoint>(target, address_, next_id());
    mine->peer_ = theirs;
    mine->peer_core_ = target;
    theirs->peer_ = mine;
    theirs->peer_core_ = core_;
    {
      std::lock_guard lock(core_->mu);
      endpoints_[mine->id()] = mine;
    }
    // The server learns of the connection first, then the client's connect completes.
    target->loop->post([target, theirs, mine, core = core_, done] {
      {
        std::lock_guard lock(target->mu);
        if (target->transport == nullptr) {
          mine->open_.store(false);
          core->loop->post([done] { done(unavailable_error("peer gone")); });
          return;
        }
        target->transport->endpoints_[theirs->id()] = theirs;
      }
      if (target->transport->accept_) target->transport->accept_(theirs);
      core->loop->post([mine, done] { done(EndpointPtr(mine)); });
    });
  }
  using Transport::connect;

  StatusOr<std::unique_ptr<MemoryRegion>> register_memory(void* data, size_t size) override {
    return std::unique_ptr<MemoryRegion>(new LoopbackRegion(data, size));
  }
  void run_on_progress_thread(std::function<void()> fn) override {
    if (core_->loop->on_thread()) return fn();
    core_->loop->post(std::move(fn));
  }
  bool on_progress_thread() const override { return core_->loop->on_thread(); }
  TransportStats stats() const override { return {}; }
  std::shared_ptr<std::atomic<int64_t>> awaited_replies() override { return awaited_; }

  // Delivers an active message on the progress thread (called via the loop).
  void deliver(const std::shared_ptr<LoopbackEndpoint>& to, uint16_t am_id,
               const std::string& header, const std::string& payload) {
    if (!to->is_open()) return;
    auto it = handlers_.find(am_id);
    if (it == handlers_.end()) return;
    AmMessage message{am_id, std::as_bytes(std::span(header.data(), header.size())),
                      std::as_bytes(std::span(payload.data(), payload.size())), to};
    it->second(message);
  }

  // Marks `ep` (an endpoint of some loopback transport) failed and runs its owner's failure
  // handler on the owner's progress thread.
  static void fail(const std::shared_ptr<LoopbackEndpoint>& ep, const std::string& why) {
    auto core = ep->owner_;
    core->loop->post([core, ep, why] {
      if (!ep->open_.exchange(false)) return;
      LoopbackTransport* t;
      {
        std::lock_guard lock(core->mu);
        t = core->transport;
        if (t == nullptr) return;
        t->endpoints_.erase(ep->id());
      }
      if (t->failure_) t->failure_(ep, unavailable_error(why));
    });
  }

  // The caller holds the core's mutex.
  void erase_endpoint_locked(uint64_t id) { endpoints_.erase(id); }

 private:
  static uint64_t next_id() {
    static std::atomic<uint64_t> id{1};
    return id++;
  }
  static std::mutex& registry_mu() {
    static std::mutex mu;
    return mu;
  }
  static std::map<std::string, std::shared_ptr<LoopbackCore>>& registry() {
    static std::map<std::string, std::shared_ptr<LoopbackCore>> r;
    return r;
  }

  std::shared_ptr<LoopbackCore> core_ = std::make_shared<LoopbackCore>();
  std::atomic<bool> started_{false};
  std::string address_;
  std::unordered_map<uint16_t, AmHandler> handlers_;
  std::function<void(const EndpointPtr&)> accept_;
  std::function<void(const EndpointPtr&, const Status&)> failure_;
  std::map<uint64_t, std::shared_ptr<LoopbackEndpoint>> endpoints_;  // Guarded by core_->mu.
  const std::shared_ptr<std::atomic<int64_t>> awaited_ = std::make_shared<std::atomic<int64_t>>(0);
};

inline void LoopbackEndpoint::send_am(uint16_t am_id, std::span<const std::byte> header,
                                      std::span<const std::byte> payload, Completion done) {
  if (!is_open()) return complete(std::move(done), status_now());
  auto peer = peer_.lock();
  std::string h(reinterpret_cast<const char*>(header.data()), header.size());
  std::string p(reinterpret_cast<const char*>(payload.data()), payload.size());
  auto core = peer_core_;
  core->loop->post([core, peer, am_id, h = std::move(h), p = std::move(p)] {
    LoopbackTransport* t;
    {
      std::lock_guard lock(core->mu);
      t = core->transport;
    }
    if (t != nullptr && peer != nullptr) t->deliver(peer, am_id, h, p);
  });
  complete(std::move(done), Status());
}

inline void LoopbackEndpoint::close() {
  if (!open_.exchange(false)) return;
  {
    std::lock_guard lock(owner_->mu);
    if (owner_->transport != nullptr) owner_->transport->erase_endpoint_locked(id_);
  }
  if (auto peer = peer_.lock()) LoopbackTransport::fail(peer, "peer closed the connection");
}

}  // namespace halo::transport::testing
