// Typed configuration: one plain struct per component, filled from its defaults, then a
// config file, then `HALO_*` environment variables, then command-line flags (later wins).
//
// A component lists its knobs once, next to their defaults, in a `visit` member:
//
//   struct TransportConfig {
//     std::string transport = "ucx";  // ...
//     int64_t peer_timeout_ms = 5000;
//     template <typename V> void visit(V& v) {
//       v("transport", transport, "RDMA library: ucx or ofi");
//       v("peer_timeout_ms", peer_timeout_ms, "silence after which a peer is declared dead");
//     }
//   };
//
//   TransportConfig cfg;
//   halo::ConfigLoader loader;
//   loader.add(cfg);                                  // any number of component structs
//   HALO_RETURN_IF_ERROR(loader.load({.file = path, .env = environ, .args = {argc, argv}}));
//
// Knob `peer_timeout_ms` is read from `peer_timeout_ms = 2000` in the file, from
// `HALO_PEER_TIMEOUT_MS`, and from `--peer_timeout_ms=2000` (or `--peer-timeout-ms 2000`).
// Knob names are global across the structs given to one loader. Unknown names in the file or
// flags, and values that do not parse, are errors naming the source, the knob and the value.
// Supported field types: std::string, bool, signed and unsigned integers, double.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "halo/base/status.h"

namespace halo {

// One knob as seen by the loader: its name, documentation, default (as text) and a setter.
struct ConfigKnob {
  std::string name;
  std::string doc;
  std::string default_value;
  std::function<std::string()> current;                 // Current value as text.
  std::function<Status(std::string_view text)> set;     // Parses and stores; error if bad.
};

struct ConfigSources {
  std::string file;                 // Empty: no file. A missing named file is an error.
  char** env = nullptr;             // `environ`-style, null-terminated; null: none.
  std::vector<std::string> args;    // Flags; non-flag arguments are returned, not errors.
};

class ConfigLoader {
 public:
  // Registers every knob of `cfg` (which must outlive the loader). Duplicate names abort.
  template <typename Config>
  void add(Config& cfg) {
    Visitor v{this};
    cfg.visit(v);
  }

  // Applies file, then environment, then flags. Returns the positional (non-flag) arguments.
  // Flags that are not knobs are an error unless `allow_unknown_flags` (for programs that
  // parse other flags themselves, e.g. GoogleTest's).
  StatusOr<std::vector<std::string>> load(const ConfigSources& sources,
                                          bool allow_unknown_flags = false);

  // Sets one knob by name from text (as a flag would).
  Status set(std::string_view name, std::string_view value);

  // Every knob, one per line: name, current value, default and documentation; for --help.
  std::string describe() const;

  const std::vector<ConfigKnob>& knobs() const { return knobs_; }

 private:
  struct Visitor {
    ConfigLoader* loader;
    template <typename T>
    void operator()(const char* name, T& field, const char* doc) {
      loader->register_knob(name, doc, field);
    }
  };

  void register_knob(const char* name, const char* doc, std::string& field);
  void register_knob(const char* name, const char* doc, bool& field);
  void register_knob(const char* name, const char* doc, int64_t& field);
  void register_knob(const char* name, const char* doc, int32_t& field);
  void register_knob(const char* name, const char* doc, uint64_t& field);
  void register_knob(const char* name, const char* doc, uint32_t& field);
  void register_knob(const char* name, const char* doc, uint16_t& field);
  void register_knob(const char* name, const char* doc, double& field);
  void add_knob(ConfigKnob knob);
  ConfigKnob* find(std::string_view name);

  std::vector<ConfigKnob> knobs_;
};

}  // namespace halo
