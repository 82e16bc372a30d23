// Recovery from damaged data directories: a torn final record is cut at every byte it can be
// torn at, garbage after the last record is cut, damage anywhere else is DATA_LOSS naming the
// file and offset, a corrupt newest snapshot falls back losslessly, and nothing that is not a
// valid GCS file is ever taken for an empty cluster.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gcs/storage/durable_log.h"
#include "gcs/storage/little_endian.h"
#include "gcs/storage/snapshot_file.h"
#include "gcs/storage/wal_segment.h"
#include "tests/gcs/storage/storage_fixture.h"

namespace halo::gcs::test {
namespace {

// Writes records 1..count into a new log in `dir` (taking a snapshot after each index listed
// in `snapshots_at`) and closes it.
void make_log(const std::string& dir, uint64_t count, uint64_t segment_bytes = 64ull << 20,
              const std::vector<uint64_t>& snapshots_at = {}) {
  auto opened = DurableLog::open(options_for(dir, FsyncPolicy::kAlways, segment_bytes));
  ASSERT_TRUE(opened.ok()) << opened.status();
  uint64_t next = 1;
  for (uint64_t at : snapshots_at) {
    ASSERT_TRUE(append_in_batches(*opened->log, next, at).ok());
    ASSERT_TRUE(opened->log->write_snapshot(snapshot_of(state_through(at), at)).ok());
    next = at + 1;
  }
  if (next <= count) {
    ASSERT_TRUE(append_in_batches(*opened->log, next, count).ok());
  }
}

// An empty owner-only directory at `path`.
void make_dir(const std::string& path) {
  std::filesystem::create_directories(path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace);
}

std::string snapshot_path(const TempDir& dir, uint64_t index) {
  return dir.file(snapshot_file_name(index));
}

std::string segment_path(const TempDir& dir, uint64_t first) {
  return dir.file(segment_file_name(first));
}

bool mentions(const Status& s, const std::string& text) {
  return s.to_string().find(text) != std::string::npos;
}

// A log of five records, cut at every byte of its last record: each reopen keeps records 1..4,
// cuts the partial record off the file with a note, and appends go on from there.
TEST(Recovery, TornFinalRecordIsCutAtEveryByteAndEarlierRecordsKept) {
  TempDir pristine;
  make_log(pristine.path(), 5);
  const std::string name = segment_file_name(1);
  const std::string bytes = read_file(pristine.file(name));
  auto contents = read_segment(pristine.file(name), 1);
  ASSERT_TRUE(contents.ok()) << contents.status();
  ASSERT_EQ(contents->offsets.size(), 5u);
  const uint64_t last_start = contents->offsets[4];

  TempDir root;
  for (uint64_t cut = last_start; cut < bytes.size(); ++cut) {
    SCOPED_TRACE("log cut at byte " + std::to_string(cut));
    const std::string dir = root.file(std::to_string(cut));
    make_dir(dir);
    write_file(dir + "/" + name, bytes.substr(0, cut));
    {
      auto opened = DurableLog::open(options_for(dir));
      ASSERT_TRUE(opened.ok()) << opened.status();
      expect_records(opened->recovered, 1, 4);
      const auto& notes = opened->recovered.notes;
      if (cut == last_start) {
        EXPECT_TRUE(notes.empty()) << joined(notes);  // Ends cleanly after record 4.
      } else {
        ASSERT_EQ(notes.size(), 1u) << joined(notes);
        EXPECT_NE(notes[0].find("torn"), std::string::npos) << notes[0];
        EXPECT_NE(notes[0].find(name), std::string::npos) << notes[0];
      }
      EXPECT_EQ(file_size(dir + "/" + name), last_start) << "the torn record was not cut";
      ASSERT_TRUE(append_range(*opened->log, 5, 5).ok());
    }
    auto reopened = DurableLog::open(options_for(dir));
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    expect_records(reopened->recovered, 1, 5);
    EXPECT_TRUE(reopened->recovered.notes.empty()) << joined(reopened->recovered.notes);
    reopened->log.reset();
    std::filesystem::remove_all(dir);
  }
}

// Whatever a crash or a half-written block leaves after the last whole record is cut.
TEST(Recovery, GarbageAfterTheLastRecordIsCut) {
  TempDir pristine;
  make_log(pristine.path(), 5);
  const std::string name = segment_file_name(1);
  const std::string bytes = read_file(pristine.file(name));
  auto contents = read_segment(pristine.file(name), 1);
  ASSERT_TRUE(contents.ok()) << contents.status();
  const uint64_t last_start = contents->offsets[4];

  std::mt19937 rng(7);
  std::string random_bytes(1000, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  std::string huge_frame;
  put_u32(huge_frame, 1u << 30);  // A length far past the end of the file.
  put_u32(huge_frame, 0);
  huge_frame += "0123456789";
  std::string bad_last_record = bytes;
  bad_last_record[last_start + kFrameHeaderBytes + 3] ^= 0x20;  // Record 5's checksum fails.

  struct Case {
    std::string what;
    std::string file;
    uint64_t keep;  // Records that must survive.
  };
  const std::vector<Case> cases = {
      {"one stray byte", bytes + "\x01", 5},
      {"seven bytes, short of a frame header", bytes + std::string(7, '\x7f'), 5},
      {"a zero-filled block", bytes + std::string(4096, '\0'), 5},
      {"1000 random bytes", bytes + random_bytes, 5},
      {"a frame header claiming 1 GiB", bytes + huge_frame, 5},
      {"a last record failing its checksum", bad_last_record, 4},
  };
  TempDir root;
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string dir = root.file(std::to_string(i++));
    make_dir(dir);
    write_file(dir + "/" + name, c.file);
    auto opened = DurableLog::open(options_for(dir));
    ASSERT_TRUE(opened.ok()) << opened.status();
    expect_records(opened->recovered, 1, c.keep);
    ASSERT_EQ(opened->recovered.notes.size(), 1u) << joined(opened->recovered.notes);
    EXPECT_NE(opened->recovered.notes[0].find("torn"), std::string::npos);
    EXPECT_EQ(file_size(dir + "/" + name), c.keep == 5 ? bytes.size() : last_start);
  }
}

// A damaged record with valid ones after it is not a torn write: opening fails, naming the
// file and the offset, and leaves the file as it was.
TEST(Recovery, CorruptMiddleRecordIsDataLossNamingFileAndOffset) {
  TempDir pristine;
  make_log(pristine.path(), 10);
  const std::string name = segment_file_name(1);
  const std::string bytes = read_file(pristine.file(name));
  auto contents = read_segment(pristine.file(name), 1);
  ASSERT_TRUE(contents.ok()) << contents.status();
  const uint64_t fifth = contents->offsets[4];

  struct Case {
    std::string what;
    uint64_t flip_at;
  };
  const std::vector<Case> cases = {
      {"a payload byte of record 5", fifth + kFrameHeaderBytes + 2},
      {"the length of record 5 (framing lost)", fifth + 1},
      {"the checksum of record 5", fifth + 5},
  };
  TempDir root;
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string dir = root.file(std::to_string(i++));
    make_dir(dir);
    const std::string path = dir + "/" + name;
    std::string damaged = bytes;
    damaged[c.flip_at] ^= 0x5a;
    write_file(path, damaged);
    auto opened = DurableLog::open(options_for(dir));
    ASSERT_FALSE(opened.ok()) << "a corrupt record in the middle of the log was accepted";
    EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << opened.status();
    EXPECT_TRUE(mentions(opened.status(), path)) << opened.status();
    EXPECT_TRUE(mentions(opened.status(), "byte offset " + std::to_string(fifth)))
        << opened.status();
    EXPECT_TRUE(mentions(opened.status(), "backup")) << opened.status();
    EXPECT_EQ(read_file(path), damaged) << "a failed recovery changed the file";
  }
}

// In a segment that is not the last one, even a damaged final record is corruption: the
// segment was complete (and synced) before the next one was started.
TEST(Recovery, DamageAtTheEndOfAnEarlierSegmentIsDataLoss) {
  TempDir dir;
  make_log(dir.path(), 60, 512);
  auto names = files_named(dir.path(), "wal-");
  ASSERT_GE(names.size(), 3u);
  const std::string first = dir.file(names[0]);
  auto contents = read_segment(first, 1);
  ASSERT_TRUE(contents.ok()) << contents.status();
  const std::string original = read_file(first);

  flip_byte(first, contents->offsets.back() + kFrameHeaderBytes + 1);
  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << opened.status();
  EXPECT_TRUE(mentions(opened.status(), first)) << opened.status();

  write_file(first, original.substr(0, original.size() - 3));  // Cut short instead.
  opened = DurableLog::open(options_for(dir.path()));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << opened.status();
  EXPECT_TRUE(mentions(opened.status(), first)) << opened.status();
}

// Snapshots at 10 and 20, records to 25; the newest snapshot damaged in each way a disk can
// damage it: recovery falls back to the snapshot at 10 plus records 11..25, the same state,
// and sets the damaged file aside.
TEST(Recovery, CorruptNewestSnapshotFallsBackToThePreviousWithTheSameState) {
  struct Damage {
    std::string what;
    std::function<void(const std::string&)> apply;
  };
  const std::vector<Damage> damages = {
      {"a flipped payload byte", [](const std::string& p) { flip_byte(p, 30); }},
      {"a flipped magic byte", [](const std::string& p) { flip_byte(p, 0); }},
      {"cut in half",
       [](const std::string& p) {
         std::string b = read_file(p);
         write_file(p, b.substr(0, b.size() / 2));
       }},
      {"zero length", [](const std::string& p) { write_file(p, ""); }},
  };
  for (const Damage& damage : damages) {
    SCOPED_TRACE(damage.what);
    TempDir dir;
    make_log(dir.path(), 25, 64ull << 20, {10, 20});
    const std::string newest = snapshot_path(dir, 20);
    damage.apply(newest);

    auto opened = DurableLog::open(options_for(dir.path()));
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(opened->recovered.snapshot_file, snapshot_path(dir, 10));
    expect_records(opened->recovered, 11, 25);
    EXPECT_EQ(state_of(opened->recovered), state_through(25));
    const std::string notes = joined(opened->recovered.notes);
    EXPECT_NE(notes.find(newest), std::string::npos) << notes;
    EXPECT_TRUE(std::filesystem::exists(newest + ".corrupt")) << notes;
    EXPECT_FALSE(std::filesystem::exists(newest));

    // Life goes on: a new snapshot, and the next recovery starts from it.
    ASSERT_TRUE(append_range(*opened->log, 26, 30).ok());
    ASSERT_TRUE(opened->log->write_snapshot(snapshot_of(state_through(30), 30)).ok());
    opened->log.reset();
    auto again = DurableLog::open(options_for(dir.path()));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->recovered.snapshot_file, snapshot_path(dir, 30));
    EXPECT_EQ(state_of(again->recovered), state_through(30));
  }
}

// Three snapshots with small segments: the log no longer starts at 1. With both kept
// snapshots damaged there is nothing to rebuild from: DATA_LOSS naming both files.
TEST(Recovery, AllSnapshotsCorruptAndLogTruncatedIsDataLossNamingThem) {
  TempDir dir;
  make_log(dir.path(), 320, 1024, {100, 200, 300});
  ASSERT_FALSE(std::filesystem::exists(segment_path(dir, 1))) << "retention kept everything";
  flip_byte(snapshot_path(dir, 200), 30);
  flip_byte(snapshot_path(dir, 300), 30);

  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_FALSE(opened.ok()) << "started without a valid snapshot";
  EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << opened.status();
  EXPECT_TRUE(mentions(opened.status(), snapshot_path(dir, 200))) << opened.status();
  EXPECT_TRUE(mentions(opened.status(), snapshot_path(dir, 300))) << opened.status();
  EXPECT_TRUE(std::filesystem::exists(snapshot_path(dir, 300))) << "renamed on a failed open";
}

// One snapshot, so the whole log is still there: a damaged snapshot is rebuilt from the log.
TEST(Recovery, AllSnapshotsCorruptButWholeLogRebuildsFromTheLog) {
  TempDir dir;
  make_log(dir.path(), 15, 64ull << 20, {10});
  flip_byte(snapshot_path(dir, 10), 30);
  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->recovered.snapshot_file.empty());
  expect_records(opened->recovered, 1, 15);
  EXPECT_NE(joined(opened->recovered.notes).find(snapshot_path(dir, 10)), std::string::npos);
}

// Files named like GCS files that are not valid ones never pass for an empty cluster.
TEST(Recovery, EmptyOrGarbageFilesNamedLikeGcsFilesAreDataLoss) {
  struct Case {
    std::string what;
    std::function<std::string(const TempDir&)> make;  // Returns the file to be named.
  };
  const std::vector<Case> cases = {
      {"an empty segment",
       [](const TempDir& d) {
         write_file(segment_path(d, 1), "");
         return segment_path(d, 1);
       }},
      {"a text file named like a segment",
       [](const TempDir& d) {
         write_file(segment_path(d, 1), "not a write-ahead log, just some text\n");
         return segment_path(d, 1);
       }},
      {"a garbage segment after a valid log",
       [](const TempDir& d) {
         make_log(d.path(), 5);
         write_file(segment_path(d, 6), std::string(100, 'x'));
         return segment_path(d, 6);
       }},
      {"a segment whose header names another index",
       [](const TempDir& d) {
         make_log(d.path(), 40, 512);
         std::string second = d.file(files_named(d.path(), "wal-")[1]);
         flip_byte(second, 16);
         return second;
       }},
      {"a garbage snapshot alone",
       [](const TempDir& d) {
         write_file(snapshot_path(d, 5), "garbage");
         return snapshot_path(d, 5);
       }},
      {"a segment far after the log's end",
       [](const TempDir& d) {
         make_log(d.path(), 5);
         std::filesystem::copy_file(segment_path(d, 1), segment_path(d, 100));
         return segment_path(d, 100);
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir dir;
    std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace);
    const std::string bad = c.make(dir);
    auto opened = DurableLog::open(options_for(dir.path()));
    ASSERT_FALSE(opened.ok()) << "opened despite " << bad;
    EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << opened.status();
    EXPECT_TRUE(mentions(opened.status(), bad)) << opened.status();
  }
}

TEST(Recovery, MissingMiddleSegmentIsDataLossNamingTheGap) {
  TempDir dir;
  make_log(dir.path(), 60, 512);
  auto names = files_named(dir.path(), "wal-");
  ASSERT_GE(names.size(), 3u);
  std::filesystem::remove(dir.file(names[1]));
  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << opened.status();
  EXPECT_TRUE(mentions(opened.status(), "missing")) << opened.status();
  EXPECT_TRUE(mentions(opened.status(), dir.file(names[2]))) << opened.status();
}

TEST(Recovery, LeftoverTemporaryFilesAreRemoved) {
  TempDir dir;
  make_log(dir.path(), 3);
  const std::string snapshot_temp = snapshot_path(dir, 3) + ".tmp";
  const std::string segment_temp = segment_path(dir, 4) + ".tmp";
  write_file(snapshot_temp, "half a snapshot");
  write_file(segment_temp, "HALO-W");
  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_TRUE(opened.ok()) << opened.status();
  expect_records(opened->recovered, 1, 3);
  EXPECT_EQ(opened->recovered.notes.size(), 2u) << joined(opened->recovered.notes);
  EXPECT_FALSE(std::filesystem::exists(snapshot_temp));
  EXPECT_FALSE(std::filesystem::exists(segment_temp));
}

// A log created and closed before its first record is a valid, empty cluster.
TEST(Recovery, HeaderOnlySegmentIsAValidEmptyLog) {
  TempDir dir;
  { ASSERT_TRUE(DurableLog::open(options_for(dir.path())).ok()); }
  EXPECT_EQ(file_size(segment_path(dir, 1)), kSegmentHeaderBytes);
  auto opened = DurableLog::open(options_for(dir.path()));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->recovered.records.empty());
  EXPECT_TRUE(opened->recovered.notes.empty()) << joined(opened->recovered.notes);
  EXPECT_EQ(opened->log->last_index(), 0u);
}

}  // namespace
}  // namespace halo::gcs::test
