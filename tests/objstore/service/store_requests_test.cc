// A real halo-node's object store fed malformed and out-of-place requests over an
// authenticated connection, and a client with the wrong secret: each gets a clear error, and
// the store still serves afterwards with nothing leaked.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/raw_message.h"
#include "halo/base/ids.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"
#include "objstore/proto/objstore.pb.h"
#include "tests/gcs/node/local_cluster.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;
namespace proto = objstore::proto;

constexpr uint64_t kStoreBytes = 32ull << 20;

class StoreRequests : public ::testing::Test {
 protected:
  void SetUp() override {
    auto gcs = GcsChild::start(dir_.path(), fast_health_checks());
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = std::move(*gcs);
    const std::string state = dir_.path() + "/node.json";
    auto node = spawn_node(gcs_->address(), gcs_->secret_file(), state,
                           {"--object-store-memory=" + std::to_string(kStoreBytes)});
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::make_unique<ChildProcess>(std::move(*node));
    auto alive = wait_for_node_state(state, "alive", 30s);
    ASSERT_TRUE(alive.ok()) << alive.status();
    address_ = alive->address;

    auto secret = gcs::read_secret_file(gcs_->secret_file());
    ASSERT_TRUE(secret.ok()) << secret.status();
    auto transport = transport::Transport::create(transport::TransportConfig(), *secret);
    ASSERT_TRUE(transport.ok()) << transport.status();
    transport_ = std::move(*transport);
    auto rpc = transport::RpcNode::create(*transport_);
    ASSERT_TRUE(rpc.ok()) << rpc.status();
    rpc_ = std::move(*rpc);
    auto peer = transport_->connect(address_, 10s);
    ASSERT_TRUE(peer.ok()) << peer.status();
    peer_ = *peer;
  }

  void TearDown() override {
    rpc_.reset();
    transport_.reset();
  }

  template <typename Req, typename Resp>
  StatusOr<Resp> call(const char* method, const Req& request) {
    return rpc_->client().call<Req, Resp>(peer_, method, request, 10s).get();
  }

  proto::StoreStatsResponse stats() {
    auto s = call<proto::StoreStatsRequest, proto::StoreStatsResponse>("store.stats", {});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : proto::StoreStatsResponse();
  }

  // Room asked in a store.batch of its own (how the client runtime asks the room of a large
  // put): the node's answer.
  proto::RoomAnswer ask_room(uint64_t size, bool ahead) {
    proto::StoreBatchRequest batch;
    proto::RoomRequest* room = batch.add_ops()->mutable_create();
    room->set_object_id(ObjectId::random().binary());
    room->set_size(size);
    room->set_ahead(ahead);
    auto answered = call<proto::StoreBatchRequest, proto::StoreBatchResponse>("store.batch", batch);
    EXPECT_TRUE(answered.ok()) << answered.status();
    if (!answered.ok()) return proto::RoomAnswer();
    EXPECT_EQ(answered->refused(), 0u) << answered->first_error();
    EXPECT_EQ(answered->rooms_size(), 1);
    return answered->rooms_size() == 1 ? answered->rooms(0) : proto::RoomAnswer();
  }

  TempDir dir_;
  std::unique_ptr<GcsChild> gcs_;
  std::unique_ptr<ChildProcess> node_;
  std::string address_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::RpcNode> rpc_;
  transport::EndpointPtr peer_;
};

TEST_F(StoreRequests, MalformedRequestsGetClearErrorsAndTheStoreKeepsServing) {
  proto::CreateRequest short_id;
  short_id.set_object_id("abc");
  short_id.set_size(10);
  auto r1 = call<proto::CreateRequest, proto::CreateResponse>("store.create", short_id);
  EXPECT_EQ(r1.status().code(), StatusCode::kInvalidArgument) << r1.status();
  EXPECT_NE(r1.status().message().find("object id"), std::string_view::npos) << r1.status();

  proto::CreateRequest huge;
  huge.set_object_id(ObjectId::random().binary());
  huge.set_size(kStoreBytes * 4);
  auto r2 = call<proto::CreateRequest, proto::CreateResponse>("store.create", huge);
  EXPECT_EQ(r2.status().code(), StatusCode::kOutOfRange) << r2.status();

  proto::SealRequest unknown;
  unknown.set_object_id(ObjectId::random().binary());
  auto r3 = call<proto::SealRequest, proto::SealResponse>("store.seal", unknown);
  EXPECT_EQ(r3.status().code(), StatusCode::kFailedPrecondition) << r3.status();

  proto::GetRequest bad_get;
  bad_get.add_refs()->set_object_id("\x01\x02");
  auto r4 = call<proto::GetRequest, proto::GetResponse>("store.get", bad_get);
  EXPECT_EQ(r4.status().code(), StatusCode::kInvalidArgument) << r4.status();

  proto::PullRequest outside;
  outside.set_object_id(ObjectId::random().binary());
  outside.mutable_into()->set_length(100);
  outside.set_offset(90);
  outside.set_size(20);
  auto r5 = call<proto::PullRequest, proto::PullResponse>("peer.pull", outside);
  EXPECT_EQ(r5.status().code(), StatusCode::kInvalidArgument) << r5.status();

  gcs::internal::RawMessage garbage;
  garbage.bytes = std::string("\xff\xff\xff\xff\x0f garbage", 13);
  auto r6 = call<gcs::internal::RawMessage, gcs::internal::RawMessage>("store.create", garbage);
  EXPECT_EQ(r6.status().code(), StatusCode::kInvalidArgument) << r6.status();

  // The store still serves, and nothing of the above holds memory.
  const proto::StoreStatsResponse after = stats();
  EXPECT_EQ(after.capacity_bytes(), kStoreBytes);
  EXPECT_EQ(after.used_bytes(), 0u);
  EXPECT_EQ(after.objects(), 0u);
}

TEST_F(StoreRequests, RoomAheadIsGrantedOnlyFromRoomToSpareNeverWaitsAndComesBackUnused) {
  // More than a client may hold ahead (--put-ahead-bytes, 32 MiB by default).
  const proto::RoomAnswer too_big = ask_room(33ull << 20, true);
  EXPECT_EQ(too_big.code(), static_cast<int>(StatusCode::kInvalidArgument)) << too_big.message();
  EXPECT_NE(too_big.message().find("--put-ahead-bytes"), std::string::npos) << too_big.message();

  const proto::RoomAnswer ahead = ask_room(8ull << 20, true);
  ASSERT_EQ(ahead.code(), 0) << ahead.message();
  EXPECT_EQ(stats().rooms_created_ahead(), 1u);
  // The node holds each client to --put-ahead-bytes in all, whatever the client asks.
  const proto::RoomAnswer over = ask_room(25ull << 20, true);
  EXPECT_EQ(over.code(), static_cast<int>(StatusCode::kInvalidArgument)) << over.message();
  EXPECT_NE(over.message().find("held ahead already"), std::string::npos) << over.message();
  // 8 MiB ahead and 18 MiB created: 6 MiB free, less than 4 MiB plus an eighth of the store.
  const proto::RoomAnswer held = ask_room(18ull << 20, false);
  ASSERT_EQ(held.code(), 0) << held.message();
  const proto::RoomAnswer refused = ask_room(4ull << 20, true);
  EXPECT_EQ(refused.code(), static_cast<int>(StatusCode::kResourceExhausted)) << refused.message();
  // Room not ahead is granted while there is room now...
  const proto::RoomAnswer last = ask_room(4ull << 20, false);
  ASSERT_EQ(last.code(), 0) << last.message();
  // ...and never waited for in a batch: with 2 MiB free, at once RESOURCE_EXHAUSTED (a put
  // then asks with store.create, which waits).
  const auto before = std::chrono::steady_clock::now();
  const proto::RoomAnswer full = ask_room(4ull << 20, false);
  EXPECT_EQ(full.code(), static_cast<int>(StatusCode::kResourceExhausted)) << full.message();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 5s) << "room in a batch waited for room";
  EXPECT_EQ(stats().puts_waiting_for_room(), 0u);

  // Dropping the unsealed rooms gives them back: the store is empty again.
  proto::StoreBatchRequest drop;
  for (const proto::RoomAnswer* room : {&ahead, &held, &last}) {
    drop.add_ops()->mutable_remove_ref()->set_object_id(room->object_id());
  }
  auto dropped = call<proto::StoreBatchRequest, proto::StoreBatchResponse>("store.batch", drop);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(dropped->refused(), 0u) << dropped->first_error();
  const proto::StoreStatsResponse after = stats();
  EXPECT_EQ(after.used_bytes(), 0u);
  EXPECT_EQ(after.objects(), 0u);
}

TEST_F(StoreRequests, RoomAskedAfterADroppedObjectInOneBatchIsTheDroppedObjectsPlace) {
  // The client runtime asks the room of a put after the drop of the last put's object, so that
  // a stream of puts writes over memory still in the cache.
  const proto::RoomAnswer first = ask_room(4ull << 20, false);
  ASSERT_EQ(first.code(), 0) << first.message();
  proto::StoreBatchRequest batch;
  batch.add_ops()->set_seal(first.object_id());
  batch.add_ops()->mutable_remove_ref()->set_object_id(first.object_id());
  proto::RoomRequest* next = batch.add_ops()->mutable_create();
  next->set_object_id(ObjectId::random().binary());
  next->set_size(4ull << 20);
  // A room with a malformed id is refused, and answered too, in its place.
  proto::RoomRequest* malformed = batch.add_ops()->mutable_create();
  malformed->set_object_id("short");
  malformed->set_size(1ull << 20);
  auto answered = call<proto::StoreBatchRequest, proto::StoreBatchResponse>("store.batch", batch);
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_EQ(answered->refused(), 1u);
  ASSERT_EQ(answered->rooms_size(), 2);
  EXPECT_EQ(answered->rooms(0).code(), 0) << answered->rooms(0).message();
  EXPECT_EQ(answered->rooms(0).offset(), first.offset());
  EXPECT_EQ(answered->rooms(1).code(), static_cast<int>(StatusCode::kInvalidArgument));
  EXPECT_EQ(stats().objects(), 1u);
}

TEST_F(StoreRequests, RoomFreedInABatchGoesToThePutWaitingNotToARoomAskedAfterIt) {
  const proto::RoomAnswer big = ask_room(24ull << 20, false);
  ASSERT_EQ(big.code(), 0) << big.message();
  // A put that does not fit waits at the node for room...
  proto::CreateRequest create;
  create.set_object_id(ObjectId::random().binary());
  create.set_size(20ull << 20);
  create.set_timeout_ms(20'000);
  auto waiting = rpc_->client().call<proto::CreateRequest, proto::CreateResponse>(
      peer_, "store.create", create, 30s);
  ASSERT_TRUE(wait_for([&] { return stats().puts_waiting_for_room() == 1; }, 20s));
  // ...and the room a drop frees is its own (the node retries waiting puts as the drop frees
  // room), not that of a room asked after the drop in the same batch, which would leave too
  // little for it.
  proto::StoreBatchRequest batch;
  batch.add_ops()->mutable_remove_ref()->set_object_id(big.object_id());
  proto::RoomRequest* next = batch.add_ops()->mutable_create();
  next->set_object_id(ObjectId::random().binary());
  next->set_size(14ull << 20);
  auto answered = call<proto::StoreBatchRequest, proto::StoreBatchResponse>("store.batch", batch);
  ASSERT_TRUE(answered.ok()) << answered.status();
  ASSERT_EQ(answered->rooms_size(), 1);
  EXPECT_EQ(answered->rooms(0).code(), static_cast<int>(StatusCode::kResourceExhausted))
      << answered->rooms(0).message();
  ASSERT_EQ(waiting.wait_for(20s), std::future_status::ready);
  auto created = waiting.get();
  EXPECT_TRUE(created.ok()) << created.status();
}

TEST_F(StoreRequests, SealByAnotherClientThanTheCreatorIsRefused) {
  proto::CreateRequest create;
  const ObjectId id = ObjectId::random();
  create.set_object_id(id.binary());
  create.set_size(1000);
  ASSERT_TRUE((call<proto::CreateRequest, proto::CreateResponse>("store.create", create)).ok());

  auto other = transport_->connect(address_, 10s);
  ASSERT_TRUE(other.ok()) << other.status();
  proto::SealRequest seal;
  seal.set_object_id(id.binary());
  auto refused = rpc_->client()
                     .call<proto::SealRequest, proto::SealResponse>(*other, "store.seal", seal, 10s)
                     .get();
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status();
  // The same in a batch (how the client runtime seals), and a seal of an id that is no object.
  proto::StoreBatchRequest batch;
  batch.add_ops()->set_seal(id.binary());
  batch.add_ops()->set_seal(ObjectId::random().binary());
  batch.add_ops()->set_seal("short");
  auto batch_refused = rpc_->client()
                           .call<proto::StoreBatchRequest, proto::StoreBatchResponse>(
                               *other, "store.batch", batch, 10s)
                           .get();
  ASSERT_TRUE(batch_refused.ok()) << batch_refused.status();
  EXPECT_EQ(batch_refused->refused(), 3u);
  EXPECT_NE(batch_refused->first_error().find("not being created by this client"),
            std::string::npos)
      << batch_refused->first_error();
  // The creator's connection closes: its unsealed object is aborted and the space comes back.
  peer_->close();
  auto stats_after = [&] {
    return rpc_->client()
        .call<proto::StoreStatsRequest, proto::StoreStatsResponse>(*other, "store.stats", {}, 10s)
        .get();
  };
  EXPECT_TRUE(wait_for(
      [&] {
        auto s = stats_after();
        return s.ok() && s->used_bytes() == 0;
      },
      20s));
}

TEST_F(StoreRequests, ArenaAnnouncementsOutOfPlaceAreRefusedAndAClosedClientsArenaIsFreed) {
  proto::StoreBatchRequest no_arena;
  proto::ArenaPut* put = no_arena.add_ops()->mutable_arena_put();
  put->set_object_id(ObjectId::random().binary());
  put->set_size(64);
  auto refused = call<proto::StoreBatchRequest, proto::StoreBatchResponse>("store.batch", no_arena);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->refused(), 1u);
  EXPECT_NE(refused->first_error().find("has none"), std::string::npos) << refused->first_error();

  proto::ReserveArenaRequest too_big;
  too_big.set_size(64ull << 20);
  auto r1 =
      call<proto::ReserveArenaRequest, proto::ReserveArenaResponse>("store.reserve_arena", too_big);
  EXPECT_EQ(r1.status().code(), StatusCode::kInvalidArgument) << r1.status();
  EXPECT_NE(r1.status().message().find("--small-object-arena-bytes"), std::string_view::npos);

  proto::ReserveArenaRequest reserve;
  reserve.set_size(64 << 10);
  auto arena =
      call<proto::ReserveArenaRequest, proto::ReserveArenaResponse>("store.reserve_arena", reserve);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ(arena->size(), 64u << 10);
  EXPECT_EQ(stats().arena_bytes(), 64u << 10);

  // One good announcement among bad ones: a garbage id, one past the front, a size that
  // rounds to nothing, an empty op.
  proto::StoreBatchRequest batch;
  batch.add_ops()->mutable_arena_put()->set_object_id("short");
  proto::ArenaPut* wraps = batch.add_ops()->mutable_arena_put();
  wraps->set_object_id(ObjectId::random().binary());
  wraps->set_offset(arena->offset());
  wraps->set_size(~uint64_t{0} - 10);
  proto::ArenaPut* skipped = batch.add_ops()->mutable_arena_put();
  skipped->set_object_id(ObjectId::random().binary());
  skipped->set_offset(arena->offset() + 64);
  skipped->set_size(10);
  const ObjectId good = ObjectId::random();
  proto::ArenaPut* first = batch.add_ops()->mutable_arena_put();
  first->set_object_id(good.binary());
  first->set_offset(arena->offset());
  first->set_size(100);
  batch.add_ops();
  auto applied = call<proto::StoreBatchRequest, proto::StoreBatchResponse>("store.batch", batch);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->refused(), 4u) << applied->first_error();
  EXPECT_EQ(stats().objects(), 1u);
  EXPECT_EQ(stats().referenced_objects(), 1u);

  // The object is a sealed object like any other: readable by another client.
  auto other = transport_->connect(address_, 10s);
  ASSERT_TRUE(other.ok()) << other.status();
  proto::GetRequest get;
  get.add_refs()->set_object_id(good.binary());
  get.set_timeout_ms(5000);
  auto got = rpc_->client()
                 .call<proto::GetRequest, proto::GetResponse>(*other, "store.get", get, 10s)
                 .get();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->objects_size(), 1);
  EXPECT_EQ(got->objects(0).code(), 0) << got->objects(0).message();
  EXPECT_EQ(got->objects(0).offset(), arena->offset());
  EXPECT_EQ(got->objects(0).size(), 100u);

  // The creator goes: its reference and the rest of its arena go with it; the other client's
  // pin goes when it closes too.
  peer_->close();
  (*other)->close();
  auto watcher = transport_->connect(address_, 10s);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  StatusOr<proto::StoreStatsResponse> last = internal_error("not read");
  EXPECT_TRUE(wait_for(
      [&] {
        last = rpc_->client()
                   .call<proto::StoreStatsRequest, proto::StoreStatsResponse>(
                       *watcher, "store.stats", {}, 10s)
                   .get();
        return last.ok() && last->used_bytes() == 0 && last->objects() == 0;
      },
      20s))
      << (last.ok() ? last->DebugString() : last.status().to_string());
}

TEST_F(StoreRequests, ClientWithTheWrongSecretIsRefused) {
  auto wrong = transport::Transport::create(transport::TransportConfig(), std::string(64, 'x'));
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  auto peer = (*wrong)->connect(address_, 10s);
  EXPECT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), StatusCode::kUnauthenticated) << peer.status();
  EXPECT_EQ(stats().capacity_bytes(), kStoreBytes) << "the node still serves";
}

}  // namespace
}  // namespace halo::test
