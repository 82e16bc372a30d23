// halo's demo job (scripts/demo.sh): an embedded local cluster of several node daemons,
// objects put on the first node and read on every other one, with throughput printed.
//
//   halo-objstore-demo [--nodes=3] [--objects=8] [--object-mib=64]
//
// The driver starts the cluster (halo::init() with no address), puts the objects, writes their
// references to a file, and starts one reader process per other node (this program again, with
// --reader=FILE, joined to that node through HALO_ADDRESS / HALO_SECRET_FILE /
// HALO_NODE_ADDRESS). Each reader fetches every object into its node's store (RDMA transfer
// between the node daemons), checks it, and prints what it saw.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "halo/halo.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using Samples = std::vector<double>;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Object i holds i, i+1, i+2, ...: its sum says whether every element arrived.
double expected_sum(size_t i, size_t n) { return static_cast<double>(n) * i + n * (n - 1) / 2.0; }

int reader(const std::string& refs_file) {
  halo::init();
  std::ifstream in(refs_file);
  std::string line;
  size_t objects = 0, bytes = 0, bad = 0;
  const auto start = Clock::now();
  for (size_t i = 0; std::getline(in, line); ++i) {
    auto ref = halo::ObjectRef<Samples>::from_hex(line);
    auto view = halo::get(ref, std::chrono::seconds(60));
    if (std::accumulate(view.begin(), view.end(), 0.0) != expected_sum(i, view.size())) ++bad;
    ++objects;
    bytes += view.size() * sizeof(double);
  }
  const double s = seconds_since(start);
  const halo::StoreInfo info = halo::store_info();
  std::printf("  node %s (%s): read %zu objects, %.0f MiB in %.3f s = %.2f GB/s, %s\n",
              info.node_id_hex.substr(0, 8).c_str(), info.node_address.c_str(), objects,
              bytes / 1048576.0, s, bytes / s / 1e9,
              bad == 0 ? "every checksum right" : "CHECKSUMS WRONG");
  halo::shutdown();
  return bad == 0 && objects > 0 ? 0 : 1;
}

int flag(int argc, char** argv, std::string_view name, int fallback) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with(name) && arg.size() > name.size() && arg[name.size()] == '=') {
      return std::atoi(argv[i] + name.size() + 1);
    }
  }
  return fallback;
}

int driver(int argc, char** argv) {
  const int nodes = flag(argc, argv, "--nodes", 3);
  const int count = flag(argc, argv, "--objects", 8);
  const size_t elements = static_cast<size_t>(flag(argc, argv, "--object-mib", 64)) << 17;
  halo::InitOptions options;
  options.num_nodes = nodes;
  options.object_store_memory = (count * elements * sizeof(double)) * 5 / 4 + (64ull << 20);
  std::printf("halo demo: starting an embedded cluster of %d node daemons (%.0f MiB stores)\n",
              nodes, options.object_store_memory / 1048576.0);
  auto start = Clock::now();
  halo::init(options);
  std::printf("  cluster up in %.2f s\n", seconds_since(start));

  std::vector<Samples> values(count, Samples(elements));
  for (int i = 0; i < count; ++i) std::iota(values[i].begin(), values[i].end(), double(i));
  std::vector<halo::ObjectRef<Samples>> refs;
  start = Clock::now();
  for (const Samples& v : values) refs.push_back(halo::put(v));
  const double put_s = seconds_since(start);
  const double total = double(count) * elements * sizeof(double);
  const halo::StoreInfo mine = halo::store_info();
  std::printf("put %d objects of %zu MiB on node %s: %.3f s = %.2f GB/s\n", count,
              elements * sizeof(double) >> 20, mine.node_id_hex.substr(0, 8).c_str(), put_s,
              total / put_s / 1e9);

  const std::string refs_file = "/tmp/halo-demo-refs-" + std::to_string(::getpid());
  {
    std::ofstream out(refs_file);
    for (const auto& ref : refs) out << ref.hex() << "\n";
  }
  const halo::ClusterInfo cluster = halo::cluster_info();
  std::printf("reading them on the other nodes:\n");
  std::fflush(stdout);
  std::vector<pid_t> readers;
  for (const halo::NodeInfo& node : cluster.nodes) {
    if (node.address == mine.node_address || node.state != "ALIVE") continue;
    std::vector<std::string> env_text = {"HALO_ADDRESS=" + cluster.gcs_address,
                                         "HALO_SECRET_FILE=" + cluster.secret_file,
                                         "HALO_NODE_ADDRESS=" + node.address};
    std::vector<char*> env;
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    for (auto& e : env_text) env.push_back(e.data());
    env.push_back(nullptr);
    std::string self = "/proc/self/exe", reader_flag = "--reader=" + refs_file;
    char* child_argv[] = {self.data(), reader_flag.data(), nullptr};
    pid_t pid = 0;
    if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, child_argv, env.data()) == 0) {
      readers.push_back(pid);
    }
  }
  int failures = 0;
  for (pid_t pid : readers) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  std::remove(refs_file.c_str());
  refs.clear();
  halo::shutdown();
  if (readers.empty() || failures > 0) {
    std::printf("halo demo: FAILED (%d of %zu readers)\n", failures, readers.size());
    return 1;
  }
  std::printf("halo demo: done, cluster stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg.starts_with("--reader=")) return reader(std::string(arg.substr(9)));
    }
    return driver(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "halo demo: %s\n", e.what());
    return 1;
  }
}
