// An echo server (pingpong.h) in a child process, for the demo and benchmarks that need a
// peer on this machine: runs halo-transport-echo (found next to the running program, or in
// ../transport/ from it, or at $HALO_ECHO_BIN) with the caller's transport configuration.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "halo/base/status.h"
#include "halo/transport/transport_config.h"

namespace halo::transport::tools {

class EchoChild {
 public:
  // Starts the child listening on `host` with a registered region of `region_bytes`, and
  // waits until it prints its address. The secret is handed over in an owner-only file.
  static StatusOr<std::unique_ptr<EchoChild>> spawn(const TransportConfig& config,
                                                    const std::string& secret,
                                                    const std::string& host, size_t region_bytes);
  // Stops the child (SIGTERM, then waits) and removes the secret file.
  ~EchoChild();

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }

 private:
  EchoChild() = default;
  pid_t pid_ = -1;
  std::string address_;
  std::string secret_path_;
};

}  // namespace halo::transport::tools
