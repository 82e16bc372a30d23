// Spill files: the bytes come back exactly, the file is owner-only, and every kind of damage
// (a flipped byte, a cut, a missing file, another object's file) is DATA_LOSS naming the file.
#include "objstore/store/spill_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/objstore/store/store_fixture.h"

namespace halo::objstore {
namespace {

using test::pattern;
using test::TempDir;

// Writes a spill file of `size` pattern bytes for `id`; returns its path.
std::string spilled(const TempDir& dir, const ObjectId& id, uint64_t size) {
  const std::string path = spill_file_path(dir.path(), id);
  const std::vector<std::byte> bytes = pattern(size, 3);
  EXPECT_TRUE(write_spill_file(path, id, bytes.data(), size).ok());
  return path;
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  file.read(&c, 1);
  c = static_cast<char>(c ^ 0x40);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(&c, 1);
}

Status read_back(const std::string& path, const ObjectId& id, uint64_t size) {
  std::vector<std::byte> out(size);
  return read_spill_file(path, id, out.data(), size);
}

void expect_data_loss(const Status& status, const std::string& path, const std::string& what) {
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_NE(status.message().find(what), std::string::npos) << status;
}

TEST(SpillFile, BytesComeBackExactlyFromAnOwnerOnlyFile) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  const uint64_t size = (9 << 20) + 13;  // Several chunks and a ragged end.
  const std::vector<std::byte> bytes = pattern(size, 11);
  const std::string path = spill_file_path(dir.path(), id);
  EXPECT_EQ(path, dir.path() + "/" + id.to_hex() + ".obj");
  ASSERT_TRUE(write_spill_file(path, id, bytes.data(), size).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSpillHeaderBytes + size);
  std::vector<std::byte> out(size);
  ASSERT_TRUE(read_spill_file(path, id, out.data(), size).ok());
  EXPECT_TRUE(out == bytes) << "the bytes read back differ";
}

TEST(SpillFile, ZeroByteObjectRoundTrips) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  EXPECT_TRUE(read_back(spilled(dir, id, 0), id, 0).ok());
}

TEST(SpillFile, AFlippedPayloadByteIsDataLossNamingTheFile) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  const std::string path = spilled(dir, id, 100000);
  flip_byte(path, kSpillHeaderBytes + 5000);
  expect_data_loss(read_back(path, id, 100000), path, "checksum");
}

TEST(SpillFile, ADamagedHeaderIsDataLoss) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  const std::string path = spilled(dir, id, 1000);
  flip_byte(path, 0);
  expect_data_loss(read_back(path, id, 1000), path, "HALO-OBJ");
}

TEST(SpillFile, ATruncatedFileIsDataLossSayingItsLength) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  const std::string path = spilled(dir, id, 100000);
  ASSERT_EQ(::truncate(path.c_str(), 5000), 0);
  expect_data_loss(read_back(path, id, 100000), path, "5000 bytes long");
}

TEST(SpillFile, AMissingFileIsDataLoss) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  const std::string path = spill_file_path(dir.path(), id);
  expect_data_loss(read_back(path, id, 10), path, "missing");
}

TEST(SpillFile, AnotherObjectsFileIsDataLoss) {
  TempDir dir;
  const ObjectId id = ObjectId::random();
  const std::string path = spilled(dir, id, 1000);
  expect_data_loss(read_back(path, ObjectId::random(), 1000), path, "another object");
}

TEST(SpillFile, PrivateDirIsCreatedWithItsParentsAsMode0700) {
  TempDir dir;
  const std::string nested = dir.file("a/b/node-1");
  ASSERT_TRUE(make_private_dir(nested).ok());
  ASSERT_TRUE(make_private_dir(nested).ok()) << "an existing folder is fine";
  for (const std::string& path : {dir.file("a"), dir.file("a/b"), nested}) {
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << path;
  }
  std::ofstream(dir.file("file")) << "x";
  EXPECT_FALSE(make_private_dir(dir.file("file")).ok());
}

}  // namespace
}  // namespace halo::objstore
