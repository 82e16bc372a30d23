// A private temporary folder for one test, removed with everything in it when the test ends,
// also when it fails.
//
//   TempDir dir;
//   std::string log = dir.file("gcs.log");          // A path inside (not created).
//   std::string config = dir.write("halo.conf", "peer_timeout_ms = 2000\n");
//   EXPECT_EQ(read_file(config), "peer_timeout_ms = 2000\n");
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace halo::test {

class TempDir {
 public:
  TempDir() {
    std::string pattern = std::filesystem::temp_directory_path() / "halo-test-XXXXXX";
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of `name` inside the folder (not created).
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes `contents` to `name` inside the folder and returns the file's path.
  std::string write(const std::string& name, const std::string& contents) const {
    std::string path = file(name);
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

 private:
  std::string path_;
};

// The whole contents of a file ("" if it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace halo::test
