// DurableLog while it runs: records come back in order after a reopen, acknowledgements come
// only after durability under both fsync policies, snapshots and the retention of segments and
// snapshots, the data directory's lock and modes, and what a failing disk does to appends.
#include "gcs/storage/durable_log.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <barrier>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "gcs/storage/wal_segment.h"
#include "tests/gcs/storage/storage_fixture.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::test {
namespace {

using namespace std::chrono_literals;

TEST(DurableLog, AppendedRecordsComeBackInOrderAfterReopen) {
  TempDir dir;
  // Small segments, so that the records span many segment files.
  const auto options = options_for(dir.path(), FsyncPolicy::kAlways, 4096);
  {
    auto opened = DurableLog::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(opened->recovered.records.size(), 0u);
    EXPECT_EQ(opened->log->last_index(), 0u);
    ASSERT_TRUE(append_in_batches(*opened->log, 1, 500, 10).ok());
    EXPECT_EQ(opened->log->durable_index(), 500u);
  }
  EXPECT_GT(files_named(dir.path(), "wal-").size(), 5u) << "segments did not rotate";
  {
    auto opened = DurableLog::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_TRUE(opened->recovered.notes.empty()) << joined(opened->recovered.notes);
    expect_records(opened->recovered, 1, 500);
    EXPECT_EQ(opened->log->last_index(), 500u);
    ASSERT_TRUE(append_in_batches(*opened->log, 501, 600, 10).ok());
  }
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  expect_records(opened->recovered, 1, 600);
}

class DurableLogPolicy : public ::testing::TestWithParam<FsyncPolicy> {};

// Eight threads append at once (ordered by one lock, as the GCS's tables order them); every
// acknowledgement must come after the record is durable, once, and in index order.
TEST_P(DurableLogPolicy, AcknowledgesOnlyDurableRecordsOnceAndInOrder) {
  TempDir dir;
  auto options = options_for(dir.path(), GetParam());
  options.group_commit_delay_us = 1000;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  struct Ack {
    uint64_t index;
    uint64_t durable_then;
  };
  std::mutex acks_mu;
  std::vector<Ack> acks;
  {
    auto opened = DurableLog::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    DurableLog& log = *opened->log;
    std::mutex tables_mu;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) {
          std::atomic<bool> done{false};
          {
            std::lock_guard<std::mutex> lock(tables_mu);
            uint64_t n = log.last_index() + 1;
            log.append(mutation_for(n), [&, n](Status s) {
              EXPECT_TRUE(s.ok()) << s;
              std::lock_guard<std::mutex> ack_lock(acks_mu);
              acks.push_back({n, log.durable_index()});
              done = true;
            });
          }
          ASSERT_TRUE(halo::test::wait_for([&] { return done.load(); }, 30s));
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  ASSERT_EQ(acks.size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < acks.size(); ++i) {
    EXPECT_EQ(acks[i].index, i + 1) << "acknowledged out of order";
    // Group commit acknowledges once written and syncs within its delay (tested below).
    if (GetParam() == FsyncPolicy::kAlways) {
      EXPECT_GE(acks[i].durable_then, acks[i].index)
          << "record " << acks[i].index << " acknowledged before it was durable";
    }
  }
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  expect_records(opened->recovered, 1, kThreads * kPerThread);
}

INSTANTIATE_TEST_SUITE_P(Policies, DurableLogPolicy,
                         ::testing::Values(FsyncPolicy::kAlways, FsyncPolicy::kGroup),
                         [](const auto& p) {
                           return p.param == FsyncPolicy::kAlways ? "Always" : "Group";
                         });

// With group commit a record is acknowledged once written (a killed GCS keeps it: it is in
// the file) and synced no earlier than the delay after that, and not much later.
TEST(DurableLog, GroupCommitAcknowledgesWhenWrittenAndSyncsWithinTheDelay) {
  TempDir dir;
  auto options = options_for(dir.path(), FsyncPolicy::kGroup);
  options.group_commit_delay_us = 300'000;
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  DurableLog& log = *opened->log;
  std::atomic<bool> acked{false};
  std::atomic<uint64_t> durable_at_ack{99};
  const auto start = std::chrono::steady_clock::now();
  log.append(mutation_for(1), [&](Status s) {
    EXPECT_TRUE(s.ok()) << s;
    durable_at_ack = log.durable_index();
    acked = true;
  });
  ASSERT_TRUE(halo::test::wait_for([&] { return acked.load(); }, 10s));
  EXPECT_EQ(durable_at_ack.load(), 0u) << "group commit waited for the sync to acknowledge";
  ASSERT_TRUE(halo::test::wait_for([&] { return log.durable_index() == 1; }, 10s))
      << "the acknowledged record was never synced";
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 300ms) << "synced before the group commit delay";
  EXPECT_LT(elapsed, 300ms + 2s) << "the group commit delay was not bounded";
}

// Eight clients in step, ten rounds, with a 1 s delay: every record is acknowledged without
// waiting for a sync, and one sync later all of them are durable.
TEST(DurableLog, GroupCommitDoesNotMakeClientsWaitForTheSync) {
  TempDir dir;
  auto options = options_for(dir.path(), FsyncPolicy::kGroup);
  options.group_commit_delay_us = 1'000'000;
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  DurableLog& log = *opened->log;
  constexpr int kClients = 8;
  constexpr int kRounds = 10;
  std::mutex tables_mu;
  std::barrier round_start(kClients);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        round_start.arrive_and_wait();
        std::atomic<bool> done{false};
        {
          std::lock_guard<std::mutex> lock(tables_mu);
          log.append(mutation_for(log.last_index() + 1), [&](Status s) {
            EXPECT_TRUE(s.ok()) << s;
            done = true;
          });
        }
        EXPECT_TRUE(halo::test::wait_for([&] { return done.load(); }, 30s));
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s)
      << "group commit made clients wait out its delay";
  EXPECT_TRUE(halo::test::wait_for(
      [&] { return log.durable_index() == uint64_t{kClients * kRounds}; }, 10s));
}

// A snapshot needs its records on disk first; it must not wait out a long group delay.
TEST(DurableLog, SnapshotFlushesQueuedRecordsWithoutWaitingForTheGroupDelay) {
  TempDir dir;
  auto options = options_for(dir.path(), FsyncPolicy::kGroup);
  options.group_commit_delay_us = 60'000'000;
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  DurableLog& log = *opened->log;
  std::atomic<bool> acked{false};
  log.append(mutation_for(1), [&](Status s) { acked = s.ok(); });
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(log.write_snapshot(snapshot_of(state_through(1), 1)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(acked.load()) << "the snapshot's record was not durable when it returned";
  EXPECT_EQ(log.durable_index(), 1u);
  EXPECT_EQ(log.snapshot_index(), 1u);
}

// Three snapshots: only the two newest stay, with the segments holding every record after the
// older of them; falling back to it (the newest made unreadable) gives the same state.
TEST(DurableLog, SnapshotRetentionKeepsWhatTheFallbackNeedsAndNothingOlder) {
  TempDir dir;
  const auto options = options_for(dir.path(), FsyncPolicy::kAlways, 2048);
  {
    auto opened = DurableLog::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    DurableLog& log = *opened->log;
    for (uint64_t round = 0; round < 3; ++round) {
      ASSERT_TRUE(append_in_batches(log, round * 100 + 1, round * 100 + 100, 10).ok());
      const uint64_t at = round * 100 + 100;
      ASSERT_TRUE(log.write_snapshot(snapshot_of(state_through(at), at)).ok());
      EXPECT_EQ(log.snapshot_index(), at);
    }
    ASSERT_TRUE(append_in_batches(log, 301, 350, 10).ok());
  }
  EXPECT_EQ(files_named(dir.path(), "snapshot-"),
            (std::vector<std::string>{"snapshot-00000000000000000200.pb",
                                      "snapshot-00000000000000000300.pb"}));
  // Every segment but the newest holds records up to the next one's first index - 1; none may
  // end at or before 200 (deleted), and the one holding record 201 must be there.
  std::vector<uint64_t> firsts;
  for (const std::string& name : files_named(dir.path(), "wal-")) {
    firsts.push_back(*parse_segment_file_name(name));
  }
  ASSERT_GE(firsts.size(), 2u);
  EXPECT_LE(firsts.front(), 201u) << "a segment the fallback needs was deleted";
  EXPECT_GT(firsts[1] - 1, 200u) << "a segment older than the fallback snapshot was kept";

  {
    auto opened = DurableLog::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(opened->recovered.snapshot.last_index(), 300u);
    expect_records(opened->recovered, 301, 350);
    EXPECT_EQ(state_of(opened->recovered), state_through(350));
  }
  flip_byte(dir.file("snapshot-00000000000000000300.pb"), 40);
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->recovered.snapshot.last_index(), 200u);
  expect_records(opened->recovered, 201, 350);
  EXPECT_EQ(state_of(opened->recovered), state_through(350));
}

TEST(DurableLog, SecondOpenerIsRefusedNamingTheHolderPid) {
  TempDir dir;
  auto first = DurableLog::open(options_for(dir.path()));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = DurableLog::open(options_for(dir.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status();
  EXPECT_NE(second.status().to_string().find("pid " + std::to_string(::getpid())),
            std::string::npos)
      << second.status();
  first->log.reset();
  auto third = DurableLog::open(options_for(dir.path()));
  EXPECT_TRUE(third.ok()) << "the lock outlived its holder: " << third.status();
}

TEST(DurableLog, DataDirectoryAndFilesAreOwnerOnly) {
  TempDir parent;
  const std::string dir = parent.file("nested/data");
  {
    auto opened = DurableLog::open(options_for(dir));
    ASSERT_TRUE(opened.ok()) << opened.status();
    ASSERT_TRUE(append_range(*opened->log, 1, 3).ok());
    ASSERT_TRUE(opened->log->write_snapshot(snapshot_of(state_through(3), 3)).ok());
  }
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ASSERT_EQ(::stat(entry.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << entry.path();
  }
}

TEST(DurableLog, OpenRejectsOptionsThatCouldLoseData) {
  TempDir dir;
  auto options = options_for(dir.path());
  options.snapshots_kept = 1;
  auto opened = DurableLog::open(options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(opened.status().to_string().find("snapshots_kept"), std::string::npos);
}

TEST(DurableLog, SnapshotAheadOfTheLogIsRefused) {
  TempDir dir;
  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(append_range(*opened->log, 1, 2).ok());
  Status s = opened->log->write_snapshot(snapshot_of(state_through(2), 5));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
}

// A write that fails halfway (the file size limit, as a full disk would) fails the record it
// carried and every later one, the log stays broken, and recovery cuts the partial record
// while keeping every acknowledged one.
TEST(DurableLog, FailedWriteFailsItsRecordAndEveryLaterOne) {
  TempDir dir;
  const auto options = options_for(dir.path());
  const std::string segment = dir.file(segment_file_name(1));
  {
    auto opened = DurableLog::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    DurableLog& log = *opened->log;
    ASSERT_TRUE(append_range(log, 1, 10).ok());

    struct rlimit saved;
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    auto saved_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limited = saved;
    limited.rlim_cur = file_size(segment) + 20;  // Part of the next record fits.
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
    Status failed = append_range(log, 11, 11);
    Status later = append_range(log, 12, 12);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::signal(SIGXFSZ, saved_handler);

    EXPECT_FALSE(failed.ok()) << "a record was acknowledged that is not on disk";
    EXPECT_NE(failed.to_string().find(segment), std::string::npos) << failed;
    EXPECT_FALSE(later.ok()) << "the log kept acknowledging after a failed write";
    EXPECT_EQ(log.durable_index(), 10u);
    EXPECT_FALSE(log.write_snapshot(snapshot_of(state_through(10), 10)).ok());
    EXPECT_FALSE(append_range(log, 13, 13).ok());
  }
  auto opened = DurableLog::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  expect_records(opened->recovered, 1, 10);
  ASSERT_EQ(opened->recovered.notes.size(), 1u) << joined(opened->recovered.notes);
  EXPECT_NE(opened->recovered.notes[0].find("torn"), std::string::npos);
}

}  // namespace
}  // namespace halo::gcs::test
