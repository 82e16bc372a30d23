// halo in an MPI program: every rank becomes a client of the halo node daemon on its machine
// (docs/mpi.md). Link halo::mpi (libhalo_mpi) besides halo::halo.
//
//   #include <halo/halo.h>
//   #include <halo/mpi.h>
//
//   int main(int argc, char** argv) {
//     MPI_Init(&argc, &argv);
//     halo::init(MPI_COMM_WORLD);                        // Collective.
//     std::string wire;
//     if (rank == 0) {
//       auto ref = halo::put(state, {.ha = true});       // Kept on two machines.
//       wire = ref.binary();                             // Any rank can adopt it...
//     }
//     ... MPI_Bcast the bytes of `wire` ...
//     auto ref = halo::ObjectRef<State>::from_binary(wire);   // ...and get it.
//     auto view = halo::get(ref);
//     halo::shutdown();                                  // Collective too.
//     MPI_Finalize();
//   }
//
// What init(comm) does, collectively over `comm`:
//   - With no cluster given (options.address and $HALO_ADDRESS empty), rank 0 starts a GCS on
//     its machine and broadcasts its address and a new cluster secret with MPI; the lowest rank
//     of each machine starts that machine's node daemon; shutdown() stops them all.
//   - With a cluster given (a job started with slurm/halo.sbatch or halo-launch-mpi sets
//     HALO_ADDRESS and HALO_SECRET_FILE), every rank joins it: each machine's lowest rank uses
//     the cluster's node daemon on that machine, or starts one when none runs there (stopped
//     again at shutdown()).
//   - The daemons listen on $HALO_HOST, else the address the host name resolves to, else the
//     machine's first non-loopback interface (launcher/mpi/host_address.h).
//   - Every rank then connects to its machine's node daemon, so puts land in the machine's
//     shared memory and gets of local objects read it in place.
// It returns on every rank or throws halo::Error on every rank, with the same reason (naming
// the rank where it failed and, for a daemon that did not start, its log).
//
// shutdown() after init(comm) is collective over the same communicator: call it on every
// rank, before MPI_Finalize. A rank that holds references another rank still uses should keep
// them until the others are done, as anywhere (halo/object_ref.h).
#pragma once

#include <mpi.h>

#include "halo/init_options.h"

namespace halo {

// See above. `options` as for init(): address, secret_file and put_timeout apply; num_nodes
// does not (one node daemon per machine); node_flags go to the node daemons it starts.
void init(MPI_Comm comm, const InitOptions& options = {});

}  // namespace halo
