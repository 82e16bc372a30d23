#include "gcs/storage/recovery.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>
#include <vector>

#include "gcs/storage/posix_file.h"
#include "gcs/storage/snapshot_file.h"
#include "gcs/storage/wal_segment.h"

namespace halo::gcs {
namespace {

struct RejectedSnapshot {
  std::string path;
  Status status;
};

struct TornTail {
  std::string path;
  uint64_t offset;
  uint64_t file_bytes;
  std::string reason;
};

std::string describe(const std::vector<RejectedSnapshot>& rejected) {
  std::string out;
  for (const RejectedSnapshot& r : rejected) {
    if (!out.empty()) out += "; ";
    out += r.status.message();
  }
  return out;
}

Status cut_torn_tail(const TornTail& torn) {
  HALO_ASSIGN_OR_RETURN(File file, File::open(torn.path, O_WRONLY));
  HALO_RETURN_IF_ERROR(file.truncate(torn.offset));
  return file.datasync();
}

}  // namespace

StatusOr<Recovery> recover(const std::string& dir, const DataDirListing& files) {
  Recovery out;
  std::vector<std::string>& notes = out.state.notes;

  // 1. The newest snapshot that reads back valid.
  std::vector<RejectedSnapshot> rejected;
  bool have_snapshot = false;
  for (auto it = files.snapshots.rbegin(); it != files.snapshots.rend(); ++it) {
    auto snapshot = read_snapshot_file(it->second, it->first);
    if (snapshot.ok()) {
      out.state.snapshot = std::move(*snapshot);
      out.state.snapshot_file = it->second;
      have_snapshot = true;
      break;
    }
    // Only damage is fallen back past; an unreadable file or a newer format stops here.
    if (snapshot.status().code() != StatusCode::kDataLoss) return snapshot.status();
    rejected.push_back({it->second, snapshot.status()});
  }
  const uint64_t base = have_snapshot ? out.state.snapshot.last_index() : 0;

  if (!have_snapshot && !rejected.empty() &&
      (files.segments.empty() || files.segments.begin()->first != 1)) {
    return data_loss_error(str_cat(
        "no snapshot in ", dir, " is valid (", describe(rejected), ") and the write-ahead log ",
        files.segments.empty() ? std::string("is missing")
                               : str_cat("starts at index ", files.segments.begin()->first, " (",
                                         files.segments.begin()->second, "), not 1"),
        ", so the GCS tables cannot be rebuilt. Restore the data directory from a backup; "
        "starting over with an empty cluster means moving every file out of ",
        dir));
  }

  // 2. The segment holding record base + 1, and every later one, in order.
  uint64_t expected = base + 1;
  std::optional<TornTail> torn;
  if (!files.segments.empty()) {
    auto it = files.segments.upper_bound(base + 1);
    if (it == files.segments.begin()) {
      return data_loss_error(str_cat(
          have_snapshot ? str_cat("snapshot ", out.state.snapshot_file,
                                  " holds the GCS tables through index ", base)
                        : str_cat("there is no snapshot in ", dir),
          " but the write-ahead log starts at index ", it->first, " (", it->second, "): records ",
          base + 1, "..", it->first - 1,
          " are missing (a segment file was deleted or renamed). Restore the data directory "
          "from a backup"));
    }
    --it;
    expected = it->first;
    std::string previous;
    for (; it != files.segments.end(); ++it) {
      const std::string& path = it->second;
      const bool is_last = std::next(it) == files.segments.end();
      if (it->first > expected) {
        return data_loss_error(str_cat(
            "WAL segment ", path, " starts at index ", it->first, " but ", previous,
            " ends at index ", expected - 1, ": records ", expected, "..", it->first - 1,
            " are missing (a segment file was deleted or renamed). Restore the data directory "
            "from a backup; to accept losing every record from index ",
            expected, " on, move ", path, " and the segments after it out of ", dir));
      }
      if (it->first < expected) {
        return data_loss_error(
            str_cat("WAL segment ", path, " starts at index ", it->first, " but ", previous,
                    " already holds records through index ", expected - 1,
                    ": the segments overlap (a file was copied in or renamed). Restore the data "
                    "directory from a backup, or move the segment that does not belong out of ",
                    dir));
      }
      HALO_ASSIGN_OR_RETURN(SegmentContents contents, read_segment(path, it->first));
      for (size_t i = 0; i < contents.records.size(); ++i) {
        proto::WalRecord& record = contents.records[i];
        if (record.index() != expected) {
          return data_loss_error(str_cat(
              "WAL segment ", path, " holds record ", record.index(), " at byte offset ",
              contents.offsets[i], " where record ", expected,
              " belongs: the log is out of order (not written by one GCS). Restore the data "
              "directory from a backup; to accept losing every record from index ",
              expected, " on, truncate the file to ", contents.offsets[i], " bytes (truncate -s ",
              contents.offsets[i], " ", path, ") and move the segments after it out of ", dir));
        }
        if (record.index() > base) out.state.records.push_back(std::move(record));
        ++expected;
      }
      if (contents.bad) {
        const BadFrame& bad = *contents.bad;
        if (is_last && !bad.checksum_matched && !bad.next_valid_offset) {
          torn = TornTail{path, bad.offset, contents.file_bytes, bad.reason};
        } else {
          std::string why =
              bad.next_valid_offset
                  ? str_cat("a valid record follows at byte offset ", *bad.next_valid_offset)
              : bad.checksum_matched ? std::string("it was written whole")
                                     : std::string("later segments follow");
          return data_loss_error(str_cat("WAL segment ", path, " is corrupt at byte offset ",
                                         bad.offset, " (the record after index ", expected - 1,
                                         "): ", bad.reason,
                                         ". This is not the "
                                         "torn end of the log left by a crash (",
                                         why,
                                         "), so acknowledged records from "
                                         "index ",
                                         expected,
                                         " on would be lost. Restore the data directory from a "
                                         "backup; to accept losing them, truncate the file to ",
                                         bad.offset, " bytes (truncate -s ", bad.offset, " ", path,
                                         ") and move the segments after it out of ", dir));
        }
      }
      previous = path;
    }
  }
  const uint64_t log_end = expected - 1;  // Last record in the log (base if none after it).
  out.last_index = std::max(base, log_end);
  if (!files.segments.empty() && log_end >= base) {
    out.append_segment = *files.segments.rbegin();
  }

  // 3. Everything checked out: now change the directory.
  if (torn) {
    HALO_RETURN_IF_ERROR(cut_torn_tail(*torn));
    notes.push_back(str_cat("cut a torn record off the end of ", torn->path, ": ",
                            torn->file_bytes - torn->offset, " bytes from byte offset ",
                            torn->offset, " (", torn->reason,
                            "); a crash during a write leaves this, and that record had not "
                            "been acknowledged"));
  }
  for (const RejectedSnapshot& r : rejected) {
    const std::string aside = r.path + kCorruptSuffix;
    Status renamed = rename_durably(dir, r.path, aside);
    notes.push_back(str_cat(
        r.status.message(), "; recovered instead from ",
        have_snapshot
            ? str_cat("the previous snapshot ", out.state.snapshot_file, " plus the log after it")
            : std::string("the write-ahead log alone (it starts at index 1)"),
        ", losing nothing; ",
        renamed.ok() ? str_cat("renamed the file to ", aside, " for inspection")
                     : str_cat("renaming it aside failed: ", renamed.message())));
  }
  if (!files.segments.empty() && log_end < base) {
    notes.push_back(str_cat("the write-ahead log ends at index ", log_end,
                            ", before the snapshot's index ", base,
                            "; new records start a new segment at index ", base + 1));
  }
  if (files.segments.empty() && have_snapshot) {
    notes.push_back(str_cat("no WAL segment in ", dir, "; continuing from snapshot ",
                            out.state.snapshot_file, " alone"));
  }
  for (const std::string& temp : files.temp_files) {
    if (::unlink(temp.c_str()) == 0 || errno == ENOENT) {
      notes.push_back(str_cat("removed ", temp, ", a temporary file left by a crash"));
    }
  }
  if (files.segments.empty() && files.snapshots.empty() && !files.other_files.empty()) {
    notes.push_back(str_cat("no GCS files in ", dir, " but other files (", files.other_files[0],
                            ", ...): starting a new cluster there"));
  }

  out.segments = files.segments;
  for (const auto& [index, path] : files.snapshots) {
    if (have_snapshot && index <= base) out.snapshots.emplace(index, path);
  }
  return out;
}

}  // namespace halo::gcs
