"""Scale-out benchmark (`make bench-scale`): the register under N writers, lease takeover, outbox delivery latency.

    .venv/bin/python bench/scale.py [--quick | --smoke] [--writers 1 2 4 8] [--backends sqlite postgresql]

1. Register: N writer *processes* (default 1, 2, 4, 8) append alerts through the Register API
   (`Register.add_alert`: the alert row, its `alert_created` audit row chained to the previous one, and its
   outbox row, in one write transaction) as fast as they can for `--write-s` seconds, on a fresh SQLite file
   and a fresh PostgreSQL database. Each alert is a realistic live row (zone intrusion, bbox, details, model
   list) *without* a snapshot by default (the image goes to the node's media folder, not to the register;
   `--snapshot` adds a 640x360 JPEG of about 20 kB). Printed: alerts per second, and the latency of one
   append (median, p95), per backend and N; then `vigie audit verify` on the register (its own output).
   PostgreSQL is a throwaway server (`tests/servers/postgres.py`) with fsync *on*, as a deployment runs it
   (`--pg-no-fsync` for the test fixture's setting); SQLite runs as the register opens it (WAL, synchronous FULL).
2. Lease takeover: three light node processes share six cameras through the real lease loop
   (`runner.service.cluster.NodeCluster`, the analysis loop reduced to starting and stopping cameras as
   `wanted()` says: no video); `--kills` times, the node holding the most cameras is killed with SIGKILL and
   the time until other nodes hold each of its cameras is measured, then it is restarted. Then
   `--runner-kills` times the same with three full `vigie run --node` processes (tests/cluster/node_child.py:
   the real runner on a looping clip per camera, its person model a detector of the clip's bright square, so
   that three nodes fit on two cores); on PostgreSQL, the connections the nodes hold are counted.
3. Outbox delivery: alerts written at `--outbox-rate` per second; the dispatcher
   (`runner.outputs.dispatcher.Dispatcher`) pushes them to a throwaway Mosquitto (`tests/servers/mosquitto.py`)
   and to an HTTP webhook receiver that checks each `X-Vigie-Signature`; latency from the alert's commit to
   its receipt by an MQTT subscriber and by the webhook (median, p95, max), and whether each arrived once, in
   order per camera.

`--quick` (~3.5 minutes on 2 cores): 4 s per register run, takeovers with leases renewed every 0.5 s and
expiring after 3 s (the cluster tests' timings), no full-runner kill, 10 s of outbox. Default: 10 s runs, the
default lease timings (2 s / 10 s), 3 full-runner kills per backend. `--smoke`: a few seconds, SQLite only, no
server (the test suite runs it). The servers come from tests/servers/ (the repository root on sys.path): a
backend or broker that is absent is skipped, and says so. The last lines are machine-readable `key: value`.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import io
import json
import logging
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.perf import percentile  # noqa: E402
from runner.cli import positive_int  # noqa: E402
from runner.core.errors import VigieError  # noqa: E402
from runner.outputs.dispatcher import POLL_S  # noqa: E402

SITE = "bench-scale"
RUNNER_SITE = "test-site"  # the site id of tests.helpers' config, which the full-runner nodes run
BACKENDS = ("sqlite", "postgresql")
NODE_NAMES = ("n1", "n2", "n3")
CAMERAS = tuple(f"cam-{i}" for i in range(1, 7))
HOOK_SECRET_ENV = "VIGIE_BENCH_HOOK_SECRET"
READY, GO = "ready", "go"
LEASE_TTL_S = 60.0  # the renewal runs' leases: never expire during a run


# -- arguments ------------------------------------------------------------------------------------------
def positive_float(text: str) -> float:
    """argparse type: a number of seconds above 0, or a one-line usage error.

    Args:
        text: the argument as typed.

    Returns:
        The number.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module's docstring).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter runs and short leases (~3.5 min on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="a few seconds, SQLite only, no server (the test suite)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=None, help="default: both")
    parser.add_argument(
        "--writers", nargs="+", type=positive_int, default=None, help="writer processes per run (default 1 2 4 8)"
    )
    parser.add_argument("--write-s", type=positive_float, default=None, help="seconds each register run writes")
    parser.add_argument("--snapshot", action="store_true", help="each alert with a 640x360 JPEG snapshot")
    parser.add_argument("--pg-no-fsync", action="store_true", help="PostgreSQL with fsync off (the test fixture's)")
    parser.add_argument("--kills", type=positive_int, default=None, help="takeovers measured (default 10)")
    parser.add_argument(
        "--runner-kills",
        type=int,
        choices=range(0, 101),
        metavar="N",
        default=None,
        help="takeovers of full `vigie run --node` processes (default 3; 0 with --quick and --smoke)",
    )
    parser.add_argument("--lease-renew-s", type=positive_float, default=None, help="lease renewal period")
    parser.add_argument("--lease-ttl-s", type=positive_float, default=None, help="lease expiry")
    parser.add_argument("--outbox-s", type=positive_float, default=None, help="seconds of alerts for the outbox")
    parser.add_argument("--outbox-rate", type=positive_float, default=10.0, help="alerts per second (default 10)")
    parser.add_argument(
        "--only", nargs="+", choices=("register", "takeover", "outbox"), default=None, help="run only these parts"
    )
    parser.add_argument("--worker", choices=("writer", "node"), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    return parser


@dataclass(frozen=True)
class Plan:
    """What one invocation measures."""

    backends: tuple[str, ...]
    writers: tuple[int, ...]
    write_s: float
    kills: int
    runner_kills: int
    renew_s: float
    ttl_s: float
    outbox_s: float
    parts: tuple[str, ...]
    mqtt: bool = True


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan of a command line: the defaults of its size (`--quick`, `--smoke`), explicit options winning.

    Args:
        args: the parsed command line.

    Returns:
        The plan.

    Raises:
        ValueError: a ttl not above twice the renewal period (the lease loop refuses it).
    """
    if args.smoke:
        defaults: dict[str, Any] = dict(
            backends=("sqlite",), writers=(2,), write_s=1.0, kills=1, renew_s=0.3, ttl_s=1.2, outbox_s=1.0
        )
        defaults["runner_kills"] = 0
    elif args.quick:
        defaults = dict(backends=BACKENDS, writers=(1, 2, 4, 8), write_s=4.0, kills=10, renew_s=0.5, ttl_s=3.0)
        defaults["outbox_s"] = 10.0
        defaults["runner_kills"] = 0
    else:
        defaults = dict(backends=BACKENDS, writers=(1, 2, 4, 8), write_s=10.0, kills=10, renew_s=2.0, ttl_s=10.0)
        defaults["outbox_s"] = 20.0
        defaults["runner_kills"] = 3
    chosen = {
        "backends": tuple(args.backends) if args.backends else defaults["backends"],
        "writers": tuple(args.writers) if args.writers else defaults["writers"],
        "write_s": args.write_s or defaults["write_s"],
        "kills": args.kills or defaults["kills"],
        "runner_kills": defaults["runner_kills"] if args.runner_kills is None else args.runner_kills,
        "renew_s": args.lease_renew_s or defaults["renew_s"],
        "ttl_s": args.lease_ttl_s or defaults["ttl_s"],
        "outbox_s": args.outbox_s or defaults["outbox_s"],
    }
    if not chosen["ttl_s"] > 2 * chosen["renew_s"]:
        raise ValueError(f"--lease-ttl-s ({chosen['ttl_s']} s) must be more than twice --lease-renew-s")
    parts = tuple(args.only) if args.only else ("register", "takeover", "outbox")
    return Plan(**chosen, parts=parts, mqtt=not args.smoke)


# -- figures --------------------------------------------------------------------------------------------
def spread_ms(latencies_s: list[float]) -> str:
    """`median X ms, p95 Y ms, max Z ms` of latencies in seconds, or `no sample`.

    Args:
        latencies_s: the latencies.

    Returns:
        The phrase.
    """
    if not latencies_s:
        return "no sample"
    return (
        f"median {statistics.median(latencies_s) * 1000:.1f} ms, p95 {percentile(latencies_s, 95) * 1000:.1f} ms, "
        f"max {max(latencies_s) * 1000:.1f} ms"
    )


def in_order_per_camera(received: list[tuple[str, int]]) -> bool:
    """Whether the alert ids of each camera arrived in increasing order.

    Args:
        received: (camera, alert id) in the order they arrived.

    Returns:
        True when no camera's id ever went back.
    """
    last: dict[str, int] = {}
    for camera, alert_id in received:
        if alert_id <= last.get(camera, -1):
            return False
        last[camera] = alert_id
    return True


# -- servers and registers ------------------------------------------------------------------------------
def _postgres_class(fsync: bool) -> type:
    """TempPostgres (tests/servers/postgres.py), with fsync back on unless asked otherwise: the fixture turns it
    off to keep the tests fast, a deployment never does."""
    from tests.servers.postgres import TempPostgres

    if not fsync:
        return TempPostgres

    class DurablePostgres(TempPostgres):
        def _run(self, *command: str) -> subprocess.CompletedProcess:
            return super()._run(*(part.replace("fsync=off", "fsync=on") for part in command))

    return DurablePostgres


@contextlib.contextmanager
def postgres_server(fsync: bool) -> Iterator[Any]:
    """A throwaway PostgreSQL server, or None (and why, printed) when its binaries are absent.

    Args:
        fsync: run it with fsync on.

    Yields:
        The started `TempPostgres`, or None.
    """
    import pytest

    try:
        server = _postgres_class(fsync)()
    except pytest.skip.Exception as skipped:
        print(f"postgresql: skipped ({skipped.msg})")
        yield None
        return
    with server:
        yield server


class Registers:
    """Fresh registers of one backend, in a scratch folder (SQLite files) or on one server (databases)."""

    def __init__(self, backend: str, scratch: Path, server: Any = None):
        """Where the registers go.

        Args:
            backend: "sqlite" or "postgresql".
            scratch: the scratch folder (SQLite files, media folders).
            server: the started TempPostgres for "postgresql".
        """
        self.backend = backend
        self.scratch = scratch
        self.server = server

    def fresh(self) -> tuple[str, str]:
        """A new, empty register with its tables created.

        Returns:
            (its --db value, its media folder).
        """
        from runner.register import Register

        name = uuid.uuid4().hex[:8]  # every part makes its own registers in the one scratch folder
        media = self.scratch / f"media-{self.backend}-{name}"
        db = self.server.create_database() if self.backend == "postgresql" else str(self.scratch / f"{name}.db")
        Register(db, media).close()
        return db, str(media)


def audit_verify(db: str, media: str) -> tuple[bool, str]:
    """`vigie audit verify` on a register (the command itself, in this process).

    Args:
        db: the --db value.
        media: the media folder.

    Returns:
        (whether it passed, its output line).
    """
    from runner.cli import main as vigie

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = vigie(["audit", "verify", "--db", db, "--media-dir", media])
    return code == 0, out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else f"exit {code}"


# -- worker processes -----------------------------------------------------------------------------------
def spawn(kind: str, job: dict[str, Any]) -> subprocess.Popen:
    """Start a worker process of this script (stdin and stdout piped for the start barrier and the result).

    Args:
        kind: "writer" or "node".
        job: its parameters.

    Returns:
        The process.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--job", json.dumps(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_ready(process: subprocess.Popen, what: str, timeout_s: float = 60.0) -> None:
    """Wait for a worker's `ready` line.

    Args:
        process: the worker.
        what: its name, for the error.
        timeout_s: the longest wait.

    Raises:
        RuntimeError: it exited or said something else.
    """
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        raise RuntimeError(f"{what}: not ready within {timeout_s:.0f} s") from None
    if line.strip() != READY:
        raise RuntimeError(f"{what}: exited before it was ready ({line.strip() or process.wait()})")


def bench_alert(camera: str, sequence: int, *, is_test: bool = False) -> Any:
    """A realistic live alert: what a zone-intrusion rule stores (bbox, details, the model that saw it).

    Args:
        camera: the camera id.
        sequence: its number, for frame index and time offset.
        is_test: mark it as a test alert.

    Returns:
        The AlertRecord.
    """
    from runner.core.alerts import AlertRecord

    return AlertRecord(
        uid=uuid.uuid4().hex,
        site=SITE,
        camera_id=camera,
        rule_id="quai-intrusion",
        kind="zone_intrusion",
        ts_utc=datetime.now(UTC).isoformat(timespec="milliseconds"),
        t_s=sequence * 0.2,
        frame_index=sequence,
        subject=f"track:{sequence}",
        track_id=sequence,
        score=0.82,
        bbox=[0.41, 0.22, 0.49, 0.61],
        details={"zone": "quai", "dwell_s": 1.4, "class_name": "person"},
        is_test=is_test,
        phase="live",
        mode="live",
        source="rtsp://camera.example/stream1",
        config_revision=3,
        config_sha256="b" * 64,
        models=[{"name": "coco", "weights": "yolo11n-int8", "backend": "openvino", "sha256": "c" * 64}],
    )


def snapshot_jpeg() -> bytes:
    """A 640x360 JPEG of a noisy frame (about the size of a real snapshot), encoded once.

    Returns:
        The JPEG bytes.
    """
    import cv2
    import numpy as np

    noise = np.random.default_rng(7).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("could not encode the benchmark snapshot")
    return data.tobytes()


def writer_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Append alerts for `write_s` seconds after the parent's go; one register connection, as a node has.

    Args:
        job: db, media, camera, write_s, snapshot, op ("alert": append alerts; "renew": renew six camera leases
            in turn, the lease loop's writes).

    Returns:
        writes (count), elapsed_s, latencies_us (each write transaction).
    """
    from runner.register import Register

    jpeg = snapshot_jpeg() if job["snapshot"] else None
    note = None if jpeg else "no snapshot (bench)"
    with Register(job["db"], job["media"]) as register:
        leases = _held_leases(register, job["camera"]) if job["op"] == "renew" else []
        print(READY, flush=True)
        sys.stdin.readline()
        latencies_us: list[int] = []
        started = time.perf_counter()
        deadline = started + job["write_s"]
        sequence = 0
        while True:
            before = time.perf_counter()
            if before >= deadline:
                break
            if leases:  # what a node's lease loop writes for each camera it holds, every renewal period
                register.leases.renew(leases[sequence % len(leases)], LEASE_TTL_S)
            else:
                register.add_alert(bench_alert(job["camera"], sequence), jpeg, note)
            latencies_us.append(round((time.perf_counter() - before) * 1e6))
            sequence += 1
        elapsed_s = time.perf_counter() - started
    return {"writes": sequence, "elapsed_s": elapsed_s, "latencies_us": latencies_us}


def _held_leases(register: Any, prefix: str) -> list[Any]:
    """A node's worth of camera leases (CAMERAS, named after the writer), for the renewal runs."""
    node = f"node-{prefix}"
    register.leases.join(node, SITE, len(CAMERAS), pid=os.getpid(), host="bench", ttl_s=LEASE_TTL_S)
    return [register.leases.acquire(SITE, f"{prefix}-{camera}", node, LEASE_TTL_S) for camera in CAMERAS]


def node_worker(job: dict[str, Any]) -> dict[str, Any]:
    """A light runner node: the real lease loop (`NodeCluster`); its 'analysis loop' starts and stops cameras
    as `wanted()` says, and tells the lease loop which ones it stopped. Runs until SIGTERM (a clean leave).

    Args:
        job: db, media, node, cameras, renew_s, ttl_s.

    Returns:
        The node's name, once stopped.
    """
    from runner.register import Register
    from runner.service.cluster import ClusterOptions, NodeCluster

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    options = ClusterOptions(job["node"], len(job["cameras"]), renew_s=job["renew_s"], ttl_s=job["ttl_s"])
    with Register(job["db"], job["media"]) as register:
        cluster = NodeCluster(register, SITE, job["cameras"], options, duties=())
        cluster.start()
        print(READY, flush=True)
        running: dict[str, int] = {}  # camera -> the token it runs under
        while not stop.wait(0.05):
            wanted = cluster.wanted()
            for camera, token in list(running.items()):
                if camera not in wanted or wanted[camera].token != token:
                    del running[camera]
                    cluster.camera_stopped(camera, token)
            running.update({camera: lease.token for camera, lease in wanted.items() if camera not in running})
        cluster.close()
    return {"node": job["node"]}


def run_worker(kind: str, job_text: str) -> int:
    """A worker process's body: its result as one JSON line.

    Args:
        kind: "writer" or "node".
        job_text: its JSON job.

    Returns:
        The exit code.
    """
    logging.basicConfig(level=logging.ERROR, format=f"{kind} %(name)s: %(message)s")  # the lease loop's notes
    job = json.loads(job_text)
    result = writer_worker(job) if kind == "writer" else node_worker(job)
    print(json.dumps(result), flush=True)
    return 0


# -- 1. the register under N writers --------------------------------------------------------------------
@dataclass
class WriteRun:
    """One register run: a backend, N writers, one kind of write (alerts, or lease renewals)."""

    backend: str
    writers: int
    op: str
    writes: int
    elapsed_s: float
    latencies_s: list[float] = field(repr=False)
    verify_ok: bool = False
    verify_line: str = ""

    @property
    def per_s(self) -> float:
        """Write transactions committed per second, all writers together.

        Returns:
            The rate.
        """
        return self.writes / self.elapsed_s if self.elapsed_s > 0 else 0.0


def write_run(registers: Registers, writers: int, plan: Plan, *, op: str = "alert", snapshot: bool = False) -> WriteRun:
    """N writer processes on a fresh register, started together; then `vigie audit verify`.

    Args:
        registers: where the register is made.
        writers: how many writer processes.
        plan: the run's length.
        op: "alert" (append alerts) or "renew" (renew camera leases).
        snapshot: alerts with a JPEG.

    Returns:
        The run's figures.
    """
    db, media = registers.fresh()
    jobs = [
        {"db": db, "media": media, "camera": f"cam-{i + 1}", "write_s": plan.write_s, "snapshot": snapshot, "op": op}
        for i in range(writers)
    ]
    processes = [spawn("writer", job) for job in jobs]
    try:
        for i, process in enumerate(processes):
            wait_ready(process, f"writer {i + 1}")
        for process in processes:  # the barrier: every writer connected before the clock starts
            assert process.stdin is not None
            process.stdin.write(GO + "\n")
            process.stdin.flush()
        results = []
        for i, process in enumerate(processes):
            out, _ = process.communicate(timeout=plan.write_s + 120)
            if process.returncode != 0:
                raise RuntimeError(f"writer {i + 1} failed (exit {process.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    run = WriteRun(
        registers.backend,
        writers,
        op,
        writes=sum(r["writes"] for r in results),
        elapsed_s=max(r["elapsed_s"] for r in results),
        latencies_s=[us / 1e6 for r in results for us in r["latencies_us"]],
    )
    run.verify_ok, run.verify_line = audit_verify(db, media)
    return run


def register_part(plan: Plan, registers: dict[str, Registers], snapshot: bool) -> list[WriteRun]:
    """Every backend x writer count of the plan appending alerts, then lease renewals with the fewest and the
    most writers; one line each as it ends.

    Args:
        plan: the plan.
        registers: backend -> where its registers are made.
        snapshot: alerts with a JPEG.

    Returns:
        The runs.
    """
    runs: list[WriteRun] = []
    image = "a 640x360 JPEG snapshot" if snapshot else "no snapshot"
    print(
        f"\n== register: N writer processes append alerts ({image}), then renew camera leases, "
        f"{plan.write_s:g} s per run; latency = one write transaction"
    )
    print(f"this disk: a 4 kB write + fsync takes {spread_ms(disk_fsync_s(next(iter(registers.values())).scratch))}")
    for backend, where in registers.items():
        counts = sorted(set(plan.writers))
        wanted = [("alert", n) for n in counts] + [("renew", n) for n in dict.fromkeys((counts[0], counts[-1]))]
        for op, writers in wanted:
            run = write_run(where, writers, plan, op=op, snapshot=snapshot)
            runs.append(run)
            what = "alerts" if op == "alert" else "renewals"
            print(
                f"{backend:<10} {writers} writer(s): {run.writes:6d} {what:<8} in {run.elapsed_s:5.1f} s = "
                f"{run.per_s:7.1f}/s; {spread_ms(run.latencies_s)}; verify: {run.verify_line}",
                flush=True,
            )
    return runs


def disk_fsync_s(folder: Path, samples: int = 50) -> list[float]:
    """What one durable commit costs the disk at least: a 4 kB write and fsync, `samples` times (the figure that
    moves most from hour to hour on a shared virtual disk, printed beside the register's).

    Args:
        folder: a folder on the disk of the registers.
        samples: how many writes.

    Returns:
        Each write + fsync's duration, seconds.
    """
    path = folder / "fsync-probe"
    durations = []
    with open(path, "wb") as probe:
        for _ in range(samples):
            before = time.perf_counter()
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
            durations.append(time.perf_counter() - before)
    path.unlink()
    return durations


@contextlib.contextmanager
def backend_registers(backends: tuple[str, ...], scratch: Path, fsync: bool) -> Iterator[dict[str, Registers]]:
    """Where each backend's registers go: the scratch folder for SQLite, one throwaway PostgreSQL server for
    the whole invocation (a backend whose server is absent is left out, and said so).

    Args:
        backends: the backends wanted.
        scratch: the scratch folder.
        fsync: PostgreSQL with fsync on.

    Yields:
        Backend -> its Registers.
    """
    found: dict[str, Registers] = {}
    with contextlib.ExitStack() as stack:
        for backend in backends:
            if backend == "sqlite":
                found[backend] = Registers("sqlite", scratch)
                continue
            server = stack.enter_context(postgres_server(fsync))
            if server is not None:
                fsync_now = _pg_setting(server.url(), "fsync")
                print(f"postgresql: throwaway server on 127.0.0.1:{server.port}, fsync {fsync_now}")
                found[backend] = Registers("postgresql", scratch, server)
        yield found


def pg_clients(url: str) -> int:
    """Connections to a PostgreSQL register other than the one asking: one per node, as each opens one.

    Args:
        url: the register's URL.

    Returns:
        The count.
    """
    import psycopg

    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _pg_setting(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
    return str(row[0]) if row else "?"


# -- 2. lease takeover ----------------------------------------------------------------------------------
class NodeProcesses:
    """Three node processes on one register, restartable by name: light nodes (`node_worker`), or the real
    `vigie run --node` (`tests/cluster/node_child.py`: the runner with a detector of its clip's bright square,
    so that three nodes fit on two cores) when a site file is given."""

    def __init__(self, db: str, media: str, plan: Plan, runner_site: Path | None = None):
        """Nodes not started yet.

        Args:
            db: the register.
            media: its media folder.
            plan: the lease timings.
            runner_site: the site file of full runner nodes; None: light nodes.
        """
        self.db, self.media, self.plan, self.runner_site = db, media, plan, runner_site
        self.site = RUNNER_SITE if runner_site is not None else SITE
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, node: str) -> None:
        """Start (or restart) one node and wait until it has joined.

        Args:
            node: its name.
        """
        if self.runner_site is None:
            job = {
                "db": self.db,
                "media": self.media,
                "node": node,
                "cameras": list(CAMERAS),
                "renew_s": self.plan.renew_s,
                "ttl_s": self.plan.ttl_s,
            }
            self.processes[node] = spawn("node", job)
            wait_ready(self.processes[node], f"node {node}")
            return
        started = time.monotonic()
        self.processes[node] = self._vigie_run(node)
        if wait_until(lambda: self._alive_since(node, started), 120.0, 0.2) is None:
            raise RuntimeError(f"vigie run --node {node} did not join within 120 s (see its log in the scratch folder)")

    def _vigie_run(self, node: str) -> subprocess.Popen:
        assert self.runner_site is not None
        folder = self.runner_site.parent
        timings = ["--lease-renew-s", str(self.plan.renew_s), "--lease-ttl-s", str(self.plan.ttl_s)]
        argv = ["run", str(self.runner_site), "--db", self.db, "--media-dir", self.media, "--node", node, *timings]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        with open(folder / f"{node}.log", "a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.cluster.node_child", *argv], cwd=folder, env=env, stdout=log, stderr=log
            )

    def _alive_since(self, node: str, started: float) -> bool:
        from runner.register import Register

        with Register(self.db, self.media, create=False, read_only=True) as register:
            rows = [n for n in register.leases.nodes(self.site) if n["name"] == node]
        return bool(rows) and rows[0]["alive"] and rows[0]["pid"] == self.processes[node].pid

    def owners(self) -> dict[str, str | None]:
        """Camera -> the node holding a live lease on it now (None: free or expired), as `vigie status` reads it.

        Returns:
            The owners.
        """
        from runner.register import Register

        with Register(self.db, self.media, create=False, read_only=True) as register:
            rows = register.leases.leases(self.site)
        owners: dict[str, str | None] = dict.fromkeys(CAMERAS)
        owners.update(  # cameras only: a full runner's duty leases (purge, outbox) are not counted
            {
                r["camera_id"]: r["node"]
                for r in rows
                if r["camera_id"] in owners and r["node"] and r["expires_utc"] >= r["now_utc"]
            }
        )
        return owners

    def kill(self, node: str) -> None:
        """SIGKILL one node.

        Args:
            node: its name.
        """
        process = self.processes.pop(node)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        """Stop every node cleanly (SIGTERM: it releases its leases), killing those that do not stop."""
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.communicate(timeout=self.plan.ttl_s + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(check: Any, timeout_s: float, poll_s: float = 0.05) -> float | None:
    """Poll a check until it is true.

    Args:
        check: a function without arguments.
        timeout_s: the longest wait.
        poll_s: the polling period.

    Returns:
        The seconds it took, or None after timeout_s.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(Exception):  # a register being written: read again
            if check():
                return time.monotonic() - started
        time.sleep(poll_s)
    return None


def takeover_part(plan: Plan, registers: dict[str, Registers]) -> dict[str, list[float]]:
    """`plan.kills` SIGKILLs of the node holding the most cameras, per backend.

    Args:
        plan: the plan.
        registers: backend -> where its registers are made.

    Returns:
        Backend -> the takeover time of each kill (kill -> every camera of the killed node held by another).
    """
    print(
        f"\n== lease takeover: 3 light nodes (the real lease loop, no video), {len(CAMERAS)} cameras, renew "
        f"{plan.renew_s:g} s, ttl {plan.ttl_s:g} s; {plan.kills} x kill -9 of the busiest node, then restart"
    )
    found = {backend: takeovers(where, plan, plan.kills) for backend, where in registers.items()}
    if plan.runner_kills:
        print(
            f"\n== lease takeover, full runner: 3 `vigie run --node` processes (tests/cluster/node_child.py: a "
            f"looping clip per camera, a detector of its bright square), {plan.runner_kills} x kill -9"
        )
        for backend, where in registers.items():
            site = runner_site_file(where.scratch / f"runner-{backend}")
            found[f"{backend}_runner"] = takeovers(where, plan, plan.runner_kills, site)
    return found


def runner_site_file(folder: Path) -> Path:
    """The cluster tests' site: six cameras looping a clip of a bright square crossing a tripwire.

    Args:
        folder: where the clip and the site file go (and the nodes' logs).

    Returns:
        The site file.
    """
    from tests.cluster.node_child import CROSSING_RULE
    from tests.helpers import config_dict, make_video, write_config

    folder.mkdir(parents=True, exist_ok=True)
    make_video(folder / "clip.avi", 40, fps=10, size=(160, 120))
    data = config_dict([CROSSING_RULE], loop=True, process_fps=5)
    data["cameras"] = [dict(data["cameras"][0], id=camera) for camera in CAMERAS]
    return write_config(folder / "site.yaml", data)


def takeovers(registers: Registers, plan: Plan, kills: int, runner_site: Path | None = None) -> list[float]:
    """The kills on one backend (see `takeover_part`), one line each.

    Args:
        registers: where the register is made.
        plan: the lease timings.
        kills: how many.
        runner_site: the site file of full runner nodes; None: light nodes.

    Returns:
        The takeover time of each kill, seconds.
    """
    db, media = registers.fresh()
    cluster = NodeProcesses(db, media, plan, runner_site)
    label = registers.backend + (" runner" if runner_site is not None else "")
    times: list[float] = []
    settle_s = 10 * plan.ttl_s + 20
    try:
        for node in NODE_NAMES:
            cluster.start(node)
        if registers.backend == "postgresql":
            print(f"{label:<10} connections to the register with {len(NODE_NAMES)} nodes: {pg_clients(db)}")
        for kill in range(kills):
            owners: dict[str, str | None] = {}

            def spread(o: dict = owners) -> bool:
                o.clear()
                o.update(cluster.owners())
                return all(o.values()) and all(n in o.values() for n in cluster.processes)

            if wait_until(spread, settle_s) is None:
                raise RuntimeError(f"the nodes did not share the cameras within {settle_s:.0f} s: {owners}")
            victim = max(cluster.processes, key=lambda n: list(owners.values()).count(n))
            lost = sorted(c for c, o in owners.items() if o == victim)
            killed_at = time.monotonic()
            cluster.kill(victim)
            taken = wait_until(
                lambda lost=lost, victim=victim: all(cluster.owners()[c] not in (None, victim) for c in lost),
                settle_s,
            )
            if taken is None:
                raise RuntimeError(f"{victim}'s cameras {lost} were not taken over within {settle_s:.0f} s")
            times.append(time.monotonic() - killed_at)
            print(f"{label:<10} kill {kill + 1:2d}: {victim} held {lost}: taken over in {times[-1]:.2f} s", flush=True)
            if kill + 1 < kills:
                cluster.start(victim)
    finally:
        cluster.close()
    ok, line = audit_verify(db, media)
    print(f"{label:<10} takeover median {statistics.median(times):.2f} s, max {max(times):.2f} s; verify: {line}")
    if not ok:
        raise RuntimeError(f"audit verify failed after the takeovers: {line}")
    return times


# -- 3. outbox delivery latency -------------------------------------------------------------------------
class Receipts:
    """Arrival times of the alerts a receiver got: alert id -> monotonic time, and the arrival order."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.at: dict[int, float] = {}
        self.order: list[tuple[str, int]] = []
        self.duplicates = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()

    def got(self, camera: str, alert_id: int) -> None:
        """One alert received now.

        Args:
            camera: its camera.
            alert_id: its id.
        """
        now = time.monotonic()
        with self.lock:
            if alert_id in self.at:
                self.duplicates += 1
                return
            self.at[alert_id] = now
            self.order.append((camera, alert_id))


def webhook_receiver(receipts: Receipts, secret: bytes) -> ThreadingHTTPServer:
    """An HTTP receiver on a free loopback port that checks each signature, as a control room's would.

    Args:
        receipts: where arrivals go.
        secret: the shared HMAC secret.

    Returns:
        The server, serving on its own thread (`shutdown()` stops it).
    """
    from runner.outputs.webhook import SIGNATURE_HEADER, signature

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""), signature(secret, body)):
                receipts.bad_signatures += 1
                self.send_response(401)
                self.end_headers()
                return
            message = json.loads(body)
            if message.get("event") == "alert":
                receipts.got(message["camera"], int(message["id"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, name="bench-webhook", daemon=True).start()
    return server


def mqtt_subscriber(port: int, receipts: Receipts) -> Any:
    """A paho subscriber of every alert topic (QoS 1), connected before it is returned.

    Args:
        port: the broker's port on 127.0.0.1.
        receipts: where arrivals go.

    Returns:
        The connected client (its network loop on its own thread).
    """
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")

    def on_message(client: Any, userdata: object, message: Any) -> None:
        payload = json.loads(message.payload)
        if payload.get("event") == "alert":
            receipts.got(payload["camera"], int(payload["id"]))

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(f"vigie/{SITE}/#", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError(f"the MQTT subscriber could not subscribe on 127.0.0.1:{port}")
    return client


def outbox_part(plan: Plan, registers: dict[str, Registers], rate: float) -> dict[str, dict[str, list[float]]]:
    """Outbox latency per backend and destination (see the module's docstring).

    Args:
        plan: the plan.
        registers: backend -> where its registers are made.
        rate: alerts per second.

    Returns:
        Backend -> destination ("mqtt", "webhook") -> latencies in seconds.
    """
    receivers = "an MQTT subscriber (QoS 1) and a webhook receiver" if plan.mqtt else "a webhook receiver"
    print(
        f"\n== outbox: {rate:g} alerts/s for {plan.outbox_s:g} s on {len(CAMERAS)} cameras; commit -> received "
        f"by {receivers} (signature checked), the dispatcher polling every {POLL_S * 1000:.0f} ms"
    )
    found: dict[str, dict[str, list[float]]] = {}
    with contextlib.ExitStack() as stack:
        broker = None
        if plan.mqtt:
            import pytest

            from tests.servers.mosquitto import TempMosquitto

            try:
                broker = stack.enter_context(TempMosquitto())
            except pytest.skip.Exception as skipped:
                print(f"mqtt: skipped ({skipped.msg})")
        for backend, where in registers.items():
            found[backend] = delivery_run(where, broker, plan, rate)
    return found


def delivery_run(registers: Registers, broker: Any, plan: Plan, rate: float) -> dict[str, list[float]]:
    """Write alerts at `rate` on a fresh register while the dispatcher pushes them; wait for every one.

    Args:
        registers: where the register is made.
        broker: the TempMosquitto, or None (webhook only).
        plan: the plan.
        rate: alerts per second.

    Returns:
        Destination -> latencies (seconds) of the alerts it received.
    """
    from runner.config.outputs import MqttOutput, WebhookOutput
    from runner.outputs.dispatcher import Dispatcher
    from runner.outputs.mqtt import MqttDestination
    from runner.outputs.webhook import WebhookDestination
    from runner.register import Register

    secret = uuid.uuid4().hex
    os.environ[HOOK_SECRET_ENV] = secret
    receipts = {"webhook": Receipts()}
    db, media = registers.fresh()
    hook = webhook_receiver(receipts["webhook"], secret.encode())
    destinations: list[Any] = [
        WebhookDestination(
            WebhookOutput(
                name="bench", url=f"http://127.0.0.1:{hook.server_address[1]}/hook", secret="${" + HOOK_SECRET_ENV + "}"
            ),
            "outputs.webhooks[0]",
        )
    ]
    subscriber = None
    if broker is not None:
        receipts["mqtt"] = Receipts()
        subscriber = mqtt_subscriber(broker.port, receipts["mqtt"])
        mqtt = MqttDestination(MqttOutput(host="127.0.0.1", port=broker.port), SITE, "bench")
        if not mqtt.wait_connected(10):
            raise RuntimeError("the dispatcher could not connect to the broker")
        destinations.insert(0, mqtt)
    committed: dict[int, float] = {}
    with Register(db, media) as register:
        dispatcher = Dispatcher(register, destinations).start()
        try:
            period_s = 1.0 / rate
            next_s = time.monotonic()
            for sequence in range(max(1, round(plan.outbox_s * rate))):
                time.sleep(max(0.0, next_s - time.monotonic()))
                next_s += period_s
                stored = register.add_alert(bench_alert(CAMERAS[sequence % len(CAMERAS)], sequence), None, "bench")
                committed[stored.id] = time.monotonic()
            everything = wait_until(
                lambda: all(len(r.at) >= len(committed) for r in receipts.values()), 30.0 + plan.outbox_s, 0.1
            )
        finally:
            dispatcher.stop()
            hook.shutdown()
            hook.server_close()
            if subscriber is not None:
                subscriber.loop_stop()
                subscriber.disconnect()
    latencies: dict[str, list[float]] = {}
    for name, got in receipts.items():
        latencies[name] = [got.at[i] - committed[i] for i in committed if i in got.at]
        print(
            f"{registers.backend:<10} {name:<8} {len(got.at)}/{len(committed)} alerts received"
            f"{'' if everything is not None else ' (NOT all within the wait)'}, in order per camera: "
            f"{'yes' if in_order_per_camera(got.order) else 'NO'}, duplicates {got.duplicates}, bad signatures "
            f"{got.bad_signatures}; commit -> received {spread_ms(latencies[name])}",
            flush=True,
        )
    return latencies


# -- report ---------------------------------------------------------------------------------------------
def summary_lines(
    runs: list[WriteRun], takeover: dict[str, list[float]], delivery: dict[str, dict[str, list[float]]]
) -> list[str]:
    """The machine-readable last lines: `key: value`, one figure each.

    Args:
        runs: the register runs.
        takeover: backend -> takeover times.
        delivery: backend -> destination -> latencies.

    Returns:
        The lines.
    """
    lines = []
    for run in runs:
        what = "alerts" if run.op == "alert" else "renewals"
        lines.append(f"{run.backend}_{what}_per_s_{run.writers}_writers: {run.per_s:.1f}")
    for backend in dict.fromkeys(r.backend for r in runs):
        mine = [r for r in runs if r.backend == backend]
        one = min((r for r in mine if r.op == "alert"), key=lambda r: r.writers)
        lines.append(f"{backend}_append_ms_p50_{one.writers}_writer: {statistics.median(one.latencies_s) * 1000:.2f}")
        lines.append(f"{backend}_append_ms_p95_{one.writers}_writer: {percentile(one.latencies_s, 95) * 1000:.2f}")
        lines.append(f"{backend}_verify_ok: {'yes' if all(r.verify_ok for r in mine) else 'NO'}")
    for backend, times in takeover.items():
        lines.append(f"{backend}_takeover_s_median: {statistics.median(times):.2f}")
        lines.append(f"{backend}_takeover_s_max: {max(times):.2f}")
    for backend, per_destination in delivery.items():
        for name, latencies in per_destination.items():
            if latencies:
                lines.append(f"{backend}_{name}_delivery_ms_p50: {statistics.median(latencies) * 1000:.1f}")
                lines.append(f"{backend}_{name}_delivery_ms_p95: {percentile(latencies, 95) * 1000:.1f}")
    return lines


def run(args: argparse.Namespace, plan: Plan) -> int:
    """Every part of the plan, then the summary.

    Args:
        args: the parsed command line.
        plan: what to measure.

    Returns:
        The exit code: 0, or 1 when a register did not verify or a part failed.
    """
    started = time.monotonic()
    print(
        f"bench/scale.py on {os.cpu_count()} core(s), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; backends "
        f"{', '.join(plan.backends)}; parts {', '.join(plan.parts)}"
    )
    runs: list[WriteRun] = []
    takeover: dict[str, list[float]] = {}
    delivery: dict[str, dict[str, list[float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="vigie-scale-") as folder,
        backend_registers(plan.backends, Path(folder), not args.pg_no_fsync) as registers,
    ):
        failed = []
        for part in plan.parts:
            try:  # a part that fails says why; the others are still measured
                if part == "register":
                    runs = register_part(plan, registers, args.snapshot)
                elif part == "takeover":
                    takeover = takeover_part(plan, registers)
                else:
                    delivery = outbox_part(plan, registers, args.outbox_rate)
            except (RuntimeError, VigieError) as exc:
                failed.append(part)
                print(f"{part}: FAILED: {exc}", flush=True)
    print(f"\n(total {time.monotonic() - started:.0f} s{'; failed: ' + ', '.join(failed) if failed else ''})")
    for line in summary_lines(runs, takeover, delivery):
        print(line)
    return 0 if all(r.verify_ok for r in runs) and not failed else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or one of its worker processes).

    Args:
        argv: the command line (default sys.argv[1:]).

    Returns:
        The exit code: 0, 1 when a register did not verify or a part failed, 2 for bad arguments.
    """
    args = build_parser().parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.job)
    try:
        plan = make_plan(args)
    except ValueError as exc:
        print(f"bench/scale.py: {exc}", file=sys.stderr)
        return 2
    try:
        return run(args, plan)
    except RuntimeError as exc:
        print(f"bench/scale.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
