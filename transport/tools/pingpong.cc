#include "pingpong.h"

#include <unistd.h>

#include <cstring>
#include <future>

#include "transport/tools/echo.pb.h"

namespace halo::transport::tools {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

std::vector<std::byte> prefaulted_buffer(size_t bytes) {
  std::vector<std::byte> buffer(bytes);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < bytes; i += page) buffer[i] = std::byte{1};
  return buffer;
}

std::string encode_region(const RemoteRegion& region) {
  std::string out(16, '\0');
  std::memcpy(out.data(), &region.addr, 8);
  std::memcpy(out.data() + 8, &region.length, 8);
  out += region.rkey;
  return out;
}

StatusOr<RemoteRegion> decode_region(std::span<const std::byte> bytes) {
  if (bytes.size() < 16) return invalid_argument_error("region descriptor shorter than 16 bytes");
  RemoteRegion region;
  std::memcpy(&region.addr, bytes.data(), 8);
  std::memcpy(&region.length, bytes.data() + 8, 8);
  region.rkey.assign(reinterpret_cast<const char*>(bytes.data()) + 16, bytes.size() - 16);
  return region;
}

StatusOr<std::unique_ptr<EchoServer>> EchoServer::start(const TransportConfig& config,
                                                        const std::string& secret,
                                                        const std::string& host, uint16_t port,
                                                        size_t region_bytes) {
  std::unique_ptr<EchoServer> server(new EchoServer());
  server->memory_ = prefaulted_buffer(region_bytes);
  HALO_ASSIGN_OR_RETURN(server->transport_, Transport::create(config, secret));
  HALO_ASSIGN_OR_RETURN(server->region_, server->transport_->register_memory(
                                             server->memory_.data(), server->memory_.size()));
  const std::string descriptor = encode_region(server->region_->remote());
  HALO_RETURN_IF_ERROR(server->transport_->set_am_handler(kEchoAm, [](AmMessage& m) {
    // The payload is only valid during the handler, and must outlive the send: copy it.
    auto copy = std::make_shared<std::string>(reinterpret_cast<const char*>(m.payload.data()),
                                              m.payload.size());
    m.from->send_am(kEchoReplyAm, m.header, bytes_of(*copy), [copy](Status) {});
  }));
  HALO_RETURN_IF_ERROR(server->transport_->set_am_handler(kRegionAm, [descriptor](AmMessage& m) {
    m.from->send_am(kRegionReplyAm, bytes_of(descriptor), {}, [](Status) {});
  }));
  HALO_ASSIGN_OR_RETURN(server->rpc_, RpcNode::create(*server->transport_));
  HALO_RETURN_IF_ERROR((server->rpc_->server().handle<EchoMessage, EchoMessage>(
      kEchoRpcMethod,
      [](const EchoMessage& request, RpcContext&) -> StatusOr<EchoMessage> { return request; })));
  HALO_RETURN_IF_ERROR(server->transport_->listen(host, port));
  return server;
}

EchoServer::~EchoServer() { rpc_.reset(); }

struct PingPongClient::LatencyRun {
  uint64_t remaining = 0;
  std::string payload;
  std::promise<Status> done;
  bool finished = false;

  void finish(Status status) {
    if (finished) return;
    finished = true;
    done.set_value(std::move(status));
  }
};

StatusOr<std::unique_ptr<PingPongClient>> PingPongClient::connect(const TransportConfig& config,
                                                                  const std::string& secret,
                                                                  const std::string& address,
                                                                  size_t buffer_bytes) {
  std::unique_ptr<PingPongClient> client(new PingPongClient());
  PingPongClient* self = client.get();
  client->memory_ = prefaulted_buffer(buffer_bytes);
  HALO_ASSIGN_OR_RETURN(client->transport_, Transport::create(config, secret));
  HALO_ASSIGN_OR_RETURN(client->region_, client->transport_->register_memory(
                                             client->memory_.data(), client->memory_.size()));
  auto region_reply = std::make_shared<std::promise<StatusOr<RemoteRegion>>>();
  auto region_future = region_reply->get_future();
  HALO_RETURN_IF_ERROR(client->transport_->set_am_handler(
      kRegionReplyAm,
      [region_reply](AmMessage& m) { region_reply->set_value(decode_region(m.header)); }));
  HALO_RETURN_IF_ERROR(client->transport_->set_am_handler(kEchoReplyAm, [self](AmMessage& m) {
    LatencyRun* run = self->latency_.get();
    if (run == nullptr || run->finished) return;
    if (--run->remaining == 0) return run->finish(Status());
    m.from->send_am(kEchoAm, {}, bytes_of(run->payload), [run](Status s) {
      if (!s.ok()) run->finish(std::move(s));
    });
  }));
  HALO_ASSIGN_OR_RETURN(client->rpc_, RpcNode::create(*client->transport_));
  HALO_ASSIGN_OR_RETURN(client->endpoint_,
                        client->transport_->connect(address, std::chrono::seconds(10)));
  HALO_RETURN_IF_ERROR(client->endpoint_->send_am(kRegionAm, {}, {}).get());
  if (region_future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return deadline_exceeded_error("the echo server did not describe its region within 10 s");
  }
  HALO_ASSIGN_OR_RETURN(client->server_region_, region_future.get());
  return client;
}

PingPongClient::~PingPongClient() {
  rpc_.reset();
  if (endpoint_) endpoint_->close();
}

StatusOr<double> PingPongClient::rpc_latency_us(size_t payload_bytes, uint64_t iterations) {
  if (iterations == 0) return invalid_argument_error("iterations must be positive");
  struct Run {
    uint64_t remaining = 0;
    EchoMessage request;
    std::promise<Status> done;
    std::function<void()> next;
  };
  auto run = std::make_shared<Run>();
  run->remaining = iterations;
  run->request.set_data(std::string(payload_bytes, 'x'));
  auto finished = run->done.get_future();
  // Each completion issues the next call, on the progress thread, as the AM loop does.
  run->next = [this, raw = run.get()] {
    rpc_->client().call<EchoMessage, EchoMessage>(endpoint_, kEchoRpcMethod, raw->request,
                                                  std::chrono::seconds(10),
                                                  [raw](StatusOr<EchoMessage> response) {
                                                    if (!response.ok())
                                                      return raw->done.set_value(response.status());
                                                    if (--raw->remaining == 0)
                                                      return raw->done.set_value(Status());
                                                    raw->next();
                                                  });
  };
  const auto start = Clock::now();
  transport_->run_on_progress_thread([raw = run.get()] { raw->next(); });
  Status status = finished.get();
  const auto elapsed = Clock::now() - start;
  HALO_RETURN_IF_ERROR(status);
  return std::chrono::duration<double, std::micro>(elapsed).count() / (2.0 * iterations);
}

StatusOr<double> PingPongClient::am_latency_us(size_t payload_bytes, uint64_t iterations) {
  if (iterations == 0) return invalid_argument_error("iterations must be positive");
  auto run = std::make_shared<LatencyRun>();
  run->remaining = iterations;
  run->payload.assign(payload_bytes, 'x');
  auto finished = run->done.get_future();
  const auto start = Clock::now();
  transport_->run_on_progress_thread([this, run] {
    latency_ = run;
    endpoint_->send_am(kEchoAm, {}, bytes_of(run->payload), [raw = run.get()](Status s) {
      if (!s.ok()) raw->finish(std::move(s));
    });
  });
  Status status = finished.get();
  const auto elapsed = Clock::now() - start;
  transport_->run_on_progress_thread([this] { latency_.reset(); });
  HALO_RETURN_IF_ERROR(status);
  return std::chrono::duration<double, std::micro>(elapsed).count() / (2.0 * iterations);
}

StatusOr<double> PingPongClient::put_bandwidth_mbps(size_t size, uint64_t iterations,
                                                    unsigned window) {
  if (size == 0 || size > region_->size() || size > server_region_.length) {
    return invalid_argument_error(str_cat("put size ", size, " must be in (0, ",
                                          std::min<size_t>(region_->size(), server_region_.length),
                                          "]"));
  }
  struct Run {
    uint64_t issued = 0, completed = 0, total = 0;
    size_t size = 0, slots = 1;
    unsigned window = 1;
    bool pumping = false;
    Status error;
    std::promise<Status> done;
  };
  auto run = std::make_shared<Run>();
  run->total = iterations;
  run->size = size;
  run->window = std::max(1u, window);
  run->slots = std::max<size_t>(1, server_region_.length / size);
  auto finished = run->done.get_future();

  // Keeps `window` puts in flight; the last completion flushes. Runs on the progress thread.
  // Completions may run inline inside put(), so the loop guards against re-entering itself
  // instead of recursing once per put.
  auto pump = std::make_shared<std::function<void()>>();
  *pump = [this, run, weak_pump = std::weak_ptr<std::function<void()>>(pump)] {
    if (run->pumping) return;
    run->pumping = true;
    while (run->issued < run->total && run->issued - run->completed < run->window) {
      const size_t offset = (run->issued % run->slots) * run->size;
      ++run->issued;
      endpoint_->put(*region_, 0, server_region_, offset, run->size,
                     [this, run, weak_pump](Status s) {
                       if (!s.ok() && run->error.ok()) run->error = s;
                       if (++run->completed == run->total) {
                         endpoint_->flush([run](Status f) {
                           run->done.set_value(run->error.ok() ? std::move(f) : run->error);
                         });
                       } else if (auto p = weak_pump.lock()) {
                         (*p)();
                       }
                     });
    }
    run->pumping = false;
  };
  const auto start = Clock::now();
  transport_->run_on_progress_thread([pump] { (*pump)(); });
  Status status = finished.get();
  const auto elapsed = Clock::now() - start;
  HALO_RETURN_IF_ERROR(status);
  const double seconds = std::chrono::duration<double>(elapsed).count();
  return static_cast<double>(size) * static_cast<double>(iterations) / seconds / 1e6;
}

}  // namespace halo::transport::tools
