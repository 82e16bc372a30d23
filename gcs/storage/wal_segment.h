// One segment file of the GCS's write-ahead log: `wal-<first index, 20 digits>.log`, a header
// and then framed records (docs/gcs-storage.md, "Segment files"):
//
//   header  (24 bytes)  "HALO-WAL" | u32 format version (1) | u32 0 | u64 first record index
//   frame   (repeated)  u32 payload length | u32 crc32 of payload | payload (a WalRecord)
//
// Integers are little-endian; the checksum is zlib's crc32. A segment is created whole, with
// its header, under a temporary name that is fsynced and renamed, so a file that carries a
// segment's name always has a complete header: a bad header is corruption, never a crash.
//
//   HALO_ASSIGN_OR_RETURN(SegmentWriter segment, SegmentWriter::create(dir, 1));
//   std::string frames;
//   append_frame(frames, record.SerializeAsString());
//   HALO_RETURN_IF_ERROR(segment.append(frames));   // One write(2) for the whole batch.
//   HALO_RETURN_IF_ERROR(segment.sync());
//
//   HALO_ASSIGN_OR_RETURN(SegmentContents contents, read_segment(path, 1));
//   if (contents.bad) ...  // The caller decides: torn tail (cut it) or corruption.
//
// Not thread-safe: a SegmentWriter is used by one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gcs/proto/gcs_storage.pb.h"
#include "gcs/storage/posix_file.h"
#include "halo/base/status.h"

namespace halo::gcs {

inline constexpr char kSegmentMagic[8] = {'H', 'A', 'L', 'O', '-', 'W', 'A', 'L'};
inline constexpr uint32_t kSegmentFormatVersion = 1;
inline constexpr uint64_t kSegmentHeaderBytes = 24;
inline constexpr uint64_t kFrameHeaderBytes = 8;

// "wal-00000000000000000001.log" for first index 1; names sort in index order.
std::string segment_file_name(uint64_t first_index);
// The first index from a segment file name, or nullopt if `name` is not one.
std::optional<uint64_t> parse_segment_file_name(std::string_view name);

// The 24-byte header of a segment whose first record has index `first_index`.
std::string segment_header(uint64_t first_index);

// Appends one frame holding `payload` to `out`.
void append_frame(std::string& out, std::string_view payload);

// The first frame of a segment that does not check out, and whether a valid one follows it.
struct BadFrame {
  uint64_t offset = 0;  // Byte offset of the frame in the file.
  std::string reason;   // "cut short: ...", "checksum mismatch: ...", ...
  // True when the frame's checksum matched but its payload is not a WalRecord: written whole
  // by something else than this code, so never a torn write.
  bool checksum_matched = false;
  // Offset of a valid frame somewhere after `offset`, if there is one: then the bad frame is
  // not the torn end of the file but damage in the middle of it.
  std::optional<uint64_t> next_valid_offset;
};

// What a segment file holds.
struct SegmentContents {
  uint64_t file_bytes = 0;
  uint64_t valid_bytes = 0;  // Header plus every frame before `bad` (the whole file if none).
  std::vector<proto::WalRecord> records;  // The valid frames, in file order.
  std::vector<uint64_t> offsets;          // Byte offset of each of them in the file.
  std::optional<BadFrame> bad;
};

// Reads and checks the segment at `path`, whose name says its first index is `first_index`.
// Errors: DATA_LOSS naming the file when the header is short, has the wrong magic, version or
// first index (the file is not this segment); I/O errors from reading. A bad frame is not an
// error here: the caller decides from `bad` whether it is a torn tail or corruption. Record
// indexes are not checked here either.
StatusOr<SegmentContents> read_segment(const std::string& path, uint64_t first_index);

// The segment being appended to.
class SegmentWriter {
 public:
  // Creates `<dir>/wal-<first_index>.log` holding only its header: written to a temporary file
  // (`.tmp`), fsynced, renamed and the directory fsynced. Fails with ALREADY_EXISTS if a
  // segment of that name exists.
  static StatusOr<SegmentWriter> create(const std::string& dir, uint64_t first_index);
  // Opens an existing segment to append after its `size` bytes (a prefix already checked by
  // read_segment, and anything after it already cut off).
  static StatusOr<SegmentWriter> open_existing(const std::string& path, uint64_t first_index);

  // Appends bytes (whole frames) with one write(2) (more only if the kernel writes short).
  // After an error the file may end in a partial frame: a torn tail for the next recovery.
  Status append(std::string_view frames);
  // fdatasync(2): appended frames and the file size are on disk.
  Status sync();
  // The descriptor, for a sync made without holding up appends (dup it first).
  int fd() const { return file_.fd(); }

  uint64_t first_index() const { return first_index_; }
  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return file_.path(); }

 private:
  SegmentWriter(File file, uint64_t first_index, uint64_t bytes)
      : file_(std::move(file)), first_index_(first_index), bytes_(bytes) {}
  File file_;
  uint64_t first_index_;
  uint64_t bytes_;  // Written so far, header included.
};

}  // namespace halo::gcs
