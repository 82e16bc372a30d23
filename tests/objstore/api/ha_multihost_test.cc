// The HA acceptance test of Ray's "Object Store HA" proposal, on four test hosts
// (tests/support/test_hosts.h): halo-gcs in host 0 and a halo-node in every host. Producers in
// hosts 0 and 1 put HA objects (2 primary copies) and keep their references; consumers in
// hosts 0 and 2 read them at random and check every byte. The node of host 1 (a producer's
// node, not the GCS's) is killed with SIGKILL mid-run; once `halo status` shows every object
// back at 2 copies, the node of host 3 is killed too. Nothing is lost, no read fails, and the
// producer in host 0 dropping its references frees its objects on every node left.
// Labels "objstore;ha;multihost".
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/gcs/cluster/json_object.h"
#include "tests/gcs/node/local_cluster.h"
#include "tests/objstore/api/store_hosts_cluster.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {
namespace {

using namespace std::chrono_literals;
using test::ChildProcess;
using test::StoreClient;

struct Produced {
  std::vector<std::string> refs_and_sums;  // ref, sum, ref, sum, ...
  size_t count() const { return refs_and_sums.size() / 2; }
};

class HaObjectsOnHosts : public StoreHostsCluster {
 protected:
  void SetUp() override { start(4, {0, 1, 2, 3}); }

  // `halo status --json`, run in host 0.
  std::optional<google::protobuf::Struct> status() const {
    Placement gcs_host{hosts_.get(), 0};
    test::ChildOptions options;
    options.env = env_in(0);
    auto status = gcs_host.spawn({test::program("halo"), "status", "--json", "--address",
                                  gcs_->address(), "--secret-file", dir_->secret_path()},
                                 options);
    if (!status.ok()) return std::nullopt;
    auto line = status->wait_for_line("{", 30s);
    if (!line.ok()) return std::nullopt;
    auto json = parse_json_object(*line);
    if (!json.ok() || !json->fields().contains("gcs")) return std::nullopt;
    return *std::move(json);
  }

  // The GCS's counts of HA objects.
  struct HaCounts {
    int64_t objects = -1, short_of_copies = -1, lost = -1;
  };
  HaCounts ha_counts() const {
    HaCounts counts;
    auto json = status();
    if (!json) return counts;
    const auto& gcs = json->fields().at("gcs").struct_value();
    counts.objects = static_cast<int64_t>(json_number(gcs, "ha_objects"));
    counts.short_of_copies = static_cast<int64_t>(json_number(gcs, "ha_objects_short"));
    counts.lost = static_cast<int64_t>(json_number(gcs, "ha_objects_lost"));
    return counts;
  }

  // Kills the node of `host` with SIGKILL and waits until the GCS has declared it DEAD.
  void kill_node(int host) {
    (void)nodes_[host]->process().kill();
    auto dead = [&] {
      auto json = status();
      if (!json) return false;
      for (const auto& node : json->fields().at("nodes").list_value().values()) {
        if (json_string(node.struct_value(), "address") == addresses_.at(host)) {
          return json_string(node.struct_value(), "state") == "DEAD";
        }
      }
      return false;
    };
    EXPECT_TRUE(test::wait_for(dead, 30s)) << "host " << host << "'s node was not declared DEAD";
  }

  // Waits until the GCS directory holds `objects` HA objects, none short of copies.
  void wait_until_fully_copied(int64_t objects, const std::string& after) {
    HaCounts last;
    EXPECT_TRUE(test::wait_for(
        [&] {
          last = ha_counts();
          return last.objects == objects && last.short_of_copies == 0 && last.lost == 0;
        },
        60s))
        << "after " << after << ": " << last.objects << " HA objects, " << last.short_of_copies
        << " short of copies, " << last.lost << " lost";
  }

  // objstore_tool produce in `host`, running until its stdin closes.
  std::optional<ChildProcess> produce(int host, int count, uint64_t size, uint64_t seed,
                                      Produced& out) {
    auto producer = on(host).start(
        {"produce", std::to_string(count), std::to_string(size), std::to_string(seed), "2"},
        /*pipe_stdin=*/true);
    EXPECT_TRUE(producer.ok()) << producer.status();
    if (!producer.ok()) return std::nullopt;
    auto done = producer->wait_for_line("PRODUCED ", 120s);
    EXPECT_TRUE(done.ok()) << done.status() << "\n" << producer->output_text();
    const size_t before = out.count();
    for (const std::string& line : producer->output()) {
      if (line.rfind("REF ", 0) != 0) continue;
      const size_t space = line.find(' ', 4);
      out.refs_and_sums.push_back(line.substr(4, space - 4));
      out.refs_and_sums.push_back(line.substr(space + 1));
    }
    EXPECT_EQ(out.count() - before, static_cast<size_t>(count)) << producer->output_text();
    return std::optional<ChildProcess>(std::move(*producer));
  }

  // objstore_tool consume in `host` over `objects`, once it has read one.
  std::optional<ChildProcess> consume(int host, const std::vector<std::string>& objects) {
    std::vector<std::string> args = {"consume", "30000"};
    args.insert(args.end(), objects.begin(), objects.end());
    auto consumer = on(host).start(std::move(args), /*pipe_stdin=*/true);
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return std::nullopt;
    auto reading = consumer->wait_for_line("READING", 60s);
    EXPECT_TRUE(reading.ok()) << reading.status() << "\n" << consumer->output_text();
    return std::optional<ChildProcess>(std::move(*consumer));
  }

  // Ends a consumer; expects reads, and none failed.
  void finish(std::optional<ChildProcess>& running, int host) {
    ASSERT_TRUE(running.has_value());
    ChildProcess& consumer = *running;
    consumer.close_stdin();
    auto line = consumer.wait_for_line("CONSUMED ", 60s);
    ASSERT_TRUE(line.ok()) << line.status() << "\n" << consumer.output_text();
    EXPECT_NE(line->find(" lost=0 badsum=0 timeouts=0"), std::string::npos)
        << "consumer in host " << host << ": " << *line;
    EXPECT_EQ(line->find("reads=0 "), std::string::npos) << *line;
  }
};

TEST_F(HaObjectsOnHosts, ProducersAndConsumersLoseNothingWhenTwoNodesDieOneAfterTheOther) {
  // Sizes on each path: objects inline in messages in host 0, moved by RMA in host 1.
  std::map<int, uint64_t> empty;
  for (int host = 0; host < 4; ++host) empty[host] = on(host).usage().first;
  Produced produced;
  auto producer0 = produce(0, 12, 20000, 100, produced);
  auto producer1 = produce(1, 12, 2 << 20, 200, produced);
  ASSERT_TRUE(producer0 && producer1);
  ASSERT_EQ(produced.count(), 24u);
  wait_until_fully_copied(24, "the puts");
  // Copies spread by object id: host 3's node, which nobody uses, holds some.
  EXPECT_GT(on(3).usage().first, empty[3]) << "no copy on host 3's node";

  auto consumer0 = consume(0, produced.refs_and_sums);
  auto consumer2 = consume(2, produced.refs_and_sums);

  kill_node(1);  // The node of producer 1, which created half the objects.
  wait_until_fully_copied(24, "host 1's node was killed");
  kill_node(3);
  wait_until_fully_copied(24, "host 3's node was killed");

  // Every object, read once more in each host left, intact.
  for (int host : {0, 2}) {
    std::vector<std::string> args = {"read-all"};
    args.insert(args.end(), produced.refs_and_sums.begin(), produced.refs_and_sums.end());
    const std::string line = on(host).run(args, "READ-ALL ");
    EXPECT_EQ(line.rfind("READ-ALL OK", 0), 0u) << "host " << host << ": " << line;
  }
  finish(consumer0, 0);
  finish(consumer2, 2);

  // The last references go: producer 0's, and the consumers' to producer 1's objects (whose
  // creator lost its node, and with it its references). Every copy and every directory entry
  // go with them, on both nodes left.
  producer0->close_stdin();
  ASSERT_TRUE(producer0->wait(30s).ok());
  (void)producer1->kill();
  EXPECT_TRUE(test::wait_for([&] { return ha_counts().objects == 0; }, 30s))
      << ha_counts().objects << " HA objects left in the directory";
  for (int host : {0, 2}) {
    EXPECT_TRUE(test::wait_for([&] { return on(host).usage().first == empty[host]; }, 30s))
        << "host " << host << "'s node still uses " << on(host).usage().first - empty[host]
        << " bytes";
  }
}

// Host 3 is cut off (its packets silently dropped) just before a put that wants a copy on
// every node: the put fails once the GCS declares host 3's node DEAD, never reporting a copy
// it does not have, and a put of 3 copies then succeeds on the nodes left. When the link comes
// back, host 3's node registers under a new incarnation and frees whatever copy it took.
TEST_F(HaObjectsOnHosts, AReplicaCutOffDuringAPutIsNeverCountedAsACopy) {
  constexpr uint64_t kSize = 4 << 20;
  const uint64_t empty3 = on(3).usage().first;
  ASSERT_TRUE(hosts_->partition(3).ok());
  const std::string failed = on(0).run({"put", std::to_string(kSize), "5", "ha", "4"}, "PUTFAIL ");
  EXPECT_NE(failed.find("got 3 of 4 primary copies"), std::string::npos) << failed;
  StoreClient::Put p = on(0).put(kSize, 6, /*ha_copies=*/3);
  ASSERT_FALSE(p.ref.empty());
  wait_until_fully_copied(1, "a put of 3 copies with host 3 cut off");

  ASSERT_TRUE(hosts_->heal(3).ok());
  EXPECT_TRUE(test::wait_for(
      [&] {
        auto state = nodes_[3]->state();
        return state.ok() && state->incarnation >= 2 && state->state == "alive";
      },
      60s))
      << "host 3's node did not register again";
  EXPECT_TRUE(test::wait_for([&] { return on(3).usage().first == empty3; }, 30s))
      << "host 3's node keeps " << on(3).usage().first - empty3 << " bytes of copies";
  // Nodes 1 and 2 hold the other copies of the object: they read it with node 0 gone (a
  // client in host 1 keeps a reference: the creator's went with its node).
  auto keeper = on(1).start({"hold", p.ref}, /*pipe_stdin=*/true);
  ASSERT_TRUE(keeper.ok()) << keeper.status();
  ASSERT_TRUE(keeper->wait_for_line("HOLDING ", 60s).ok()) << keeper->output_text();
  kill_node(0);
  for (int host : {1, 2}) {
    EXPECT_EQ(on(host).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK " + std::to_string(kSize))
        << "read in host " << host;
  }
}

}  // namespace
}  // namespace halo::gcs::testing
