// An MPI program for the mpirun tests: halo::init(MPI_COMM_WORLD), then objects between ranks.
//
//   mpirun -np 3 ... halo_mpi_objects_program [--ha]
//
// Rank 0 puts a 1 MiB vector (with --ha: an HA object, 2 copies) and broadcasts its reference
// with MPI; every rank gets it and checks every element. Then every rank puts one of its own,
// the references are gathered on rank 0, which reads and checks them all. Prints, per rank,
// "RANK r NODE <node address> GOT <n> OBJECTS" and, on rank 0, "NODES <ALIVE nodes>" and
// "VERIFIED" at the end; exits 1 with the reason on a bad value or a halo error.
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "halo/halo.h"
#include "halo/mpi.h"

namespace {

using Values = std::vector<uint64_t>;
constexpr size_t kCount = (1 << 20) / sizeof(uint64_t);

Values values_of(int rank) {
  Values v(kCount);
  for (size_t i = 0; i < kCount; ++i) v[i] = (static_cast<uint64_t>(rank) << 40) + i * 7 + 1;
  return v;
}

bool matches(const halo::ObjectView<Values>& view, int rank) {
  const Values expected = values_of(rank);
  return view.size() == expected.size() &&
         std::memcmp(view.data(), expected.data(), expected.size() * sizeof(uint64_t)) == 0;
}

std::string broadcast(std::string bytes, int root) {
  uint64_t size = bytes.size();
  MPI_Bcast(&size, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
  bytes.resize(size);
  MPI_Bcast(bytes.data(), static_cast<int>(size), MPI_CHAR, root, MPI_COMM_WORLD);
  return bytes;
}

int run(int rank, int size, bool ha) {
  halo::PutOptions options{.ha = ha};
  int got = 0;
  // One object from rank 0 to every rank.
  halo::ObjectRef<Values> first;
  if (rank == 0) first = halo::put(values_of(0), options);
  const std::string wire = broadcast(rank == 0 ? first.binary() : std::string(), 0);
  auto adopted = halo::ObjectRef<Values>::from_binary(wire);
  if (!matches(halo::get(adopted, std::chrono::seconds(60)), 0)) {
    std::fprintf(stderr, "rank %d: rank 0's object holds other values\n", rank);
    return 1;
  }
  ++got;
  // One object from every rank to rank 0 (fixed-size wire forms: same length on every rank).
  auto mine = halo::put(values_of(rank), options);
  std::string my_wire = mine.binary();
  std::vector<int> lengths(static_cast<size_t>(size));
  int my_length = static_cast<int>(my_wire.size());
  MPI_Gather(&my_length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(static_cast<size_t>(size));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Gatherv(my_wire.data(), my_length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
              MPI_CHAR, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    for (int r = 0; r < size; ++r) {
      auto ref = halo::ObjectRef<Values>::from_binary(
          std::string_view(all).substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                                       static_cast<size_t>(lengths[static_cast<size_t>(r)])));
      if (!matches(halo::get(ref, std::chrono::seconds(60)), r)) {
        std::fprintf(stderr, "rank 0: rank %d's object holds other values\n", r);
        return 1;
      }
      ++got;
    }
    int alive = 0;
    for (const auto& node : halo::cluster_info().nodes) alive += node.state == "ALIVE";
    std::printf("NODES %d\n", alive);
  }
  // Every rank keeps its own reference until rank 0 has read them all.
  MPI_Barrier(MPI_COMM_WORLD);
  std::printf("RANK %d NODE %s GOT %d OBJECTS\n", rank, halo::store_info().node_address.c_str(),
              got);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const bool ha = argc > 1 && std::strcmp(argv[1], "--ha") == 0;
  int status = 0;
  try {
    halo::init(MPI_COMM_WORLD, {.object_store_memory = 64ull << 20});
  } catch (const halo::Error& e) {
    // init() throws on every rank alike: they all end here.
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    MPI_Finalize();
    return 1;
  }
  try {
    status = run(rank, size, ha);
    halo::shutdown();
  } catch (const halo::Error& e) {
    // The other ranks may wait in a collective for this one: end the job.
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int worst = 0;
  MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst == 0) std::printf("VERIFIED\n");
  MPI_Finalize();
  return status;
}
