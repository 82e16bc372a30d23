// What the GCS storage tests share: a private data directory per test, records whose content
// follows from their index (so any record read back can be checked), the KV table those
// records build, and helpers to append and wait, and to read, write and damage files.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "gcs/proto/gcs_storage.pb.h"
#include "gcs/storage/durable_log.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::test {

using halo::test::TempDir;

inline std::string key_for(uint64_t n) { return "k" + std::to_string(n); }

// 1..64 bytes that depend on n, so records differ in length and content.
inline std::string value_for(uint64_t n) {
  std::string value(1 + n % 64, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>((n * 131 + i * 7) & 0xff);
  return value;
}

// The mutation record n holds in these tests: a KV put of key_for(n) = value_for(n).
inline proto::Mutation mutation_for(uint64_t n) {
  proto::Mutation m;
  m.set_at_ms(static_cast<int64_t>(n) * 1000);
  m.mutable_kv_put()->set_namespace_("test");
  m.mutable_kv_put()->set_key(key_for(n));
  m.mutable_kv_put()->set_value(value_for(n));
  return m;
}

inline bool holds_mutation_for(const proto::WalRecord& record, uint64_t n) {
  return record.index() == n &&
         record.mutation().SerializeAsString() == mutation_for(n).SerializeAsString();
}

// The KV table: what the GCS would rebuild from a snapshot and records.
using KvState = std::map<std::string, std::string>;

inline void apply_mutation(KvState& state, const proto::Mutation& m) {
  if (m.has_kv_put()) state[m.kv_put().key()] = m.kv_put().value();
  if (m.has_kv_remove()) state.erase(m.kv_remove().key());
}

inline KvState state_of(const RecoveredState& recovered) {
  KvState state;
  for (const proto::KvEntry& e : recovered.snapshot.kv()) state[e.key()] = e.value();
  for (const proto::WalRecord& r : recovered.records) apply_mutation(state, r.mutation());
  return state;
}

inline proto::GcsSnapshot snapshot_of(const KvState& state, uint64_t last_index) {
  proto::GcsSnapshot snapshot;
  snapshot.set_format_version(1);
  snapshot.set_last_index(last_index);
  for (const auto& [key, value] : state) {
    proto::KvEntry* e = snapshot.add_kv();
    e->set_namespace_("test");
    e->set_key(key);
    e->set_value(value);
  }
  return snapshot;
}

// The state after records 1..last.
inline KvState state_through(uint64_t last) {
  KvState state;
  for (uint64_t n = 1; n <= last; ++n) apply_mutation(state, mutation_for(n));
  return state;
}

inline DurableLogOptions options_for(const std::string& dir,
                                     FsyncPolicy policy = FsyncPolicy::kAlways,
                                     uint64_t segment_bytes = 64ull << 20) {
  DurableLogOptions options;
  options.dir = dir;
  options.fsync_policy = policy;
  options.segment_bytes = segment_bytes;
  return options;
}

// Appends mutation_for(n) for n = first..last (first must be log.last_index() + 1) and waits
// until every `done` ran. Returns the first error a `done` reported.
inline Status append_range(DurableLog& log, uint64_t first, uint64_t last) {
  // Shared with the callbacks, which may outlive this call if they time out.
  struct Acks {
    std::atomic<uint64_t> count{0};
    std::mutex mu;
    Status first_error;
  };
  auto acks = std::make_shared<Acks>();
  for (uint64_t n = first; n <= last; ++n) {
    uint64_t index = log.append(mutation_for(n), [acks](Status s) {
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(acks->mu);
        if (acks->first_error.ok()) acks->first_error = s;
      }
      acks->count.fetch_add(1);
    });
    if (index != n) return internal_error(str_cat("append returned ", index, ", expected ", n));
  }
  if (!halo::test::wait_for([&] { return acks->count.load() == last - first + 1; },
                            std::chrono::seconds(30))) {
    return deadline_exceeded_error("appends were not acknowledged within 30 s");
  }
  std::lock_guard<std::mutex> lock(acks->mu);
  return acks->first_error;
}

// append_range in batches of `batch` records, each acknowledged before the next is queued:
// the writer syncs (and may start a new segment) between them.
inline Status append_in_batches(DurableLog& log, uint64_t first, uint64_t last,
                                uint64_t batch = 5) {
  for (uint64_t from = first; from <= last; from += batch) {
    HALO_RETURN_IF_ERROR(append_range(log, from, std::min(last, from + batch - 1)));
  }
  return Status();
}

// Checks that `recovered` holds records first..last, each with its content.
inline void expect_records(const RecoveredState& recovered, uint64_t first, uint64_t last) {
  ASSERT_EQ(recovered.records.size(), last - first + 1);
  for (uint64_t n = first; n <= last; ++n) {
    ASSERT_TRUE(holds_mutation_for(recovered.records[n - first], n))
        << "record " << n << " reads back as " << recovered.records[n - first].DebugString();
  }
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

inline void flip_byte(const std::string& path, uint64_t offset) {
  std::string bytes = read_file(path);
  ASSERT_LT(offset, bytes.size()) << path;
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  write_file(path, bytes);
}

inline uint64_t file_size(const std::string& path) { return std::filesystem::file_size(path); }

// Names (not paths) of the files in `dir` that start with `prefix`, sorted.
inline std::vector<std::string> files_named(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename();
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string joined(const std::vector<std::string>& notes) {
  std::string out;
  for (const std::string& n : notes) out += n + "\n";
  return out;
}

}  // namespace halo::gcs::test
