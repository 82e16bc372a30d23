// Reading and creating cluster-secret files for the transport tools. A secret file holds the
// raw secret bytes and must be owner-only (mode 0600): a readable secret is a shared secret.
#pragma once

#include <string>

#include "halo/base/status.h"

namespace halo::transport::tools {

// Reads the secret at `path`; refuses files that group or others can read.
StatusOr<std::string> read_secret_file(const std::string& path);

// A fresh random secret of 32 bytes.
std::string random_secret();

}  // namespace halo::transport::tools
