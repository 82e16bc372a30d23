#include "ofi/ofi_library.h"

#include <dlfcn.h>

namespace halo::transport {
namespace {

constexpr const char* kLibrary = "libfabric.so.1";

struct Loaded {
  OfiLibrary library;
  Status status;
};

// Looks up `name` at `version` (libfabric versions its symbols: FABRIC_1.0, 1.1, 1.3, ...),
// falling back to the default version.
template <typename F>
Status resolve(void* handle, const char* name, const char* version, F& out) {
  void* symbol = ::dlvsym(handle, name, version);
  if (symbol == nullptr) symbol = ::dlsym(handle, name);
  if (symbol == nullptr) {
    return unavailable_error(str_cat(kLibrary, " has no ", name, " (", version,
                                     "): a libfabric older than halo was built for"));
  }
  out = reinterpret_cast<F>(symbol);
  return Status();
}

Loaded load() {
  Loaded l;
  void* handle = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    l.status = unavailable_error(
        str_cat("the libfabric transport needs ", kLibrary, ", which cannot be loaded (",
                why != nullptr ? why : "unknown error",
                "): install libfabric (Debian: libfabric1), or use --transport=ucx"));
    return l;
  }
  // The versions halo's build linked against (nm -D on a build that linked libfabric).
  OfiLibrary& f = l.library;
  for (Status s : {resolve(handle, "fi_getinfo", "FABRIC_1.3", f.getinfo),
                   resolve(handle, "fi_freeinfo", "FABRIC_1.3", f.freeinfo),
                   resolve(handle, "fi_dupinfo", "FABRIC_1.3", f.dupinfo),
                   resolve(handle, "fi_fabric", "FABRIC_1.1", f.fabric),
                   resolve(handle, "fi_strerror", "FABRIC_1.0", f.strerror)}) {
    if (!s.ok() && l.status.ok()) l.status = s;
  }
  return l;
}

const Loaded& loaded_once() {
  static const Loaded loaded = load();
  return loaded;
}

}  // namespace

StatusOr<const OfiLibrary*> OfiLibrary::get() {
  const Loaded& l = loaded_once();
  if (!l.status.ok()) return l.status;
  return &l.library;
}

const OfiLibrary& OfiLibrary::api() { return loaded_once().library; }

}  // namespace halo::transport
