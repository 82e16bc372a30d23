// Recovery: from the files of a locked data directory to the GCS's state, following the rules
// of durable_log.h and docs/gcs-storage.md ("Recovery"):
//
//   1. the newest snapshot that reads back valid, else the one before it, ...;
//   2. every record after that snapshot's index, from the segment that holds index + 1 on,
//      with indexes running on without gaps across records and segments;
//   3. a torn final record (cut short, or failing its checksum with no valid frame after it,
//      in the last segment) is cut off the file (ftruncate + fdatasync) and noted;
//   4. anything else is DATA_LOSS naming the file, the byte offset and what the operator can do.
//
//   HALO_ASSIGN_OR_RETURN(DataDirListing files, list_data_dir(dir));
//   HALO_ASSIGN_OR_RETURN(Recovery recovery, recover(dir, files));
//
// Side effects, only once recovery has succeeded: the torn tail is cut (before that the file
// is unchanged), snapshots that failed their checks and were fallen back past are renamed to
// `<name>.corrupt`, and leftover `.tmp` files are removed. Not thread-safe; call with the
// directory's lock held.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "gcs/storage/data_dir.h"
#include "gcs/storage/durable_log.h"
#include "halo/base/status.h"

namespace halo::gcs {

struct Recovery {
  RecoveredState state;
  // Index of the last record in the log, or the snapshot's if the log ends before it.
  uint64_t last_index = 0;
  // The last segment, if appending can continue in it (its next record is last_index + 1).
  std::optional<std::pair<uint64_t, std::string>> append_segment;
  std::map<uint64_t, std::string> segments;   // Every segment file left, first index -> path.
  std::map<uint64_t, std::string> snapshots;  // The snapshot used and the older ones.
};

StatusOr<Recovery> recover(const std::string& dir, const DataDirListing& files);

}  // namespace halo::gcs
