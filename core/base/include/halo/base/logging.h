// Logging for every halo process: one call to set it up, then fmt-style calls anywhere.
//
//   halo::log::LoggingConfig log_config;             // knobs log_level, log_file
//   loader.add(log_config);
//   ...load the config...
//   HALO_RETURN_IF_ERROR(halo::log::init(log_config, "halo-node"));
//   halo::log::info("listening on {}", address);
//   halo::log::warn("object {} lost its copy on node {}: {}", object_id, node_id, status);
//
// Each line carries the time (local, microseconds), process name, pid, thread id and level:
//
//   [2025-01-31 14:02:07.123456] [halo-node:41872] [41890] [warning] object 5f0c... lost ...
//
// Lines go to stderr; with a log file they go to the file (appended; missing parent folders
// are created) and warnings and errors still go to stderr too, so a user sees them. Every line
// is flushed as it is written: halo processes are killed by design (failure tests, a node's
// fencing), and a log that loses its last lines cannot explain the death.
//
// Before init(), lines go to stderr at level info under the program's name. Thread-safe: any
// thread may log while another calls init() or set_level(). A child made by fork() without
// exec should call init() again before it logs.
//
// halo::Status and the ids of halo/base/ids.h format with `{}`. Code that calls spdlog directly
// gets the same format, level and file: init() installs halo's logger as spdlog's default.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <utility>

#include "halo/base/ids.h"
#include "halo/base/status.h"

namespace halo::log {

enum class Level : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// "trace", "debug", "info", "warn", "error" or "off" (any case) to a level; anything else is
// INVALID_ARGUMENT listing the accepted names.
StatusOr<Level> parse_level(std::string_view text);
std::string_view level_name(Level level);

// The logging knobs, for a ConfigLoader (see halo/base/config.h).
struct LoggingConfig {
  // Lowest level written: trace, debug, info, warn, error, or off.
  std::string log_level = "info";
  // File the log is appended to (created, with its folder, if missing). Empty: stderr only.
  std::string log_file = "";

  template <typename V>
  void visit(V& v) {
    v("log_level", log_level, "lowest level logged: trace, debug, info, warn, error or off");
    v("log_file", log_file, "file to append the log to; empty = stderr only");
  }
};

struct Options {
  Level level = Level::kInfo;
  std::string file;          // Empty: stderr only.
  std::string process_name;  // Empty: the program's name.
};

// Sets up (or replaces) the process's logger. Errors: an unopenable file (the status names it
// and the reason); the previous logger then stays in place.
Status init(const Options& options);
// As above from the config knobs; a bad log_level is INVALID_ARGUMENT naming the knob.
Status init(const LoggingConfig& config, std::string_view process_name);

// Changes the level without touching the file or name.
void set_level(Level level);
Level level();
// True when a line at `level` would be written; for skipping costly work to build a message.
bool enabled(Level level);

// Writes one line at `level` (if enabled). The typed functions below format, then call this.
void write(Level level, std::string_view message);

// Pushes buffered lines out; every line is already flushed, so this is for the paranoid.
void flush();

template <typename... Args>
void trace(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::kTrace))
    write(Level::kTrace, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::kDebug))
    write(Level::kDebug, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::kInfo)) write(Level::kInfo, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::kWarn)) write(Level::kWarn, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::kError))
    write(Level::kError, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace halo::log

template <>
struct fmt::formatter<halo::Status> : fmt::formatter<std::string_view> {
  auto format(const halo::Status& status, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(status.to_string(), ctx);
  }
};

template <typename Tag, size_t N>
struct fmt::formatter<halo::Id<Tag, N>> : fmt::formatter<std::string_view> {
  auto format(const halo::Id<Tag, N>& id, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(id.to_hex(), ctx);
  }
};
