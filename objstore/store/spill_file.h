// A spill file: one object's bytes on disk while the store has no room for them in memory,
// `<spill dir>/<node prefix>/<object id hex>.obj` (docs/objstore-store.md, "Spill files"):
//
//   header (40 bytes)  "HALO-OBJ" | u32 version (1) | u32 crc32 of the object's bytes
//                      | u64 object size | 16-byte object id
//   payload            the object's bytes
//
// The header is in host byte order: a spill file is scratch space of the node that wrote it,
// never read by another machine, even on a shared filesystem (each node has its own prefix
// directory). The checksum is zlib's crc32. The header is written last, so a file cut short
// by a crash or a full disk never passes the checks. Files are not fsynced: a spilled object
// lives no longer than the node's process, and the page cache survives that.
//
//   HALO_RETURN_IF_ERROR(make_private_dir(dir));
//   const std::string path = spill_file_path(dir, id);
//   HALO_RETURN_IF_ERROR(write_spill_file(path, id, data, size));
//   Status back = read_spill_file(path, id, data, size);   // DATA_LOSS if damaged
//
// These are plain blocking file operations; ObjectStore runs them on its spill thread only.
// Thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "halo/base/ids.h"
#include "halo/base/status.h"

namespace halo::objstore {

inline constexpr uint64_t kSpillHeaderBytes = 40;
inline constexpr uint32_t kSpillFileVersion = 1;

// "<dir>/<32 hex digits>.obj".
std::string spill_file_path(std::string_view dir, const ObjectId& id);

// Creates `dir` and any missing parents with mode 0700 (existing ones are left as they are).
Status make_private_dir(const std::string& dir);

// Writes object `id`, `size` bytes at `data`, to `path` with mode 0600, replacing any file
// there. On error (a full disk: RESOURCE_EXHAUSTED) the partial file is removed and the
// status names the file and the object.
Status write_spill_file(const std::string& path, const ObjectId& id, const std::byte* data,
                        uint64_t size);

// Reads object `id` of `size` bytes from `path` into `out`. DATA_LOSS naming the file and the
// object when the file is missing, has another length, a bad header or a checksum mismatch;
// then `out` holds garbage.
Status read_spill_file(const std::string& path, const ObjectId& id, std::byte* out, uint64_t size);

// Removes a spill file; one already gone is fine.
Status remove_spill_file(const std::string& path);

}  // namespace halo::objstore
