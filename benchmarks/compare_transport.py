"""Compares halo's transport with its peers (../shared/BENCH.md): ucx_perftest for the UCX
backend, fi_pingpong for the libfabric backend, over shared memory, TCP loopback and TCP
between two test hosts. Writes build/bench/transport.json. Run through compare_transport.sh.
"""

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402
from test_hosts import TestHosts  # noqa: E402

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20]
RUN_TIMEOUT = 300


class MeasurementError(Exception):
    pass


def run(argv, env=None, timeout=RUN_TIMEOUT):
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise MeasurementError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def free_port():
    # Below Linux's ephemeral range (32768-60999), where the daemons' and UCX's own listening
    # sockets get their ports; _pair still retries a port found taken.
    return random.randint(20000, 32000)


PORT_ATTEMPTS = 5


def wait_listening(prefix, port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MeasurementError(f"server exited early: {proc.stdout.read() if proc.stdout else ''}")
        out = subprocess.run(prefix + ["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True).stdout
        if out.strip():
            return
        time.sleep(0.02)
    raise MeasurementError(f"nothing listens on port {port} after {timeout} s")


class Setup:
    """One measurement point's settings: backend, link and the environment both sides use."""

    def __init__(self, args, backend, link, hosts):
        self.args, self.backend, self.link, self.hosts = args, backend, link, hosts
        self.env = dict(os.environ)
        self.perftest_flags = []  # Extra ucx_perftest flags, both sides (e.g. "-e").
        if link == "tcp-hosts":
            self.server_prefix, self.client_prefix = hosts.prefix(1), hosts.prefix(0)
            self.server_host, iface = hosts.addrs[1], hosts.interface
        else:
            self.server_prefix = self.client_prefix = []
            self.server_host, iface = "127.0.0.1", "lo"
        if backend == "ucx":
            self.env["UCX_TLS"] = "posix,sysv,cma,self" if link == "shm" else "tcp,self"
            if link != "shm":
                self.env["UCX_NET_DEVICES"] = iface
            self.halo_flags = ["--transport=ucx", f"--ucx_tls={self.env['UCX_TLS']}"]
        else:
            self.provider = "shm" if link == "shm" else "tcp"
            if iface:
                self.env["FI_TCP_IFACE"] = iface
            self.halo_flags = ["--transport=ofi", f"--ofi_provider={self.provider}"]

    # --- halo ---------------------------------------------------------------------------
    def halo(self, bench_filter, counter, min_time):
        build = self.args.build
        argv = [os.path.join(build, "benchmarks", "halo_transport_bench"), *self.halo_flags,
                f"--benchmark_filter=^{bench_filter}/manual_time$", f"--benchmark_min_time={min_time}",
                "--benchmark_format=json"]
        echo = None
        secret = None
        try:
            if self.link == "tcp-hosts":
                fd, secret = tempfile.mkstemp(prefix="halo-bench-secret-")
                os.write(fd, os.urandom(32))
                os.close(fd)
                echo = subprocess.Popen(
                    self.server_prefix + [os.path.join(build, "transport", "halo-transport-echo"),
                                          *self.halo_flags, f"--listen_host={self.server_host}",
                                          f"--secret_file={secret}"],
                    env=self.env, stdout=subprocess.PIPE, text=True)
                line = echo.stdout.readline().strip()
                if not line.startswith("LISTENING "):
                    raise MeasurementError(f"halo echo server did not start: {line!r}")
                argv += [f"--peer={line.split()[1]}", f"--secret_file={secret}"]
            out = run(self.client_prefix + argv, env=self.env)
        finally:
            if echo:
                echo.terminate()
                echo.wait()
            if secret:
                os.unlink(secret)
        data = json.loads(out)
        for b in data["benchmarks"]:
            if "error_message" in b:
                raise MeasurementError(f"halo benchmark failed: {b['error_message']}")
            return float(b[counter])
        raise MeasurementError(f"halo benchmark {bench_filter} produced no result")

    # --- peers --------------------------------------------------------------------------
    def _pair(self, make_argvs):
        """Runs a peer's server and client on a free port; make_argvs(port) gives both argvs.
        A port some other socket took meanwhile is replaced by another."""
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            server_argv, client_argv = make_argvs(port)
            server = subprocess.Popen(self.server_prefix + server_argv, env=self.env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                try:
                    wait_listening(self.server_prefix, port, server)
                except MeasurementError as e:
                    if "already in use" in str(e) and attempt + 1 < PORT_ATTEMPTS:
                        continue
                    raise
                return run(self.client_prefix + client_argv, env=self.env)
            finally:
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()

    def ucx_perftest(self, test, size, iterations):
        common = ["-t", test, "-s", str(size), "-n", str(iterations),
                  "-w", str(max(1, min(iterations // 10, 10000)))]
        out = self._pair(lambda port: (
            ["ucx_perftest", "-p", str(port), *self.perftest_flags],
            ["ucx_perftest", self.server_host, "-p", str(port), *self.perftest_flags, *common,
             "-f"]))
        line = [l for l in out.splitlines() if l.strip() and re.match(r"^\s*\d", l)][-1].split()
        # Columns: iterations, latency p50, avg, overall (usec), bandwidth avg, overall (MiB/s), ...
        return float(line[2]), float(line[5]) * 1.048576  # usec, MB/s (10^6)

    def fi_pingpong(self, size, iterations):
        common = ["-p", self.provider, "-e", "rdm", "-S", str(size), "-I", str(iterations)]
        out = self._pair(lambda port: (
            ["fi_pingpong", *common, "-B", str(port)],
            ["fi_pingpong", *common, "-P", str(port), self.server_host]))
        line = [l for l in out.splitlines() if re.match(r"^\d", l)][-1].split()
        # Columns: bytes, #sent, #ack, total, time, MB/sec (10^6), usec/xfer, Mxfers/sec
        return float(line[6]), float(line[5])

    def peer_latency(self, iterations):
        if self.backend == "ucx":
            return self.ucx_perftest("ucp_am_lat", 8, iterations)[0]
        return self.fi_pingpong(8, iterations)[0]

    def peer_bandwidth(self, size, iterations):
        if self.backend == "ucx":
            return max(self.ucx_perftest("ucp_put_bw", size, iterations)[1],
                       self.ucx_perftest("ucp_am_bw", size, iterations)[1])
        return self.fi_pingpong(size, iterations)[1]


def iterations_for(seconds, per_iteration_us, lo=10, hi=50_000_000):
    return int(min(hi, max(lo, math.ceil(seconds * 1e6 / per_iteration_us))))


def measure(setup, metric, size, args):
    labels = {"backend": setup.backend, "transport": setup.link, "size": size}
    print(f"  {metric} {setup.backend} {setup.link} {size} B", file=sys.stderr, flush=True)
    if metric in ("am_latency", "rpc_latency"):
        probe = setup.peer_latency(2000)
        n = iterations_for(args.seconds, 2 * probe)
        peer_name = ("ucx_perftest ucp_am_lat" if setup.backend == "ucx"
                     else f"fi_pingpong -p {setup.provider} -e rdm")
        bench = "BM_AmLatency/8" if metric == "am_latency" else "BM_RpcLatency/8"
        return pairwise.point(metric, lambda: setup.halo(bench, "half_rtt_us", args.seconds),
                              lambda: setup.peer_latency(n), args.pairs, "us", False, peer_name,
                              **labels)
    probe_n = max(4, min(200, (64 << 20) // size))
    probe = setup.peer_bandwidth(size, probe_n)
    n = iterations_for(args.seconds, size / probe)  # size / (MB/s) = microseconds per transfer
    peer_name = ("best of ucx_perftest ucp_put_bw, ucp_am_bw" if setup.backend == "ucx"
                 else f"fi_pingpong -p {setup.provider} -e rdm")
    return pairwise.point(metric,
                          lambda: setup.halo(f"BM_Bandwidth/{size}", "MBps",
                                             args.seconds),
                          lambda: setup.peer_bandwidth(size, n), args.pairs, "MB/s", True,
                          peer_name, **labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each run")
    ap.add_argument("--backends", default="ucx,ofi")
    ap.add_argument("--links", default="shm,tcp,tcp-hosts")
    ap.add_argument("--metrics", default="am_latency,rpc_latency,bandwidth")
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or os.path.join(args.build, "bench", "transport.json")
    records = []
    links = args.links.split(",")
    hosts = TestHosts() if "tcp-hosts" in links else None
    try:
        if hosts:
            hosts.__enter__()
        for backend in args.backends.split(","):
            for link in links:
                setup = Setup(args, backend, link, hosts)
                for metric in args.metrics.split(","):
                    sizes = [8] if metric != "bandwidth" else [int(s) for s in args.sizes.split(",")]
                    for size in sizes:
                        records.append(measure(setup, metric, size, args))
                        pairwise.write_records(out, records)  # Partial results survive a failure.
    finally:
        if hosts:
            hosts.__exit__(None, None, None)
    pairwise.print_table(records)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    try:
        main()
    except MeasurementError as e:
        print(f"compare_transport: a measurement could not run: {e}", file=sys.stderr)
        sys.exit(1)
