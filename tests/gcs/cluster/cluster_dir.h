// The files of one test cluster: a private temporary directory (GCS data directory, address
// file, node state files) holding the cluster secret, mode 0600, as `halo start --head` would
// make it. Everything in it is removed when the object goes, pass or fail.
//
//   auto dir = ClusterDir::create("gcs-cluster");
//   ASSERT_TRUE(dir.ok()) << dir.status();
//   std::string data_dir = (*dir)->file("gcs");          // "/tmp/halo-gcs-cluster-Ab12Cd/gcs"
//   std::string flag = "--secret-file=" + (*dir)->secret_path();
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "halo/base/status.h"

namespace halo::gcs::testing {

class ClusterDir {
 public:
  // Makes "<tmp>/halo-<tag>-XXXXXX" (mode 0700) and the secret file in it: 32 random
  // printable characters, so that a reader that trims whitespace reads the same secret.
  static StatusOr<std::unique_ptr<ClusterDir>> create(std::string_view tag);
  ~ClusterDir();
  ClusterDir(const ClusterDir&) = delete;
  ClusterDir& operator=(const ClusterDir&) = delete;

  const std::string& path() const { return path_; }
  const std::string& secret_path() const { return secret_path_; }
  const std::string& secret() const { return secret_; }
  // path() + "/" + name (not created).
  std::string file(std::string_view name) const;

 private:
  ClusterDir(std::string path, std::string secret_path, std::string secret)
      : path_(std::move(path)), secret_path_(std::move(secret_path)), secret_(std::move(secret)) {}
  std::string path_;
  std::string secret_path_;
  std::string secret_;
};

}  // namespace halo::gcs::testing
