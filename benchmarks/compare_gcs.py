"""The GCS benchmarks of issue 3 (../shared/BENCH.md, docs/benchmarks.md "GCS"), on loopback,
with every file on the same disk (--workdir, by default in the build folder). Writes
build/bench/gcs.json and prints a table. Run through compare_gcs.sh.

  writes_fsync_always    halo_gcs_bench --mode=writes (8 connections, one gcs.kv_put in flight
                         each) against halo-gcs --fsync-policy=always, alternating with
                         redis-benchmark -t set -c 8 against redis-server --appendonly yes
                         --appendfsync always
  writes_group_commit    the same with --fsync-policy=group and --appendfsync everysec
  restart_seconds        halo-gcs holding 10,000 registered nodes and 100,000 KV entries:
                         SIGKILL to the first answered gcs.status of the restarted process
  death_detection_ms     SIGKILL of a halo-node to its DEAD reaching a subscriber (median of
                         20; death_detection_ms_max too)
  healthcheck_cpu_cores  halo-gcs CPU (utime + stime in /proc/PID/stat) while it checks 2,000
                         simulated nodes (one process, one connection each) every 100 ms
"""

import argparse
import json
import os
import queue
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pairwise  # noqa: E402

METRICS = ["writes_fsync_always", "writes_group_commit", "restart_seconds",
           "death_detection_ms", "healthcheck_cpu_cores"]
# Redis speaks TCP on loopback; halo does the same (UCX over TCP on lo), not shared memory.
TRANSPORT_FLAGS = ["--transport=ucx", "--ucx_tls=tcp,self", "--net_interface=lo"]
# What redis-benchmark -r 100000 -d 64 does, and halo_gcs_bench's defaults.
CLIENTS, VALUE_BYTES, KEYSPACE = 8, 64, 100000


class MeasurementError(Exception):
    pass


def log(text):
    print(text, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LineReader:
    """Collects a child's stdout lines on a thread, so that it never blocks on a full pipe."""

    def __init__(self, proc):
        self.proc, self.lines = proc, queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_json(self, timeout):
        """The next line that is a JSON object, or None at the end of the output."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise MeasurementError(f"no output from {self.proc.args[0]} for {timeout} s")
            if line is None:
                return None
            if line.startswith("{"):
                return json.loads(line)


class Programs:
    def __init__(self, build):
        self.gcs = os.path.join(build, "bin", "halo-gcs")
        self.node = os.path.join(build, "bin", "halo-node")
        self.bench = os.path.join(build, "benchmarks", "halo_gcs_bench")
        for p in (self.gcs, self.node, self.bench):
            if not os.access(p, os.X_OK):
                raise MeasurementError(f"{p} is missing: build it (scripts/build.sh)")


class Cluster:
    """A working folder (on the disk being measured) with the cluster secret."""

    def __init__(self, workdir):
        workdir = os.path.abspath(workdir)  # redis-server chdirs into its --dir
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        self.workdir = workdir
        self.secret = os.path.join(workdir, "cluster.secret")
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.close(fd)

    def path(self, name):
        return os.path.join(self.workdir, name)


class Gcs:
    """halo-gcs on loopback with its own data directory; killed and restarted in place."""

    extra_flags = []  # --gcs-flag, for every halo-gcs started

    def __init__(self, programs, cluster, name, flags):
        self.programs, self.cluster = programs, cluster
        self.data_dir = cluster.path(name)
        self.address_file = self.data_dir + ".address"
        self.port = free_port()
        self.flags = flags
        self.proc = None
        self.log = open(self.data_dir + ".log", "a")

    def spawn(self):
        if os.path.exists(self.address_file):
            os.unlink(self.address_file)
        self.proc = subprocess.Popen(
            [self.programs.gcs, f"--data-dir={self.data_dir}",
             f"--secret-file={self.cluster.secret}", "--host=127.0.0.1", f"--port={self.port}",
             f"--address-file={self.address_file}", *TRANSPORT_FLAGS, *self.flags,
             *Gcs.extra_flags],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_serving(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MeasurementError(f"halo-gcs exited with {self.proc.returncode}; see "
                                       f"{self.log.name}")
            try:
                with open(self.address_file) as f:
                    address = f.read().strip()
                if address:
                    return address
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        raise MeasurementError(f"halo-gcs did not serve within {timeout} s; see {self.log.name}")

    def start(self):
        self.spawn()
        self.address = self.wait_serving()
        return self.address

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self):
        """utime + stime of the process so far (/proc/PID/stat fields 14 and 15)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    """halo_gcs_bench runs against one GCS."""

    def __init__(self, programs, cluster, address):
        self.programs, self.cluster, self.address = programs, cluster, address

    def argv(self, mode, *flags):
        return [self.programs.bench, f"--mode={mode}", f"--gcs_address={self.address}",
                f"--secret_file={self.cluster.secret}", *TRANSPORT_FLAGS, *flags]

    def run(self, mode, *flags, timeout=600):
        p = subprocess.run(self.argv(mode, *flags), capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise MeasurementError(f"halo_gcs_bench --mode={mode} exited {p.returncode}:\n"
                                   f"{p.stderr[-3000:]}")
        return json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])

    def spawn(self, mode, *flags, stdin=None):
        proc = subprocess.Popen(self.argv(mode, *flags), stdout=subprocess.PIPE, stdin=stdin,
                                text=True)
        return proc, LineReader(proc)


class Redis:
    """redis-server with an append-only file in the working folder, and redis-benchmark."""

    def __init__(self, cluster, appendfsync):
        if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
            raise MeasurementError("redis-server and redis-benchmark are needed "
                                   "(scripts/install-deps.sh installs them)")
        self.dir = cluster.path(f"redis-{appendfsync}")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
             "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                  capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise MeasurementError(f"redis-server did not start; see {self.dir}/redis.log")

    def set_rate(self, requests):
        p = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.port), "-t",
                            "set", "-c", str(CLIENTS), "-n", str(requests), "-d",
                            str(VALUE_BYTES), "-r", str(KEYSPACE), "-q"],
                           capture_output=True, text=True, timeout=600)
        rates = re.findall(r"SET:\s*([\d.]+) requests per second", p.stdout)
        if p.returncode != 0 or not rates:
            raise MeasurementError(f"redis-benchmark failed:\n{p.stdout}\n{p.stderr}")
        return float(rates[-1])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def alone(metric, value, unit, **labels):
    """A record for a metric without a peer on this machine (BENCH.md: peer and ratio null)."""
    record = {"metric": metric}
    record.update(labels)
    record.update({"halo": value, "peer": None, "peer_name": None, "unit": unit,
                   "higher_is_better": False, "ratio": None, "ratio_min": None,
                   "ratio_max": None, "pairs": None})
    return record


def measure_writes(args, programs, cluster, metric):
    policy, appendfsync = {"writes_fsync_always": ("always", "always"),
                           "writes_group_commit": ("group", "everysec")}[metric]
    log(f"  {metric}: halo-gcs --fsync-policy={policy} vs redis --appendfsync {appendfsync}")
    gcs = Gcs(programs, cluster, f"gcs-{metric}", [f"--fsync-policy={policy}"])
    redis = None
    try:
        bench = Bench(programs, cluster, gcs.start())
        redis = Redis(cluster, appendfsync)
        # Size redis-benchmark's run to last about --seconds, as halo's does.
        probe = redis.set_rate(2000)
        requests = max(2000, int(probe * args.seconds))
        flags = [f"--clients={CLIENTS}", f"--seconds={args.seconds}",
                 f"--value_bytes={VALUE_BYTES}", f"--keyspace={KEYSPACE}"]
        return pairwise.point(
            metric, lambda: bench.run("writes", *flags)["puts_per_s"],
            lambda: redis.set_rate(requests), args.pairs, "writes/s", True,
            f"redis-benchmark -t set -c {CLIENTS} -d {VALUE_BYTES} -r {KEYSPACE}, redis-server "
            f"--appendonly yes --appendfsync {appendfsync}",
            clients=CLIENTS, value_bytes=VALUE_BYTES, fsync_policy=policy,
            transport="ucx tcp loopback")
    finally:
        gcs.stop()
        if redis:
            redis.stop()


def measure_restart(args, programs, cluster):
    log(f"  restart_seconds: {args.restart_nodes} nodes, {args.restart_kv} KV entries, "
        f"{args.restarts} restarts")
    gcs = Gcs(programs, cluster, "gcs-restart", ["--fsync-policy=group"])
    try:
        bench = Bench(programs, cluster, gcs.start())
        filled = bench.run("populate", f"--nodes={args.restart_nodes}",
                           f"--kv_entries={args.restart_kv}", f"--value_bytes={VALUE_BYTES}")
        log(f"    populated in {filled['seconds']:.1f} s")
        samples, recovered_ms = [], []
        for i in range(args.restarts):
            # The probe (and its transport) starts before the kill and waits for "go".
            probe, lines = bench.spawn("probe", "--probe_wait_for_go=true",
                                       stdin=subprocess.PIPE)
            if (lines.next_json(30) or {}).get("event") != "ready":
                raise MeasurementError("halo_gcs_bench --mode=probe did not start")
            killed_at = time.monotonic()
            gcs.kill()
            gcs.spawn()
            probe.stdin.write("go\n")
            probe.stdin.flush()
            answer = lines.next_json(120)
            if probe.wait(timeout=120) != 0 or not answer:
                raise MeasurementError("the probe saw no restarted GCS")
            seconds = answer["serving_mono_us"] / 1e6 - killed_at
            if answer["kv_entries"] < args.restart_kv or answer["nodes"] < args.restart_nodes:
                raise MeasurementError(f"the restarted GCS lost state: {answer}")
            samples.append(seconds)
            recovered_ms.append(answer["recovered_in_ms"])
            log(f"    restart {i + 1}/{args.restarts}: {seconds:.3f} s (recovery "
                f"{answer['recovered_in_ms']} ms, {answer['attempts']} probe attempts)")
            gcs.address = gcs.wait_serving()
        return [alone("restart_seconds", statistics.median(samples), "s",
                      halo_max=max(samples), samples=len(samples),
                      recovered_in_ms=statistics.median(recovered_ms),
                      nodes=args.restart_nodes, kv_entries=args.restart_kv)]
    finally:
        gcs.stop()


def measure_death(args, programs, cluster):
    hc = {"initial_delay_ms": args.hc_initial_delay_ms, "period_ms": args.hc_period_ms,
          "timeout_ms": args.hc_timeout_ms, "failure_threshold": args.hc_failure_threshold}
    bound = hc["period_ms"] * hc["failure_threshold"] + hc["timeout_ms"]
    log(f"  death_detection_ms: {args.death_samples} nodes killed one after the other, "
        f"bound {bound} ms")
    gcs = Gcs(programs, cluster, "gcs-death",
              [f"--health-check-{k.replace('_', '-')}={v}" for k, v in hc.items()])
    nodes, watch = [], None
    try:
        bench = Bench(programs, cluster, gcs.start())
        watch, events = bench.spawn("watch")
        if (events.next_json(30) or {}).get("event") != "watching":
            raise MeasurementError("halo_gcs_bench --mode=watch did not start")
        for i in range(args.death_samples):
            state_file = cluster.path(f"death-node{i}.json")
            proc = subprocess.Popen(
                [programs.node, f"--gcs-address={gcs.address}",
                 f"--secret-file={cluster.secret}", "--host=127.0.0.1", "--port=0",
                 f"--state-file={state_file}", *TRANSPORT_FLAGS,
                 # Membership only: a small object store (the default, 30% of the machine's
                 # memory, pre-faulted, times 20 nodes would not fit).
                 "--object-store-memory=16777216"],
                stdout=subprocess.DEVNULL, stderr=open(cluster.path(f"death-node{i}.log"), "w"))
            nodes.append((proc, state_file))
        alive = {}
        for proc, state_file in nodes:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with open(state_file) as f:
                        state = json.load(f)
                    if state.get("state") == "alive":
                        alive[state["node_id"]] = proc
                        break
                except (FileNotFoundError, ValueError):
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise MeasurementError(f"halo-node did not come alive ({state_file})")
                time.sleep(0.01)
        # Let every node's first health checks count before the first kill.
        time.sleep((hc["initial_delay_ms"] + 2 * hc["period_ms"]) / 1000)
        samples = []
        for node_id, proc in alive.items():
            killed_at = time.monotonic()
            proc.kill()
            proc.wait()
            while True:
                event = events.next_json(bound / 1000 * 5 + 10)
                if event is None:
                    raise MeasurementError("the watcher ended")
                if event.get("node_id") == node_id and event.get("state") == "DEAD":
                    break
            samples.append((event["mono_us"] / 1e6 - killed_at) * 1000)
            log(f"    node {len(samples)}/{len(alive)}: DEAD after {samples[-1]:.0f} ms")
        labels = dict(bound_ms=bound, samples=len(samples), **{f"health_check_{k}": v
                                                                 for k, v in hc.items()})
        return [alone("death_detection_ms", statistics.median(samples), "ms", **labels),
                alone("death_detection_ms_max", max(samples), "ms", **labels)]
    finally:
        for proc, _ in nodes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if watch:
            watch.terminate()
            watch.wait()
        gcs.stop()


def measure_healthcheck_cpu(args, programs, cluster):
    log(f"  healthcheck_cpu_cores: {args.sim_nodes} simulated nodes checked every "
        f"{args.sim_period_ms} ms, {args.cpu_seconds} s")
    # A few descriptors per connection on both sides; children inherit the raised limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    initial_delay_ms = 2000
    gcs = Gcs(programs, cluster, "gcs-healthcheck",
              [f"--health-check-period-ms={args.sim_period_ms}",
               f"--health-check-initial-delay-ms={initial_delay_ms}"])
    sim = None
    try:
        bench = Bench(programs, cluster, gcs.start())
        sim, lines = bench.spawn("simulate", f"--nodes={args.sim_nodes}", "--window=64")
        ready = lines.next_json(600)
        if not ready or ready.get("event") != "ready":
            raise MeasurementError(f"the simulator did not register its nodes: {ready}")
        log(f"    {args.sim_nodes} connections in {ready['connect_s']:.1f} s, registered in "
            f"{ready['register_s']:.1f} s")
        time.sleep(initial_delay_ms / 1000 + 2)

        def latest_count():
            last = None
            while True:
                try:
                    line = lines.lines.get_nowait()
                except queue.Empty:
                    return last
                if line and line.startswith("{"):
                    event = json.loads(line)
                    if event.get("event") == "checks":
                        last = event
        first = latest_count()
        cpu0, t0 = gcs.cpu_seconds(), time.monotonic()
        time.sleep(args.cpu_seconds)
        cpu1, t1 = gcs.cpu_seconds(), time.monotonic()
        last = latest_count()
        cores = (cpu1 - cpu0) / (t1 - t0)
        checks_per_s = None
        if first and last and last["mono_us"] > first["mono_us"]:
            checks_per_s = ((last["answered"] - first["answered"]) /
                            ((last["mono_us"] - first["mono_us"]) / 1e6))
        expected = args.sim_nodes * 1000 / args.sim_period_ms
        log(f"    GCS CPU {cores:.3f} cores; checks answered {checks_per_s or 0:.0f}/s of "
            f"{expected:.0f}/s expected")
        if checks_per_s is None or checks_per_s < 0.5 * expected:
            raise MeasurementError(f"the GCS checked {checks_per_s} nodes/s, not the "
                                   f"{expected:.0f}/s the measurement is about")
        return [alone("healthcheck_cpu_cores", cores, "cores", nodes=args.sim_nodes,
                      health_check_period_ms=args.sim_period_ms,
                      checks_per_s=round(checks_per_s), seconds=args.cpu_seconds)]
    finally:
        if sim:
            sim.terminate()
            sim.wait()
        gcs.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def print_table(records):
    print(f"{'metric':<24} {'halo':>12} {'peer':>12} {'unit':<9} {'ratio':>6} {'min-max':>11}"
          f"  peer")
    for r in records:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        spread = ("" if r["ratio"] is None else f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}")
        peer = "" if r["peer"] is None else f"{r['peer']:.5g}"
        print(f"{r['metric']:<24} {r['halo']:>12.5g} {peer:>12} {r['unit']:<9} {ratio:>6} "
              f"{spread:>11}  {r['peer_name'] or ''}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--pairs", type=int, default=5, help="writes: A/B pairs per metric")
    ap.add_argument("--seconds", type=float, default=2.0, help="writes: length of each run")
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--restart-nodes", type=int, default=10000)
    ap.add_argument("--restart-kv", type=int, default=100000)
    ap.add_argument("--death-samples", type=int, default=20)
    # The GCS's defaults (gcs/server/gcs_config.h), stated so that the record says them.
    ap.add_argument("--hc-initial-delay-ms", type=int, default=2000)
    ap.add_argument("--hc-period-ms", type=int, default=1000)
    ap.add_argument("--hc-timeout-ms", type=int, default=500)
    ap.add_argument("--hc-failure-threshold", type=int, default=3)
    ap.add_argument("--sim-nodes", type=int, default=2000)
    ap.add_argument("--sim-period-ms", type=int, default=100)
    ap.add_argument("--cpu-seconds", type=float, default=10.0)
    ap.add_argument("--workdir", default=None,
                    help="data directories of both servers (default BUILD/bench/gcs-work)")
    ap.add_argument("--gcs-flag", action="append", default=[],
                    help="extra halo-gcs flag, e.g. --gcs-flag=--progress_mode=event")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    Gcs.extra_flags = args.gcs_flag
    out = args.out or os.path.join(args.build, "bench", "gcs.json")
    programs = Programs(args.build)
    cluster = Cluster(args.workdir or os.path.join(args.build, "bench", "gcs-work"))
    records = []
    for metric in args.metrics.split(","):
        if metric.startswith("writes_"):
            records.append(measure_writes(args, programs, cluster, metric))
        elif metric == "restart_seconds":
            records += measure_restart(args, programs, cluster)
        elif metric == "death_detection_ms":
            records += measure_death(args, programs, cluster)
        elif metric == "healthcheck_cpu_cores":
            records += measure_healthcheck_cpu(args, programs, cluster)
        else:
            raise MeasurementError(f"unknown metric {metric}; known: {', '.join(METRICS)}")
        pairwise.write_records(out, records)  # Partial results survive a later failure.
    print_table(records)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    try:
        main()
    except (MeasurementError, subprocess.TimeoutExpired) as e:
        print(f"compare_gcs: a measurement could not run: {e}", file=sys.stderr)
        sys.exit(1)
