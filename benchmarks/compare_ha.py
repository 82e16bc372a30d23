#!/usr/bin/env python3
"""HA object benchmarks (issue 5, ../shared/BENCH.md): build/bench/ha.json.

  ha_put_time      an HA put (halo::put with {.ha = true}) of 4 KiB, 1 MiB and 64 MiB with 2
                   primary copies (ha_put_time) and 3 (ha_put_time_3copies), against its peer:
                   a plain put of the same value plus one raw transfer of the same size: the
                   faster of ucx_perftest -t ucp_put_bw and -t ucp_am_bw (its time per
                   operation; with -e and halo's UCX_TLS, as halo's endpoints). Over TCP, UCX
                   emulates RMA puts (ucp_put_bw: 30-200 MB/s at 1-64 MiB here), so the
                   active-message test is the one that moves bytes at TCP's speed.
                   Ratio = peer time / HA time (target >= 0.87: HA <= 1.15 x peer).

  rereplication_bandwidth
                   bytes restored per second after a holder dies: node 0 puts --objects HA
                   objects of 64 MiB (2 copies) and holds them, the node holding the other
                   copies is killed with SIGKILL, and node 0 restores every copy on the third
                   node; from node 0's log, the time from its first "restoring" line to its
                   last "back to" line (failure detection not included). Against the better of
                   ucx_perftest ucp_put_bw and ucp_am_bw at 64 MiB (-e, halo's UCX_TLS). A new
                   cluster per pair. Target ratio >= 0.8.

  failover_read_ms a read in flight when its holder dies, until it completes from another
                   copy: node 1 puts one HA object of 64 MiB (2 copies) and holds it; a client
                   on the node without a copy starts a get (the bytes come from node 1, the
                   owner), and node 1 is killed with SIGKILL --kill-after-ms (5) later. From
                   the kill to the get's return (both on CLOCK_MONOTONIC), which includes
                   moving the 64 MiB again from the other holder. A run counts only when the
                   reader's node logged the failover (the kill came while the read was in
                   flight). A new cluster per run; --pairs runs. No peer; target <= 100 ms.

For ha_put_time, one cluster: halo-gcs and three halo-node daemons on this machine (link "shm":
processes of one host over halo's default UCX transports, ^mm). Each pair: one run of
`halo_objstore_bench --mode=ha_put` (HA puts for --seconds, then plain puts for --seconds, each
reference dropped after its put) and one ucx_perftest run.
"""

import argparse
import datetime
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402
from compare_objstore import (UCX_TLS, Cluster, MeasurementError, Programs,  # noqa: E402
                              alone, load1, log, run_script)
from compare_transport import Setup  # noqa: E402

SIZES = [4 << 10, 1 << 20, 64 << 20]
COPIES = [2, 3]
LINK = "shm"


def metric_name(copies):
    return "ha_put_time" if copies == 2 else f"ha_put_time_{copies}copies"


def measure(args, cluster, setup, size, copies):
    log(f"  {metric_name(copies)} {size} B: {args.pairs} pairs (load {load1():.1f})")
    probe_n = max(2, min(200, (64 << 20) // size))
    counts = {}
    for test in ("ucp_put_bw", "ucp_am_bw"):
        probe_us = setup.ucx_perftest(test, size, probe_n)[0]
        counts[test] = max(2, int(args.seconds * 1e6 / max(probe_us, 1.0)))
    plain, raw = [], []
    by_test = {test: [] for test in counts}

    def halo_run():
        lines = cluster.run_bench(0, "ha_put", f"--size={size}", f"--copies={copies}",
                                  f"--seconds={args.seconds}", "--pairs=1")
        by_side = {l["side"]: l["put_us"] for l in lines if l.get("mode") == "ha_put"}
        if "ha" not in by_side or "plain" not in by_side:
            raise MeasurementError(f"halo_objstore_bench --mode=ha_put printed {lines}")
        plain.append(by_side["plain"])
        return by_side["ha"]

    def peer_run():
        for test, n in counts.items():
            by_test[test].append(setup.ucx_perftest(test, size, n)[0])
        raw.append(min(values[-1] for values in by_test.values()))
        return plain[-1] + raw[-1]

    record = pairwise.point(metric_name(copies), halo_run, peer_run, args.pairs, "us", False,
                            "plain put + one raw transfer (best of ucp_put_bw, ucp_am_bw)",
                            backend="ucx",
                            transport=LINK, size=size, copies=copies, ucx_tls=UCX_TLS[LINK])
    record["plain_put_us"] = statistics.median(plain)
    record["raw_put_us"] = statistics.median(raw)
    for test, values in by_test.items():
        record[f"peer_{test}_us"] = statistics.median(values)
    return [record]


LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]")


def log_times(path, text):
    """Times (seconds) of the lines of a halo log that contain `text`."""
    times = []
    with open(path) as f:
        for line in f:
            m = LOG_TIME.match(line)
            if m and text in line:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                times.append(t.timestamp())
    return times


def measure_rereplication(args, programs, workdir, setup):
    size = 64 << 20
    objects = args.objects
    log(f"  rereplication_bandwidth {objects} x {size} B: {args.pairs} pairs "
        f"(load {load1():.1f})")
    probe = {t: setup.ucx_perftest(t, size, 4)[1] for t in ("ucp_put_bw", "ucp_am_bw")}
    counts = {t: max(2, int(args.seconds * mbps * 1e6 / size)) for t, mbps in probe.items()}
    by_test = {t: [] for t in counts}
    store = objects * size + (512 << 20)

    def halo_run():
        cluster = Cluster(programs, workdir, LINK, [store] * 3).start()
        try:
            holder, _ = cluster.hold(0, objects, size, "rerep", "--ha", "--copies=2")
            used = [cluster.run_bench(n, "store_info")[0]["used_bytes"] for n in (1, 2)]
            replica = 1 if used[0] >= objects * size else 2
            cluster.node_procs[replica].kill()
            node0_log = os.path.join(cluster.workdir, "node0.log")
            deadline = time.monotonic() + 120
            while len(log_times(node0_log, "copies (new on")) < objects:
                if time.monotonic() > deadline:
                    raise MeasurementError(f"node 0 did not restore {objects} copies in 120 s; "
                                           f"see {node0_log}")
                time.sleep(0.1)
            start = min(log_times(node0_log, "; restoring"))
            end = max(log_times(node0_log, "copies (new on"))
            Cluster.release(holder)
            return objects * size / max(end - start, 1e-6) / 1e6
        finally:
            cluster.stop()

    def peer_run():
        for t, n in counts.items():
            by_test[t].append(setup.ucx_perftest(t, size, n)[1])
        return max(values[-1] for values in by_test.values())

    record = pairwise.point("rereplication_bandwidth", halo_run, peer_run, args.pairs, "MB/s",
                            True, "best of ucx_perftest ucp_put_bw, ucp_am_bw", backend="ucx",
                            transport=LINK, size=size, objects=objects, copies=2,
                            ucx_tls=UCX_TLS[LINK])
    for t, values in by_test.items():
        record[f"peer_{t}"] = statistics.median(values)
    return [record]


def measure_failover_read(args, programs, workdir):
    size = 64 << 20
    log(f"  failover_read_ms {size} B: {args.pairs} runs, holder killed {args.kill_after_ms} ms "
        f"into the read (load {load1():.1f})")
    store = 2 * size + (256 << 20)
    values, attempts = [], 0
    while len(values) < args.pairs:
        attempts += 1
        if attempts > 3 * args.pairs:
            raise MeasurementError(f"only {len(values)} of {attempts - 1} runs caught the read "
                                   f"in flight; try another --kill-after-ms")
        cluster = Cluster(programs, workdir, LINK, [store] * 3).start()
        try:
            holder, refs = cluster.hold(1, 1, size, "failover", "--ha", "--copies=2")
            used = {n: cluster.run_bench(n, "store_info")[0]["used_bytes"] for n in (0, 2)}
            reader = 0 if used[0] < used[2] else 2  # The node without a copy.
            proc, lines = cluster.spawn_bench(reader, "one_get", f"--refs_file={refs}")
            if (lines.next_json(60) or {}).get("event") != "ready":
                raise MeasurementError("the reader did not start")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            getting = lines.next_json(60)
            time.sleep(args.kill_after_ms / 1000)
            killed_ns = time.monotonic_ns()
            cluster.node_procs[1].kill()
            got = lines.next_json(60)
            if not got or got.get("event") != "got" or got.get("bytes") != size:
                raise MeasurementError(f"the read did not complete after the holder died: {got}; "
                                       f"see {cluster.workdir}")
            reader_log = os.path.join(cluster.workdir, f"node{reader}.log")
            failed_over = bool(log_times(reader_log, "trying 1 other holder"))
            ms = (got["t_ns"] - killed_ns) / 1e6
            if failed_over and got["t_ns"] > killed_ns:
                values.append(ms)
                log(f"    run {len(values)}/{args.pairs}: {ms:.1f} ms (read started "
                    f"{(killed_ns - getting['t_ns']) / 1e6:.1f} ms before the kill)")
            else:
                log(f"    not counted: the read was done {-ms:.1f} ms before the kill"
                    if not failed_over else "    not counted")
            Cluster.release(holder)
        finally:
            cluster.stop()
    record = alone("failover_read_ms", values, "ms", backend="ucx", transport=LINK, size=size,
                   copies=2, kill_after_ms=args.kill_after_ms, ucx_tls=UCX_TLS[LINK])
    record["higher_is_better"] = False
    return [record]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each run")
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    ap.add_argument("--copies", default=",".join(str(c) for c in COPIES))
    ap.add_argument("--metrics", default="ha_put_time,rereplication_bandwidth,failover_read_ms")
    ap.add_argument("--kill-after-ms", type=float, default=5.0,
                    help="failover_read_ms: when to kill the holder, after the read starts")
    ap.add_argument("--objects", type=int, default=4,
                    help="rereplication_bandwidth: HA objects of 64 MiB to restore")
    ap.add_argument("--workdir", default=None, help="default BUILD/bench/ha-work")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    copies_list = [int(c) for c in args.copies.split(",")]
    out = args.out or os.path.join(args.build, "bench", "ha.json")
    workdir = os.path.abspath(args.workdir or os.path.join(args.build, "bench", "ha-work"))
    programs = Programs(args.build)
    # Each node holds at most a few objects at a time (references are dropped after each put).
    store = 4 * max(sizes) + (256 << 20)
    records = []
    metrics = args.metrics.split(",")
    setup = Setup(args, "ucx", LINK, None)
    setup.env["UCX_TLS"] = UCX_TLS[LINK]
    setup.perftest_flags = ["-e"]  # Peer-failure handling, as halo's endpoints.
    if "ha_put_time" in metrics:
        cluster = Cluster(programs, workdir, LINK, [store] * max(3, max(copies_list))).start()
        try:
            for copies in copies_list:
                for size in sizes:
                    records.extend(measure(args, cluster, setup, size, copies))
                    pairwise.write_records(out, records)  # Partial results survive a failure.
        finally:
            cluster.stop()
    if "rereplication_bandwidth" in metrics:
        records.extend(measure_rereplication(args, programs, workdir, setup))
        pairwise.write_records(out, records)
    if "failover_read_ms" in metrics:
        records.extend(measure_failover_read(args, programs, workdir))
        pairwise.write_records(out, records)
    print(f"{'metric':<22} {'size':>10} {'halo us':>10} {'peer us':>10} {'plain':>9} "
          f"{'raw':>9} {'ratio':>6} {'min-max':>11}")
    for r in records:
        if r["metric"] == "failover_read_ms":
            print(f"{r['metric']:<22} {r['size']:>10} {r['halo']:>10.1f} {'':>10} {'ms':>9} "
                  f"{'':>9} {'':>6} {r['halo_min']:.1f}-{r['halo_max']:.1f}")
            continue
        if r["metric"] == "rereplication_bandwidth":
            print(f"{r['metric']:<22} {r['size']:>10} {r['halo']:>10.0f} {r['peer']:>10.0f} "
                  f"{'MB/s':>9} {'':>9} {r['ratio']:>6.3f} {r['ratio_min']:.2f}-"
                  f"{r['ratio_max']:.2f}")
            continue
        print(f"{r['metric']:<22} {r['size']:>10} {r['halo']:>10.1f} {r['peer']:>10.1f} "
              f"{r['plain_put_us']:>9.1f} {r['raw_put_us']:>9.1f} {r['ratio']:>6.3f} "
              f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    run_script(main, "compare_ha")
