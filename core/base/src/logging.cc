#include "halo/base/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

namespace halo::log {
namespace {

// Time, then who wrote the line (process name = logger name, pid, thread), then the level.
constexpr const char* kPattern = "[%Y-%m-%d %H:%M:%S.%f] [%n:%P] [%t] [%l] %v";

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

// The level is read on every log call, from any thread, so it is an atomic of its own rather
// than a field behind the logger pointer.
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<std::shared_ptr<spdlog::logger>> g_logger;
// Serializes init(), set_level() and the first-use default logger.
std::mutex g_init_mu;

std::shared_ptr<spdlog::logger> make_logger(const std::string& name, Level level,
                                            std::vector<spdlog::sink_ptr> sinks) {
  auto logger = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  logger->set_pattern(kPattern);
  logger->set_level(to_spdlog(level));
  logger->flush_on(spdlog::level::trace);
  return logger;
}

void install(std::shared_ptr<spdlog::logger> logger, Level level) {
  g_level.store(static_cast<int>(level));
  spdlog::set_default_logger(logger);
  g_logger.store(std::move(logger));
}

std::shared_ptr<spdlog::logger> current_logger() {
  std::shared_ptr<spdlog::logger> logger = g_logger.load();
  if (logger) return logger;
  std::lock_guard<std::mutex> lock(g_init_mu);
  logger = g_logger.load();
  if (logger) return logger;
  logger = make_logger(program_invocation_short_name, level(),
                       {std::make_shared<spdlog::sinks::stderr_sink_mt>()});
  install(logger, level());
  return logger;
}

}  // namespace

StatusOr<Level> parse_level(std::string_view text) {
  std::string lower;
  for (char c : text)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (Level l :
       {Level::kTrace, Level::kDebug, Level::kInfo, Level::kWarn, Level::kError, Level::kOff}) {
    if (lower == level_name(l)) return l;
  }
  return invalid_argument_error(str_cat("'", text,
                                        "' is not a log level; use trace, debug, info, warn, "
                                        "error or off"));
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kOff:
      return "off";
  }
  return "unknown";
}

Status init(const Options& options) {
  std::string name =
      options.process_name.empty() ? program_invocation_short_name : options.process_name;
  std::vector<spdlog::sink_ptr> sinks;
  auto to_stderr = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  if (!options.file.empty()) {
    errno = 0;
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
    } catch (const spdlog::spdlog_ex& e) {
      int err = errno;
      std::string what = str_cat("cannot open log file ", options.file);
      if (err != 0) return errno_error(err, what);
      return invalid_argument_error(str_cat(what, ": ", e.what()));
    }
    // With a file, stderr keeps only what a user must see even if nobody reads the file.
    to_stderr->set_level(std::max(to_spdlog(options.level), spdlog::level::warn));
  }
  sinks.push_back(std::move(to_stderr));
  std::lock_guard<std::mutex> lock(g_init_mu);
  install(make_logger(name, options.level, std::move(sinks)), options.level);
  return Status();
}

Status init(const LoggingConfig& config, std::string_view process_name) {
  StatusOr<Level> level = parse_level(config.log_level);
  if (!level.ok())
    return invalid_argument_error(str_cat("knob log_level: ", level.status().message()));
  return init(
      Options{.level = *level, .file = config.log_file, .process_name = std::string(process_name)});
}

void set_level(Level level) {
  // Under the init lock, so that a concurrent init() cannot leave the installed logger at a
  // level other than the one enabled() reports.
  std::lock_guard<std::mutex> lock(g_init_mu);
  g_level.store(static_cast<int>(level));
  if (std::shared_ptr<spdlog::logger> logger = g_logger.load()) {
    logger->set_level(to_spdlog(level));
  }
}

Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

bool enabled(Level l) {
  return l != Level::kOff && static_cast<int>(l) >= g_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view message) {
  if (!enabled(level)) return;
  current_logger()->log(to_spdlog(level), message);
}

void flush() { current_logger()->flush(); }

}  // namespace halo::log
