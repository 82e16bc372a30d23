#include "gcs/server/gcs_config.h"

namespace halo::gcs {

Status GcsConfig::validate() const {
  if (data_dir.empty()) {
    return invalid_argument_error(
        "--data-dir is required: the folder where the GCS keeps its log and snapshots");
  }
  if (fsync_policy != "always" && fsync_policy != "group") {
    return invalid_argument_error(
        str_cat("fsync_policy \"", fsync_policy, "\" is not one of: always, group"));
  }
  if (group_commit_delay_us < 0) return invalid_argument_error("group_commit_delay_us < 0");
  if (snapshot_interval_s <= 0) return invalid_argument_error("snapshot_interval_s must be > 0");
  if (snapshot_every_records == 0) {
    return invalid_argument_error("snapshot_every_records must be > 0");
  }
  if (health_check_initial_delay_ms < 0) {
    return invalid_argument_error("health_check_initial_delay_ms must be >= 0");
  }
  if (health_check_period_ms <= 0 || health_check_timeout_ms <= 0) {
    return invalid_argument_error("health_check_period_ms and health_check_timeout_ms must be > 0");
  }
  if (health_check_failure_threshold < 1) {
    return invalid_argument_error("health_check_failure_threshold must be >= 1");
  }
  if (dead_node_remove_after_ms < 0) {
    return invalid_argument_error("dead_node_remove_after_ms must be >= 0");
  }
  if (poll_max_wait_ms < 0) return invalid_argument_error("poll_max_wait_ms must be >= 0");
  if (kv_max_key_bytes == 0 || kv_max_value_bytes == 0) {
    return invalid_argument_error("kv_max_key_bytes and kv_max_value_bytes must be > 0");
  }
  return Status();
}

}  // namespace halo::gcs
