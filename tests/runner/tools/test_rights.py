"""`vigie rights`: find, export (blurred), restrict, erase, list, run as the DPO would, through the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from runner.cli import main
from runner.core.access import Principal
from runner.core.errors import UsageError
from runner.register import Register, clock
from runner.tools.rights import blur_except, parse_time, request_ages, subject_box, time_span
from tests.helpers import alert_record, tiny_jpeg
from workbench import social

DPO = ["--user", "dpo.martin", "--role", "dpo"]
OPERATOR = Principal("op.durand", "operator")
SPAN = ["--from", "2026-05-14T21:00+02:00", "--to", "2026-05-14T22:00+02:00"]  # 19:00 to 20:00 UTC
BOX = [0.1, 0.2, 0.3, 0.6]  # the alert's subject (the helper's default box)
MASK = (150, 150, 300, 230)  # a privacy mask, blacked out at capture (x0, y0, x1, y1 in pixels)


def _scene() -> np.ndarray:
    """320x240: a fine checkerboard everywhere (faces, plates: detail a blur must remove), a black mask."""
    ys, xs = np.mgrid[0:240, 0:320]
    image = np.where(((xs // 4) + (ys // 4)) % 2 == 0, 230, 20).astype(np.uint8)
    image = np.dstack([image] * 3)
    x0, y0, x1, y1 = MASK
    image[y0:y1, x0:x1] = 0
    return image


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    """cam-01: alerts 1 (19:30 UTC) and 2 (19:45, pending), 3 outside the span (18:00); cam-02: 4 (19:40)."""
    for name in ("VIGIE_ROLE", "VIGIE_USER", "VIGIE_OPERATOR", "VIGIE_DB"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "var" / "vigie.db"
    with Register(path) as reg:
        for camera, ts in [("cam-01", "19:30"), ("cam-01", "19:45"), ("cam-01", "18:00"), ("cam-02", "19:40")]:
            reg.add_alert(alert_record(camera_id=camera, ts_utc=f"2026-05-14T{ts}:00.000+00:00"), _jpeg(_scene()))
        for alert_id in (1, 3, 4):
            reg.decide(alert_id, "confirmed", by=OPERATOR, follow_up="field_check", note="suspect in red coat")
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _audit(db: Path, event: str) -> list[dict]:
    with Register(db, create=False, read_only=True) as reg:
        return [r | {"details": json.loads(r["details"])} for r in reg.audit_rows(event=event)]


# -- times ----------------------------------------------------------------------------------------------------------
def test_times_need_an_offset_or_a_zone():
    assert clock.iso(parse_time("2026-05-14T21:30+02:00", None, "--from")) == "2026-05-14T19:30:00.000+00:00"
    assert clock.iso(parse_time("2026-05-14 21:30", "Europe/Paris", "--from")) == "2026-05-14T19:30:00.000+00:00"
    assert clock.iso(parse_time("2026-05-14T19:30Z", None, "--to")) == "2026-05-14T19:30:00.000+00:00"
    for text, zone, message in [
        ("2026-05-14 21:30", None, "has no UTC offset"),
        ("yesterday", None, "not a time"),
        ("2026-05-14 21:30", "Mars/Olympus", "not a time zone"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_time(text, zone, "--from")
    with pytest.raises(UsageError, match="is before --from"):
        time_span("cam-01", "2026-05-14T22:00Z", "2026-05-14T21:00Z")
    with pytest.raises(UsageError, match="at most 31 days"):
        time_span("cam-01", "2026-01-01T00:00Z", "2026-03-01T00:00Z")


# -- blurring -------------------------------------------------------------------------------------------------------
def _detail(image: np.ndarray) -> float:
    """High-frequency energy: the checkerboard's is large, a blurred one's small."""
    return float(np.abs(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)).mean())


def test_everything_but_the_subject_box_is_blurred_and_masks_stay_black():
    scene = _scene()
    out = blur_except(scene, (0.1, 0.2, 0.3, 0.6))
    assert np.array_equal(out[48:144, 32:96], scene[48:144, 32:96])  # the subject, sharp
    outside = (slice(10, 140), slice(160, 310))  # other people
    assert _detail(scene[outside]) > 100 and _detail(out[outside]) < 0.05 * _detail(scene[outside])
    x0, y0, x1, y1 = MASK
    assert out[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20].max() < 10  # the mask stays black
    everything = blur_except(scene, None)
    assert _detail(everything[48:144, 32:96]) < 0.05 * _detail(scene[48:144, 32:96])


def test_only_a_tracked_subject_is_kept_sharp():
    assert subject_box({"bbox": BOX, "track_id": 3}) == tuple(BOX)
    assert subject_box({"bbox": BOX, "track_id": None}) is None  # a crowd or zone alert: many people
    assert subject_box({"bbox": None, "track_id": 3}) is None


# -- the command line -----------------------------------------------------------------------------------------------
def test_find_lists_the_place_and_time_and_is_audited(db, capsys):
    code, out, err = _cli(
        capsys, "rights", "find", "--db", db, "--request", "DPO-26-01", "--camera", "cam-01", *SPAN, *DPO
    )
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["1", "2"]  # not 3 (18:00), not 4 (cam-02)
    assert "confirmed, follow-up field_check  snapshot" in lines[0] and "pending" in lines[1]
    assert lines[-1].startswith("2 alert(s), 2 snapshot(s), 1 decision(s) on cam-01 from 2026-05-14T19:00:00.000+00:00")
    (row,) = _audit(db, "rights_find")
    assert row["actor"] == "dpo.martin" and row["camera_id"] == "cam-01"
    assert row["details"] | {} == {
        "request": "DPO-26-01",
        "camera_id": "cam-01",
        "from_utc": "2026-05-14T19:00:00.000+00:00",
        "to_utc": "2026-05-14T20:00:00.000+00:00",
        "alert_ids": [[1, 2]],
        "role": "dpo",
    }
    code, out, _ = _cli(capsys, "rights", "find", "--db", db, "--request", "DPO-26-01", *SPAN, "--json", *DPO)
    assert code == 0 and sorted(json.loads(line)["id"] for line in out.splitlines()) == [1, 2, 4]


def test_export_writes_the_alerts_and_blurred_snapshots(db, tmp_path, capsys):
    out_dir = tmp_path / "answer"
    code, out, err = _cli(
        capsys, "rights", "export", "--db", db, "--request", "DPO-26-02", "--alert", 1, "--out", out_dir, *DPO
    )
    assert code == 0, err
    assert "1 alert(s) and 1 blurred image(s)" in out
    document = json.loads((out_dir / "alerts.json").read_text(encoding="utf-8"))
    (alert,) = document["alerts"]
    assert alert["id"] == 1 and alert["follow_up"] == "field_check" and alert["snapshot"] == "alert_1.jpg"
    for private in ("operator", "note", "source", "models", "snapshot_sha256", "details"):
        assert private not in alert  # another agent's name, free text, stream URLs: not the requester's
    image = cv2.imread(str(out_dir / "alert_1.jpg"))
    scene = _scene()
    assert np.abs(image[52:140, 36:92].astype(int) - scene[52:140, 36:92]).mean() < 12  # the requester, sharp
    assert _detail(image[10:140, 160:310]) < 0.1 * _detail(scene[10:140, 160:310])  # everyone else, blurred
    (row,) = _audit(db, "rights_export")
    assert row["details"]["request"] == "DPO-26-02" and row["details"]["alert_ids"] == [[1, 1]]

    code, _, err = _cli(
        capsys, "rights", "export", "--db", db, "--request", "DPO-26-02", "--alert", 1, "--out", out_dir, *DPO
    )
    assert code == 2 and "must be a new or empty folder" in err


def test_restrict_hides_from_operator_and_analyst_listings(db, capsys):
    code, out, _ = _cli(capsys, "rights", "restrict", "--db", db, "--request", "DPO-26-03", "--alert", 1, *DPO)
    assert code == 0 and "1 alert(s) restricted" in out
    for role in ([], ["--role", "operator"], ["--role", "analyst"]):
        code, out, _ = _cli(capsys, "alerts", "--db", db, "--json", *role)
        assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [2, 3, 4]
    code, out, _ = _cli(capsys, "alerts", "--db", db, "--json", "--role", "dpo")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [1, 2, 3, 4]
    code, out, _ = _cli(
        capsys, "rights", "find", "--db", db, "--request", "DPO-26-03", "--camera", "cam-01", *SPAN, *DPO
    )
    assert "restricted (DPO-26-03)" in out.splitlines()[0]
    assert _cli(capsys, "audit", "verify", "--db", db)[0] == 0
    code, out, _ = _cli(capsys, "rights", "lift", "--db", db, "--request", "DPO-26-03", "--alert", 1, *DPO)
    assert code == 0 and "lifted on 1 alert(s)" in out


def test_erase_by_camera_and_time_keeps_the_records_and_verify_intact(db, capsys):
    with Register(db, create=False, read_only=True) as reg:
        snapshot = reg.snapshot_file(reg.alert(4))
    code, out, err = _cli(
        capsys, "rights", "erase", "--db", db, "--request", "DPO-26-04", "--camera", "cam-02", *SPAN, *DPO
    )
    assert code == 0, err
    assert "media of 1 alert(s) erased (1 file(s) deleted); their legal fields and decisions are kept" in out
    assert not snapshot.exists()
    code, out, _ = _cli(capsys, "alerts", "--db", db, "--json", "--camera", "cam-02")
    (alert,) = [json.loads(line) for line in out.splitlines()]
    assert alert["media_purged_utc"] and alert["decision"] == "confirmed" and alert["follow_up"] == "field_check"
    code, out, _ = _cli(capsys, "audit", "verify", "--db", db)
    assert code == 0 and out.startswith("audit chain intact")
    code, _, err = _cli(
        capsys, "rights", "erase", "--db", db, "--request", "DPO-26-04", "--camera", "cam-01", *SPAN, *DPO
    )
    assert code == 2 and err == "vigie: alert 2 is pending: the operators decide it before it is erased\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["erase", "--request", "R-7", *SPAN], "erase by time needs --camera"),
        (["restrict", "--request", "R-7", "--alert", "1", "--camera", "cam-01", *SPAN], "not both"),
        (["restrict", "--request", "R-7"], "name the alerts with --alert ID"),
        (["find", "--request", "R-7", "--camera", "cam-01", "--from", "2026-05-14T21:00+02:00"], "go together"),
        (["find", "--request", "R 7", *SPAN], "request reference 'R 7'"),
        (["lift", "--request", "R-7", "--alert", "99"], "no alert with id 99"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_and_write_nothing(db, capsys, argv, message):
    before = len(_audit(db, "rights_find")) + len(_audit(db, "rights_request_opened"))
    code, out, err = _cli(capsys, "rights", *argv, "--db", db, *DPO)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1
    assert len(_audit(db, "rights_find")) + len(_audit(db, "rights_request_opened")) == before


def test_list_shows_age_and_flags_requests_past_the_month(db, capsys):
    old = clock.iso(clock.utc_now() - timedelta(days=40))
    recent = clock.iso(clock.utc_now() - timedelta(days=5))
    for ref, kind, received in [("DPO-26-05", "access", old), ("DPO-26-06", "erasure", recent)]:
        code, _, err = _cli(
            capsys, "rights", "open", "--db", db, "--request", ref, "--kind", kind, "--received", received, *DPO
        )
        assert code == 0, err
    code, out, _ = _cli(capsys, "rights", "list", "--db", db, *DPO)
    lines = out.splitlines()
    assert lines[0].startswith("DPO-26-05") and "40.0 day(s)  LATE (> 30 days)" in lines[0]
    assert lines[1].startswith("DPO-26-06") and "LATE" not in lines[1]
    assert lines[2] == "1 open request(s) past the 30-day deadline"
    _cli(capsys, "rights", "close", "--db", db, "--request", "DPO-26-06", "--status", "answered", *DPO)
    code, out, _ = _cli(capsys, "rights", "list", "--db", db, *DPO)
    assert [line.split()[0] for line in out.splitlines()] == ["DPO-26-05", "1"]

    # the social-acceptability dashboard reads the same requests from the register (no CSV needed)
    frame = social.requests_from_register(db)
    assert frame["request_id"].to_list() == ["DPO-26-05", "DPO-26-06"]
    totals = social.request_indicators(frame).row(-1, named=True)
    assert (totals["requests"], totals["open"], totals["in_time_share"]) == (2, 1, 1.0)
    from workbench.social_app import SocialDashboard

    dashboard = SocialDashboard(db)
    assert dashboard.requests is not None and dashboard.requests["request_id"].to_list() == ["DPO-26-05", "DPO-26-06"]
    assert "vigie-requests-table" in dashboard.requests_panel.children[0].value


def test_request_age_counts_to_the_answer():
    received = "2026-01-01T00:00:00.000+00:00"
    (row,) = request_ages([{"received_utc": received, "answered_utc": "2026-02-10T00:00:00.000+00:00"}])
    assert row["age_days"] == 40 and row["late"]


def test_social_reads_no_requests_from_a_register_without_them(tmp_path):
    assert social.requests_from_register(tmp_path / "missing.db") is None
    with Register(tmp_path / "vigie.db") as reg:
        reg.add_alert(alert_record(), tiny_jpeg())
    assert social.requests_from_register(tmp_path / "vigie.db").is_empty()
