"""One camera's chain with a scripted detector: masks, rules' error boundary, alert records, bounded state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

import runner.pipeline.camera as pipeline_module
from runner.config.loading import load_config
from runner.core.alerts import AlertCandidate
from runner.pipeline.camera import CameraPipeline
from runner.pipeline.gate import AlertGate
from runner.register import Register
from runner.sources.capture import Frame
from tests.helpers import HEIGHT, WIDTH, FakePool, ScriptedDetector, box_at, config_dict, write_config

START = datetime(2025, 5, 13, 10, 0, tzinfo=UTC)
PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 0.6}
MASK = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.3], [0.0, 0.3]]


class RecordingDetector(ScriptedDetector):
    """Keeps a copy of every image it is given."""

    def __init__(self, script, **kw):
        super().__init__(script, **kw)
        self.images: list[np.ndarray] = []

    def detect(self, images, labels=None):
        self.images += [image.copy() for image in images]
        return super().detect(images, labels)


def build(tmp_path, rules, script, register=True, writer=None, **camera):
    loaded = load_config(write_config(tmp_path / "site.yaml", config_dict(rules, **camera)))
    detector = RecordingDetector(script)
    reg = Register(tmp_path / "vigie.db") if register else None
    pipe = CameraPipeline(loaded, loaded.config.cameras[0], FakePool(detector), reg, mode="replay", writer=writer)
    return pipe, detector, reg, loaded


def frame(i: int, fps: float = 5.0, value: int = 255) -> Frame:
    t = i / fps
    return Frame("cam-01", i, t, START + timedelta(seconds=t), np.full((HEIGHT, WIDTH, 3), value, dtype=np.uint8))


def run(pipe: CameraPipeline, n: int, first: int = 0) -> list:
    raised = []
    for i in range(first, first + n):
        raised += pipe.process(frame(i))
    return raised


def test_alert_record_carries_provenance(tmp_path):
    pipe, detector, reg, loaded = build(
        tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN], source="rtsp://viewer:hunter2@cam.local/live"
    )
    raised = run(pipe, 10)
    assert len(raised) == 1
    record, stored = raised[0].record, raised[0].stored
    assert (record.kind, record.rule_id, record.camera_id, record.subject) == (
        "zone_intrusion",
        "lawn-intrusion",
        "cam-01",
        "zone:lawn",
    )
    assert record.config_revision == 1 and record.config_sha256 == loaded.sha256
    assert record.is_test and record.phase == "design" and record.mode == "replay"
    assert record.models == [detector.resolved.describe()]
    assert record.source == "rtsp://viewer:***@cam.local/live"
    assert record.ts_utc == (START + timedelta(seconds=record.t_s)).isoformat(timespec="milliseconds")
    assert record.bbox == pytest.approx(list(box_at(0.75, 0.9)), abs=0.01)
    row = reg.alert(stored.id)
    assert "hunter2" not in json.dumps(row, default=str)
    assert (
        cv2.imdecode(np.frombuffer((reg.media_dir / row["snapshot"]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        is not None
    )


def test_privacy_masks_reach_neither_detector_nor_snapshot(tmp_path):
    pipe, detector, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN], privacy_masks=[MASK])
    raised = run(pipe, 10)
    assert len(raised) == 1 and detector.images
    inside = (slice(int(0.02 * HEIGHT), int(0.28 * HEIGHT)), slice(int(0.02 * WIDTH), int(0.28 * WIDTH)))
    outside = (slice(int(0.4 * HEIGHT), int(0.6 * HEIGHT)), slice(int(0.05 * WIDTH), int(0.25 * WIDTH)))
    for image in detector.images:
        assert image[inside].max() == 0
        assert image[outside].min() == 255
    snapshot = cv2.imdecode(np.frombuffer(raised[0].snapshot_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (HEIGHT, WIDTH, 3)
    assert snapshot[inside].max() < 20  # JPEG noise at most
    assert snapshot[outside].min() > 235
    stored = (reg.media_dir / raised[0].stored.snapshot).read_bytes()
    assert stored == raised[0].snapshot_jpeg


def test_a_failing_rule_does_not_stop_the_others(tmp_path):
    second = dict(INTRUSION, id="lawn-intrusion-2")
    pipe, _, reg, _ = build(tmp_path, [INTRUSION, second], lambda i: [PERSON_IN_LAWN])
    broken = pipe.rules[0]

    def explode(ctx):
        raise ZeroDivisionError("division by zero in a rule")

    broken.update = explode
    raised = run(pipe, 10)
    assert [r.record.rule_id for r in raised] == ["lawn-intrusion-2"]
    errors = reg.audit_rows(event="rule_error")
    assert len(errors) == 1  # logged once, not once per frame
    details = json.loads(errors[0]["details"])
    assert details["rule_id"] == "lawn-intrusion" and details["count"] == 1
    assert "ZeroDivisionError" in details["error"]
    assert len(reg.alerts()) == 1
    assert pipe.rule_errors == {"lawn-intrusion": 10}  # every frame it raised on, for the run's summary


def test_snapshot_failure_keeps_the_alert(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("JPEG encoding failed")

    monkeypatch.setattr(pipeline_module, "render_snapshot", broken)
    pipe, _, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN])
    (raised,) = run(pipe, 10)
    assert raised.snapshot_jpeg is None
    row = reg.alert(raised.stored.id)
    assert row["snapshot"] is None and row["snapshot_note"] == "snapshot failed: ValueError: JPEG encoding failed"
    assert reg.verify().ok


def test_without_register(tmp_path):
    pipe, _, _, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN], register=False)
    (raised,) = run(pipe, 10)
    assert raised.stored is None and raised.snapshot_jpeg


def test_with_a_writer_the_alert_is_stored_later_from_a_copy_of_the_frame(tmp_path):
    # The runner's writer stores alerts off the analysis thread; the capture may reuse the frame's
    # buffer meanwhile, so the snapshot must come from a copy taken when the alert was raised.
    jobs, delivered = [], []

    class HeldWriter:
        def submit(self, camera_id, job):
            jobs.append((camera_id, job))

    pipe, _, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN], writer=HeldWriter())
    pipe.on_alert = delivered.append
    raised = []
    for i in range(10):
        image = frame(i)
        raised += pipe.process(image)
        image.image[:] = 0  # the buffer is overwritten by the next frame
    assert raised == [] and len(jobs) == 1 and not reg.alerts() and not delivered
    camera_id, job = jobs[0]
    job()
    (alert,) = delivered
    assert camera_id == "cam-01" and alert.stored is not None and alert.latency_s >= 0
    snapshot = cv2.imdecode(np.frombuffer(alert.snapshot_jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.median(snapshot) > 235  # the white frame, not the zeroed buffer
    assert len(reg.alerts()) == 1 and pipe.stage_s["store"] > 0


def test_stage_time_recorded_from_outside_adds_to_the_pipeline_s_own(tmp_path):
    # The runner's detector thread times a camera's share of a batched inference and records it here.
    pipe, _, _, _ = build(tmp_path, [INTRUSION], lambda i: [])
    run(pipe, 3)
    own = dict(pipe.stage_s)
    assert all(own[stage] > 0 for stage in ("detect", "track", "rules")) and own["store"] == 0
    pipe.record_stage_s("detect", 0.25)
    pipe.record_stage_s("detect", 0.5)
    assert pipe.stage_s == dict(own, detect=own["detect"] + 0.75)


RULE_SETS = {
    "zone_intrusion": [INTRUSION],
    "all three": [
        INTRUSION,
        {"kind": "wrong_way", "id": "path-wrong-way", "zone": "path", "min_travel_frac": 0.05, "window_s": 1.0},
        {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn", "max_count": 1, "sustain_s": 0.4},
    ],
}


@pytest.mark.parametrize("rules", list(RULE_SETS.values()), ids=list(RULE_SETS))
def test_state_returns_to_zero_after_tracks_end(tmp_path, rules):
    def script(i):
        if i >= 15:
            return []
        walker = (box_at(0.9 - 0.04 * i, 0.4), "person", 0.9)  # against the path's direction
        return [PERSON_IN_LAWN, walker]

    pipe, _, _, _ = build(tmp_path, rules, script)
    raised = run(pipe, 15)
    assert raised
    assert pipe.state_size() > 0
    run(pipe, 40, first=15)  # 8 s with nobody: past lost_s + history expiry and every clear_s
    assert pipe.state_size() == 0
    assert len(pipe.history) == 0


def test_reset_forgets_tracks_but_keeps_cooldowns(tmp_path):
    # After a reconnect the dwell clocks restart, but a flapping camera must not re-alert at once.
    pipe, _, _, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN])
    run(pipe, 10)
    assert pipe.state_size() > 0 and len(pipe.gate) > 0
    pipe.reset()
    assert pipe.state_size() == 0 and len(pipe.gate) > 0


def test_gate_cooldown_and_bounds():
    gate = AlertGate({"r": 10.0, "s": 0.0})

    def cand(rule, subject):
        return AlertCandidate(rule_id=rule, kind="zone_intrusion", subject=subject, score=1.0, t_s=0.0)

    assert len(gate.admit([cand("r", "zone:a"), cand("r", "zone:b"), cand("s", "zone:a")], 0.0)) == 3
    assert gate.admit([cand("r", "zone:a"), cand("s", "zone:a")], 5.0) == [cand("s", "zone:a")]
    assert gate.admit([cand("r", "zone:a")], 10.0) == [cand("r", "zone:a")]
    gate.admit([], 30.0)
    assert len(gate) == 0  # entries past their cooldown are swept
