// How the `halo` subcommands reach the GCS: the address and secret from flags or from the
// session, and a GcsClient that gives up after the command's timeout.
#pragma once

#include <memory>
#include <string>

#include "gcs/client/gcs_client.h"
#include "launcher/cli/commands.h"

namespace halo::launcher::cli {

struct GcsConnection {
  std::string address;  // The transport address tried.
  std::string secret_file;
  std::unique_ptr<gcs::GcsClient> client;
};

// Resolves address and secret (flags first, then the session) and connects. Errors say which
// was missing or which address could not be reached.
StatusOr<GcsConnection> connect_to_gcs(const ClusterOptions& options);

}  // namespace halo::launcher::cli
