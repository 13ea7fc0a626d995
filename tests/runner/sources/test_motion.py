"""Motion gate: detection skipped where nothing moves in the watched zones, tracks and dwell clocks kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from runner.config.loading import load_config
from runner.config.site import MotionGate as MotionGateConfig
from runner.pipeline.camera import CameraPipeline
from runner.sources.capture import Frame
from runner.sources.motion import MotionGate
from tests.helpers import HEIGHT, WIDTH, FakePool, ScriptedDetector, box_at, config_dict, write_config

START = datetime(2025, 5, 13, 10, 0, tzinfo=UTC)
FPS = 5.0
LAWN = [(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)]  # the lower right quarter (tests.helpers' "lawn" zone)
PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 2.0}
GATE_ON = {"enabled": True, "min_changed_frac": 0.001, "max_skip_s": 1.0}
_BACKGROUND = np.random.default_rng(0).integers(40, 90, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def scene(square_at: tuple[float, float] | None = None) -> np.ndarray:
    """The textured background, with a bright 40 px square centred at a normalised point."""
    image = _BACKGROUND.copy()
    if square_at is not None:
        x, y = int(square_at[0] * WIDTH), int(square_at[1] * HEIGHT)
        image[max(0, y - 20) : y + 20, max(0, x - 20) : x + 20] = 250
    return image


def gate(watched=(LAWN,), **settings) -> MotionGate:
    return MotionGate(MotionGateConfig(**{**GATE_ON, **settings}), list(watched) if watched is not None else None)


# -- the gate alone ------------------------------------------------------------------------------------
def test_static_scene_is_gated_after_the_first_frame():
    g = gate()
    decisions = [g.wants_detection(scene(), i / FPS) for i in range(5)]  # 0.8 s: under max_skip_s
    assert decisions == [True, False, False, False, False] and g.frames_gated == 4


def test_movement_in_a_watched_zone_detects():
    g = gate()
    assert g.wants_detection(scene((0.7, 0.7)), 0.0)
    assert g.wants_detection(scene((0.8, 0.7)), 0.2)  # moved 64 px inside the lawn
    assert not g.wants_detection(scene((0.8, 0.7)), 0.4)  # and stopped
    assert g.last_changed_frac == 0.0


def test_movement_outside_the_watched_zones_is_gated():
    g = gate()
    assert g.wants_detection(scene((0.1, 0.1)), 0.0)
    assert [g.wants_detection(scene((0.1 + 0.05 * i, 0.1)), i / FPS) for i in range(1, 5)] == [False] * 4
    # The same movement with a rule watching the whole image (no zone) is seen.
    whole = gate(watched=None)
    assert whole.wants_detection(scene((0.1, 0.1)), 0.0)
    assert whole.wants_detection(scene((0.15, 0.1)), 0.2)


def test_slow_movement_accumulates_against_the_last_detected_frame():
    g = gate()
    assert g.wants_detection(scene((0.70, 0.7)), 0.0)
    # 1 px per frame is below the threshold frame to frame, not against the reference.
    seen = [g.wants_detection(scene((0.70 + i / WIDTH, 0.7)), i / 25.0) for i in range(1, 20)]
    assert True in seen


def test_max_skip_forces_a_detection():
    g = gate(max_skip_s=1.0)
    decisions = [g.wants_detection(scene(), i / FPS) for i in range(11)]
    assert [i for i, d in enumerate(decisions) if d] == [0, 5, 10]


def test_reset_forces_a_detection():
    g = gate()
    assert g.wants_detection(scene(), 0.0) and not g.wants_detection(scene(), 0.2)
    g.reset()
    assert g.wants_detection(scene(), 0.4)
    assert g.wants_detection(scene(), 0.6, force=True)


def test_sensitivity_follows_min_changed_frac():
    # A 40 px square moving 8 px changes about 0.9 % of the lawn (at 160 px wide): seen at 0.1 %, not at 5 %.
    for frac, expected in ((0.001, True), (0.05, False)):
        g = gate(min_changed_frac=frac)
        g.wants_detection(scene((0.7, 0.7)), 0.0)
        assert g.wants_detection(scene((0.7125, 0.7)), 0.2) is expected


# -- in the pipeline -----------------------------------------------------------------------------------
def build(tmp_path, script, rules=(INTRUSION,), motion_gate=GATE_ON, model=None):
    data = config_dict(list(rules), motion_gate=dict(motion_gate))
    if model:
        data["models"]["person"].update(model)
    loaded = load_config(write_config(tmp_path / "site.yaml", data))
    detector = ScriptedDetector(script)
    return CameraPipeline(loaded, loaded.config.cameras[0], FakePool(detector), None, mode="replay"), detector


def frame(i: int, image: np.ndarray) -> Frame:
    t = i / FPS
    return Frame("cam-01", i, t, START + timedelta(seconds=t), image)


def test_a_still_person_keeps_its_track_and_alerts_through_a_gated_stretch(tmp_path):
    # A person standing still in the lawn for 3 s: the detector runs once a second, the track lives on
    # every frame and the 2 s dwell is reached as if the detector had run on all of them.
    pipe, detector = build(tmp_path, lambda i: [PERSON_IN_LAWN])
    raised, track_ids = [], set()
    for i in range(16):
        raised += pipe.process(frame(i, scene()))
        track_ids |= set(pipe.history.ids())
    assert detector.calls == 4  # t = 0, 1, 2, 3 s
    assert pipe.frames_gated == 12
    assert len(track_ids) == 1 and len(pipe.history) == 1
    assert len(pipe.history.points(next(iter(track_ids)))) >= 14  # a point on (almost) every frame
    (alert,) = raised
    assert alert.record.kind == "zone_intrusion" and 2.0 <= alert.record.t_s <= 2.6


def test_gated_frames_reuse_the_last_detections_and_movement_brings_the_detector_back(tmp_path):
    pipe, detector = build(tmp_path, lambda i: [PERSON_IN_LAWN])
    seen = []
    for i in range(4):
        pipe.process(frame(i, scene()))
        seen.append(len(pipe.history))
    assert detector.calls == 1 and seen[-1] == 1
    pipe.process(frame(4, scene((0.8, 0.8))))  # something moves in the lawn
    assert detector.calls == 2
    pipe.process(frame(5, scene((0.2, 0.2))))  # the square leaves the lawn: that is movement too
    assert detector.calls == 3
    pipe.process(frame(6, scene((0.3, 0.2))))  # moving outside the lawn only
    assert detector.calls == 3


def test_a_reset_detects_at_once(tmp_path):
    pipe, detector = build(tmp_path, lambda i: [PERSON_IN_LAWN])
    for i in range(3):
        pipe.process(frame(i, scene()))
    assert detector.calls == 1
    pipe.reset()
    pipe.process(frame(3, scene()))
    assert detector.calls == 2 and len(pipe.history) == 0  # fresh tracker: the person is seen again, not yet tracked


@pytest.mark.parametrize("case", ["disabled", "untracked model", "on-demand only"])
def test_not_gated(tmp_path, case):
    if case == "disabled":
        pipe, detector = build(tmp_path, lambda i: [PERSON_IN_LAWN], motion_gate={"enabled": False})
    elif case == "untracked model":
        pipe, detector = build(tmp_path, lambda i: [PERSON_IN_LAWN], model={"track": False})
    else:
        pipe, detector = build(tmp_path, lambda i: [PERSON_IN_LAWN], model={"on_demand": True})
    assert pipe.motion is None
    for i in range(5):
        pipe.process(frame(i, scene()))
    assert detector.calls == (0 if case == "on-demand only" else 5) and pipe.frames_gated == 0


def test_a_rule_without_a_zone_watches_the_whole_image(tmp_path):
    tripwire = {"kind": "zone_intrusion", "id": "gate-crossing", "line": "gate"}
    pipe, _ = build(tmp_path, lambda i: [], rules=[INTRUSION, tripwire])
    assert pipe.motion is not None and pipe.motion.watched is None
    zoned, _ = build(tmp_path, lambda i: [], rules=[INTRUSION])
    assert zoned.motion.watched == [zoned.camera.zone("lawn").polygon]
