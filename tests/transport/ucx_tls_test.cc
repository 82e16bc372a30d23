// choose_tls: which UCX transports a halo context asks for. The end-to-end case (a client
// killed mid-send no longer silences its node daemon) is ObjectStoreCluster.*, whose clients
// are killed with SIGKILL as soon as they have printed their answer.
#include "ucx/ucx_tls.h"

#include <gtest/gtest.h>

namespace halo::transport::internal::ucx {
namespace {

TEST(UcxTls, DefaultLeavesTheSharedMemoryFifoOut) {
  const TlsChoice choice = choose_tls("", nullptr, /*has_infiniband=*/false);
  EXPECT_EQ(choice.tls, "^mm");
  EXPECT_FALSE(choice.may_use_shared_memory_fifo);
  EXPECT_TRUE(choice.may_carry_data_over_tcp);
}

TEST(UcxTls, DefaultWithInfinibandDoesNotCopyTcpMessages) {
  const TlsChoice choice = choose_tls("", nullptr, /*has_infiniband=*/true);
  EXPECT_EQ(choice.tls, "^mm");
  EXPECT_FALSE(choice.may_carry_data_over_tcp);
}

TEST(UcxTls, TheUsersUcxTlsWinsOverTheDefault) {
  const TlsChoice choice = choose_tls("", "posix,sysv,cma,self", false);
  EXPECT_EQ(choice.tls, "");  // Left as ucp_config_read found it.
  EXPECT_TRUE(choice.may_use_shared_memory_fifo);
  EXPECT_FALSE(choice.may_carry_data_over_tcp);
}

TEST(UcxTls, TheKnobWinsOverUcxTls) {
  const TlsChoice choice = choose_tls("tcp,self", "posix,sysv,cma,self", false);
  EXPECT_EQ(choice.tls, "tcp,self");
  EXPECT_FALSE(choice.may_use_shared_memory_fifo);
  EXPECT_TRUE(choice.may_carry_data_over_tcp);
}

TEST(UcxTls, AliasesThatIncludeTheFifoAreFlagged) {
  for (const char* tls : {"all", "sm", "shm,tcp", "mm,self", "sysv", "^tcp"}) {
    EXPECT_TRUE(choose_tls(tls, nullptr, false).may_use_shared_memory_fifo) << tls;
  }
  for (const char* tls : {"tcp,self", "cma,tcp,self", "^mm", "^sm", "^shm,rc"}) {
    EXPECT_FALSE(choose_tls(tls, nullptr, false).may_use_shared_memory_fifo) << tls;
  }
}

TEST(UcxTls, TcpIsCarriedUnlessLeftOutOrBesideInfiniband) {
  EXPECT_TRUE(choose_tls("^posix,sysv", nullptr, false).may_carry_data_over_tcp);
  EXPECT_FALSE(choose_tls("^tcp", nullptr, false).may_carry_data_over_tcp);
  EXPECT_FALSE(choose_tls("posix,cma,self", nullptr, false).may_carry_data_over_tcp);
  EXPECT_TRUE(choose_tls("tcp,rc", nullptr, false).may_carry_data_over_tcp);
  EXPECT_FALSE(choose_tls("tcp,rc", nullptr, true).may_carry_data_over_tcp);
  EXPECT_FALSE(choose_tls("^mm,tcp", nullptr, true).may_carry_data_over_tcp);
  EXPECT_TRUE(choose_tls("^rc,dc,ud,ib", nullptr, true).may_carry_data_over_tcp);
  EXPECT_TRUE(choose_tls("tcp,self", nullptr, true).may_carry_data_over_tcp);
}

}  // namespace
}  // namespace halo::transport::internal::ucx
