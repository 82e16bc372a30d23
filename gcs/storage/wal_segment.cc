#include "gcs/storage/wal_segment.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "gcs/storage/indexed_file_name.h"
#include "gcs/storage/little_endian.h"

namespace halo::gcs {
namespace {

constexpr std::string_view kPrefix = "wal-";
constexpr std::string_view kSuffix = ".log";

// What an operator can do about a damaged segment; shared by every header error.
std::string segment_advice(const std::string& path) {
  return str_cat(
      "segments are created whole under a temporary name, so this is damage or a file that halo "
      "did not write. Restore the data directory from a backup, or move ",
      path, " out of it to accept losing the records it held");
}

bool is_record(std::string_view payload, proto::WalRecord& record) {
  return record.ParseFromArray(payload.data(), static_cast<int>(payload.size())) &&
         record.index() >= 1;
}

// The offset of the first frame at or after `from` whose length fits, whose checksum matches
// and whose payload is a WalRecord. Frames start at any byte here, since the framing is lost
// after a bad frame. A serialized WalRecord starts with field 1 (the index, a varint: tag
// 0x08), which rules out nearly every offset before the checksum is computed.
std::optional<uint64_t> find_valid_frame(std::string_view data, uint64_t from) {
  for (uint64_t p = from; p + kFrameHeaderBytes < data.size(); ++p) {
    uint32_t length = get_u32(data.data() + p);
    uint64_t left = data.size() - p - kFrameHeaderBytes;
    if (length == 0 || length > left) continue;
    std::string_view payload = data.substr(p + kFrameHeaderBytes, length);
    if (payload[0] != 0x08) continue;
    if (checksum(payload) != get_u32(data.data() + p + 4)) continue;
    proto::WalRecord record;
    if (is_record(payload, record)) return p;
  }
  return std::nullopt;
}

}  // namespace

std::string segment_file_name(uint64_t first_index) {
  return indexed_file_name(kPrefix, first_index, kSuffix);
}

std::optional<uint64_t> parse_segment_file_name(std::string_view name) {
  return parse_indexed_file_name(name, kPrefix, kSuffix);
}

std::string segment_header(uint64_t first_index) {
  std::string header(kSegmentMagic, sizeof(kSegmentMagic));
  put_u32(header, kSegmentFormatVersion);
  put_u32(header, 0);
  put_u64(header, first_index);
  return header;
}

void append_frame(std::string& out, std::string_view payload) {
  put_u32(out, static_cast<uint32_t>(payload.size()));
  put_u32(out, checksum(payload));
  out.append(payload);
}

StatusOr<SegmentContents> read_segment(const std::string& path, uint64_t first_index) {
  HALO_ASSIGN_OR_RETURN(File file, File::open(path, O_RDONLY));
  HALO_ASSIGN_OR_RETURN(std::string data, file.read_all());

  SegmentContents out;
  out.file_bytes = data.size();
  if (data.size() < kSegmentHeaderBytes) {
    return data_loss_error(str_cat("WAL segment ", path, " is ", data.size(),
                                   " bytes long, shorter than the 24-byte segment header; ",
                                   segment_advice(path)));
  }
  if (std::memcmp(data.data(), kSegmentMagic, sizeof(kSegmentMagic)) != 0) {
    return data_loss_error(str_cat("WAL segment ", path,
                                   " does not start with the magic \"HALO-WAL\" (byte offset 0); ",
                                   segment_advice(path)));
  }
  uint32_t version = get_u32(data.data() + 8);
  if (version != kSegmentFormatVersion) {
    return failed_precondition_error(
        str_cat("WAL segment ", path, " has format version ", version, " but this halo reads ",
                kSegmentFormatVersion, ": start the GCS with the halo release that wrote it"));
  }
  uint64_t header_index = get_u64(data.data() + 16);
  if (header_index != first_index) {
    return data_loss_error(str_cat("WAL segment ", path,
                                   " says in its header (byte offset 16) "
                                   "that it starts at index ",
                                   header_index, " but its name says ", first_index, "; ",
                                   segment_advice(path)));
  }

  uint64_t offset = kSegmentHeaderBytes;
  while (offset < data.size()) {
    uint64_t left = data.size() - offset;
    BadFrame bad;
    bad.offset = offset;
    if (left < kFrameHeaderBytes) {
      bad.reason = str_cat("cut short: ", left, " bytes left, less than the 8-byte frame header");
      out.bad = std::move(bad);
      break;
    }
    uint32_t length = get_u32(data.data() + offset);
    uint32_t expected_crc = get_u32(data.data() + offset + 4);
    if (length == 0) {
      // Zeros are what a torn write of a whole block leaves, and crc32 of nothing is 0, so an
      // all-zero frame header would otherwise pass for an empty record.
      bad.reason = "zero-length frame (zeros where a record should start)";
      out.bad = std::move(bad);
      break;
    }
    if (length > left - kFrameHeaderBytes) {
      bad.reason = str_cat("cut short: the frame says ", length, " bytes of record but only ",
                           left - kFrameHeaderBytes, " follow");
      out.bad = std::move(bad);
      break;
    }
    std::string_view payload(data.data() + offset + kFrameHeaderBytes, length);
    uint32_t actual_crc = checksum(payload);
    if (actual_crc != expected_crc) {
      bad.reason = str_cat("checksum mismatch over the ", length, "-byte record (stored ",
                           expected_crc, ", computed ", actual_crc, ")");
      out.bad = std::move(bad);
      break;
    }
    proto::WalRecord record;
    if (!is_record(payload, record)) {
      bad.reason = "the checksum matches but the bytes are not a WAL record";
      bad.checksum_matched = true;
      out.bad = std::move(bad);
      break;
    }
    out.records.push_back(std::move(record));
    out.offsets.push_back(offset);
    offset += kFrameHeaderBytes + length;
  }
  out.valid_bytes = out.bad ? out.bad->offset : data.size();
  if (out.bad) out.bad->next_valid_offset = find_valid_frame(data, out.bad->offset + 1);
  return out;
}

StatusOr<SegmentWriter> SegmentWriter::create(const std::string& dir, uint64_t first_index) {
  const std::string path = join_path(dir, segment_file_name(first_index));
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    return already_exists_error(
        str_cat("cannot start WAL segment ", path, ": a file of that name exists already"));
  }
  const std::string temp = path + ".tmp";
  {
    HALO_ASSIGN_OR_RETURN(File file, File::open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    HALO_RETURN_IF_ERROR(file.write_all(segment_header(first_index)));
    HALO_RETURN_IF_ERROR(file.sync());
  }
  HALO_RETURN_IF_ERROR(rename_durably(dir, temp, path));
  return open_existing(path, first_index);
}

StatusOr<SegmentWriter> SegmentWriter::open_existing(const std::string& path,
                                                     uint64_t first_index) {
  HALO_ASSIGN_OR_RETURN(File file, File::open(path, O_WRONLY | O_APPEND));
  HALO_ASSIGN_OR_RETURN(uint64_t bytes, file.size());
  return SegmentWriter(std::move(file), first_index, bytes);
}

Status SegmentWriter::append(std::string_view frames) {
  HALO_RETURN_IF_ERROR(file_.write_all(frames));
  bytes_ += frames.size();
  return Status();
}

Status SegmentWriter::sync() { return file_.datasync(); }

}  // namespace halo::gcs
