// order_for_copies: which nodes an HA put asks for copies first.
#include "objstore/service/ha_directory.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace halo::objstore {
namespace {

std::vector<HaCandidate> nodes(const std::vector<std::string>& domains) {
  std::vector<HaCandidate> out;
  for (size_t i = 0; i < domains.size(); ++i) {
    out.push_back({NodeId::random(), "node" + std::to_string(i), domains[i]});
  }
  return out;
}

std::vector<std::string> addresses(const std::vector<HaCandidate>& ordered) {
  std::vector<std::string> out;
  for (const HaCandidate& c : ordered) out.push_back(c.address);
  return out;
}

TEST(OrderForCopies, OtherFailureDomainsComeFirstThenTheRestInOrder) {
  // This node is in rack1; node0 shares it, node1 and node2 share rack2, node3 is in rack3.
  auto ordered = order_for_copies(nodes({"rack1", "rack2", "rack2", "rack3"}), "rack1");
  EXPECT_EQ(addresses(ordered), (std::vector<std::string>{"node1", "node3", "node0", "node2"}));
}

TEST(OrderForCopies, WithoutDomainsTheOrderIsKept) {
  auto ordered = order_for_copies(nodes({"", "", ""}), "");
  EXPECT_EQ(addresses(ordered), (std::vector<std::string>{"node0", "node1", "node2"}));
}

TEST(OrderForCopies, NodesWithoutADomainAreEachTheirOwn) {
  auto ordered = order_for_copies(nodes({"rack1", "", "rack1", ""}), "rack1");
  EXPECT_EQ(addresses(ordered), (std::vector<std::string>{"node1", "node3", "node0", "node2"}));
}

TEST(OrderForCopies, AStartRotatesTheWalkSoCopiesSpreadOverTheNodes) {
  EXPECT_EQ(addresses(order_for_copies(nodes({"", "", ""}), "", 4)),
            (std::vector<std::string>{"node1", "node2", "node0"}));
  // Domains still come first: rack2 is reached first through node2, rack3 after it.
  EXPECT_EQ(addresses(order_for_copies(nodes({"rack1", "rack2", "rack2", "rack3"}), "rack1", 2)),
            (std::vector<std::string>{"node2", "node3", "node0", "node1"}));
}

TEST(OrderForCopies, NoCandidatesGiveNone) { EXPECT_TRUE(order_for_copies({}, "rack1").empty()); }

}  // namespace
}  // namespace halo::objstore
