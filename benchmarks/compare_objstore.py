"""The object store benchmarks of issue 4 (../shared/BENCH.md, docs/benchmarks.md "Object
store"). Starts its own halo-gcs and halo-node daemons, runs build/benchmarks/
halo_objstore_bench (objstore_bench.cc) as the clients, writes build/bench/objstore.json and
prints a table. Run through compare_objstore.sh.

  small_put_ops           64 B puts/s from one client, each reference dropped after its put
  small_put_ops_2clients  the same from two client processes at once, summed
  small_get_ops           64 B gets/s as Ray's `ray microbenchmark` measures its "single client
                          get calls (Plasma Store)": one value put by the client, got again and
                          again (each view dropped); small_get_ops_first: first gets of objects
                          another client process put on the same node (each answered by the
                          node)
  put_bandwidth           put of 1 MiB .. 1 GiB (the client writes a std::vector<uint8_t> into
                          the store) against memcpy of it in the same process, alternating
  remote_get_bandwidth    get of an object held by another node, 1 MiB .. 256 MiB, on shm (two
                          nodes on this machine, UCX ^mm: halo's default) and tcp-hosts (one
                          node in each of two test hosts, UCX tcp,self), against the better of
                          ucx_perftest ucp_put_bw and ucp_am_bw with the same UCX_TLS and
                          peer-failure handling (-e), as halo's endpoints

The small-object metrics have no peer on this machine (Ray publishes about 5,200 puts/s and
10,400 gets/s): each is run --pairs times, and the record gives the median, min and max.
"""

import argparse
import ctypes
import json
import os
import queue
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402
from compare_transport import Setup, iterations_for  # noqa: E402
from test_hosts import TestHosts  # noqa: E402

METRICS = ["small_put_ops", "small_put_ops_2clients", "small_get_ops", "put_bandwidth",
           "remote_get_bandwidth"]
PUT_SIZES = [1 << 20, 16 << 20, 256 << 20, 1 << 30]
REMOTE_SIZES = [1 << 20, 16 << 20, 256 << 20]
# halo's default on one host ("^mm": no UCX shared-memory FIFO, see transport/src/ucx/ucx_tls.h)
# and what the multihost tests use between hosts.
UCX_TLS = {"shm": "^mm", "tcp-hosts": "tcp,self"}
SMALL_BYTES = 64
RUN_TIMEOUT = 600


class MeasurementError(Exception):
    pass


def log(text):
    print(text, file=sys.stderr, flush=True)


def load1():
    return os.getloadavg()[0]


def _die_with_parent():
    """In the child before exec: SIGKILL when this script dies, however it dies; and a
    memlock limit that lets the node lock its store (what `ulimit -l unlimited` does)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK,
                           (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


class Programs:
    def __init__(self, build):
        self.gcs = os.path.join(build, "bin", "halo-gcs")
        self.node = os.path.join(build, "bin", "halo-node")
        self.bench = os.path.join(build, "benchmarks", "halo_objstore_bench")
        for p in (self.gcs, self.node, self.bench):
            if not os.access(p, os.X_OK):
                raise MeasurementError(f"{p} is missing: build it (ninja -C {build} "
                                       "halo_objstore_bench halo-gcs halo-node)")


class Children:
    """Every process this script starts, so that all of them go at the end, also on error."""

    procs = []

    @classmethod
    def spawn(cls, argv, **kwargs):
        proc = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)
        cls.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc, grace=10):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in Children.procs:
            Children.procs.remove(proc)

    @classmethod
    def stop_all(cls):
        for proc in reversed(list(cls.procs)):
            cls.stop(proc, grace=5)


class LineReader:
    """Collects a child's stdout lines on a thread, so that it never blocks on a full pipe."""

    def __init__(self, proc):
        self.proc, self.lines = proc, queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_json(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise MeasurementError(f"no output from {self.proc.args} for {timeout} s")
            if line is None:
                return None
            if line.startswith("{"):
                return json.loads(line)


class Cluster:
    """halo-gcs and node daemons for one link: `hosts` gives each daemon its test host (a
    command prefix and an address), else everything runs on 127.0.0.1."""

    def __init__(self, programs, workdir, link, node_stores, hosts=None, daemon_mode=None,
                 client_mode=None):
        self.programs, self.link = programs, link
        self.workdir = os.path.join(workdir, link)
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)
        self.secret = os.path.join(self.workdir, "cluster.secret")
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.close(fd)
        if hosts:
            self.prefixes = [hosts.prefix(i) for i in range(len(node_stores))]
            self.addrs = hosts.addrs[:len(node_stores)]
            iface = hosts.interface
        else:
            self.prefixes = [[] for _ in node_stores]
            self.addrs = ["127.0.0.1"] * len(node_stores)
            iface = "lo"
        self.env = dict(os.environ)
        self.env.pop("HALO_ADDRESS", None)
        self.env.update({"HALO_TRANSPORT": "ucx", "HALO_UCX_TLS": UCX_TLS[link]})
        self.flags = ["--transport=ucx", f"--ucx-tls={UCX_TLS[link]}"]
        if daemon_mode:
            self.flags.append(f"--progress-mode={daemon_mode}")
        self.client_mode = client_mode
        if link != "shm":
            self.env["HALO_NET_INTERFACE"] = iface
            self.flags.append(f"--net-interface={iface}")
        self.node_stores = node_stores
        self.gcs_address = None
        self.node_addresses = []
        self.node_procs = []
        self.logs = []

    def _log(self, name):
        f = open(os.path.join(self.workdir, f"{name}.log"), "w")
        self.logs.append(f)
        return f

    def start(self):
        address_file = os.path.join(self.workdir, "gcs.address")
        port = random.randint(20000, 59000)
        gcs = Children.spawn(
            self.prefixes[0] + [self.programs.gcs,
                                f"--data-dir={os.path.join(self.workdir, 'gcs-data')}",
                                f"--secret-file={self.secret}", f"--host={self.addrs[0]}",
                                f"--port={port}", f"--address-file={address_file}",
                                *self.flags],
            env=self.env, stdout=self._log("gcs"), stderr=subprocess.STDOUT)
        self.gcs_address = self._wait_file(address_file, gcs, "halo-gcs")
        nodes = []
        for i, store in enumerate(self.node_stores):
            state_file = os.path.join(self.workdir, f"node{i}.json")
            proc = Children.spawn(
                self.prefixes[i] + [self.programs.node, f"--gcs-address={self.gcs_address}",
                                    f"--secret-file={self.secret}", f"--host={self.addrs[i]}",
                                    "--port=0", f"--state-file={state_file}",
                                    f"--object-store-memory={store}", *self.flags],
                env=self.env, stdout=self._log(f"node{i}"), stderr=subprocess.STDOUT)
            nodes.append((proc, state_file))
        self.node_procs = [proc for proc, _ in nodes]
        for i, (proc, state_file) in enumerate(nodes):
            deadline = time.monotonic() + 120  # Pre-faulting a large store takes a while.
            while True:
                try:
                    with open(state_file) as f:
                        state = json.load(f)
                    if state.get("state") == "alive":
                        self.node_addresses.append(state["address"])
                        break
                except (FileNotFoundError, ValueError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise MeasurementError(f"halo-node {i} did not come alive; see "
                                           f"{self.workdir}/node{i}.log")
                time.sleep(0.05)
        stores = ", ".join(str(s >> 20) for s in self.node_stores)
        log(f"  cluster {self.link}: GCS {self.gcs_address}, nodes "
            f"{', '.join(self.node_addresses)} (stores {stores} MiB)")
        return self

    def _wait_file(self, path, proc, name, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise MeasurementError(f"{name} exited with {proc.returncode}; see {self.workdir}")
            try:
                with open(path) as f:
                    text = f.read().strip()
                if text:
                    return text
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise MeasurementError(f"{name} did not start within {timeout} s; see {self.workdir}")

    def client_env(self, node):
        env = dict(self.env)
        env.update({"HALO_ADDRESS": self.gcs_address, "HALO_SECRET_FILE": self.secret,
                    "HALO_NODE_ADDRESS": self.node_addresses[node]})
        if self.client_mode:
            env["HALO_PROGRESS_MODE"] = self.client_mode
        return env

    def bench_argv(self, node, mode, *flags):
        return self.prefixes[node] + [self.programs.bench, f"--mode={mode}", *flags]

    def run_bench(self, node, mode, *flags, timeout=RUN_TIMEOUT):
        """Runs the client on `node` to the end; returns its JSON lines."""
        p = subprocess.run(self.bench_argv(node, mode, *flags), env=self.client_env(node),
                           capture_output=True, text=True, timeout=timeout,
                           preexec_fn=_die_with_parent)
        if p.returncode != 0:
            raise MeasurementError(f"halo_objstore_bench --mode={mode} exited {p.returncode}:\n"
                                   f"{p.stderr[-3000:]}")
        return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]

    def spawn_bench(self, node, mode, *flags):
        proc = Children.spawn(self.bench_argv(node, mode, *flags), env=self.client_env(node),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return proc, LineReader(proc)

    def hold(self, node, count, value_bytes, name, *flags):
        """A client on `node` that puts `count` objects (with more bench `flags`, e.g. --ha)
        and holds them; returns (process, refs file)."""
        refs_file = os.path.join(self.workdir, f"{name}.refs")
        proc, lines = self.spawn_bench(node, "put_many", f"--count={count}",
                                       f"--value_bytes={value_bytes}", f"--refs_file={refs_file}",
                                       *flags)
        ready = lines.next_json(RUN_TIMEOUT)
        if not ready or ready.get("event") != "ready":
            Children.stop(proc)
            raise MeasurementError(f"the client putting {count} objects of {value_bytes} B on "
                                   f"node {node} did not finish")
        log(f"    {count} objects of {value_bytes} B put on node {node} in "
            f"{ready['seconds']:.1f} s")
        return proc, refs_file

    @staticmethod
    def release(holder):
        holder.stdin.close()  # The client drops its references and exits.
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        Children.stop(holder)

    def stop(self):
        for proc in reversed(list(Children.procs)):
            Children.stop(proc)
        for f in self.logs:
            f.close()


def alone(metric, values, unit, **labels):
    """A record for a metric without a peer here (BENCH.md): the median of the runs, and their
    spread in halo_min / halo_max."""
    record = {"metric": metric}
    record.update(labels)
    record.update({"halo": statistics.median(values), "halo_min": min(values),
                   "halo_max": max(values), "peer": None, "peer_name": None, "unit": unit,
                   "higher_is_better": True, "ratio": None, "ratio_min": None,
                   "ratio_max": None, "pairs": len(values)})
    return record


# --- measurements ---------------------------------------------------------------------------

def measure_small_put(args, cluster, clients):
    metric = "small_put_ops" if clients == 1 else f"small_put_ops_{clients}clients"
    log(f"  {metric}: {SMALL_BYTES} B puts, references dropped, {args.pairs} runs of "
        f"{args.seconds} s (load {load1():.1f})")
    values = []
    flags = [f"--value_bytes={SMALL_BYTES}", f"--seconds={args.seconds}", "--wait_for_go"]
    for i in range(args.pairs):
        started = [cluster.spawn_bench(0, "small_put", *flags) for _ in range(clients)]
        try:
            for proc, lines in started:
                if (lines.next_json(60) or {}).get("event") != "ready":
                    raise MeasurementError("halo_objstore_bench --mode=small_put did not start")
            for proc, _ in started:  # Both start within a millisecond or so.
                proc.stdin.write("go\n")
                proc.stdin.flush()
            rates = []
            for proc, lines in started:
                result = lines.next_json(args.seconds * 10 + 60)
                if proc.wait(timeout=60) != 0 or not result:
                    raise MeasurementError("halo_objstore_bench --mode=small_put failed")
                rates.append(result["puts_per_s"])
        finally:
            for proc, _ in started:
                Children.stop(proc)
        values.append(sum(rates))
        log(f"    run {i + 1}/{args.pairs}: {values[-1]:,.0f} puts/s"
            + (f" ({' + '.join(f'{r:,.0f}' for r in rates)})" if clients > 1 else ""))
    return [alone(metric, values, "ops/s", transport="shm", value_bytes=SMALL_BYTES,
                  clients=clients, refs="dropped after each put")]


def measure_small_get(args, cluster):
    log(f"  small_get_ops: {SMALL_BYTES} B objects, {args.pairs} runs of {args.seconds} s "
        f"(load {load1():.1f})")
    # Enough objects for a run of first gets, each run in a fresh process reading the same
    # objects (a run that uses them all up is flagged).
    objects = args.small_get_objects or 200_000
    holder, refs_file = cluster.hold(0, objects, SMALL_BYTES, "small-get")
    repeated, first, exhausted = [], [], False
    try:
        for i in range(args.pairs):
            # A new process each run: none of the objects has been read by it yet.
            lines = cluster.run_bench(0, "small_get", f"--refs_file={refs_file}",
                                      f"--seconds={args.seconds}")
            got = {l["mode"]: l for l in lines}
            repeated.append(got["small_get"]["small_get_ops"])
            first.append(got["small_get_first"]["small_get_ops_first"])
            exhausted = exhausted or got["small_get_first"]["exhausted"]
            log(f"    run {i + 1}/{args.pairs}: gets of one value {repeated[-1]:,.0f}/s, first "
                f"gets {first[-1]:,.0f}/s ({got['small_get_first']['gets']} in "
                f"{got['small_get_first']['seconds']:.2f} s)")
    finally:
        cluster.release(holder)
    if exhausted:
        log(f"    note: a run used all {objects} objects before --seconds passed; raise "
            "--small-get-objects")
    labels = dict(transport="shm", value_bytes=SMALL_BYTES)
    return [alone("small_get_ops", repeated, "ops/s",
                  what="gets of one value this process put, each view dropped before the next "
                       "(Ray's 'single client get calls (Plasma Store)' loop)",
                  **labels),
            alone("small_get_ops_first", first, "ops/s",
                  what="first get of an object put by another process (store.get to the node)",
                  objects=objects, runs_shorter_than_seconds=exhausted, **labels)]


def measure_put_bandwidth(args, cluster, size):
    log(f"  put_bandwidth {size} B: {args.pairs} pairs of {args.seconds} s, put then memcpy "
        f"in one process (load {load1():.1f})")
    lines = cluster.run_bench(0, "put_bandwidth", f"--size={size}", f"--pairs={args.pairs}",
                              f"--seconds={args.seconds}")
    halo = iter([l["MBps"] for l in lines if l["side"] == "halo"])
    peer = iter([l["MBps"] for l in lines if l["side"] == "memcpy"])
    first = [l["MBps"] for l in lines if l["side"] == "first_put"]
    record = pairwise.point("put_bandwidth", lambda: next(halo), lambda: next(peer), args.pairs,
                            "MB/s", True, "memcpy into a pre-faulted buffer, same process",
                            transport="shm", size=size)
    record["first_put_MBps"] = first[0] if first else None
    return [record]


def measure_remote_get(args, cluster, link, hosts, size):
    log(f"  remote_get_bandwidth {link} {size} B: {args.pairs} pairs (load {load1():.1f})")
    holder, refs_file = cluster.hold(0, 1, size, f"remote-{size}")
    try:
        setup = Setup(args, "ucx", link, hosts)
        # The peer on halo's settings: its UCX_TLS, and endpoints with peer-failure handling
        # (UCP_ERR_HANDLING_MODE_PEER), which halo's node-to-node endpoints have on every link.
        setup.env["UCX_TLS"] = UCX_TLS[link]
        setup.perftest_flags = ["-e"]
        # Each test's iterations sized to last about --seconds (over TCP ucp_put_bw may be 50x
        # slower than ucp_am_bw: one count for both would make the put runs last minutes).
        probe_n = max(2, min(200, (64 << 20) // size))
        counts = {}
        for test in ("ucp_put_bw", "ucp_am_bw"):
            probe = setup.ucx_perftest(test, size, probe_n)[1]
            counts[test] = iterations_for(args.seconds, size / probe, lo=2)

        by_test = {test: [] for test in counts}

        def peer_run():
            for test, n in counts.items():
                by_test[test].append(setup.ucx_perftest(test, size, n)[1])
            return max(values[-1] for values in by_test.values())

        cycles = []

        def halo_run():
            lines = cluster.run_bench(1, "remote_get", f"--refs_file={refs_file}",
                                      f"--seconds={args.seconds}")
            cycles.append(lines[-1]["cycle_MBps"])
            return lines[-1]["MBps"]

        record = pairwise.point("remote_get_bandwidth", halo_run, peer_run, args.pairs, "MB/s",
                                True,
                                "best of ucx_perftest ucp_put_bw, ucp_am_bw", backend="ucx",
                                transport=link, size=size, ucx_tls=UCX_TLS[link])
        record["halo_cycle"] = statistics.median(cycles)  # Adopt + get + drop, per round.
        for test, values in by_test.items():
            record[f"peer_{test}"] = statistics.median(values)
        return [record]
    finally:
        cluster.release(holder)


# --- main -----------------------------------------------------------------------------------

def print_table(records):
    print(f"{'metric':<24} {'link':<9} {'size':>10}  {'halo':>10} {'peer':>10} {'unit':<6} "
          f"{'ratio':>6} {'min-max':>11}  notes")
    for r in records:
        size = r.get("size")
        if r["ratio"] is None:
            spread = f"{r['halo_min']:.4g}-{r['halo_max']:.4g}"
            notes = f"runs {spread} (no peer)"
            ratio, ratios, peer = "", "", ""
        else:
            notes = r["peer_name"]
            ratio = f"{r['ratio']:.3f}"
            ratios = f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
            peer = f"{r['peer']:.4g}"
        print(f"{r['metric']:<24} {r.get('transport', ''):<9} "
              f"{'' if size is None else size:>10}  {r['halo']:>10.4g} {peer:>10} "
              f"{r['unit']:<6} {ratio:>6} {ratios:>11}  {notes}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--pairs", type=int, default=5, help="A/B pairs (runs, without a peer)")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each run")
    ap.add_argument("--put-sizes", default=",".join(str(s) for s in PUT_SIZES))
    ap.add_argument("--remote-sizes", default=",".join(str(s) for s in REMOTE_SIZES))
    ap.add_argument("--links", default="shm,tcp-hosts", help="remote_get_bandwidth links")
    ap.add_argument("--small-get-objects", type=int, default=0,
                    help="objects put for small_get_ops (each run reads them in a new process); "
                         "0: 200,000")
    ap.add_argument("--progress-mode", default=None,
                    help="progress mode of halo-gcs and halo-node (poll, event, hybrid); "
                         "default: theirs (event)")
    ap.add_argument("--client-progress-mode", default=None,
                    help="progress mode of the client processes; default: theirs (event)")
    ap.add_argument("--workdir", default=None, help="default BUILD/bench/objstore-work")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    metrics = args.metrics.split(",")
    for m in metrics:
        if m not in METRICS:
            raise MeasurementError(f"unknown metric {m}; known: {', '.join(METRICS)}")
    out = args.out or os.path.join(args.build, "bench", "objstore.json")
    workdir = os.path.abspath(args.workdir or os.path.join(args.build, "bench", "objstore-work"))
    programs = Programs(args.build)
    put_sizes = [int(s) for s in args.put_sizes.split(",")] if "put_bandwidth" in metrics else []
    remote_sizes = ([int(s) for s in args.remote_sizes.split(",")]
                    if "remote_get_bandwidth" in metrics else [])
    links = args.links.split(",") if remote_sizes else []
    local = [m for m in metrics if m != "remote_get_bandwidth"]
    records = []

    modes = {"nodes": args.progress_mode or "event (default)",
             "clients": args.client_progress_mode or "event (default)"}

    def done(new):
        for r in new:
            r.setdefault("backend", "ucx")
            r["progress_mode"] = modes
        records.extend(new)
        pairwise.write_records(out, records)  # Partial results survive a later failure.

    for link in (["shm"] if local or "shm" in links else []) + \
            [l for l in links if l != "shm"]:
        # Node 0 holds the puts (the largest put, the pinned small objects and the objects the
        # remote gets read) with room to spare; node 1 one copy at a time.
        big = max(put_sizes + remote_sizes + [64 << 20]) if link == "shm" else max(
            remote_sizes + [64 << 20])
        stores = [2 * big + (256 << 20), max(remote_sizes + [64 << 20]) + (256 << 20)]
        hosts = TestHosts("objstore") if link == "tcp-hosts" else None
        try:
            if hosts:
                hosts.__enter__()
            cluster = Cluster(programs, workdir, link, stores, hosts, args.progress_mode,
                              args.client_progress_mode).start()
            try:
                if link == "shm":
                    if "small_put_ops" in local:
                        done(measure_small_put(args, cluster, 1))
                    if "small_put_ops_2clients" in local:
                        done(measure_small_put(args, cluster, 2))
                    if "small_get_ops" in local:
                        done(measure_small_get(args, cluster))
                    for size in put_sizes:
                        done(measure_put_bandwidth(args, cluster, size))
                if link in links:
                    for size in remote_sizes:
                        done(measure_remote_get(args, cluster, link, hosts, size))
            finally:
                cluster.stop()
        finally:
            if hosts:
                hosts.__exit__(None, None, None)
    print_table(records)
    print(f"\nwrote {out}")


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_script(main, name):
    """Runs a comparison script's main(): a measurement that cannot run ends it with exit
    code 1 and a message, SIGTERM/SIGHUP/^C with 130; every process it started is stopped."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    try:
        main()
    except (MeasurementError, subprocess.TimeoutExpired) as e:
        print(f"{name}: a measurement could not run: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        print(f"{name}: interrupted ({e})", file=sys.stderr)
        sys.exit(130)
    finally:
        Children.stop_all()


if __name__ == "__main__":
    run_script(main, "compare_objstore")
