"""Crash safety: the runner is killed with SIGKILL while it writes alerts, again and again, on the
same register. After every kill the register must open and verify, and every alert that was
committed before the kill must still be there, unchanged, with its snapshot (or the reason for
none). The figures (runs, alerts lost, recovery times) are printed for the fault table of
docs/operations.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cli import main as vigie
from runner.register import Register
from tests.faults.crash_child import CROSSING_RULE
from tests.helpers import config_dict, make_video, write_config

ROOT = Path(__file__).resolve().parents[2]
KILLS = 30


def committed(db: Path) -> dict[str, tuple]:
    """uid -> (digest, snapshot, snapshot_sha256, snapshot_note) of the alerts committed right now,
    read from outside the runner as any reader would."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {
            r[0]: tuple(r[1:])
            for r in conn.execute("SELECT uid, digest, snapshot, snapshot_sha256, snapshot_note FROM alerts")
        }
    finally:
        conn.close()


class ForkServer:
    """tests/faults/crash_child.py: forks a fresh runner on the same register for every run."""

    def __init__(self, site_yaml: Path, db: Path):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.crash_child", str(site_yaml), str(db)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self) -> int:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line.startswith("pid "), f"fork server answered {line!r}"
        return int(line.split()[1])

    def reap(self, pid: int) -> int:
        line = self.process.stdout.readline()
        assert line.split()[:2] == ["exit", str(pid)], f"fork server answered {line!r}"
        return int(line.split()[2])

    def close(self, pid: int | None) -> None:
        if pid is not None:  # a failed check must not leave a runner behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_for_new_alerts(db: Path, before: int, pid: int, timeout_s: float = 30.0) -> float:
    """Until the runner has committed at least one more alert; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if len(committed(db)) > before:
            return time.monotonic() - started
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise AssertionError("the runner exited on its own (see its output above)") from None
        time.sleep(0.01)
    raise AssertionError(f"no new alert within {timeout_s} s")


def check_register(db: Path, expected: dict[str, tuple]) -> tuple[int, int, int]:
    """The register after a kill: opens, verifies, keeps every alert committed before the kill
    unchanged, and every snapshot it names. Returns (alerts lost, leftover temp files, images no
    alert names): the last two are crash leftovers, harmless, removed by the retention purge."""
    with Register(db, create=False) as register:
        report = register.verify()
        assert report.ok, f"verify after a kill: {report.problem} (row {report.first_bad_row})"
        now = committed(db)
        lost = [uid for uid in expected if uid not in now]
        changed = [uid for uid in expected if uid in now and now[uid] != expected[uid]]
        assert not changed, f"alerts changed by the kill: {changed[:3]}"
        for uid, (_digest, snapshot, snapshot_sha, note) in now.items():
            if snapshot is None:
                assert note, f"alert {uid} has neither a snapshot nor a reason"
                continue
            data = (register.media_dir / snapshot).read_bytes()
            assert hashlib.sha256(data).hexdigest() == snapshot_sha, f"snapshot of {uid} differs"
        leftovers = list(register.media_dir.rglob("*.tmp"))
        referenced = {v[1] for v in now.values() if v[1]}
        assert not {p.relative_to(register.media_dir).as_posix() for p in leftovers} & referenced
        orphans = [
            p
            for p in register.media_dir.rglob("*.jpg")
            if p.relative_to(register.media_dir).as_posix() not in referenced
        ]
    return len(lost), len(leftovers), len(orphans)


@pytest.mark.slow
def test_kill_9_while_writing_alerts_loses_nothing_committed(tmp_path, capsys):
    make_video(tmp_path / "clip.avi", 40, fps=10, size=(160, 120))
    site_yaml = write_config(tmp_path / "site.yaml", config_dict([CROSSING_RULE], loop=True, process_fps=10))
    db = tmp_path / "var" / "vigie.db"
    Register(db).close()
    server = ForkServer(site_yaml, db)
    rng = random.Random(20261128)
    lost_total, first_alert_s, reopen_s, leftover_tmp, orphan_images = 0, [], [], 0, 0
    started, pid = time.monotonic(), None
    try:
        for _ in range(KILLS):
            before = len(committed(db))
            pid = server.start()
            first_alert_s.append(wait_for_new_alerts(db, before, pid))
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the middle of writing alerts
            expected = committed(db)
            os.kill(pid, signal.SIGKILL)
            assert server.reap(pid) == signal.SIGKILL  # killed, not exited
            pid = None
            opened = time.monotonic()
            lost, leftover_tmp, orphan_images = check_register(db, expected)
            reopen_s.append(time.monotonic() - opened)
            lost_total += lost
    finally:
        server.close(pid)
    elapsed_s = time.monotonic() - started
    total = len(committed(db))
    assert lost_total == 0
    assert vigie(["audit", "verify", "--db", str(db)]) == 0
    with capsys.disabled():
        print(
            f"\ncrash safety: {KILLS} kill -9 runs in {elapsed_s:.1f} s, {total} alerts committed, "
            f"{lost_total} lost; restart to first new alert median {statistics.median(first_alert_s) * 1000:.0f} ms, "
            f"reopen + verify median {statistics.median(reopen_s) * 1000:.0f} ms; "
            f"leftovers: {leftover_tmp} temp file(s), "
            f"{orphan_images} image(s) without a row"
        )


def _run_markers(db: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT value FROM meta WHERE key LIKE 'runner_run:%' AND value != ''").fetchall()
    except sqlite3.OperationalError:  # the register is being created
        return []
    return [value for (value,) in rows]


def _wait_running(process: subprocess.Popen, db: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else "vigie run exited"
        if db.exists() and any(f'"pid": {process.pid}' in m for m in _run_markers(db)):
            return
        time.sleep(0.1)
    raise AssertionError("vigie run did not start")


def test_a_killed_vigie_run_is_reported_as_crashed_by_status_and_the_next_start(tmp_path, capsys):
    make_video(tmp_path / "clip.avi", 20, fps=10)
    site = write_config(tmp_path / "site.yaml", config_dict([], source="clip.avi", loop=True))  # no rule: no model
    db = tmp_path / "vigie.db"
    command = [sys.executable, "-m", "runner.cli", "run", str(site), "--db", str(db)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_running(first, db)
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    assert vigie(["status", "--db", str(db)]) == 0
    status = capsys.readouterr().out
    assert f"runner CRASHED: pid {first.pid}" in status, status
    camera_line = next(line for line in status.splitlines() if "cam-01" in line)
    assert "crashed" in camera_line and "ok " not in camera_line.split("cam-01")[1][:12], status

    second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_running(second, db)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0, second.stderr.read()
    with Register(db, read_only=True) as register:
        crashed = [r for r in register.audit_rows(event="runner_crashed")]
        assert register.verify().ok
    assert len(crashed) == 1 and json.loads(crashed[0]["details"])["pid"] == first.pid
    assert _run_markers(db) == []  # the clean stop cleared its marker
    assert vigie(["status", "--db", str(db)]) == 0
    status = capsys.readouterr().out
    assert "CRASHED" not in status and f"last crash: pid {first.pid}" in status
