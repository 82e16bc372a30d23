// gcs_kv_writer: the write load of the GCS restart test. `writers` threads share one
// GcsClient; writer w puts keys kv_key(key_prefix, w, 0), kv_key(key_prefix, w, 1), ... into
// the namespace kKvNamespace with the values kv_value_for(key) (kv_pattern.h), one put at a
// time, and prints one line per put:
//
//   ACK <key>             the GCS acknowledged the put: from now on the key must be there
//   FAIL <key> <status>   the put failed; the key may or may not be there
//
// A put goes through the client's reconnection and retries (up to put_timeout_ms), so a GCS
// that is killed and restarted shows as a pause, not as failures. Lines are flushed one by one.
//
//   gcs_kv_writer --gcs_address=ucx://127.0.0.1:40000 --secret_file=/tmp/x/cluster.secret
//
// Runs until killed. Exits 2 on bad flags, 1 when it cannot reach the GCS at the start.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_client.h"
#include "gcs/proto/gcs.pb.h"
#include "halo/base/config.h"
#include "tests/gcs/cluster/kv_pattern.h"

extern char** environ;

namespace {

using halo::gcs::GcsClient;
using halo::gcs::GcsClientOptions;
namespace proto = halo::gcs::proto;
namespace testing = halo::gcs::testing;

struct WriterConfig {
  // The GCS's address, as halo-gcs wrote it to its address file.
  std::string gcs_address = "";
  // The cluster secret file (mode 0600).
  std::string secret_file = "";
  // Threads putting at the same time, each one put after the other.
  int32_t writers = 4;
  // Start of every key; lets two runs against one GCS write different keys.
  std::string key_prefix = "k";
  // Time one put may take, reconnections and retries included: longer than a GCS restart.
  int64_t put_timeout_ms = 30'000;

  template <typename V>
  void visit(V& v) {
    v("gcs_address", gcs_address, "address of the GCS to write to");
    v("secret_file", secret_file, "cluster secret file");
    v("writers", writers, "concurrent writer threads");
    v("key_prefix", key_prefix, "prefix of every key written");
    v("put_timeout_ms", put_timeout_ms, "time limit of one put, retries included");
  }
};

std::mutex output_mu;

void print_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(output_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void write_forever(GcsClient& client, const WriterConfig& config, int writer) {
  for (uint64_t n = 0;; ++n) {
    proto::KvPutRequest request;
    request.set_namespace_(testing::kKvNamespace);
    request.set_key(testing::kv_key(config.key_prefix, writer, n));
    request.set_value(testing::kv_value_for(request.key()));
    request.set_overwrite(true);
    auto reply = client.call<proto::KvPutRequest, proto::KvPutResponse>(
        "gcs.kv_put", request, std::chrono::milliseconds(config.put_timeout_ms));
    if (reply.ok()) {
      print_line("ACK " + request.key());
    } else {
      print_line("FAIL " + request.key() + " " + reply.status().to_string());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  WriterConfig config;
  GcsClientOptions options;
  halo::ConfigLoader loader;
  loader.add(config);
  loader.add(options.transport);
  halo::ConfigSources sources;
  sources.env = environ;
  sources.args = {argv + 1, argv + argc};
  auto rest = loader.load(sources);
  if (loader.help_requested()) {
    std::cout << loader.describe();
    return 0;
  }
  if (!rest.ok()) {
    std::cerr << "gcs_kv_writer: " << rest.status() << "\n";
    return 2;
  }
  if (config.gcs_address.empty() || config.secret_file.empty() || config.writers < 1) {
    std::cerr << "gcs_kv_writer: --gcs_address, --secret_file and --writers >= 1 are required\n";
    return 2;
  }
  auto secret = halo::gcs::read_secret_file(config.secret_file);
  if (!secret.ok()) {
    std::cerr << "gcs_kv_writer: " << secret.status() << "\n";
    return 2;
  }
  options.address = config.gcs_address;
  options.cluster_secret = *secret;
  auto client = GcsClient::create(options);
  if (!client.ok()) {
    std::cerr << "gcs_kv_writer: " << client.status() << "\n";
    return 1;
  }
  if (halo::Status connected = (*client)->connect(); !connected.ok()) {
    std::cerr << "gcs_kv_writer: cannot reach the GCS at " << config.gcs_address << ": "
              << connected << "\n";
    return 1;
  }
  std::vector<std::thread> threads;
  for (int w = 0; w < config.writers; ++w) {
    threads.emplace_back([&, w] { write_forever(**client, config, w); });
  }
  for (auto& thread : threads) thread.join();
  return 0;
}
