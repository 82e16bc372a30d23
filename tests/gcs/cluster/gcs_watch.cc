// gcs_watch: the GCS cluster tests' subscriber. It runs where the GCS can be reached (inside
// test host 0: the test process is in the root network namespace and cannot reach
// 198.18.x.x), subscribes to node changes with GcsClient::subscribe_nodes, and prints one JSON
// object per line for everything it hears, in the order heard:
//
//   {"event":"subscribed"}                       once connected and subscribed
//   {"event":"resync","last_seq":40}             before the rows of a resync
//   {"event":"node","seq":41,"resync":false,"node_id":"5f0c…","incarnation":2,
//    "state":"DEAD","reason":"missed 3 health checks","changed_at_ms":1764000000123,
//    "mono_us":81234567890}
//
// changed_at_ms is the row's state_changed_at_ms (the GCS's wall clock). mono_us is the steady
// clock (CLOCK_MONOTONIC, shared by every process of the machine) when
// the change arrived, in microseconds, so that a test can time a death from the moment it
// killed the node. Lines are flushed one by one.
//
//   gcs_watch --gcs_address=ucx://198.18.3.1:40000 --secret_file=/tmp/x/cluster.secret
//             --ucx_tls=tcp,self --net_interface=eth0
//
// Runs until SIGTERM or SIGINT. Exits 2 on bad flags, 1 when it cannot reach the GCS.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_client.h"
#include "gcs/proto/gcs.pb.h"
#include "halo/base/config.h"

extern char** environ;

namespace {

using halo::gcs::GcsClient;
using halo::gcs::GcsClientOptions;
namespace proto = halo::gcs::proto;

struct WatchConfig {
  // The GCS's address, as halo-gcs wrote it to its address file.
  std::string gcs_address = "";
  // The cluster secret file (mode 0600).
  std::string secret_file = "";

  template <typename V>
  void visit(V& v) {
    v("gcs_address", gcs_address, "address of the GCS to watch");
    v("secret_file", secret_file, "cluster secret file");
  }
};

std::string json_escaped(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string hex_of(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const char c : bytes) {
    hex += kDigits[static_cast<unsigned char>(c) >> 4];
    hex += kDigits[static_cast<unsigned char>(c) & 0xf];
  }
  return hex;
}

// One line at a time, whole, from any thread.
class LinePrinter {
 public:
  void print(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

 private:
  std::mutex mu_;
};

void print_poll(LinePrinter& out, const proto::PollResponse& response) {
  const int64_t mono_us = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now().time_since_epoch())
                              .count();
  if (response.resync()) {
    out.print(halo::str_cat(R"({"event":"resync","last_seq":)", response.last_seq(), "}"));
  }
  for (const proto::NodeChange& change : response.node_changes()) {
    const proto::NodeInfo& node = change.node();
    out.print(halo::str_cat(R"({"event":"node","seq":)", change.seq(), R"(,"resync":)",
                            response.resync() ? "true" : "false", R"(,"node_id":")",
                            hex_of(node.node_id()), R"(","incarnation":)", node.incarnation(),
                            R"(,"state":")", proto::NodeState_Name(node.state()), R"(","reason":")",
                            json_escaped(node.state_reason()), R"(","changed_at_ms":)",
                            node.state_changed_at_ms(), R"(,"mono_us":)", mono_us, "}"));
  }
}

}  // namespace

int main(int argc, char** argv) {
  WatchConfig config;
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
    std::cerr << "gcs_watch: " << rest.status() << "\n";
    return 2;
  }
  if (config.gcs_address.empty() || config.secret_file.empty()) {
    std::cerr << "gcs_watch: --gcs_address and --secret_file are required\n";
    return 2;
  }
  auto secret = halo::gcs::read_secret_file(config.secret_file);
  if (!secret.ok()) {
    std::cerr << "gcs_watch: " << secret.status() << "\n";
    return 2;
  }
  options.address = config.gcs_address;
  options.cluster_secret = *secret;

  // The signals that end the watch are taken with sigwait below; blocked here, before any
  // thread exists, so that every thread inherits the mask and none dies of them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto client = GcsClient::create(options);
  if (!client.ok()) {
    std::cerr << "gcs_watch: " << client.status() << "\n";
    return 1;
  }
  if (halo::Status connected = (*client)->connect(); !connected.ok()) {
    std::cerr << "gcs_watch: cannot reach the GCS at " << config.gcs_address << ": " << connected
              << "\n";
    return 1;
  }
  LinePrinter out;
  auto subscription = (*client)->subscribe_nodes(
      [&out](const proto::PollResponse& response) { print_poll(out, response); });
  out.print(R"({"event":"subscribed"})");

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  subscription.reset();
  return 0;
}
