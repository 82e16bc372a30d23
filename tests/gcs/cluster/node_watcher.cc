#include "tests/gcs/cluster/node_watcher.h"

#include <utility>

#include "tests/gcs/cluster/json_object.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {

std::string watch_program() { return HALO_GCS_WATCH_PROGRAM; }

std::string NodeEvent::to_string() const {
  return str_cat("seq ", seq, resync ? " (resync)" : "", " node ", node_id, " incarnation ",
                 incarnation, " ", state, reason.empty() ? "" : " (" + reason + ")", " at ",
                 mono_us, " us");
}

StatusOr<std::unique_ptr<NodeWatcher>> NodeWatcher::start(const Placement& where,
                                                          const std::string& gcs_address,
                                                          const std::string& secret_file) {
  std::vector<std::string> argv = {watch_program(), "--gcs_address=" + gcs_address,
                                   "--secret_file=" + secret_file};
  for (auto& flag : where.transport_flags()) argv.push_back(std::move(flag));
  test::ChildOptions options;
  options.echo_label = "watch";
  auto child = where.spawn(std::move(argv), std::move(options));
  if (!child.ok()) return child.status().with_context("starting gcs_watch");
  std::unique_ptr<NodeWatcher> watcher(new NodeWatcher(*std::move(child)));
  // Changes printed before the subscribed line are kept like any others.
  const test::Deadline deadline(std::chrono::seconds(30));
  while (watcher->unparsed_.empty() ||
         watcher->unparsed_.back().rfind(R"({"event":"subscribed")", 0) != 0) {
    const Status read = watcher->read_one(deadline.remaining());
    if (read.code() == StatusCode::kUnavailable || (!read.ok() && deadline.expired())) {
      return unavailable_error(str_cat("gcs_watch on ", where.describe(), " did not subscribe to ",
                                       gcs_address, " (", read.ok() ? "time-out" : read.to_string(),
                                       "); its output:\n", watcher->process_.output_text()));
    }
  }
  return watcher;
}

Status NodeWatcher::read_one(std::chrono::steady_clock::duration timeout) {
  auto line = process_.read_line(timeout);
  if (!line.ok()) return line.status();
  auto object = parse_json_object(*line);
  if (!object.ok() || json_string(*object, "event") != "node") {
    unparsed_.push_back(*line);
    return Status();
  }
  NodeEvent event;
  event.seq = static_cast<uint64_t>(json_number(*object, "seq"));
  event.resync = json_bool(*object, "resync");
  event.node_id = json_string(*object, "node_id");
  event.incarnation = static_cast<uint64_t>(json_number(*object, "incarnation"));
  event.state = json_string(*object, "state");
  event.reason = json_string(*object, "reason");
  event.changed_at_ms = static_cast<int64_t>(json_number(*object, "changed_at_ms"));
  event.mono_us = static_cast<int64_t>(json_number(*object, "mono_us"));
  events_.push_back(std::move(event));
  return Status();
}

const std::vector<NodeEvent>& NodeWatcher::events() {
  // Lines already queued are read at once; stop at the first wait.
  while (read_one(std::chrono::steady_clock::duration::zero()).ok()) {
  }
  return events_;
}

StatusOr<NodeEvent> NodeWatcher::wait_for(const std::function<bool(const NodeEvent&)>& match,
                                          std::chrono::steady_clock::duration timeout,
                                          std::string_view what) {
  const test::Deadline deadline(timeout);
  size_t checked = 0;
  while (true) {
    for (; checked < events_.size(); ++checked) {
      if (match(events_[checked])) return events_[checked];
    }
    if (deadline.expired()) break;
    if (read_one(deadline.remaining()).code() == StatusCode::kUnavailable) {
      return unavailable_error(str_cat("gcs_watch ended (",
                                       process_.running() ? "closed its output" : "exited",
                                       ") before it heard ", what, "; it heard:\n", transcript()));
    }
  }
  return deadline_exceeded_error(
      str_cat("the subscriber heard no ", what, " within ",
              std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(),
              " ms; it heard:\n", transcript()));
}

std::string NodeWatcher::transcript() const {
  std::string text;
  for (const NodeEvent& event : events_) text += "  " + event.to_string() + "\n";
  for (const std::string& line : unparsed_) text += "  (other) " + line + "\n";
  return text;
}

}  // namespace halo::gcs::testing
