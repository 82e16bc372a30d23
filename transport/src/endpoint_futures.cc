// The future-returning forms of Endpoint's operations, built on the callback forms.
#include <memory>

#include "halo/transport/transport.h"

namespace halo::transport {
namespace {

// A completion that fulfils a promise; the promise is shared because Completion is copyable.
std::pair<Completion, std::future<Status>> promised_completion() {
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  return {[promise](Status s) { promise->set_value(std::move(s)); }, std::move(future)};
}

}  // namespace

std::future<Status> Endpoint::send_am(uint16_t am_id, std::span<const std::byte> header,
                                      std::span<const std::byte> payload) {
  auto [done, future] = promised_completion();
  send_am(am_id, header, payload, std::move(done));
  return std::move(future);
}

std::future<Status> Endpoint::put(const MemoryRegion& local, size_t local_offset,
                                  const RemoteRegion& remote, size_t remote_offset, size_t length) {
  auto [done, future] = promised_completion();
  put(local, local_offset, remote, remote_offset, length, std::move(done));
  return std::move(future);
}

std::future<Status> Endpoint::get(const MemoryRegion& local, size_t local_offset,
                                  const RemoteRegion& remote, size_t remote_offset, size_t length) {
  auto [done, future] = promised_completion();
  get(local, local_offset, remote, remote_offset, length, std::move(done));
  return std::move(future);
}

std::future<Status> Endpoint::flush() {
  auto [done, future] = promised_completion();
  flush(std::move(done));
  return std::move(future);
}

}  // namespace halo::transport
