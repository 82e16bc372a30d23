#!/usr/bin/env python3
"""Launch benchmarks (issue 6, ../shared/BENCH.md): build/bench/launch.json.

  cluster_start_seconds
                   from `sbatch slurm/halo.sbatch DRIVER` (3 nodes) to the driver running, which
                   the template starts once every halo node is ALIVE: the time halo's cluster
                   takes to come up inside a fresh job, scheduling included. The driver only
                   writes the time (CLOCK_REALTIME, as the script reads it) to a file. Against
                   the time Slurm itself takes to run an empty 3-node step (`srun -N3 true`) in
                   the same run. Ratio = peer / halo (target >= 0.5: halo's start at most twice
                   an empty step). Each halo job starts after the queue is empty again.
  cluster_start_seconds_vs_empty_batch
                   the same halo jobs against an empty 3-node batch job (sbatch to its script's
                   first line), run in the same rounds: how much of halo's time is Slurm's own
                   start of a batch job (its scheduler takes batch jobs about once a second).
                   Every batch job is submitted at a random point of that second.
  cluster_start_in_job_seconds
                   halo's own part: from the template's first line to every node ALIVE (the
                   template reports it), against the same empty steps.

  mpirun_start_seconds
                   from `mpirun -np 3 --map-by ppr:1:node halo-launch-mpi -- DRIVER` to the
                   driver running (rank 0 starts it once every node is a member), against an
                   empty `mpirun -np 3 --map-by ppr:1:node true` in the same run. Both run
                   inside one 3-node batch job (mpirun starts its daemons through srun there),
                   pairs alternating; the driver only writes the time. Ratio = peer / halo.

Runs on its own local Slurm cluster of three nodes (slurm/local-slurm.sh, started and stopped
here; needs root and the Slurm packages of scripts/install-deps.sh). Rounds alternate: one
halo job, one empty step, one empty batch job.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = 3


def log(text):
    print(text, file=sys.stderr, flush=True)


class MeasurementError(Exception):
    pass


# mpirun inside a Slurm job on the local cluster: root allowed, Open MPI's UCX PML (its ob1/TCP
# path crashed in MPI_Init in 1-5% of multi-node runs here), and no shared-memory topology file
# (several orteds on one machine clash on it).
MPIRUN = ["mpirun", "-np", str(NODES), "--map-by", "ppr:1:node",
          "--mca", "rtc_hwloc_vmhole", "none"]
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_pml": "ucx", "OMPI_MCA_pml_ucx_tls": "any",
           "OMPI_MCA_pml_ucx_devices": "any"}


def mpirun_pairs(build, pairs, out):
    """Runs inside the batch job: mpirun_start_seconds, written to `out` as a record."""
    env = dict(os.environ)
    env.update(MPI_ENV)
    # The local cluster's "nodes" share one machine and its loopback.
    env.update({"HALO_HOST": "127.0.0.1", "HALO_BIN_DIR": os.path.join(build, "bin"),
                "HALO_NODE_FLAGS": f"--object-store-memory={64 << 20}"})
    exported = []
    for name in ("HALO_HOST", "HALO_BIN_DIR", "HALO_NODE_FLAGS"):
        exported += ["-x", name]
    work = os.path.dirname(out)
    driver = os.path.join(work, "mpi-started.sh")
    with open(driver, "w") as f:
        f.write("#!/bin/sh\ndate +%s.%N > \"$1\"\n")
    os.chmod(driver, 0o755)

    def halo_run():
        stamp = os.path.join(work, f"mpi-started-{time.monotonic_ns()}")
        t0 = time.time()
        subprocess.run(MPIRUN + exported + [os.path.join(build, "bin", "halo-launch-mpi"), "--",
                                            driver, stamp], env=env, check=True,
                       capture_output=True)
        with open(stamp) as f:
            return float(f.read()) - t0

    def peer_run():
        t0 = time.monotonic()
        subprocess.run(MPIRUN + ["true"], env=env, check=True, capture_output=True)
        return time.monotonic() - t0

    record = pairwise.point("mpirun_start_seconds", halo_run, peer_run, pairs, "s", False,
                            "mpirun -np 3 true (an empty 3-node launch)", backend="ucx",
                            transport="tcp-loopback", nodes=NODES)
    with open(out, "w") as f:
        json.dump(record, f)


def run_mpirun_job(env, work, build, pairs):
    """mpirun_start_seconds, measured by a 3-node batch job running this script."""
    out = os.path.join(work, "mpirun-record.json")
    job = os.path.join(work, "mpirun-job.sh")
    with open(job, "w") as f:
        f.write(f"#!/bin/sh\nexec python3 {os.path.abspath(__file__)} --inside-job "
                f"--build {build} --pairs {pairs} --out {out}\n")
    log(f"mpirun_start_seconds: {pairs} pairs, {NODES} nodes, inside one batch job")
    subprocess.run(["sbatch", "--wait", f"--nodes={NODES}", "--ntasks-per-node=1",
                    "-o", os.path.join(work, "mpirun-job.out"), job],
                   env=env, cwd=work, check=True, capture_output=True)
    if not os.path.exists(out):
        with open(os.path.join(work, "mpirun-job.out")) as f:
            raise MeasurementError(f"the mpirun job wrote no result:\n{f.read()}")
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--inside-job", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside_job:
        return mpirun_pairs(os.path.abspath(args.build), args.pairs, args.out)
    build = os.path.abspath(args.build)
    out = args.out or os.path.join(build, "bench", "launch.json")
    work = tempfile.mkdtemp(prefix="halo-launch-bench-")
    cluster = os.path.join(work, "slurm")
    env = dict(os.environ)
    env.update({"SLURM_CONF": os.path.join(cluster, "slurm.conf"),
                "HALO_BIN_DIR": os.path.join(build, "bin"),
                "HALO_SLURM_NODE": os.path.join(ROOT, "slurm", "halo-slurm-node.sh"),
                # Three stores on one machine: small ones, quick to pre-fault.
                "HALO_OBJECT_STORE_MEMORY": str(64 << 20)})
    script = os.path.join(ROOT, "slurm", "local-slurm.sh")
    subprocess.run(["bash", script, "start", cluster, str(NODES)], check=True)
    try:
        driver = os.path.join(work, "started.sh")
        with open(driver, "w") as f:
            f.write("#!/bin/sh\ndate +%s.%N > \"$1\"\n")
        os.chmod(driver, 0o755)

        def wait_for_empty_queue(deadline):
            """Until the last job has ended, so that the next one starts on idle nodes."""
            while subprocess.run(["squeue", "--noheader"], env=env, capture_output=True,
                                 text=True).stdout.strip():
                if time.monotonic() > deadline:
                    raise MeasurementError(f"a job did not end; see {work}")
                time.sleep(0.01)

        in_job = []  # Per halo job: batch script start to every node ALIVE, as it reports.

        def submit_at_a_random_phase():
            """Slurm starts batch jobs at its scheduler's next pass, about once a second: a
            submission right after a job ended waits almost a full second, one just before the
            pass hardly at all. Both halo's jobs and the empty ones are submitted at a random
            point of that second, as users' submissions are."""
            time.sleep(random.uniform(0, 1))

        def batch_job(command, output, what):
            """Submits `command` plus a fresh stamp file's path (3 nodes) at a random phase,
            waits for the stamp, then for the queue to empty. Returns the seconds from sbatch
            to the time in the stamp, and the job id."""
            stamp = os.path.join(work, f"stamp-{time.monotonic_ns()}")
            submit_at_a_random_phase()
            t0 = time.time()
            job_id = subprocess.run(["sbatch", "--parsable", f"--nodes={NODES}", "-o", output]
                                    + command + [stamp], env=env, cwd=work, check=True,
                                    capture_output=True, text=True).stdout.strip().split(";")[0]
            deadline = time.monotonic() + 120
            while not (os.path.exists(stamp) and os.path.getsize(stamp) > 0):
                if time.monotonic() > deadline:
                    raise MeasurementError(f"{what} did not start in 120 s; see {work}")
                time.sleep(0.002)
            with open(stamp) as f:
                started = float(f.read())
            wait_for_empty_queue(deadline)
            return started - t0, job_id

        def halo_run():
            seconds, job_id = batch_job([os.path.join(ROOT, "slurm", "halo.sbatch"), driver],
                                        os.path.join(work, "job-%j.out"),
                                        "the halo job's driver")
            with open(os.path.join(work, f"job-{job_id}.out")) as f:
                alive = re.search(r"ALIVE (\d+) ms after the job began", f.read())
            if alive is None:
                raise MeasurementError(f"job {job_id} did not report its start; see {work}")
            in_job.append(int(alive.group(1)) / 1000)
            return seconds

        def peer_run():
            t0 = time.monotonic()
            subprocess.run(["srun", f"--nodes={NODES}", "--ntasks-per-node=1", "true"],
                           env=env, cwd=work, check=True)
            return time.monotonic() - t0

        def empty_batch_run():
            """An empty 3-node batch job, from sbatch to its script's first line: what Slurm
            itself takes to start the job halo's template runs in."""
            return batch_job([driver], "/dev/null", "the empty batch job")[0]

        log(f"cluster_start_seconds: {args.pairs} rounds of a halo job, an empty 3-node step "
            f"and an empty 3-node batch job, {NODES} nodes")
        # Not measured: the first job after the cluster starts waits for Slurm's first
        # scheduling pass (about 3 s).
        empty_batch_run()
        halo_values, step_values, batch_values = [], [], []
        for i in range(args.pairs):
            halo_values.append(halo_run())
            step_values.append(peer_run())
            batch_values.append(empty_batch_run())
            log(f"    round {i + 1}/{args.pairs}: halo {halo_values[-1]:.3f} s (ALIVE "
                f"{in_job[-1]:.3f} s after its batch script began), empty step "
                f"{step_values[-1]:.3f} s, empty batch job {batch_values[-1]:.3f} s")
        labels = {"backend": "ucx", "transport": "tcp-loopback", "nodes": NODES}
        records = [
            pairwise.record_of("cluster_start_seconds", halo_values, step_values, "s", False,
                               "srun -N3 true (an empty 3-node step)", **labels),
            # Context, not the metric: Slurm starts a batch job only at its scheduler's
            # next pass (about once a second), which an srun allocation does not wait for.
            pairwise.record_of("cluster_start_seconds_vs_empty_batch", halo_values,
                               batch_values, "s", False,
                               "sbatch -N3 of an empty script, to its first line", **labels),
            # halo's own part: from its batch script's first line to every node ALIVE (which
            # includes Slurm launching the nodes' step), against the same empty steps.
            pairwise.record_of("cluster_start_in_job_seconds", in_job, step_values, "s", False,
                               "srun -N3 true (an empty 3-node step)", **labels)]
        records.append(run_mpirun_job(env, work, build, args.pairs))
        pairwise.write_records(out, records)
        print(f"{'metric':<38} {'halo s':>8} {'peer s':>8} {'ratio':>6} {'min-max':>11}")
        for record in records:
            print(f"{record['metric']:<38} {record['halo']:>8.3f} {record['peer']:>8.3f} "
                  f"{record['ratio']:>6.3f} {record['ratio_min']:.2f}-{record['ratio_max']:.2f}")
        print(f"\nwrote {out}")
    finally:
        subprocess.run(["bash", script, "stop", cluster])
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    try:
        main()
    except (MeasurementError, subprocess.CalledProcessError) as e:
        log(f"compare_launch: {e}")
        sys.exit(1)
