"""`verify` reads one snapshot: while another process appends alerts and decisions, it never reports tampering."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from runner.register import Register

ROOT = Path(__file__).resolve().parents[3]
VERIFY_RUNS = 120

# The service as seen by verify: alerts (half with an image) and decisions, as fast as they can be written.
WRITER = """
import sys, time
from pathlib import Path
from runner.core.access import Principal
from runner.register import Register
from tests.helpers import alert_record, tiny_jpeg

db, stop = Path(sys.argv[1]), Path(sys.argv[2])
image = tiny_jpeg()
with Register(db) as register:
    n = 0
    while not stop.exists():
        stored = register.add_alert(alert_record(), image if n % 2 else None)
        if n % 3 == 0:
            register.decide(stored.id, "confirmed", by=Principal("alice", "operator"), follow_up="field_check")
        n += 1
        print(n, flush=True)
        time.sleep(0.002)  # a busy service, not a flood: the register stays small and each verify quick
"""


def test_verify_during_writes_reports_no_tampering(tmp_path):
    db, stop = tmp_path / "vigie.db", tmp_path / "stop"
    Register(db).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(stop)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline()  # writing
        false_reports = []
        with Register(db, read_only=True) as reader:
            alerts_seen = []
            for _ in range(VERIFY_RUNS):
                report = reader.verify()
                if not report.ok:
                    false_reports.append(report.problem)
                alerts_seen.append(report.alerts_checked)
                time.sleep(0.002)
    finally:
        stop.touch()
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert false_reports == [], f"{len(false_reports)} of {VERIFY_RUNS}: {false_reports[:3]}"
    assert len(set(alerts_seen)) > VERIFY_RUNS // 4, "the writer was not writing during the verifies"
    with Register(db, read_only=True) as reader:
        assert reader.verify().ok
