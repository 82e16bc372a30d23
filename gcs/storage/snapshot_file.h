// One snapshot file of the GCS: `snapshot-<last index, 20 digits>.pb`, every table at one log
// index (docs/gcs-storage.md, "Snapshot files"):
//
//   header (24 bytes)  "HALOSNAP" | u32 format version (1) | u32 crc32 of payload
//                      | u64 payload length
//   payload            a serialized GcsSnapshot
//
// Integers are little-endian; the checksum is zlib's crc32. A snapshot is written to
// `<name>.tmp`, fsynced, renamed to its name and the directory fsynced, so a file with a
// snapshot's name is complete unless the disk damaged it.
//
//   HALO_ASSIGN_OR_RETURN(std::string path, write_snapshot_file(dir, snapshot));
//   StatusOr<proto::GcsSnapshot> back = read_snapshot_file(path, snapshot.last_index());
//
// Thread-safe (no shared state); two writers of the same index would race on one temp file,
// which DurableLog rules out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gcs/proto/gcs_storage.pb.h"
#include "halo/base/status.h"

namespace halo::gcs {

inline constexpr char kSnapshotMagic[8] = {'H', 'A', 'L', 'O', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kSnapshotFileVersion = 1;    // The framing in this file.
inline constexpr uint32_t kSnapshotFormatVersion = 1;  // GcsSnapshot.format_version.
inline constexpr uint64_t kSnapshotHeaderBytes = 24;

// "snapshot-00000000000000012345.pb" for last index 12345; names sort in index order.
std::string snapshot_file_name(uint64_t last_index);
// The last index from a snapshot file name, or nullopt if `name` is not one.
std::optional<uint64_t> parse_snapshot_file_name(std::string_view name);

// Writes `snapshot` as `<dir>/snapshot-<last_index>.pb` durably (temp file, fsync, rename,
// fsync of `dir`) and returns its path. An existing snapshot of the same index is replaced
// atomically. On error the temp file may be left behind; recovery removes it.
StatusOr<std::string> write_snapshot_file(const std::string& dir,
                                          const proto::GcsSnapshot& snapshot);

// Reads and checks the snapshot at `path`, whose name says it ends at `last_index`: header
// magic and version, payload length and checksum, that the payload parses, its
// format_version, and that its last_index matches the name. Errors: DATA_LOSS saying which
// check failed and at which byte offset; FAILED_PRECONDITION for a newer format version; I/O
// errors from reading.
StatusOr<proto::GcsSnapshot> read_snapshot_file(const std::string& path, uint64_t last_index);

}  // namespace halo::gcs
