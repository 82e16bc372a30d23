// libfabric, loaded when the first libfabric transport opens rather than when a halo program
// starts. Debian's libfabric links the PSM providers, whose libinfinipath calibrates the CPU
// clock in a library constructor (about 800 sleeps of 125 us): linked into every halo program,
// it added about 0.2 s to the start of each one, UCX users included (docs/transport.md).
//
// halo calls five functions of libfabric itself; everything else in its API is inline code
// that calls through the objects those functions return. They are looked up here, with the
// symbol versions halo was built against.
//
//   HALO_ASSIGN_OR_RETURN(const OfiLibrary* fi, OfiLibrary::get());
//   int ret = fi->getinfo(version, nullptr, nullptr, 0, hints, &list);
//   OfiLibrary::api().freeinfo(list);                 // later, once get() succeeded
//
// Thread-safe; the library stays loaded for the life of the process.
#pragma once

#include <rdma/fabric.h>

#include "halo/base/status.h"

namespace halo::transport {

struct OfiLibrary {
  int (*getinfo)(uint32_t version, const char* node, const char* service, uint64_t flags,
                 const fi_info* hints, fi_info** info) = nullptr;
  void (*freeinfo)(fi_info* info) = nullptr;
  fi_info* (*dupinfo)(const fi_info* info) = nullptr;
  int (*fabric)(fi_fabric_attr* attr, fid_fabric** fabric, void* context) = nullptr;
  const char* (*strerror)(int errnum) = nullptr;

  // Loads libfabric.so.1 on the first call. UNAVAILABLE, saying what to install or to use
  // the UCX transport, when it cannot be loaded or lacks a function.
  static StatusOr<const OfiLibrary*> get();
  // The library, for code that runs only once get() succeeded (every libfabric object halo
  // holds was made through it).
  static const OfiLibrary& api();
};

}  // namespace halo::transport
