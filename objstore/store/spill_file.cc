#include "objstore/store/spill_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "objstore/store/byte_count.h"

namespace halo::objstore {
namespace {

constexpr char kMagic[8] = {'H', 'A', 'L', 'O', '-', 'O', 'B', 'J'};
// Bytes per write(2)/read(2) and crc32 call: large enough for full disk bandwidth, small
// enough that the checksum reads bytes still in cache.
constexpr uint64_t kChunkBytes = 4 << 20;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t crc;
  uint64_t size;
  uint8_t object_id[ObjectId::kSize];
};
static_assert(sizeof(Header) == kSpillHeaderBytes);

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

uint32_t crc_update(uint32_t crc, const std::byte* data, uint64_t n) {
  return static_cast<uint32_t>(
      ::crc32(crc, reinterpret_cast<const Bytef*>(data), static_cast<uInt>(n)));
}

// Writes all n bytes at `offset`; returns 0 or the errno of the failed write.
int pwrite_all(int fd, const std::byte* data, uint64_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t done = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (done < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += done;
    n -= static_cast<uint64_t>(done);
    offset += static_cast<uint64_t>(done);
  }
  return 0;
}

// Reads exactly n bytes at `offset`; false (errno 0) when the file ends first.
bool pread_all(int fd, std::byte* out, uint64_t n, uint64_t offset) {
  errno = 0;
  while (n > 0) {
    const ssize_t done = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return false;
    out += done;
    n -= static_cast<uint64_t>(done);
    offset += static_cast<uint64_t>(done);
  }
  return true;
}

// Returns 0 or the errno of the failed write.
int write_file(int fd, const ObjectId& id, const std::byte* data, uint64_t size) {
  uint32_t crc = crc_update(0, nullptr, 0);
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min(kChunkBytes, size - done);
    crc = crc_update(crc, data + done, n);
    if (int err = pwrite_all(fd, data + done, n, kSpillHeaderBytes + done)) return err;
    done += n;
  }
  Header header{};
  std::memcpy(header.magic, kMagic, sizeof(kMagic));
  header.version = kSpillFileVersion;
  header.crc = crc;
  header.size = size;
  std::memcpy(header.object_id, id.bytes().data(), ObjectId::kSize);
  return pwrite_all(fd, reinterpret_cast<const std::byte*>(&header), sizeof(header), 0);
}

}  // namespace

std::string spill_file_path(std::string_view dir, const ObjectId& id) {
  return str_cat(dir, "/", id.to_hex(), ".obj");
}

Status make_private_dir(const std::string& dir) {
  if (dir.empty()) return invalid_argument_error("the spill directory's name is empty");
  for (size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
    const std::string part = dir.substr(0, slash);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return errno_error(errno, str_cat("creating the spill directory ", part));
    }
    if (slash == std::string::npos) break;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return failed_precondition_error(
        str_cat("the spill directory ", dir, " is not a directory; pass another --spill-dir"));
  }
  return Status();
}

Status write_spill_file(const std::string& path, const ObjectId& id, const std::byte* data,
                        uint64_t size) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    return errno_error(errno, str_cat("creating spill file ", path, " for object ", id.to_hex()));
  }
  const int err = write_file(fd.get(), id, data, size);
  if (err == 0) return Status();
  ::unlink(path.c_str());
  if (err == ENOSPC || err == EDQUOT) {
    return resource_exhausted_error(str_cat("spilling object ", id.to_hex(), " (",
                                            format_bytes(size), ") to ", path,
                                            ": the disk is full; free space "
                                            "there or pass another --spill-dir"));
  }
  return errno_error(err, str_cat("writing spill file ", path, " for object ", id.to_hex()));
}

Status read_spill_file(const std::string& path, const ObjectId& id, std::byte* out, uint64_t size) {
  auto lost = [&](std::string what) {
    return data_loss_error(str_cat("spill file ", path, " of object ", id.to_hex(), " ", what,
                                   ": the object's bytes are lost on this node"));
  };
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) return lost("is missing");
    return lost(str_cat("cannot be opened (", std::strerror(err), ")"));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return lost(str_cat("cannot be read (", std::strerror(errno), ")"));
  const uint64_t expected = kSpillHeaderBytes + size;
  if (static_cast<uint64_t>(st.st_size) != expected) {
    return lost(str_cat("is ", st.st_size, " bytes long, expected ", expected, " (a ",
                        kSpillHeaderBytes, "-byte header and ", size, " bytes of object)"));
  }
  Header header{};
  if (!pread_all(fd.get(), reinterpret_cast<std::byte*>(&header), sizeof(header), 0)) {
    return lost("has an unreadable header");
  }
  if (std::memcmp(header.magic, kMagic, sizeof(kMagic)) != 0) {
    return lost("does not start with \"HALO-OBJ\" (written only in part?)");
  }
  if (header.version != kSpillFileVersion) {
    return lost(str_cat("has version ", header.version, ", expected ", kSpillFileVersion));
  }
  if (header.size != size || std::memcmp(header.object_id, id.bytes().data(), ObjectId::kSize)) {
    return lost("holds another object (its header names another id or size)");
  }
  uint32_t crc = crc_update(0, nullptr, 0);
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min(kChunkBytes, size - done);
    if (!pread_all(fd.get(), out + done, n, kSpillHeaderBytes + done)) {
      return lost(str_cat("cannot be read at byte ", kSpillHeaderBytes + done, " (",
                          errno == 0 ? "it ends early" : std::strerror(errno), ")"));
    }
    crc = crc_update(crc, out + done, n);
    done += n;
  }
  if (crc != header.crc) {
    return lost(str_cat("fails its checksum (stored crc32 ", header.crc, ", computed ", crc, ")"));
  }
  return Status();
}

Status remove_spill_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return errno_error(errno, str_cat("removing spill file ", path));
  }
  return Status();
}

}  // namespace halo::objstore
