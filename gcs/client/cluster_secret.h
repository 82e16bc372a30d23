// The cluster secret as every halo program reads it: a file that only its owner may read
// (mode 0600 or stricter), whose whole content is the secret. `halo start --head` writes one
// (64 hex digits, no newline) into the session directory; every client of the cluster needs it.
//
//   HALO_ASSIGN_OR_RETURN(std::string secret, read_secret_file("/tmp/halo/session_latest/"
//                                                              "cluster_secret"));
//   options.cluster_secret = secret;
#pragma once

#include <string>

#include "halo/base/status.h"

namespace halo::gcs {

// The content of the secret file at `path`. Errors: NOT_FOUND / PERMISSION_DENIED when it
// cannot be read; PERMISSION_DENIED when group or others have any access to it (a secret
// others can read is no secret: the message says to chmod 600 it); INVALID_ARGUMENT when it
// holds fewer than 16 bytes. Every message names the file.
StatusOr<std::string> read_secret_file(const std::string& path);

}  // namespace halo::gcs
