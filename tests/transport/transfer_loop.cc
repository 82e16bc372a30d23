#include "transfer_loop.h"

#include <condition_variable>
#include <map>

namespace halo::transport::testing {

struct TransferLoop::State {
  State(EndpointPtr ep_in, const MemoryRegion& source_in, const MemoryRegion& target_in,
        RemoteRegion remote_in, Options options_in)
      : ep(std::move(ep_in)),
        source(source_in),
        target(target_in),
        remote(std::move(remote_in)),
        options(options_in) {}

  EndpointPtr ep;
  const MemoryRegion& source;
  const MemoryRegion& target;
  RemoteRegion remote;
  Options options;

  mutable std::mutex mu;
  mutable std::condition_variable idle;
  bool issuing = false;
  uint64_t next_op = 1;
  std::map<uint64_t, Outcome> pending;
  std::vector<Outcome> done;
  size_t ok = 0;
  size_t extra_completions = 0;
};

TransferLoop::TransferLoop(EndpointPtr ep, const MemoryRegion& source, const MemoryRegion& target,
                           RemoteRegion remote, Options options)
    : state_(std::make_shared<State>(std::move(ep), source, target, std::move(remote), options)) {}

void TransferLoop::start() {
  {
    std::lock_guard lock(state_->mu);
    state_->issuing = true;
  }
  for (int i = 0; i < state_->options.put_chains; ++i) issue(state_, Kind::kPut);
  for (int i = 0; i < state_->options.get_chains; ++i) issue(state_, Kind::kGet);
}

// Completions capture the state, not the loop, so a loop destroyed early leaves no dangling
// callback behind.
void TransferLoop::issue(const std::shared_ptr<State>& self, Kind kind) {
  uint64_t op;
  {
    std::lock_guard lock(self->mu);
    if (!self->issuing) return;
    op = self->next_op++;
    self->pending[op] = Outcome{kind, Clock::now(), Clock::now(), Status(), false};
  }
  Completion done = [state = self, op, kind](Status status) {
    bool again;
    {
      std::lock_guard lock(state->mu);
      auto it = state->pending.find(op);
      if (it == state->pending.end()) {
        state->extra_completions++;
        return;
      }
      Outcome outcome = it->second;
      state->pending.erase(it);
      outcome.completed = Clock::now();
      outcome.status = status;
      if (status.ok()) state->ok++;
      state->done.push_back(std::move(outcome));
      again = status.ok() && state->issuing;
      if (state->pending.empty()) state->idle.notify_all();
    }
    if (!again) return;
    switch (kind) {
      case Kind::kPut:
        issue(state, Kind::kFlush);
        break;
      case Kind::kFlush:
        issue(state, Kind::kPut);
        break;
      case Kind::kGet:
        issue(state, Kind::kGet);
        break;
    }
  };
  const size_t n = self->options.op_bytes;
  switch (kind) {
    case Kind::kPut:
      self->ep->put(self->source, 0, self->remote, 0, n, std::move(done));
      break;
    case Kind::kFlush:
      self->ep->flush(std::move(done));
      break;
    case Kind::kGet:
      self->ep->get(self->target, 0, self->remote, 0, n, std::move(done));
      break;
  }
}

Clock::time_point TransferLoop::stop_issuing() {
  std::lock_guard lock(state_->mu);
  state_->issuing = false;
  for (auto& [op, outcome] : state_->pending) outcome.pending_at_stop = true;
  return Clock::now();
}

bool TransferLoop::wait_until_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->idle.wait_for(lock, timeout, [&] { return state_->pending.empty(); });
}

size_t TransferLoop::completed_ok() const {
  std::lock_guard lock(state_->mu);
  return state_->ok;
}

size_t TransferLoop::extra_completions() const {
  std::lock_guard lock(state_->mu);
  return state_->extra_completions;
}

size_t TransferLoop::pending() const {
  std::lock_guard lock(state_->mu);
  return state_->pending.size();
}

std::vector<TransferLoop::Outcome> TransferLoop::outcomes() const {
  std::lock_guard lock(state_->mu);
  std::vector<Outcome> all = state_->done;
  for (const auto& [op, outcome] : state_->pending) {
    Outcome still = outcome;
    still.status = Status(StatusCode::kUnknown, "still pending");
    all.push_back(std::move(still));
  }
  return all;
}

std::string_view TransferLoop::kind_name(Kind kind) {
  switch (kind) {
    case Kind::kPut:
      return "put";
    case Kind::kFlush:
      return "flush";
    case Kind::kGet:
      return "get";
  }
  return "?";
}

}  // namespace halo::transport::testing
