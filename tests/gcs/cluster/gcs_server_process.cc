#include "tests/gcs/cluster/gcs_server_process.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "tests/support/wait_for.h"

namespace halo::gcs::testing {

namespace {

// The file's content without surrounding whitespace; empty when missing or empty.
std::string read_trimmed(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  std::string text = contents.str();
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

// The port of "scheme://host:port", or 0.
uint16_t port_of(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return 0;
  uint16_t port = 0;
  std::from_chars(address.data() + colon + 1, address.data() + address.size(), port);
  return port;
}

}  // namespace

std::vector<std::string> HealthChecks::flags() const {
  return {
      str_cat("--health-check-initial-delay-ms=", initial_delay_ms),
      str_cat("--health-check-period-ms=", period_ms),
      str_cat("--health-check-timeout-ms=", timeout_ms),
      str_cat("--health-check-failure-threshold=", failure_threshold),
  };
}

std::chrono::milliseconds HealthChecks::death_bound() const {
  return std::chrono::milliseconds(period_ms * failure_threshold + timeout_ms);
}

std::string gcs_program() { return HALO_GCS_PROGRAM; }

StatusOr<std::unique_ptr<GcsServerProcess>> GcsServerProcess::start(Options options) {
  std::error_code error;
  std::filesystem::create_directories(options.data_dir, error);
  if (error) {
    return internal_error(
        str_cat("creating the GCS data directory ", options.data_dir, ": ", error.message()));
  }
  std::unique_ptr<GcsServerProcess> gcs(new GcsServerProcess(std::move(options)));
  gcs->address_file_ = gcs->options_.data_dir + ".address";
  HALO_RETURN_IF_ERROR(gcs->launch());
  return gcs;
}

StatusOr<test::ExitStatus> GcsServerProcess::kill() {
  if (!process_) return failed_precondition_error("halo-gcs was never started");
  return process_->kill();
}

Status GcsServerProcess::restart(const std::string& fsync_policy) {
  if (process_ && process_->running()) {
    return failed_precondition_error("restart() of a halo-gcs that is still running; kill() it");
  }
  if (!fsync_policy.empty()) options_.fsync_policy = fsync_policy;
  return launch().with_context(str_cat("restarting halo-gcs on ", options_.data_dir));
}

Status GcsServerProcess::launch() {
  std::error_code ignored;
  std::filesystem::remove(address_file_, ignored);
  std::vector<std::string> argv = {
      gcs_program(),
      "--data-dir=" + options_.data_dir,
      "--secret-file=" + options_.secret_file,
      "--host=" + options_.where.address(),
      str_cat("--port=", options_.port),
      "--address-file=" + address_file_,
      "--fsync-policy=" + options_.fsync_policy,
  };
  for (auto& flag : options_.health.flags()) argv.push_back(std::move(flag));
  for (auto& flag : options_.where.transport_flags()) argv.push_back(std::move(flag));
  for (const auto& flag : options_.extra_flags) argv.push_back(flag);

  test::ChildOptions child_options;
  child_options.echo_label = "gcs";
  const auto spawned_at = std::chrono::steady_clock::now();
  auto child = options_.where.spawn(std::move(argv), std::move(child_options));
  if (!child.ok()) return child.status().with_context("starting halo-gcs");
  process_ = std::make_unique<test::ChildProcess>(*std::move(child));

  bool exited = false;
  const bool serving = test::wait_for(
      [&] {
        if (!read_trimmed(address_file_).empty()) return true;
        exited = !process_->running();
        return exited;
      },
      options_.start_timeout);
  if (!serving || exited) {
    const test::ExitStatus* exit = process_->exit_status();
    return unavailable_error(str_cat(
        "halo-gcs on ", options_.where.describe(), " (data dir ", options_.data_dir, ") ",
        exited && exit != nullptr ? "ended with " + exit->to_string()
                                  : "did not write its address file " + address_file_,
        " within ", options_.start_timeout.count(), " ms; its output:\n", process_->output_text()));
  }
  last_start_time_ = std::chrono::steady_clock::now() - spawned_at;
  // The file may be written in more than one piece: wait until it holds a whole address.
  std::string address;
  const bool whole = test::wait_for(
      [&] {
        address = read_trimmed(address_file_);
        return port_of(address) != 0;
      },
      std::chrono::seconds(5));
  if (!whole) {
    return internal_error(
        str_cat("halo-gcs's address file ", address_file_, " holds no address: \"", address, "\""));
  }
  if (options_.port != 0 && port_of(address) != options_.port) {
    return internal_error(
        str_cat("halo-gcs was asked for port ", options_.port, " and serves on ", address));
  }
  options_.port = port_of(address);
  address_ = std::move(address);
  return Status();
}

}  // namespace halo::gcs::testing
