#include "halo/base/ids.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace halo {
namespace {

template <typename T>
concept has_random = requires {
  T::random();
};

// Mixing up kinds of ids is a compile error, not a lookup that silently finds nothing.
static_assert(!std::is_convertible_v<NodeId, ObjectId>);
static_assert(!std::is_constructible_v<ObjectId, NodeId>);
static_assert(!std::is_assignable_v<TaskId&, ActorId>);
static_assert(!std::is_convertible_v<WorkerId, NodeId>);
static_assert(!std::is_convertible_v<std::string, ObjectId>);
// Job numbers come from the GCS; 4 random bytes would collide, so there is no JobId::random().
static_assert(!has_random<JobId>);
static_assert(has_random<NodeId> && has_random<ObjectId> && has_random<ActorId> &&
              has_random<TaskId> && has_random<WorkerId>);
static_assert(JobId::kSize == 4 && NodeId::kSize == 16 && ObjectId::kSize == 16 &&
              ActorId::kSize == 16 && TaskId::kSize == 16 && WorkerId::kSize == 16);
static_assert(std::is_trivially_copyable_v<ObjectId>);

template <typename T>
class RandomIdTest : public ::testing::Test {};
using RandomIdTypes = ::testing::Types<NodeId, ObjectId, ActorId, TaskId, WorkerId>;
TYPED_TEST_SUITE(RandomIdTest, RandomIdTypes);

TYPED_TEST(RandomIdTest, DefaultIsNilAndRandomIsNot) {
  TypeParam id;
  EXPECT_TRUE(id.is_nil());
  EXPECT_EQ(id, TypeParam::nil());
  EXPECT_EQ(id.to_hex(), std::string(2 * TypeParam::kSize, '0'));
  TypeParam r = TypeParam::random();
  EXPECT_FALSE(r.is_nil());
  EXPECT_NE(r, TypeParam::nil());
}

TYPED_TEST(RandomIdTest, RoundTripsThroughHex) {
  TypeParam id = TypeParam::random();
  std::string hex = id.to_hex();
  EXPECT_EQ(hex.size(), 2 * TypeParam::kSize);
  EXPECT_TRUE(std::all_of(hex.begin(), hex.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  })) << hex;
  StatusOr<TypeParam> back = TypeParam::from_hex(hex);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, id);
}

TYPED_TEST(RandomIdTest, RoundTripsThroughBinary) {
  TypeParam id = TypeParam::random();
  std::string wire = id.binary();
  EXPECT_EQ(wire.size(), TypeParam::kSize);
  StatusOr<TypeParam> back = TypeParam::from_binary(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, id);
  EXPECT_EQ(TypeParam::from_bytes(id.bytes()), id);
}

TYPED_TEST(RandomIdTest, BadHexIsRejectedNamingTheType) {
  std::string name(TypeParam::kTypeName);
  StatusOr<TypeParam> short_text = TypeParam::from_hex("abc");
  ASSERT_FALSE(short_text.ok());
  EXPECT_EQ(short_text.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(short_text.status().message(),
            "bad " + name + " 'abc': expected 32 hex digits, got 3 characters");
}

TEST(Ids, RandomIdsAreUnique) {
  constexpr int kCount = 200000;
  std::unordered_set<ObjectId> seen;
  seen.reserve(kCount);
  for (int i = 0; i < kCount; ++i) seen.insert(ObjectId::random());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kCount));
}

TEST(Ids, RandomIdsFromManyThreadsAreUnique) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::vector<TaskId>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(TaskId::random());
    });
  }
  for (auto& th : threads) th.join();
  std::unordered_set<TaskId> seen;
  for (const auto& v : made) seen.insert(v.begin(), v.end());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

// A worker forked from a node daemon must not repeat the daemon's ids: a generator whose state
// was copied by fork() would make the same "random" ids in both processes.
TEST(Ids, ForkedChildMakesDifferentIds) {
  (void)ObjectId::random();  // Make sure the generator is seeded before the fork.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string wire = ObjectId::random().binary();
    ssize_t n = ::write(fds[1], wire.data(), wire.size());
    _exit(n == static_cast<ssize_t>(wire.size()) ? 0 : 1);
  }
  ObjectId parent_id = ObjectId::random();
  close(fds[1]);
  char buf[ObjectId::kSize];
  ssize_t n = ::read(fds[0], buf, sizeof(buf));
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof(buf)));
  StatusOr<ObjectId> child_id = ObjectId::from_binary(std::string_view(buf, sizeof(buf)));
  ASSERT_TRUE(child_id.ok());
  EXPECT_NE(*child_id, parent_id);
}

TEST(Ids, FromHexAcceptsUpperCase) {
  StatusOr<NodeId> id = NodeId::from_hex("00112233445566778899AABBCCDDEEFF");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->to_hex(), "00112233445566778899aabbccddeeff");
  EXPECT_EQ(id->bytes()[0], 0x00);
  EXPECT_EQ(id->bytes()[10], 0xaa);
  EXPECT_EQ(id->bytes()[15], 0xff);
}

TEST(Ids, FromHexRejectsNonHexNamingThePosition) {
  StatusOr<NodeId> id = NodeId::from_hex("00112233445566778899aabbccddeefg");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(id.status().message(),
            "bad NodeId '00112233445566778899aabbccddeefg': character 32 is not a hex digit");
}

TEST(Ids, FromHexRejectsEmptyAndWrongLengths) {
  EXPECT_EQ(ObjectId::from_hex("").status().message(),
            "bad ObjectId '': expected 32 hex digits, got 0 characters");
  EXPECT_FALSE(ObjectId::from_hex(std::string(31, 'a')).ok());
  EXPECT_FALSE(ObjectId::from_hex(std::string(33, 'a')).ok());
  EXPECT_FALSE(JobId::from_hex("0000000").ok());
  EXPECT_EQ(JobId::from_hex("0000000").status().message(),
            "bad JobId '0000000': expected 8 hex digits, got 7 characters");
}

TEST(Ids, FromHexEscapesBinaryAndCutsLongText) {
  // The classic mix-up: the 16 wire bytes handed to from_hex.
  std::string wire("\x01\x02\xff", 3);
  EXPECT_EQ(ObjectId::from_hex(wire).status().message(),
            "bad ObjectId '\\x01\\x02\\xff': expected 32 hex digits, got 3 characters");
  std::string huge(10000, 'z');
  std::string message(ObjectId::from_hex(huge).status().message());
  EXPECT_LT(message.size(), 200u) << message;
  EXPECT_NE(message.find("got 10000 characters"), std::string::npos) << message;
}

TEST(Ids, FromBinaryRejectsWrongSize) {
  StatusOr<ObjectId> id = ObjectId::from_binary("short");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(id.status().message(), "bad ObjectId: expected 16 bytes, got 5");
  EXPECT_FALSE(JobId::from_binary(std::string(16, 'x')).ok());
  EXPECT_FALSE(NodeId::from_binary("").ok());
}

TEST(Ids, JobIdsAreNumbersInOrder) {
  JobId job = JobId::from_int(3);
  EXPECT_EQ(job.to_int(), 3u);
  EXPECT_EQ(job.to_hex(), "00000003");
  EXPECT_EQ(JobId::from_int(0x01020304).binary(), std::string("\x01\x02\x03\x04", 4));
  EXPECT_TRUE(JobId::from_int(0).is_nil());
  EXPECT_FALSE(job.is_nil());
  EXPECT_LT(JobId::from_int(255), JobId::from_int(256));
  EXPECT_EQ(JobId::from_int(0xffffffffu).to_int(), 0xffffffffu);
  StatusOr<JobId> parsed = JobId::from_hex("0000002a");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->to_int(), 42u);
}

TEST(Ids, OrderIsBytewise) {
  NodeId low = *NodeId::from_hex("00ffffffffffffffffffffffffffffff");
  NodeId high = *NodeId::from_hex("01000000000000000000000000000000");
  EXPECT_LT(low, high);
  EXPECT_GT(high, low);
  EXPECT_LE(low, low);
  std::set<NodeId> sorted = {high, low, NodeId::nil()};
  EXPECT_EQ(*sorted.begin(), NodeId::nil());
  EXPECT_EQ(*sorted.rbegin(), high);
}

TEST(Ids, UsableAsUnorderedMapKeys) {
  std::unordered_map<ObjectId, int> table;
  std::vector<ObjectId> ids;
  for (int i = 0; i < 1000; ++i) {
    ids.push_back(ObjectId::random());
    table[ids.back()] = i;
  }
  ASSERT_EQ(table.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(table.at(ids[i]), i);
  // A copy made through the wire finds the same entry.
  EXPECT_EQ(table.count(*ObjectId::from_binary(ids[17].binary())), 1u);
  EXPECT_EQ(table.count(ObjectId::random()), 0u);
}

// Ids from counters and hand-written test patterns differ in few bits; the hash must still
// spread them, or tables of them degrade to lists.
TEST(Ids, HashSpreadsIdsThatDifferInFewBits) {
  std::hash<JobId> job_hash;
  std::unordered_set<size_t> hashes;
  std::vector<int> buckets(64, 0);
  for (uint32_t n = 1; n <= 4096; ++n) {
    size_t h = job_hash(JobId::from_int(n));
    hashes.insert(h);
    ++buckets[h % 64];
  }
  EXPECT_EQ(hashes.size(), 4096u);
  // 64 per bucket on average; a hash that keeps the counter's structure leaves most empty.
  EXPECT_GT(*std::min_element(buckets.begin(), buckets.end()), 20);

  std::array<uint8_t, 16> bytes{};
  std::unordered_set<size_t> node_hashes;
  for (int i = 0; i < 16; ++i) {
    bytes = {};
    bytes[i] = 1;
    node_hashes.insert(std::hash<NodeId>()(NodeId::from_bytes(bytes)));
  }
  EXPECT_EQ(node_hashes.size(), 16u);  // A change in either half of the id changes the hash.
}

TEST(Ids, EqualIdsHashEqual) {
  ActorId a = ActorId::random();
  ActorId b = *ActorId::from_hex(a.to_hex());
  EXPECT_EQ(std::hash<ActorId>()(a), std::hash<ActorId>()(b));
}

TEST(Ids, StreamsAsHex) {
  WorkerId id = WorkerId::random();
  std::ostringstream os;
  os << id;
  EXPECT_EQ(os.str(), id.to_hex());
  std::ostringstream job;
  job << JobId::from_int(7);
  EXPECT_EQ(job.str(), "00000007");
}

}  // namespace
}  // namespace halo
