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

One cluster: halo-gcs and three halo-node daemons on this machine (link "shm": processes of
one host over halo's default UCX transports, ^mm). Each pair: one run of
`halo_objstore_bench --mode=ha_put` (HA puts for --seconds, then plain puts for --seconds, each
reference dropped after its put) and one ucx_perftest run. rereplication_bandwidth and
failover_read_ms wait for re-replication (not built yet).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402
from compare_objstore import (UCX_TLS, Cluster, MeasurementError, Programs,  # noqa: E402
                              load1, log, run_script)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each run")
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    ap.add_argument("--copies", default=",".join(str(c) for c in COPIES))
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
    cluster = Cluster(programs, workdir, LINK, [store] * max(3, max(copies_list))).start()
    try:
        setup = Setup(args, "ucx", LINK, None)
        setup.env["UCX_TLS"] = UCX_TLS[LINK]
        setup.perftest_flags = ["-e"]  # Peer-failure handling, as halo's endpoints.
        for copies in copies_list:
            for size in sizes:
                records.extend(measure(args, cluster, setup, size, copies))
                pairwise.write_records(out, records)  # Partial results survive a failure.
    finally:
        cluster.stop()
    print(f"{'metric':<22} {'size':>10} {'halo us':>10} {'peer us':>10} {'plain':>9} "
          f"{'raw':>9} {'ratio':>6} {'min-max':>11}")
    for r in records:
        print(f"{r['metric']:<22} {r['size']:>10} {r['halo']:>10.1f} {r['peer']:>10.1f} "
              f"{r['plain_put_us']:>9.1f} {r['raw_put_us']:>9.1f} {r['ratio']:>6.3f} "
              f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    run_script(main, "compare_ha")
