#include "gcs/storage/snapshot_file.h"

#include <fcntl.h>

#include <cstring>

#include "gcs/storage/indexed_file_name.h"
#include "gcs/storage/little_endian.h"
#include "gcs/storage/posix_file.h"

namespace halo::gcs {
namespace {

constexpr std::string_view kPrefix = "snapshot-";
constexpr std::string_view kSuffix = ".pb";

}  // namespace

std::string snapshot_file_name(uint64_t last_index) {
  return indexed_file_name(kPrefix, last_index, kSuffix);
}

std::optional<uint64_t> parse_snapshot_file_name(std::string_view name) {
  return parse_indexed_file_name(name, kPrefix, kSuffix);
}

StatusOr<std::string> write_snapshot_file(const std::string& dir,
                                          const proto::GcsSnapshot& snapshot) {
  std::string payload;
  if (!snapshot.SerializeToString(&payload)) {
    return internal_error(str_cat("cannot serialize the snapshot at index ", snapshot.last_index(),
                                  " (over 2 GiB?)"));
  }
  std::string bytes(kSnapshotMagic, sizeof(kSnapshotMagic));
  put_u32(bytes, kSnapshotFileVersion);
  put_u32(bytes, checksum(payload));
  put_u64(bytes, payload.size());
  bytes += payload;

  const std::string path = join_path(dir, snapshot_file_name(snapshot.last_index()));
  const std::string temp = path + ".tmp";
  {
    HALO_ASSIGN_OR_RETURN(File file, File::open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    HALO_RETURN_IF_ERROR(file.write_all(bytes));
    HALO_RETURN_IF_ERROR(file.sync());
  }
  HALO_RETURN_IF_ERROR(rename_durably(dir, temp, path));
  return path;
}

StatusOr<proto::GcsSnapshot> read_snapshot_file(const std::string& path, uint64_t last_index) {
  HALO_ASSIGN_OR_RETURN(File file, File::open(path, O_RDONLY));
  HALO_ASSIGN_OR_RETURN(std::string data, file.read_all());
  auto bad = [&](std::string what) {
    return data_loss_error(str_cat("snapshot ", path, " is corrupt: ", what));
  };
  if (data.size() < kSnapshotHeaderBytes) {
    return bad(str_cat("it is ", data.size(), " bytes long, shorter than the 24-byte header"));
  }
  if (std::memcmp(data.data(), kSnapshotMagic, sizeof(kSnapshotMagic)) != 0) {
    return bad("it does not start with the magic \"HALOSNAP\" (byte offset 0)");
  }
  uint32_t version = get_u32(data.data() + 8);
  if (version != kSnapshotFileVersion) {
    return failed_precondition_error(
        str_cat("snapshot ", path, " has file version ", version, " but this halo reads ",
                kSnapshotFileVersion, ": start the GCS with the halo release that wrote it"));
  }
  uint32_t expected_crc = get_u32(data.data() + 12);
  uint64_t length = get_u64(data.data() + 16);
  uint64_t present = data.size() - kSnapshotHeaderBytes;
  if (length != present) {
    return bad(str_cat("its header (byte offset 16) says ", length, " bytes of payload but ",
                       present, " follow"));
  }
  std::string_view payload(data.data() + kSnapshotHeaderBytes, present);
  uint32_t actual_crc = checksum(payload);
  if (actual_crc != expected_crc) {
    return bad(str_cat("checksum mismatch over the payload at byte offset 24 (stored ",
                       expected_crc, ", computed ", actual_crc, ")"));
  }
  proto::GcsSnapshot snapshot;
  if (!snapshot.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return bad("the checksum matches but the payload is not a GcsSnapshot");
  }
  if (snapshot.format_version() != kSnapshotFormatVersion) {
    return failed_precondition_error(
        str_cat("snapshot ", path, " has format_version ", snapshot.format_version(),
                " but this halo reads ", kSnapshotFormatVersion,
                ": start the GCS with the halo release that wrote it"));
  }
  if (snapshot.last_index() != last_index) {
    return bad(str_cat("it holds the tables at index ", snapshot.last_index(),
                       " but its name says ", last_index));
  }
  return snapshot;
}

}  // namespace halo::gcs
