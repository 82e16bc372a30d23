// The largest transfers of the transport contract, kept out of the quick conformance binary:
// put and get of 256 MiB to and from a peer process, content checked end to end, for each
// backend over shared memory and over TCP. Labels "transport;slow".
#include "peer_protocol.h"
#include "transport_test_fixture.h"

namespace halo::transport::testing {
namespace {

constexpr size_t kBytes = 256 << 20;
// A 256 MiB transfer on a loaded two-core machine, with the slowest mechanism a backend may
// pick (emulated RMA over TCP), must still finish in this time.
constexpr auto kTransferLimit = 120s;

using Heavy = TransportTest;

TEST_P(Heavy, PutAndGetOf256MiBMoveExactlyTheBytesAsked) {
  auto peer = start_peer(kBytes);
  ASSERT_TRUE(peer.ok()) << peer.status();
  auto ep = connect_to((*peer)->address());
  ASSERT_TRUE(ep.ok()) << ep.status();
  auto remote = client_->describe(**ep, kStepTimeout);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ASSERT_EQ(remote->length, kBytes);
  auto local = register_local(kBytes);
  ASSERT_TRUE(local.ok()) << local.status();
  const std::span<std::byte> bytes = (*local)->bytes();
  const MemoryRegion& region = *(*local)->region;

  fill_pattern(bytes, 5, 0);
  Status put = await((*ep)->put(region, 0, *remote, 0, kBytes), kTransferLimit);
  ASSERT_TRUE(put.ok()) << put;
  Status flushed = await((*ep)->flush(), kTransferLimit);
  ASSERT_TRUE(flushed.ok()) << flushed;
  auto landed = client_->checksum(**ep, 0, kBytes, kTransferLimit);
  ASSERT_TRUE(landed.ok()) << landed.status();
  EXPECT_EQ(*landed, checksum(bytes)) << "the peer's region does not hold the 256 MiB put";

  ASSERT_TRUE(client_->fill(**ep, 0, kBytes, 6, kTransferLimit).ok());
  std::fill(bytes.begin(), bytes.end(), std::byte{0});
  Status got = await((*ep)->get(region, 0, *remote, 0, kBytes), kTransferLimit);
  ASSERT_TRUE(got.ok()) << got;
  const size_t bad = find_pattern_mismatch(bytes, 6, 0);
  EXPECT_EQ(bad, kBytes) << "the 256 MiB got differ from the peer's from byte " << bad;
  EXPECT_TRUE((*ep)->is_open());
}

INSTANTIATE_TEST_SUITE_P(Backends, Heavy, ::testing::ValuesIn(kAllBackends), backend_test_name);

}  // namespace
}  // namespace halo::transport::testing
