// The GCS's storage killed with SIGKILL at random moments under load: a child process appends
// from several threads (taking snapshots now and then, rotating small segments) and reports
// each acknowledged index through a pipe; the parent kills it, reopens the data directory and
// checks that every index ever acknowledged is there with its exact content. The same
// directory carries on from round to round, so recovery also runs on what earlier recoveries
// left (cut tails, snapshots taken mid-round, temporary files).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gcs/storage/durable_log.h"
#include "tests/gcs/storage/storage_fixture.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kSegmentBytes = 32 << 10;
constexpr uint64_t kSnapshotEvery = 400;  // Records between the child's snapshots.

DurableLogOptions crash_options(const std::string& dir, FsyncPolicy policy) {
  DurableLogOptions options = options_for(dir, policy, kSegmentBytes);
  options.group_commit_delay_us = 2000;
  return options;
}

// The child: appends mutation_for(n) forever from `threads` threads, as the GCS would (index
// taken and state changed under one lock), writes each index to `ack_fd` once its `done`
// reports it durable, and snapshots its state every kSnapshotEvery records. Never returns.
[[noreturn]] void run_appender(const std::string& dir, FsyncPolicy policy, int threads,
                               int ack_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // Never outlive a crashed test.
  ::alarm(60);
  auto opened = DurableLog::open(crash_options(dir, policy));
  if (!opened.ok()) {
    std::fprintf(stderr, "crash child: open failed: %s\n", opened.status().to_string().c_str());
    ::_exit(3);
  }
  DurableLog& log = *opened->log;
  KvState state = state_of(opened->recovered);
  std::mutex tables_mu;
  std::vector<std::thread> appenders;
  for (int t = 0; t < threads; ++t) {
    appenders.emplace_back([&, t] {
      uint64_t last_snapshot = log.snapshot_index();
      while (true) {
        std::atomic<int> acked{0};
        uint64_t n;
        {
          std::lock_guard<std::mutex> lock(tables_mu);
          n = log.last_index() + 1;
          proto::Mutation m = mutation_for(n);
          apply_mutation(state, m);
          log.append(m, [&acked, ack_fd, n](Status s) {
            if (!s.ok()) {
              std::fprintf(stderr, "crash child: append %llu failed: %s\n",
                           static_cast<unsigned long long>(n), s.to_string().c_str());
              ::_exit(4);
            }
            if (::write(ack_fd, &n, sizeof(n)) != static_cast<ssize_t>(sizeof(n))) ::_exit(5);
            acked.store(1);
            acked.notify_one();
          });
        }
        acked.wait(0);
        if (t == 0 && n >= last_snapshot + kSnapshotEvery) {
          proto::GcsSnapshot snapshot;
          {
            std::lock_guard<std::mutex> lock(tables_mu);
            snapshot = snapshot_of(state, log.last_index());
          }
          Status s = log.write_snapshot(snapshot);
          if (!s.ok()) {
            std::fprintf(stderr, "crash child: snapshot failed: %s\n", s.to_string().c_str());
            ::_exit(6);
          }
          last_snapshot = snapshot.last_index();
        }
      }
    });
  }
  for (auto& a : appenders) a.join();
  ::_exit(0);
}

// Reads whole 8-byte indexes from `fd` into `acked` until `deadline` (or EOF if `to_eof`).
void read_acks(int fd, std::string& pending, std::set<uint64_t>& acked,
               const halo::test::Deadline& deadline, bool to_eof) {
  char buf[4096];
  while (true) {
    if (!to_eof) {
      struct pollfd p = {fd, POLLIN, 0};
      int ready = ::poll(&p, 1, deadline.remaining_ms());
      if (ready <= 0) return;  // The deadline passed.
    }
    ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;  // EOF: the child is gone and every ack it wrote was read.
    pending.append(buf, static_cast<size_t>(got));
    size_t whole = pending.size() / 8 * 8;
    for (size_t i = 0; i < whole; i += 8) {
      uint64_t n;
      std::memcpy(&n, pending.data() + i, 8);
      acked.insert(n);
    }
    pending.erase(0, whole);
    if (!to_eof && deadline.expired()) return;
  }
}

void crash_rounds(FsyncPolicy policy, int rounds, int threads) {
  TempDir dir;
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> kill_after_ms(10, 150);
  std::set<uint64_t> acked;  // Over every round.
  int rounds_with_snapshot = 0;
  int rounds_with_torn_tail = 0;

  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    // No thread runs in this process here (the previous round's log was closed), so the
    // child may start threads of its own after fork.
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      run_appender(dir.path(), policy, threads, fds[1]);
    }
    ::close(fds[1]);
    const size_t acked_before = acked.size();
    std::string pending;
    read_acks(fds[0], pending, acked,
              halo::test::Deadline(std::chrono::milliseconds(kill_after_ms(rng))), false);
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "the appender ended by itself (exit " << WEXITSTATUS(wstatus) << ", see its stderr)";
    read_acks(fds[0], pending, acked, halo::test::Deadline::never(), true);
    ::close(fds[0]);
    ASSERT_TRUE(pending.empty()) << "half an index in the pipe";

    auto opened = DurableLog::open(crash_options(dir.path(), policy));
    ASSERT_TRUE(opened.ok()) << opened.status();
    const RecoveredState& recovered = opened->recovered;
    const uint64_t base = recovered.snapshot.last_index();
    for (size_t i = 0; i < recovered.records.size(); ++i) {
      ASSERT_TRUE(holds_mutation_for(recovered.records[i], base + 1 + i))
          << "record " << base + 1 + i << " is wrong: " << recovered.records[i].DebugString();
    }
    const KvState state = state_of(recovered);
    for (uint64_t n : acked) {
      auto it = state.find(key_for(n));
      ASSERT_TRUE(it != state.end()) << "acknowledged record " << n << " was lost";
      ASSERT_EQ(it->second, value_for(n)) << "acknowledged record " << n << " changed";
    }
    if (!acked.empty()) {
      ASSERT_GE(opened->log->last_index(), *acked.rbegin());
    }
    if (base > 0) ++rounds_with_snapshot;
    for (const std::string& note : recovered.notes) {
      if (note.find("torn") != std::string::npos) ++rounds_with_torn_tail;
    }
    std::printf(
        "round %d: %zu acknowledged (%zu in all), recovered to index %llu from "
        "snapshot %llu, %zu notes\n",
        round, acked.size() - acked_before, acked.size(),
        static_cast<unsigned long long>(opened->log->last_index()),
        static_cast<unsigned long long>(base), recovered.notes.size());
  }
  std::printf(
      "%zu records acknowledged over %d rounds; %d recoveries from a snapshot, %d torn "
      "tails cut\n",
      acked.size(), rounds, rounds_with_snapshot, rounds_with_torn_tail);
  // The kills must have landed under load, or this test proved nothing.
  EXPECT_GT(acked.size(), static_cast<size_t>(rounds) * 20);
}

TEST(DurableLogCrash, AcknowledgedRecordsSurviveSigkillWithFsyncAlways) {
  crash_rounds(FsyncPolicy::kAlways, 20, 4);
}

TEST(DurableLogCrash, AcknowledgedRecordsSurviveSigkillWithGroupCommit) {
  crash_rounds(FsyncPolicy::kGroup, 6, 8);
}

}  // namespace
}  // namespace halo::gcs::test
