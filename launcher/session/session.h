// A session: the directory where `halo start` keeps everything about the cluster daemons it
// started on this machine. One per cluster (and one per joining machine). An embedded local
// cluster (launcher/local_cluster/local_cluster.h) keeps its daemons' files in one too.
//
//   <temp dir>/session_<YYYY-MM-DD_HH-MM-SS>_<pid>/   mode 0700   (temp dir: /tmp/halo)
//     cluster_secret      the cluster secret, 64 hex digits, mode 0600 (head only)
//     gcs_address         the GCS's transport address, written by halo-gcs once it serves
//     gcs_data/           the GCS's data directory (snapshots + log), unless --data-dir
//     node-<N>.json       state file of the N-th node daemon started here (node_state_file.h)
//     pids/gcs.pid, pids/node-<N>.pid   daemons started here, for `halo stop`
//     logs/gcs.log, logs/node-<N>.log   their output
//   <temp dir>/session_latest -> the newest session (a symlink)
//
// The temp dir is /tmp/halo unless HALO_TEMP_DIR names another (tests use their own). Every
// file and folder is created owner-only.
#pragma once

#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::launcher {

class Session {
 public:
  // Creates `dir` (or, when empty, a new default one under the temp dir), with logs/ and
  // pids/, all mode 0700, and points session_latest at it. An existing `dir` is reused.
  static StatusOr<Session> create(const std::string& dir);

  // Whether a new session becomes <temp dir>/session_latest, what `halo status` and
  // `halo stop` use when given no --session-dir. An embedded local cluster leaves the link
  // alone, so that it never hides a cluster started by hand.
  enum class Latest { kPoint, kLeave };
  // Creates a new session folder under `temp_dir` (made if missing), named as above and never
  // one that exists already (a suffix _2, _3, ... is added when two sessions of one process
  // start within a second), with logs/ and pids/, all mode 0700.
  static StatusOr<Session> create_new(const std::string& temp_dir, Latest latest);
  // The session at `dir`, or when empty the latest one. NOT_FOUND, saying how to start a
  // cluster, when there is none.
  static StatusOr<Session> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string secret_file() const { return dir_ + "/cluster_secret"; }
  std::string gcs_address_file() const { return dir_ + "/gcs_address"; }
  std::string gcs_data_dir() const { return dir_ + "/gcs_data"; }
  std::string log_file(const std::string& daemon) const {
    return dir_ + "/logs/" + daemon + ".log";
  }
  std::string pid_file(const std::string& daemon) const {
    return dir_ + "/pids/" + daemon + ".pid";
  }
  std::string node_state_file(const std::string& daemon) const {
    return dir_ + "/" + daemon + ".json";
  }

  // The first "node-<N>" with no pid file yet.
  std::string next_node_name() const;
  // Names of the daemons with a pid file ("gcs", "node-1", ...), nodes first.
  std::vector<std::string> daemons() const;
  // The GCS address halo-gcs wrote (trimmed); NOT_FOUND when it has not (yet).
  StatusOr<std::string> gcs_address() const;

 private:
  explicit Session(std::string dir) : dir_(std::move(dir)) {}
  // logs/, pids/ and the session_latest link of a folder just made.
  static StatusOr<Session> finish_create(const std::string& temp_dir, const std::string& dir,
                                         Latest latest);
  std::string dir_;
};

// The folder sessions live in: $HALO_TEMP_DIR, else /tmp/halo.
std::string temp_dir();

// Writes a new cluster secret to `path`: 32 random bytes (OpenSSL RAND_bytes) as 64 hex
// digits, no newline, mode 0600. Fails if the file exists (a secret is never overwritten).
Status write_new_secret_file(const std::string& path);
// Writes `secret` (a cluster's, as read from its secret file) to a new file `path`, mode 0600.
// Fails if the file exists.
Status write_secret_file(const std::string& path, const std::string& secret);

}  // namespace halo::launcher
