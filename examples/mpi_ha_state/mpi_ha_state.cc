// An MPI program that keeps its state in halo HA objects, so that the run survives the loss of
// a node: the in-memory analogue of SCR's partner checkpoints, the copies written by RDMA puts
// into another machine's object store rather than to a file system (docs/mpi.md).
//
//   mpirun -np 3 --map-by ppr:1:node halo-mpi-ha-state [--steps N] [--elements M] [--step-ms T]
//
// The state is one slice of M 64-bit values per rank. Every step, each slice's owner advances
// it and checkpoints it with halo::put(slice, {.ha = true}): copies on two machines. The ranks
// then exchange the checkpoints' references (MPI_Allgather), so every rank holds a reference
// to every slice's latest checkpoint.
//
// When a rank's halo node daemon dies, its halo calls fail: the rank says so and computes no
// more (it stays in the MPI job, which would end if a rank left). The lowest rank that still
// has its node takes the slice over from its latest checkpoint, whose other copy survives on
// another machine, and redoes the step. At the end rank 0 reads every slice's final
// checkpoint and compares it with what a run without failures computes: "RESULT OK".
//
// --step-ms paces the steps (a stand-in for real computation) so that a node can be killed
// mid-run by hand or by the test; each rank prints "STEP s" as it finishes step s.
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "halo/halo.h"
#include "halo/mpi.h"

namespace {

using Slice = std::vector<uint64_t>;
using Ref = halo::ObjectRef<Slice>;

// One slice's entry in the exchange after a step.
struct Record {
  int32_t step = 0;  // The step of the checkpoint in `ref`; 0: nothing new from this rank.
  int32_t length = 0;
  char ref[248] = {};
};
static_assert(sizeof(Record) == 256);

Slice initial_slice(int slice, size_t elements) {
  Slice s(elements);
  for (size_t j = 0; j < elements; ++j) s[j] = static_cast<uint64_t>(slice) * 1'000'003 + j;
  return s;
}

void advance(Slice& s, int slice, int step) {
  for (uint64_t& x : s) x = x * 6364136223846793005ull + static_cast<uint64_t>(step * 31 + slice);
}

struct Options {
  int steps = 40;
  size_t elements = 1 << 18;
  int step_ms = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--steps") o.steps = static_cast<int>(value);
    if (flag == "--elements") o.elements = static_cast<size_t>(value);
    if (flag == "--step-ms") o.step_ms = static_cast<int>(value);
  }
  return o;
}

class Run {
 public:
  Run(int rank, int size, Options options)
      : rank_(rank),
        size_(size),
        options_(options),
        owner_(static_cast<size_t>(size)),
        latest_(static_cast<size_t>(size)),
        latest_step_(static_cast<size_t>(size), 0) {
    for (int i = 0; i < size_; ++i) owner_[static_cast<size_t>(i)] = i;
    state_[rank_] = initial_slice(rank_, options_.elements);
  }

  void step(int s) {
    const auto started = std::chrono::steady_clock::now();
    for (;;) {
      std::vector<Record> mine(static_cast<size_t>(size_));
      for (int i = 0; i < size_; ++i) {
        if (owner_[static_cast<size_t>(i)] == rank_ && latest_step_[static_cast<size_t>(i)] < s) {
          compute(i, s, mine[static_cast<size_t>(i)]);
        }
      }
      // Everyone learns every slice's new checkpoint, and who lost their node.
      int my_lost = lost_ ? 1 : 0;
      std::vector<int> lost(static_cast<size_t>(size_));
      MPI_Allgather(&my_lost, 1, MPI_INT, lost.data(), 1, MPI_INT, MPI_COMM_WORLD);
      std::vector<Record> all(static_cast<size_t>(size_) * static_cast<size_t>(size_));
      MPI_Allgather(mine.data(), static_cast<int>(sizeof(Record)) * size_, MPI_BYTE, all.data(),
                    static_cast<int>(sizeof(Record)) * size_, MPI_BYTE, MPI_COMM_WORLD);
      // Adopt the new checkpoints. A rank that cannot (the owner's node died just after the
      // put) makes every rank treat that slice as not done, so that all agree on who redoes it.
      std::vector<int> failed(static_cast<size_t>(size_), 0);
      std::vector<std::optional<Ref>> adopted(static_cast<size_t>(size_));
      for (int i = 0; i < size_; ++i) {
        const size_t ii = static_cast<size_t>(i);
        const Record& r = all[static_cast<size_t>(owner_[ii]) * static_cast<size_t>(size_) + ii];
        if (r.step != s || lost_) continue;
        try {
          adopted[ii] = Ref::from_binary(std::string_view(r.ref, static_cast<size_t>(r.length)));
        } catch (const halo::Error&) {
          failed[ii] = 1;
        }
      }
      MPI_Allreduce(MPI_IN_PLACE, failed.data(), size_, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
      bool complete = true;
      for (int i = 0; i < size_; ++i) {
        const size_t ii = static_cast<size_t>(i);
        const Record& r = all[static_cast<size_t>(owner_[ii]) * static_cast<size_t>(size_) + ii];
        if (r.step == s && !failed[ii]) {
          if (adopted[ii]) latest_[ii] = std::move(*adopted[ii]);
          latest_step_[ii] = s;
        }
        if (latest_step_[ii] != s) complete = false;
      }
      if (complete) break;
      // Slices of ranks that lost their node go to the lowest rank that has one.
      int heir = -1;
      for (int r = 0; r < size_ && heir < 0; ++r) {
        if (!lost[static_cast<size_t>(r)]) heir = r;
      }
      if (heir < 0) throw halo::Error("every rank lost its halo node");
      for (int i = 0; i < size_; ++i) {
        const size_t ii = static_cast<size_t>(i);
        if (latest_step_[ii] < s && lost[static_cast<size_t>(owner_[ii])]) {
          if (rank_ == heir) {
            std::printf("rank %d: takes slice %d over from its step %d checkpoint\n", rank_, i,
                        latest_step_[ii]);
            std::fflush(stdout);
          }
          owner_[ii] = heir;
        }
      }
    }
    if (options_.step_ms > 0) {
      std::this_thread::sleep_until(started + std::chrono::milliseconds(options_.step_ms));
    }
    std::printf("STEP %d rank %d\n", s, rank_);
    std::fflush(stdout);
  }

  // Rank 0: every slice's final checkpoint against a run without failures.
  bool verify() {
    bool ok = true;
    for (int i = 0; i < size_; ++i) {
      Slice expected = initial_slice(i, options_.elements);
      for (int s = 1; s <= options_.steps; ++s) advance(expected, i, s);
      auto view = halo::get(latest_[static_cast<size_t>(i)], std::chrono::seconds(60));
      if (view.size() != expected.size() ||
          std::memcmp(view.data(), expected.data(), expected.size() * sizeof(uint64_t)) != 0) {
        std::fprintf(stderr, "slice %d differs from a run without failures\n", i);
        ok = false;
      }
    }
    return ok;
  }

  bool lost() const { return lost_; }

 private:
  // Advances slice i to step s (restoring it from its checkpoint first when this rank does not
  // hold it at s - 1) and checkpoints it; a failure of this rank's node marks it lost.
  void compute(int i, int s, Record& out) {
    if (lost_) return;
    const size_t ii = static_cast<size_t>(i);
    try {
      auto it = state_.find(i);
      if (it == state_.end() || held_step_[i] != s - 1) {
        auto view = halo::get(latest_[ii], std::chrono::seconds(60));
        it = state_.insert_or_assign(i, Slice(view.begin(), view.end())).first;
      }
      advance(it->second, i, s);
      held_step_[i] = s;
      Ref ref = halo::put(it->second, {.ha = true});
      const std::string wire = ref.binary();
      if (wire.size() > sizeof(out.ref)) throw halo::Error("reference too long for a record");
      out.step = s;
      out.length = static_cast<int32_t>(wire.size());
      std::memcpy(out.ref, wire.data(), wire.size());
      mine_.insert_or_assign(i, std::move(ref));  // Kept until the others have adopted it.
    } catch (const halo::Error& e) {
      std::printf("rank %d: lost its halo node at step %d (%s); computes no more\n", rank_, s,
                  e.what());
      std::fflush(stdout);
      lost_ = true;
      mine_.clear();
      latest_.assign(latest_.size(), Ref());
    }
  }

  int rank_;
  int size_;
  Options options_;
  bool lost_ = false;
  std::vector<int> owner_;        // Slice -> rank computing it.
  std::vector<Ref> latest_;       // Slice -> its latest checkpoint.
  std::vector<int> latest_step_;  // Slice -> the step of that checkpoint.
  std::map<int, Slice> state_;    // Slices this rank holds in memory.
  std::map<int, int> held_step_;  // ...and their step.
  std::map<int, Ref> mine_;       // This rank's newest checkpoints.
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Options options = parse(argc, argv);
  try {
    halo::init(MPI_COMM_WORLD, {.object_store_memory = 256ull << 20});
  } catch (const halo::Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    MPI_Finalize();
    return 1;
  }
  int status = 0;
  {
    Run run(rank, size, options);
    try {
      for (int s = 1; s <= options.steps; ++s) run.step(s);
      if (rank == 0) {
        const bool ok = run.verify();
        std::printf("RESULT %s\n", ok ? "OK" : "WRONG");
        status = ok ? 0 : 1;
      }
    } catch (const halo::Error& e) {
      std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    // Every rank keeps its references until rank 0 has verified.
    MPI_Barrier(MPI_COMM_WORLD);
  }
  halo::shutdown();
  MPI_Finalize();
  return status;
}
