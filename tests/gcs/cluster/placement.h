// Where a program of a GCS cluster test runs: inside one of a set of test hosts (a network
// namespace, tests/support/test_hosts.h), or in the test's own network on loopback. A
// Placement knows the address to listen on there and the transport flags that go with it.
//
//   Placement gcs_host{hosts.get(), 0};                  // host 0 of `hosts`
//   auto child = gcs_host.spawn({program, "--host=" + gcs_host.address()}, options);
//   Placement local;                                     // loopback, the test's network
//
// Every program the tests start speaks TCP through UCX (ucx_tls "tcp,self"): test hosts are
// namespaces of one machine, and UCX would otherwise carry their traffic over shared memory,
// where taking a host's link down cuts nothing. net_interface names the one interface that
// carries the host's address (eth0 in a test host, lo on loopback).
//
// A plain value; the TestHosts it points to must outlive it.
#pragma once

#include <string>
#include <vector>

#include "halo/base/status.h"
#include "tests/support/child_process.h"
#include "tests/support/test_hosts.h"

namespace halo::gcs::testing {

struct Placement {
  const test::TestHosts* hosts = nullptr;  // Null: loopback in the test's own network.
  int host = 0;                            // Index into `hosts`.

  // The IPv4 address programs listen on: the host's, or 127.0.0.1.
  std::string address() const;
  // "host 1 (198.18.7.2)" or "loopback", for messages.
  std::string describe() const;
  // Transport knobs as flags (--transport, --ucx_tls, --net_interface).
  std::vector<std::string> transport_flags() const;
  // Starts argv here (see ChildProcess::spawn).
  StatusOr<test::ChildProcess> spawn(std::vector<std::string> argv,
                                     test::ChildOptions options = {}) const;
};

}  // namespace halo::gcs::testing
