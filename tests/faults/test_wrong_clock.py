"""A wrong clock, a careless config and a dry run, through the `vigie` command line.

End to end under Debian's `faketime` (installed by `make faketime`): `vigie purge` with the clock 400 days
ahead deletes nothing, says why in one line, and the refusal is in the audit log, in `vigie status` and
still verifies. The per-site and design-phase rules and `--dry-run` go through `vigie purge` as well.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.cli import main
from runner.register import Register
from tests.helpers import alert_record, config_dict, tiny_jpeg, write_config

ROOT = Path(__file__).resolve().parents[2]
VIGIE = [sys.executable, "-m", "runner.cli"]
AS_SERVICE = ["--user", "svc", "--role", "runner"]
FAKETIME = shutil.which("faketime")


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")


@pytest.fixture
def db(tmp_path) -> Path:
    """Two sites on one register: the town hall's alerts (one sent to the police) and a lab's, 3 days old."""
    path = tmp_path / "var" / "vigie.db"
    with Register(path) as register:
        for site in ("town-hall", "town-hall", "lab"):
            register.add_alert(alert_record(site=site, ts_utc=ago(3)), tiny_jpeg())
        from runner.core.access import Principal

        register.decide(1, "confirmed", by=Principal("alice", "operator"), follow_up="transmitted_to_police")
    return path


def site_config(tmp_path: Path, site: str, phase: str, **retention) -> Path:
    data = config_dict()
    data.update(site=site, phase=phase, retention=retention)
    if phase == "operational":
        data["authorization"] = {
            "order_ref": "arrete-2025-001",
            "valid_from": "2025-01-01T00:00:00Z",
            "valid_to": "2035-01-01T00:00:00Z",
        }
    return write_config(tmp_path / f"{site}-{phase}.yaml", data)


def vigie(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def fingerprint(db: Path) -> str:
    """The register's files and images (not SQLite's -shm / -wal files, which a reader may create)."""
    digest = hashlib.sha256()
    for path in sorted(db.parent.rglob("*")):
        if path.is_file() and not path.name.endswith(("-shm", "-wal")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.skipif(FAKETIME is None, reason="faketime is not installed (make faketime)")
def test_vigie_purge_400_days_ahead_deletes_nothing(db, capsys):
    before = fingerprint(db), len(Register(db, read_only=True).alerts())
    command = [FAKETIME, "-f", "+400d", *VIGIE, "purge", "--db", db, *AS_SERVICE]
    done = subprocess.run([str(c) for c in command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("vigie: purge refused: the clock (20")
    assert "days past the newest record" in done.stderr and "--accept-clock" in done.stderr
    with Register(db, read_only=True) as register:
        assert len(register.alerts()) == before[1] and register.alert(1)["decision"] == "confirmed"
    code, out, _ = vigie(capsys, "audit", "verify", "--db", db)
    assert code == 0 and out.startswith("audit chain intact")
    code, out, _ = vigie(capsys, "audit", "show", "--db", db)
    assert "purge_refused" in out and "days past the newest record" in out
    code, out, _ = vigie(capsys, "status", "--db", db)
    assert any(line.split()[:2] == ["retention", "clock"] for line in out.splitlines()), out


def test_a_design_config_with_one_day_deletes_nothing_of_another_site(db, tmp_path, capsys):
    lab = site_config(tmp_path, "lab", "design", media_days=1, alert_days=1)
    code, out, err = vigie(capsys, "purge", "--config", lab, "--db", db, *AS_SERVICE)
    assert (code, err) == (0, "")
    assert out == "purged (media > 1 d, records > 1 d): media_files 1, alerts 1, decisions 0, audit_rows 0\n"
    with Register(db, read_only=True) as register:
        assert [(a["site"], a["decision"]) for a in register.alerts()] == [
            ("town-hall", "confirmed"),
            ("town-hall", None),
        ]
        assert register.verify().ok
    # a purge without --config applies each site's own retention: the lab's day, the legal caps elsewhere
    code, out, _ = vigie(capsys, "purge", "--db", db, *AS_SERVICE)
    assert code == 0 and out.splitlines() == [
        "purged site lab (media > 1 d, records > 1 d): media_files 0, alerts 0, decisions 0, audit_rows 0",
        "purged site town-hall (media > 30 d, records > 365 d): media_files 0, alerts 0, decisions 0, audit_rows 0",
    ]


def test_a_design_config_cannot_shorten_the_operational_retention(db, tmp_path, capsys):
    operational = site_config(tmp_path, "town-hall", "operational", media_days=30, alert_days=365)
    assert vigie(capsys, "purge", "--config", operational, "--db", db, *AS_SERVICE)[0] == 0
    careless = site_config(tmp_path, "town-hall", "design", media_days=1, alert_days=1)
    code, out, err = vigie(capsys, "purge", "--config", careless, "--db", db, *AS_SERVICE)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "a design-phase config cannot change the operational one" in err and "nothing purged" in err
    with Register(db, read_only=True) as register:
        assert len(register.alerts(camera_id=None)) == 3
        assert register.audit_rows(event="retention_refused")
        assert register.verify().ok


def test_dry_run_prints_what_would_go_and_writes_nothing(db, tmp_path, capsys):
    before = fingerprint(db)
    lab = site_config(tmp_path, "lab", "design", media_days=1, alert_days=2)
    code, out, err = vigie(capsys, "purge", "--dry-run", "--config", lab, "--db", db)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "dry run: nothing is deleted"
    assert lines[1].startswith("site lab (media > 1 d, records > 2 d): would delete media_files 1, alerts 1 (oldest 20")
    assert lines[2].startswith("audit log (rows > 365 d, the longest retention): would delete 0")
    code, out, _ = vigie(capsys, "purge", "--dry-run", "--db", db)
    assert code == 0 and "site town-hall (media > 30 d, records > 365 d): would delete media_files 0" in out
    assert fingerprint(db) == before
