"""Crash-atomic purge: a purge killed with SIGKILL at any point leaves a register that verifies.

The purge records its work first (rows deleted, images marked purged, the files still to delete) in one
commit, then deletes the files; a killed purge leaves at worst files that the next purge deletes. Each of
KILLS runs starts from a copy of the same register (alerts with images, decisions, audit rows old enough
to go) and is killed at a random moment within the time an uninterrupted purge takes. The figures are
printed for the reliability table.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import runner.register.clock as register_clock
from runner.core.access import Principal
from runner.register import Register, iso
from tests.faults.purge_child import SITE
from tests.helpers import alert_record, tiny_jpeg

ROOT = Path(__file__).resolve().parents[2]
KILLS = 30
ALERTS = 120  # per age group: enough images that deleting them takes a while


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A register whose purge (media 7 d, records 30 d) marks 120 images, deletes 120 alerts with their
    images and decisions, and deletes their audit rows (written 38 days ago)."""
    folder = tmp_path_factory.mktemp("template")
    real_now = register_clock.utc_now
    image = tiny_jpeg()
    try:
        with Register(folder / "vigie.db") as register:
            for age_days in (38, 10):
                moment = real_now() - timedelta(days=age_days)
                register_clock.utc_now = lambda moment=moment: moment
                for i in range(ALERTS):
                    stored = register.add_alert(alert_record(site=SITE, ts_utc=iso(moment)), image)
                    if i % 4 == 0:
                        register.decide(stored.id, "confirmed", by=Principal("alice", "operator"))
    finally:
        register_clock.utc_now = real_now
    return folder


class PurgeServer:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.purge_child"],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def purge(self, db: Path, kill_after_s: float | None) -> tuple[bool, float]:
        """Start a purge; kill it after kill_after_s. Returns (killed before it ended, seconds it ran)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"purge {db}\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline().split()[1])
        started = time.monotonic()
        if kill_after_s is not None:
            time.sleep(kill_after_s)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        status = int(self.process.stdout.readline().split()[2])
        ran_s = time.monotonic() - started
        assert kill_after_s is not None or status == 0, "an uninterrupted purge failed"
        return os.WIFSIGNALED(status), ran_s

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def state(db: Path) -> str:
    """Where the purge was killed: before its commit, after it with files left to delete, or done."""
    with Register(db, read_only=True) as register:
        if not register.audit_rows(event="purge"):
            return "before commit"
        pending = register.database.query("SELECT COUNT(*) FROM media_doomed")[0][0]
        return "files pending" if pending else "done"


@pytest.mark.slow
def test_kill_9_at_any_point_of_a_purge_leaves_an_intact_register(template, tmp_path):
    server = PurgeServer()
    try:
        reference = tmp_path / "reference"
        shutil.copytree(template, reference)
        _, purge_s = server.purge(reference / "vigie.db", None)
        assert state(reference / "vigie.db") == "done"
        random.seed(20)
        states: dict[str, int] = {}
        false_reports = []
        for run in range(KILLS):
            folder = tmp_path / f"run-{run}"
            shutil.copytree(template, folder)
            db = folder / "vigie.db"
            server.purge(db, random.uniform(0.0, purge_s * 1.1))
            where = state(db)
            states[where] = states.get(where, 0) + 1
            with Register(db, read_only=True) as register:
                report = register.verify()
            if not report.ok:
                false_reports.append(f"run {run} ({where}): {report.problem}")
            if run % 5 == 0:  # the next purge finishes the work and sweeps what the killed one left
                server.purge(db, None)
                with Register(db, read_only=True) as register:
                    assert register.verify().ok
                    assert not register.database.query("SELECT path FROM media_doomed")
                    kept = {a["snapshot"] for a in register.alerts() if not a["media_purged_utc"]}
                left = {p.relative_to(folder / "media").as_posix() for p in (folder / "media").rglob("*.jpg")}
                assert left == kept, "images of purged records left on disk"
            shutil.rmtree(folder)
    finally:
        server.close()
    print(
        f"\npurge kill -9: {KILLS} kills (uninterrupted purge {purge_s:.2f} s), states {states}, "
        f"false tamper reports {len(false_reports)}"
    )
    assert false_reports == []
    assert len(states) >= 2, f"the kills did not land at varied points: {states}"
