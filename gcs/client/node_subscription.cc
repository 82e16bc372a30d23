// NodeSubscription: a thread that long-polls "gcs.poll" on the NODES channel and hands every
// answer with changes (or a resync) to the subscriber, in order. The GCS decides when a resync
// is needed (first poll, trimmed history, a restart that lost its history, another cluster);
// the subscription only remembers the last sequence number and cluster id it was given.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gcs/client/gcs_client.h"
#include "gcs/client/gcs_client_impl.h"
#include "halo/base/logging.h"

namespace halo::gcs {
namespace {

// How long the GCS may hold a poll with nothing to report. A poll in flight is cancelled when
// the subscription is destroyed, so this only bounds how often an idle subscriber asks.
constexpr std::chrono::milliseconds kMaxWait{5000};
// Time on top of kMaxWait for the answer to arrive, including a reconnection.
constexpr std::chrono::milliseconds kCallSlack{5000};

class PollingNodeSubscription final : public NodeSubscription {
 public:
  PollingNodeSubscription(GcsClientCore& impl,
                          std::function<void(const proto::PollResponse&)> on_change)
      : impl_(impl), on_change_(std::move(on_change)), canceller_(impl.rpc().client()) {
    thread_ = std::thread([this] { run(); });
  }

  ~PollingNodeSubscription() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    canceller_.cancel();
    impl_.wake_waiters();
    cv_.notify_all();
    thread_.join();
  }

  uint64_t last_seq() const override { return last_seq_.load(); }

 private:
  bool stopped() {
    std::lock_guard lock(mu_);
    return stop_;
  }

  // Waits `d` unless the subscription is destroyed meanwhile; false then.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stop_; });
  }

  void run() {
    uint64_t after = 0;
    std::string cluster_id;
    std::chrono::milliseconds backoff{50};
    while (!stopped()) {
      proto::PollRequest request;
      request.set_channel(proto::NODES);
      request.set_after(after);
      request.set_max_wait_ms(kMaxWait.count());
      request.set_cluster_id(cluster_id);
      auto bytes =
          impl_.call("gcs.poll", request.SerializeAsString(), kMaxWait + kCallSlack, &canceller_);
      if (stopped()) return;
      proto::PollResponse response;
      if (!bytes.ok() || !response.ParseFromString(*bytes)) {
        log::warn("node subscription: polling the GCS at {} failed: {}; retrying",
                  impl_.options().address,
                  bytes.ok() ? internal_error("the answer does not parse as a PollResponse")
                             : bytes.status());
        if (!pause(backoff)) return;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        continue;
      }
      backoff = std::chrono::milliseconds(50);
      if (response.resync() || response.node_changes_size() > 0) on_change_(response);
      after = response.last_seq();
      cluster_id = response.cluster_id();
      last_seq_.store(after);
    }
  }

  GcsClientCore& impl_;
  std::function<void(const proto::PollResponse&)> on_change_;
  CallCanceller canceller_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<uint64_t> last_seq_{0};
  std::thread thread_;
};

}  // namespace

std::unique_ptr<NodeSubscription> GcsClient::subscribe_nodes(
    std::function<void(const proto::PollResponse&)> on_change) {
  return std::make_unique<PollingNodeSubscription>(*impl_, std::move(on_change));
}

}  // namespace halo::gcs
