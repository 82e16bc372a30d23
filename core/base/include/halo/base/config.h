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
//   int main(int argc, char** argv) {
//     TransportConfig cfg;
//     halo::ConfigLoader loader;
//     loader.add(cfg);                                // any number of component structs
//     auto rest = loader.load({.file = path, .env = environ, .args = {argv + 1, argv + argc}});
//     if (loader.help_requested()) { std::cout << loader.describe(); return 0; }
//     if (!rest.ok()) { std::cerr << rest.status() << "\n"; return 2; }
//     ...
//   }
//
// Knob `peer_timeout_ms` is read from `peer_timeout_ms = 2000` in the file, from
// `HALO_PEER_TIMEOUT_MS`, and from `--peer_timeout_ms=2000` (or `--peer-timeout-ms 2000`).
// Knob names are global across the structs given to one loader. Unknown names in the file or
// flags, and values that do not parse, are errors naming the source, the knob and the value.
// Supported field types: std::string, bool, signed and unsigned integers, double.
//
// File format (see docs/config.md): one `name = value` per line; blank lines and lines whose
// first non-blank character is `#` are ignored, and ` # ...` after a value is a comment.
// A value may be enclosed in double quotes (with `\"` and `\\` escapes) or single quotes
// (literal), which keeps `#` and surrounding spaces. Dashes in names equal underscores.
//
// Values: bool accepts true/false, 1/0, yes/no, on/off (any case); integers are decimal with an
// optional sign, and must fit the field's type (no negatives into unsigned fields); doubles
// must be finite. Environment variables named `HALO_*` that are not knobs of this loader are
// ignored, since other programs of the same job may have other knobs.
//
// A ConfigLoader is not thread-safe; fill configs at start-up, before sharing them.
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
  std::string type;                      // "string", "bool", "int32", "uint64", "double", ...
  std::string default_value;             // Value at registration, as text.
  std::function<std::string()> current;  // Current value as text.
  std::function<Status(std::string_view text)> set;  // Parses and stores; error if bad.
};

struct ConfigSources {
  std::string file;               // Empty: no file. A missing named file is an error.
  char** env = nullptr;           // `environ`-style, null-terminated; null: none.
  std::vector<std::string> args;  // Flags, without the program name (argv + 1 .. argv + argc).
                                  // Non-flag arguments are returned, not errors.
};

class ConfigLoader {
 public:
  // Registers every knob of `cfg` (which must outlive the loader). Duplicate or malformed
  // names (anything but lower-case letters, digits and `_`) are bugs and abort.
  template <typename Config>
  void add(Config& cfg) {
    Visitor v{this};
    cfg.visit(v);
  }

  // Applies file, then environment, then flags. Returns the positional (non-flag) arguments,
  // in order; everything after a bare `--` is positional. Flags that are not knobs are an
  // error unless `allow_unknown_flags` (for programs that parse other flags themselves, e.g.
  // GoogleTest's), in which case they are returned with the positional arguments, unchanged.
  // `--help` and `-h` are never errors: they set help_requested().
  //
  // All or nothing: on error no knob is changed, and the status (INVALID_ARGUMENT, or
  // NOT_FOUND / PERMISSION_DENIED for an unreadable file) lists every bad entry.
  StatusOr<std::vector<std::string>> load(const ConfigSources& sources,
                                          bool allow_unknown_flags = false);

  // Sets one knob by name (dashes or underscores) from text, as a flag would.
  Status set(std::string_view name, std::string_view value);

  // True when the last load() saw `--help` or `-h`; the program should print describe().
  bool help_requested() const { return help_requested_; }

  // Every knob, one per line: flag with its current value, type, default, environment
  // variable and documentation; for --help.
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
  bool help_requested_ = false;
};

}  // namespace halo
