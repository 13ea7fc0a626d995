"""person_down on scripted poses (17 COCO keypoints) at 5 fps on a 640x480 image.

Each scripted person is a box and keypoints in pixels, built by `pose()` for a posture: standing,
lying (head left or right, or with the shoulders out of sight), sitting on a chair, bending over,
crouching, standing with arms spread (a wide box). The harness feeds them through a real
TrackHistory; re-detections and on-demand fall-model runs are scripted functions that record each
call, so the tests also check *when* the rule spends model time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml

from runner.config.loading import LoadedConfig, parse_config
from runner.core.alerts import AlertCandidate
from runner.core.errors import ConfigError
from runner.pipeline.camera import CameraPipeline
from runner.pipeline.gate import AlertGate
from runner.register import Register
from runner.rules._person_down_pose import Thresholds, body_axis, observe
from runner.rules.base import FrameContext
from runner.rules.person_down import PersonDownRule, PoseModelMissing
from runner.rules.registry import build_rule
from runner.sources.capture import Frame
from runner.tracking.tracker import TrackHistory
from tests.helpers import HEIGHT, WIDTH, ScriptedDetector, config_dict, site_config

FPS = 5.0
START = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
NAN_KP = np.full((17, 3), np.nan)


# -- postures ----------------------------------------------------------------------------------------
def _kp(points: dict[int, tuple[float, float]], conf: float = 0.9) -> np.ndarray:
    kp = np.zeros((17, 3))
    for i, (x, y) in points.items():
        kp[i] = (x, y, conf)
    return kp


def pose(posture: str, cx: float = 320.0, bottom: float = 400.0, height: float = 200.0) -> tuple[tuple, np.ndarray]:
    """(pixel box, (17, 3) keypoints) of one person whose feet are at (cx, bottom), `height` tall standing."""
    h = height
    if posture == "standing":
        pts = {
            0: (cx, bottom - 0.93 * h),
            1: (cx - 4, bottom - 0.95 * h),
            2: (cx + 4, bottom - 0.95 * h),
            3: (cx - 8, bottom - 0.93 * h),
            4: (cx + 8, bottom - 0.93 * h),
            5: (cx - 0.12 * h, bottom - 0.8 * h),
            6: (cx + 0.12 * h, bottom - 0.8 * h),
            11: (cx - 0.08 * h, bottom - 0.5 * h),
            12: (cx + 0.08 * h, bottom - 0.5 * h),
            13: (cx - 0.08 * h, bottom - 0.27 * h),
            14: (cx + 0.08 * h, bottom - 0.27 * h),
            15: (cx - 0.08 * h, bottom - 0.03 * h),
            16: (cx + 0.08 * h, bottom - 0.03 * h),
        }
        box = (cx - 0.16 * h, bottom - h, cx + 0.16 * h, bottom)
    elif posture == "arms_spread":  # upright, but the box is wider than tall
        box, kp = pose("standing", cx, bottom, h)
        return (cx - 0.55 * h, bottom - h, cx + 0.55 * h, bottom), kp
    elif posture in ("lying_head_left", "lying_head_right", "lying_no_shoulders"):
        s = -1 if posture == "lying_head_left" else 1  # head side
        y = bottom - 0.12 * h
        pts = {
            0: (cx + s * 0.47 * h, y),
            5: (cx + s * 0.33 * h, y - 10),
            6: (cx + s * 0.33 * h, y + 10),
            11: (cx + s * 0.02 * h, y - 8),
            12: (cx + s * 0.02 * h, y + 8),
            13: (cx - s * 0.2 * h, y - 8),
            14: (cx - s * 0.2 * h, y + 8),
            15: (cx - s * 0.45 * h, y - 6),
            16: (cx - s * 0.45 * h, y + 6),
        }
        if posture == "lying_no_shoulders":  # head and shoulders out of frame / hidden
            pts = {k: v for k, v in pts.items() if k not in (0, 5, 6)}
        box = (cx - 0.5 * h, bottom - 0.3 * h, cx + 0.5 * h, bottom)
    elif posture == "sitting":  # on a chair, leaning back a little: knees forward, shins down
        pts = {
            0: (cx - 0.05 * h, bottom - 0.68 * h),
            5: (cx - 0.14 * h, bottom - 0.57 * h),
            6: (cx + 0.02 * h, bottom - 0.57 * h),
            11: (cx - 0.02 * h, bottom - 0.32 * h),
            12: (cx + 0.1 * h, bottom - 0.32 * h),
            13: (cx + 0.2 * h, bottom - 0.3 * h),
            14: (cx + 0.3 * h, bottom - 0.3 * h),
            15: (cx + 0.2 * h, bottom - 0.02 * h),
            16: (cx + 0.3 * h, bottom - 0.02 * h),
        }
        box = (cx - 0.2 * h, bottom - 0.72 * h, cx + 0.36 * h, bottom)
    elif posture == "bending":  # picking something up: torso horizontal, legs straight
        pts = {
            0: (cx + 0.42 * h, bottom - 0.45 * h),
            5: (cx + 0.3 * h, bottom - 0.52 * h),
            6: (cx + 0.3 * h, bottom - 0.48 * h),
            11: (cx, bottom - 0.52 * h),
            12: (cx, bottom - 0.48 * h),
            13: (cx, bottom - 0.27 * h),
            14: (cx + 0.02 * h, bottom - 0.27 * h),
            15: (cx, bottom - 0.03 * h),
            16: (cx + 0.02 * h, bottom - 0.03 * h),
        }
        box = (cx - 0.08 * h, bottom - 0.62 * h, cx + 0.47 * h, bottom)
    elif posture == "crouching":  # squatting: torso leaning forward, compact box
        pts = {
            0: (cx + 0.18 * h, bottom - 0.5 * h),
            5: (cx + 0.1 * h, bottom - 0.42 * h),
            6: (cx + 0.14 * h, bottom - 0.42 * h),
            11: (cx - 0.08 * h, bottom - 0.2 * h),
            12: (cx - 0.04 * h, bottom - 0.2 * h),
            13: (cx + 0.12 * h, bottom - 0.25 * h),
            14: (cx + 0.16 * h, bottom - 0.25 * h),
            15: (cx, bottom - 0.02 * h),
            16: (cx + 0.04 * h, bottom - 0.02 * h),
        }
        box = (cx - 0.14 * h, bottom - 0.56 * h, cx + 0.24 * h, bottom)
    elif posture == "floor_sitting":  # sitting on the ground, knees up (meditation, the top of a sit-up): upright
        pts = {
            0: (cx, bottom - 0.6 * h),
            5: (cx - 0.08 * h, bottom - 0.45 * h),
            6: (cx + 0.08 * h, bottom - 0.45 * h),
            11: (cx - 0.06 * h, bottom - 0.08 * h),
            12: (cx + 0.06 * h, bottom - 0.08 * h),
            13: (cx + 0.2 * h, bottom - 0.25 * h),
            14: (cx + 0.22 * h, bottom - 0.25 * h),
            15: (cx + 0.3 * h, bottom - 0.02 * h),
            16: (cx + 0.32 * h, bottom - 0.02 * h),
        }
        box = (cx - 0.1 * h, bottom - 0.62 * h, cx + 0.35 * h, bottom)
    elif posture == "reclining":  # hips on the ground, torso 45 degrees back (half-way through a sit-up)
        pts = {
            0: (cx - 0.38 * h, bottom - 0.4 * h),
            5: (cx - 0.28 * h, bottom - 0.3 * h),
            6: (cx - 0.26 * h, bottom - 0.28 * h),
            11: (cx - 0.06 * h, bottom - 0.08 * h),
            12: (cx + 0.06 * h, bottom - 0.08 * h),
            13: (cx + 0.2 * h, bottom - 0.25 * h),
            14: (cx + 0.22 * h, bottom - 0.25 * h),
            15: (cx + 0.3 * h, bottom - 0.02 * h),
            16: (cx + 0.32 * h, bottom - 0.02 * h),
        }
        box = (cx - 0.42 * h, bottom - 0.45 * h, cx + 0.35 * h, bottom)
    elif posture.startswith("recline"):  # "recline<deg>": hips on the ground, torso <deg> back from vertical
        back = math.radians(float(posture.removeprefix("recline")))
        hip = (cx, bottom - 0.08 * h)
        along = (-math.sin(back), -math.cos(back))  # from the hips towards the head
        pts = {
            0: (hip[0] + 0.52 * h * along[0], hip[1] + 0.52 * h * along[1]),
            5: (hip[0] + 0.37 * h * along[0], hip[1] + 0.37 * h * along[1] - 6),
            6: (hip[0] + 0.37 * h * along[0], hip[1] + 0.37 * h * along[1] + 6),
            11: (hip[0] - 4, hip[1]),
            12: (hip[0] + 4, hip[1]),
            13: (cx + 0.2 * h, bottom - 0.25 * h),
            14: (cx + 0.22 * h, bottom - 0.25 * h),
            15: (cx + 0.3 * h, bottom - 0.02 * h),
            16: (cx + 0.32 * h, bottom - 0.02 * h),
        }
        xs, ys = [x for x, _ in pts.values()], [y for _, y in pts.values()]
        box = (min(xs) - 0.05 * h, min(ys) - 0.05 * h, max(xs) + 0.03 * h, bottom)
    elif posture == "tilting":  # mid-fall: torso 55 degrees from vertical, box still taller than wide
        pts = {
            0: (cx + 0.38 * h, bottom - 0.72 * h),
            5: (cx + 0.28 * h, bottom - 0.62 * h),
            6: (cx + 0.3 * h, bottom - 0.6 * h),
            11: (cx + 0.03 * h, bottom - 0.44 * h),
            12: (cx + 0.05 * h, bottom - 0.42 * h),
            13: (cx, bottom - 0.24 * h),
            14: (cx + 0.02 * h, bottom - 0.24 * h),
            15: (cx - 0.02 * h, bottom - 0.02 * h),
            16: (cx, bottom - 0.02 * h),
        }
        box = (cx - 0.1 * h, bottom - 0.8 * h, cx + 0.44 * h, bottom)
    else:
        raise ValueError(posture)
    return box, _kp(pts)


@dataclass(frozen=True)
class P:
    """One scripted person detection."""

    track_id: int
    posture: str
    cx: float = 320.0
    bottom: float = 400.0
    height: float = 200.0
    conf: float = 0.9
    keypoints: bool = True


Script = Callable[[float], list[P]]


def seq(track_id: int, *phases: tuple[float, str], end_s: float = float("inf"), **kw) -> Script:
    """A person going through postures: phases (from_s, posture); posture "gone" = not detected."""

    def script(t: float) -> list[P]:
        if t > end_s + 1e-6:
            return []
        current = None
        for start, posture in phases:
            if t >= start - 1e-6:
                current = posture
        if current is None or current == "gone":
            return []
        return [P(track_id, current, **kw)]

    return script


def merge(*scripts: Script) -> Script:
    return lambda t: [p for s in scripts for p in s(t)]


def detections(people: list[P], falls: list[tuple[tuple, float]] = ()) -> sv.Detections:
    """Person detections with keypoints, plus fall-model boxes (NaN keypoints), as the pipeline merges them."""
    boxes, kps, conf, ids, names = [], [], [], [], []
    for p in people:
        box, kp = pose(p.posture, p.cx, p.bottom, p.height)
        boxes.append(box)
        kps.append(kp if p.keypoints else NAN_KP)
        conf.append(p.conf)
        ids.append(p.track_id)
        names.append("person")
    for box, c in falls:
        boxes.append(tuple(v * s for v, s in zip(box, (WIDTH, HEIGHT, WIDTH, HEIGHT))))
        kps.append(NAN_KP)
        conf.append(c)
        ids.append(-1)
        names.append("Fall")
    if not boxes:
        empty = sv.Detections.empty()
        empty.tracker_id = np.array([], dtype=int)
        empty.data["class_name"] = np.array([], dtype=object)
        return empty
    data = {"class_name": np.array(names, dtype=object)}
    if any(p.keypoints for p in people):
        data["keypoints"] = np.array(kps, dtype=np.float32)
    return sv.Detections(
        xyxy=np.array(boxes, dtype=float),
        confidence=np.array(conf, dtype=float),
        class_id=np.zeros(len(boxes), dtype=int),
        tracker_id=np.array(ids, dtype=int),
        data=data,
    )


# Scripted re-detection: (t, label, normalised box, rotate_deg) -> people found (pixel coordinates)
Redetector = Callable[[float, str, tuple, int], list[P]]


@dataclass
class Harness:
    rule: PersonDownRule
    redetector: Redetector | None = None
    fall_on_demand: Callable[[float], list[tuple[tuple, float]]] | None = None
    history: TrackHistory = field(default_factory=lambda: TrackHistory(max_points=150, expiry_s=3.0))
    calls: list[tuple[float, str, tuple, int]] = field(default_factory=list)
    frame_index: int = 0

    def step(self, t: float, people: list[P], falls: list[tuple[tuple, float]] = ()) -> list[AlertCandidate]:
        dets = detections(people, falls)
        ended = self.history.update(dets, t, WIDTH, HEIGHT)

        def redetect(label, box, *, rotate_deg=0, pad_frac=0.5):
            self.calls.append((t, label, tuple(box), rotate_deg))
            if label == "Fall":
                found = self.fall_on_demand(t) if self.fall_on_demand else []
                return detections([], found)
            found = self.redetector(t, label, tuple(box), rotate_deg) if self.redetector else []
            out = detections(found)
            out.tracker_id = np.full(len(out), -1, dtype=int)
            return out

        ctx = FrameContext(
            camera_id="cam-01",
            t_s=t,
            frame_index=self.frame_index,
            wall_time=START + timedelta(seconds=t),
            width=WIDTH,
            height=HEIGHT,
            detections=dets,
            tracks=self.history,
            ended_track_ids=ended,
            redetect=redetect,
        )
        self.frame_index += 1
        return self.rule.update(ctx)

    def run(
        self, script: Script, duration_s: float, falls: Callable[[float], list] | None = None
    ) -> list[AlertCandidate]:
        alerts = []
        for i in range(int(round(duration_s * FPS)) + 1):
            t = i / FPS
            alerts += self.step(t, script(t), falls(t) if falls else [])
        return alerts

    def pose_calls(self) -> list[tuple[float, str, tuple, int]]:
        return [c for c in self.calls if c[1] == "person"]

    def fall_calls(self) -> list[tuple[float, str, tuple, int]]:
        return [c for c in self.calls if c[1] == "Fall"]


def rule_dict(**overrides) -> dict:
    return {"kind": "person_down", "id": "down", "cooldown_s": 0.0, **overrides}


def make(redetector: Redetector | None = None, fall_on_demand=None, camera: dict | None = None, **overrides) -> Harness:
    config = site_config([rule_dict(**overrides)], **(camera or {}))
    camera_cfg = config.cameras[0]
    return Harness(build_rule(camera_cfg.rules[0], camera_cfg), redetector, fall_on_demand)


def times(alerts: list[AlertCandidate]) -> list[float]:
    return [round(a.t_s, 2) for a in alerts]


# -- pose geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("posture", "state", "axis"),
    [
        ("standing", "upright", "torso"),
        ("lying_head_left", "lying", "torso"),
        ("lying_head_right", "lying", "torso"),
        ("lying_no_shoulders", "lying", "legs"),
        ("sitting", "upright", "torso"),  # leaning back a little, tall box: not lying
        ("bending", "unclear", "torso"),
        ("crouching", "unclear", "torso"),
        ("tilting", "unclear", "torso"),
        ("arms_spread", "unclear", "torso"),
    ],
)
def test_each_posture_is_classified(posture, state, axis):
    box, kp = pose(posture)
    obs = observe(box, kp)
    assert (obs.state, obs.axis) == (state, axis)


def test_the_postures_have_the_shapes_that_make_them_hard():
    """Sanity of the scripts: bending tilts the torso as much as lying, sitting leans back, but their boxes
    stay tall."""
    angle = {p: observe(*pose(p)).angle_deg for p in ("bending", "sitting", "crouching", "tilting", "lying_head_left")}
    aspect = {p: observe(*pose(p)).aspect for p in ("bending", "sitting", "crouching", "tilting", "lying_head_left")}
    assert angle["bending"] >= 60 and aspect["bending"] < 1.0
    assert 20 <= angle["sitting"] < 60 and aspect["sitting"] < 1.0
    assert 30 < angle["crouching"] < 45 and aspect["crouching"] < 1.0
    assert 45 <= angle["tilting"] < 60 and aspect["tilting"] < 1.0
    assert angle["lying_head_left"] > 80 and aspect["lying_head_left"] > 3.0


def test_body_axis_and_head_side():
    assert body_axis(pose("lying_head_left")[1])[2] == -1
    assert body_axis(pose("lying_head_right")[1])[2] == 1
    assert body_axis(pose("standing")[1])[:2] == (0.0, "torso")
    assert body_axis(NAN_KP) == (None, None, 0)
    assert body_axis(None) == (None, None, 0)
    head_down = pose("standing")[1].copy()
    head_down[[5, 6], 1] += 400  # shoulders below the hips
    assert body_axis(head_down)[0] == pytest.approx(180.0)
    low_conf = pose("lying_head_left")[1].copy()
    low_conf[:, 2] = 0.2
    assert observe(pose("lying_head_left")[0], low_conf).state == "unclear"
    assert observe(pose("lying_head_left")[0], low_conf, Thresholds(keypoint_min_confidence=0.1)).state == "lying"


# -- the rule on scripted tracks ---------------------------------------------------------------------
# name, rule overrides, script, duration (s), expected alert times (s)
CASES = [
    ("standing", {}, seq(1, (0, "standing")), 20.0, []),
    # Lying when first seen (sunbathing, asleep on a bench): nobody saw a fall, no alert...
    ("lying-from-the-start", {}, seq(1, (0, "lying_head_left")), 20.0, []),
    # ...unless the camera asks for anyone lying still (require_fall: false).
    ("lying-from-the-start-anyone-down", {"require_fall": False}, seq(1, (0, "lying_head_left")), 20.0, [2.0]),
    ("falls-and-stays-down", {}, seq(1, (0, "standing"), (3.0, "tilting"), (3.2, "lying_head_right")), 20.0, [5.2]),
    ("down-s-longer", {"down_s": 5.0}, seq(1, (0, "standing"), (3.0, "lying_head_right")), 20.0, [8.0]),
    (
        "down-s-zero-needs-min-frames",
        {"down_s": 0.0, "require_fall": False},
        seq(1, (0, "lying_head_right")),
        5.0,
        [0.4],
    ),
    (
        "min-down-frames-one",
        {"down_s": 0.0, "min_down_frames": 1, "require_fall": False},
        seq(1, (0, "lying_head_right")),
        5.0,
        [0.0],
    ),
    ("lying-shoulders-hidden", {}, seq(1, (0, "standing"), (2.0, "lying_no_shoulders")), 20.0, [4.0]),
    ("sits-down-and-gets-up", {}, seq(1, (0, "standing"), (2.0, "sitting"), (12.0, "standing")), 20.0, []),
    ("bends-over", {}, seq(1, (0, "standing"), (2.0, "bending"), (8.0, "standing")), 20.0, []),
    ("crouches", {}, seq(1, (0, "standing"), (2.0, "crouching"), (8.0, "standing")), 20.0, []),
    ("arms-spread", {}, seq(1, (0, "arms_spread")), 20.0, []),
    ("lies-briefly-and-gets-up", {}, seq(1, (0, "standing"), (2.0, "lying_head_left"), (3.4, "standing")), 20.0, []),
    (
        "gets-up-then-lies-again",
        {},
        seq(1, (0, "standing"), (2.0, "lying_head_left"), (3.4, "standing"), (6.0, "lying_head_left")),
        20.0,
        [8.0],
    ),
    # Lying but the keypoints say so only 1 frame in 3: not enough of the frames it was seen.
    (
        "mostly-unclear",
        {"require_fall": False},
        lambda t: [P(1, "lying_head_left" if round(t * FPS) % 3 == 0 else "tilting")],
        10.0,
        [],
    ),
    ("below-min-confidence", {"require_fall": False}, seq(1, (0, "lying_head_left"), conf=0.2), 10.0, []),
    ("untracked-detections", {"require_fall": False}, seq(-1, (0, "lying_head_left")), 10.0, [2.0]),
    # The tracker changes the id of a lying person (their box changed shape): the same spot, one alert.
    (
        "id-switch-while-lying",
        {},
        merge(seq(1, (0, "standing"), (2.0, "lying_head_left"), end_s=3.0), seq(2, (3.2, "lying_head_left"))),
        20.0,
        [4.0],
    ),
    (
        "two-people-down",
        {"require_fall": False},
        merge(seq(1, (0, "lying_head_left"), cx=150.0), seq(2, (1.0, "lying_head_right"), cx=500.0)),
        20.0,
        [2.0, 3.0],
    ),
    (
        "lying-person-and-bystander",
        {"require_fall": False},
        merge(seq(1, (0, "lying_head_left"), cx=250.0), seq(2, (0, "standing"), cx=420.0)),
        20.0,
        [2.0],
    ),
    ("long-lie-one-alert", {"require_fall": False}, seq(1, (0, "lying_head_left")), 120.0, [2.0]),
]


@pytest.mark.parametrize(("name", "overrides", "script", "duration", "expected"), CASES, ids=[c[0] for c in CASES])
def test_person_down_cases(name, overrides, script, duration, expected):
    h = make(**overrides)
    alerts = h.run(script, duration)
    assert times(alerts) == expected
    assert h.calls == []  # everyone stayed visible: no re-detection, no fall model


def test_a_flickering_detection_is_still_down_and_searched_for_only_when_missing():
    h = make(redetector=lambda t, label, box, rotate: [], require_fall=False)
    alerts = h.run(lambda t: [] if round(t * FPS) % 2 else [P(1, "lying_head_left")], 10.0)
    assert times(alerts) == [2.0]
    assert alerts[0].details["evidence"] == {"pose": 6}
    assert all(round(c[0] * FPS) % 2 == 1 for c in h.calls)  # only on the frames where it was missing
    assert {round(c[0], 1) for c in h.pose_calls()} == {0.2, 0.6, 1.0, 1.4, 1.8}  # 3/s at most, until the alert


def test_the_alert_says_why():
    h = make()
    [alert] = h.run(seq(7, (0, "standing"), (1.0, "lying_head_left")), 10.0)
    assert alert.kind == "person_down" and alert.subject == "track:7" and alert.track_id == 7
    assert alert.details["evidence"] == {"pose": 11}
    assert alert.details["down_frames"] == 11 and alert.details["down_s"] == 2.0
    assert alert.details["angle_deg"] > 80 and alert.details["aspect"] > 3
    assert alert.details["searched"] is False
    box = pose("lying_head_left")[0]
    assert alert.bbox == pytest.approx((box[0] / WIDTH, box[1] / HEIGHT, box[2] / WIDTH, box[3] / HEIGHT))


def test_cooldown_and_episodes_through_the_alert_gate():
    h = make(cooldown_s=30.0)
    gate = AlertGate({"down": 30.0})
    script = seq(
        1,
        (0, "standing"),
        (1.0, "lying_head_left"),
        (6.0, "standing"),
        (10.0, "lying_head_left"),
        (16.0, "standing"),
        (40.0, "lying_head_left"),
    )
    candidates, admitted = [], []
    for i in range(int(60 * FPS) + 1):
        t = i / FPS
        raised = h.step(t, script(t))
        candidates += raised
        admitted += gate.admit(raised, t)
    assert times(candidates) == [3.0, 12.0, 42.0]  # one per fall
    assert times(admitted) == [3.0, 42.0]  # the second fall is within the cooldown of the first


# -- a person who vanishes: re-detection on a rotated crop -------------------------------------------
def lying_where_redetected(posture: str = "lying_head_right", cx: float = 320.0) -> Redetector:
    return lambda t, label, box, rotate: [P(-1, posture, cx=cx, conf=0.6)]


VANISHES_AFTER_TILTING = seq(1, (0, "standing"), (3.0, "tilting"), (3.4, "gone"))


def test_vanished_after_tilting_then_found_lying_by_rotated_redetection():
    h = make(redetector=lying_where_redetected())
    alerts = h.run(VANISHES_AFTER_TILTING, 15.0)
    assert times(alerts) == [5.4]  # down from the first re-detection at 3.4, down_s = 2
    assert alerts[0].subject == "track:1" and alerts[0].details["searched"] is True
    assert alerts[0].details["evidence"] == {"redetect": 6}  # one crop every 0.4 s (3/s at most)
    calls = h.pose_calls()
    # The tilt put the head on the right: the crop is turned counter-clockwise (270) so the body stands up.
    assert {c[3] for c in calls} == {270}
    # At most redetect_max_per_s (3/s) crops, only while searching (from the loss to the alert).
    assert [c[0] for c in calls] == pytest.approx([3.4, 3.8, 4.2, 4.6, 5.0, 5.4])
    region = calls[0][2]
    standing, _ = pose("standing")
    feet_x, feet_y = 320.0 / WIDTH, 400.0 / HEIGHT
    assert region[0] < feet_x < region[2] and region[1] < feet_y < region[3]
    # one standing height either side of the feet
    assert (region[2] - region[0]) * WIDTH == pytest.approx(2 * (standing[3] - standing[1]), rel=0.05)


def test_head_left_turns_the_crop_clockwise():
    tilting_left = lambda t: [P(1, "standing")] if t < 3.0 else ([P(1, "lying_head_left")] if t < 3.4 else [])  # noqa: E731
    h = make(redetector=lying_where_redetected("lying_head_left"))
    h.run(tilting_left, 10.0)
    assert {c[3] for c in h.pose_calls()} == {90}


def test_redetection_finding_nothing_does_not_alert_and_stops():
    h = make(redetector=lambda t, label, box, rotate: [])
    assert h.run(VANISHES_AFTER_TILTING, 20.0) == []
    calls = h.pose_calls()
    assert calls and max(c[0] for c in calls) <= 3.4 + 3.0 + 1e-6  # searched for hold_s at most
    assert h.rule.state_size() == 0  # the track ended, the spot was forgotten


def test_redetection_finding_someone_standing_or_too_small_is_not_evidence():
    standing = lambda t, label, box, rotate: [P(-1, "standing", conf=0.8)]  # noqa: E731
    assert make(redetector=standing).run(VANISHES_AFTER_TILTING, 15.0) == []
    tiny = lambda t, label, box, rotate: [P(-1, "lying_head_right", height=60.0)]  # noqa: E731  (a chair leg)
    assert make(redetector=tiny).run(VANISHES_AFTER_TILTING, 15.0) == []


@pytest.mark.parametrize(
    ("name", "script"),
    [
        ("walks-out-upright", seq(1, (0, "standing"), (3.0, "gone"))),
        ("never-seen-upright", seq(1, (0, "tilting"), (3.0, "gone"))),
        # Tilted long before vanishing (bent over, straightened up partially, then left)
        ("tilted-long-before", seq(1, (0, "standing"), (2.0, "tilting"), (3.0, "sitting"), (4.0, "gone"))),
        # Upright only long ago (upright_memory_s = 3 s)
        ("upright-long-ago", seq(1, (0, "standing"), (1.0, "crouching"), (6.0, "tilting"), (6.4, "gone"))),
    ],
)
def test_no_search_without_an_upright_then_tilting_disappearance(name, script):
    h = make(redetector=lying_where_redetected(), fall_on_demand=lambda t: [((0.3, 0.6, 0.7, 0.9), 0.9)])
    assert h.run(script, 15.0) == []
    assert h.calls == []  # no model time spent


def test_crouching_out_of_sight_is_searched_for_but_not_an_alert():
    """Crouching tilts the torso past tilt_angle_deg (35): hidden right after, the person is searched for, but
    nothing is found lying there."""
    script = seq(1, (0, "standing"), (3.0, "crouching"), (3.4, "gone"))
    h = make(redetector=lambda t, label, box, rotate: [P(-1, "crouching", conf=0.7)], fall_on_demand=lambda t: [])
    assert h.run(script, 15.0) == []
    assert h.pose_calls() and h.fall_calls()


def test_the_person_reappearing_upright_ends_the_search():
    script = seq(1, (0, "standing"), (3.0, "tilting"), (3.4, "gone"), (4.0, "standing"))
    h = make(redetector=lying_where_redetected())
    assert h.run(script, 15.0) == []
    assert max(c[0] for c in h.pose_calls()) < 4.0


def test_redetection_can_be_disabled():
    h = make(redetector=lying_where_redetected(), redetect_max_per_s=0.0)
    assert h.run(VANISHES_AFTER_TILTING, 15.0) == []
    assert h.pose_calls() == []


# -- the fall model: a cue gated on the vanished person ----------------------------------------------
FALL_AT_SPOT = ((0.38, 0.7, 0.62, 0.86), 0.8)  # around the feet of the person who vanished (x 0.5, y 0.83)
FALL_ELSEWHERE = ((0.02, 0.05, 0.2, 0.25), 0.9)
FALL_WHOLE_FRAME = ((0.0, 0.0, 1.0, 1.0), 0.9)


@pytest.mark.parametrize(
    ("name", "script", "falls", "expected"),
    [
        ("fall-at-the-spot", VANISHES_AFTER_TILTING, [FALL_AT_SPOT], [5.4]),
        ("fall-elsewhere", VANISHES_AFTER_TILTING, [FALL_ELSEWHERE], []),
        ("fall-box-of-the-whole-frame", VANISHES_AFTER_TILTING, [FALL_WHOLE_FRAME], []),
        ("fall-below-confidence", VANISHES_AFTER_TILTING, [(FALL_AT_SPOT[0], 0.3)], []),
        # The fall model fires on people who are visible (sitting, standing): never read for them.
        ("fall-on-a-seated-person", seq(1, (0, "standing"), (2.0, "sitting")), [FALL_AT_SPOT], []),
        ("fall-on-a-standing-person", seq(1, (0, "standing")), [FALL_AT_SPOT], []),
        ("fall-on-an-empty-scene", lambda t: [], [FALL_AT_SPOT], []),
        ("fall-after-walking-out", seq(1, (0, "standing"), (3.0, "gone")), [FALL_AT_SPOT], []),
    ],
)
def test_fall_model_frames_are_only_read_around_a_vanished_person(name, script, falls, expected):
    """A fall model that runs on every frame (its boxes arrive with the frame's detections)."""
    h = make()
    assert times(h.run(script, 15.0, falls=lambda t: falls)) == expected


def test_fall_model_on_demand_runs_only_while_searching():
    h = make(fall_on_demand=lambda t: [FALL_AT_SPOT], redetector=lambda t, label, box, rotate: [])
    alerts = h.run(merge(VANISHES_AFTER_TILTING, seq(2, (0, "sitting"), cx=100.0)), 15.0)
    assert times(alerts) == [5.4]
    assert alerts[0].details["evidence"] == {"fall_model": 11}
    calls = h.fall_calls()
    assert [c[0] for c in calls] == pytest.approx([3.4 + 0.2 * i for i in range(11)])  # 5/s, until the alert
    assert all(c[2] == (0.0, 0.0, 1.0, 1.0) for c in calls)  # the whole frame, as the model was trained


def test_fall_model_cue_can_be_disabled():
    h = make(fall_on_demand=lambda t: [FALL_AT_SPOT], fall_labels=[])
    assert h.run(VANISHES_AFTER_TILTING, 15.0) == []
    assert h.fall_calls() == []


@pytest.mark.parametrize(("until_s", "expected"), [(3.7, []), (3.9, [5.4])])
def test_a_vanished_person_stays_down_after_enough_evidence(until_s, expected):
    """Two fall frames are not enough (min_down_frames = 3); after three, the person who vanished and never
    reappeared upright is held down (hold_s) and the alert comes down_s after the first one."""
    h = make(fall_on_demand=lambda t: [FALL_AT_SPOT] if t < until_s else [])
    assert times(h.run(VANISHES_AFTER_TILTING, 15.0)) == expected


BYSTANDER = seq(9, (0, "standing"), cx=100.0)  # someone else, whose keypoints are visible
WIDE_NO_KEYPOINTS = P(-1, "lying_head_right", conf=0.4, keypoints=False)  # a wide box, keypoints all hidden


def test_a_wide_box_where_someone_fell_counts_even_without_clear_keypoints():
    script = merge(
        BYSTANDER, lambda t: [P(1, "standing")] if t < 3.0 else [P(1, "tilting")] if t < 3.4 else [WIDE_NO_KEYPOINTS]
    )
    h = make(redetector=lambda t, label, box, rotate: [])
    alerts = h.run(script, 15.0)
    assert times(alerts) == [5.4]
    assert alerts[0].details["evidence"] == {"wide_box": 11}
    assert h.calls == []  # seen on the ground from the first frame after vanishing: nothing to search


def test_a_wide_box_alone_is_nothing():
    """Without a spot (nobody seen falling there), a wide box without keypoints is not evidence."""
    assert make().run(merge(BYSTANDER, lambda t: [WIDE_NO_KEYPOINTS]), 15.0) == []


# -- zones ---------------------------------------------------------------------------------------------
# The harness camera has `lawn` = bottom-right quarter (x, y in 0.5..1) and `path` = top half.
@pytest.mark.parametrize(
    ("name", "overrides", "cx", "expected"),
    [
        ("excluded-zone", {"exclude_zones": ["lawn"]}, 480.0, []),
        ("outside-the-excluded-zone", {"exclude_zones": ["lawn"]}, 160.0, [2.0]),
        ("inside-the-zone", {"zone": "lawn"}, 480.0, [2.0]),
        ("outside-the-zone", {"zone": "lawn"}, 160.0, []),
    ],
)
def test_zones(name, overrides, cx, expected):
    h = make(**overrides, require_fall=False)
    assert times(h.run(seq(1, (0, "lying_head_left"), cx=cx), 10.0)) == expected


def test_a_vanished_person_in_an_excluded_zone_is_not_searched_for():
    script = seq(1, (0, "standing"), (3.0, "tilting"), (3.4, "gone"), cx=480.0)
    h = make(redetector=lying_where_redetected(cx=480.0), exclude_zones=["lawn"])
    assert h.run(script, 15.0) == []
    assert h.calls == []


# -- state --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "script",
    [
        seq(1, (0, "lying_head_left"), end_s=6.0),
        merge(seq(1, (0, "standing"), (3.0, "tilting"), (3.4, "gone")), seq(2, (0, "sitting"), end_s=5.0, cx=100.0)),
        merge(
            seq(1, (0, "lying_head_left"), end_s=1.0, cx=150.0), seq(-1, (0, "lying_head_right"), end_s=2.0, cx=500.0)
        ),
    ],
    ids=["alerted-then-gone", "vanished-unconfirmed", "short-lived"],
)
def test_state_returns_to_zero(script):
    h = make(redetector=lying_where_redetected(), fall_on_demand=lambda t: [])
    h.run(script, 8.0)
    for i in range(int(8 * FPS) + 1, int(20 * FPS) + 1):
        h.step(i / FPS, [])
    assert h.rule.state_size() == 0


def test_state_is_bounded_with_many_people():
    h = make()
    for i in range(200):
        t = i / FPS
        h.step(
            t, [P(1000 + i, "lying_head_left", cx=20.0 + (i % 30) * 20.0, bottom=100.0 + (i % 7) * 50.0, height=40.0)]
        )
    # spots are capped at 32; people are dropped when their track ends (history expiry 3 s = 15 frames)
    assert h.rule.state_size() <= 32 + 16
    for i in range(200, 300):
        h.step(i / FPS, [])
    assert h.rule.state_size() == 0


def test_reset_forgets_everything():
    h = make()
    h.run(seq(1, (0, "lying_head_left")), 1.0)
    assert h.rule.state_size() > 0
    h.rule.reset()
    assert h.rule.state_size() == 0


# -- a person model without keypoints -----------------------------------------------------------------
def test_a_person_model_without_keypoints_is_a_clear_error():
    h = make()
    assert h.step(0.0, []) == []  # nobody: nothing to check yet
    with pytest.raises(PoseModelMissing, match=r"person_down needs a pose model .*yolo11n-pose"):
        h.step(0.2, [P(1, "standing", keypoints=False)])


def test_through_the_pipeline_it_becomes_one_audit_row(tmp_path):
    config = site_config([rule_dict()])
    detector = ScriptedDetector(lambda i: [((0.4, 0.4, 0.5, 0.8), "person", 0.9)])  # boxes, no keypoints
    pool = _Pool({"person": detector})
    with Register(tmp_path / "vigie.db") as register:
        pipe = CameraPipeline(LoadedConfig(config, Path("site.yaml"), "0" * 64), config.cameras[0], pool, register)
        for i in range(10):
            pipe.process(
                Frame("cam-01", i, i / FPS, START + timedelta(seconds=i / FPS), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
            )
        rows = register.audit_rows(event="rule_error")
    assert len(rows) == 1 and "needs a pose model" in rows[0]["details"]


# -- config ---------------------------------------------------------------------------------------------
def test_defaults_need_only_kind_and_id():
    config = site_config([{"kind": "person_down", "id": "down"}])
    rule = config.cameras[0].rules[0]
    assert rule.required_labels() == frozenset({"person"})
    assert rule.optional_labels() == frozenset({"Fall"})
    assert (rule.down_s, rule.lying_angle_deg, rule.lying_min_aspect, rule.tilt_angle_deg) == (2.0, 60.0, 1.0, 35.0)
    assert rule.zone is None and rule.exclude_zones == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exclude_zones": ["beach"]}, "cameras[0].rules[0].exclude_zones[0]: unknown zone 'beach'"),
        ({"zone": "nowhere"}, "cameras[0].rules[0].zone: unknown zone 'nowhere'"),
        ({"upright_angle_deg": 50, "lying_angle_deg": 45}, "upright_angle_deg: must be below lying_angle_deg"),
        ({"tilt_angle_deg": 20}, "tilt_angle_deg: must lie between upright_angle_deg and lying_angle_deg"),
        ({"fall_labels": ["person"]}, "fall_labels: must not repeat the person labels"),
        ({"down_s": -1}, "down_s"),
        ({"sit_s": 3}, "sit_s"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        site_config([rule_dict(**overrides)])
    assert message in str(info.value)


# -- the on_demand model hook ---------------------------------------------------------------------------
class _Pool:
    def __init__(self, detectors):
        self.detectors = detectors

    def get(self, name):
        return self.detectors[name]

    def plan(self, labels, optional=frozenset()):
        plan = {"person": frozenset(labels & {"person"})}
        if "fall" in self.detectors and optional & {"Fall"}:
            plan["fall"] = frozenset({"Fall"})
        return plan


def test_an_on_demand_model_runs_only_when_a_rule_asks():
    data = config_dict([rule_dict()])
    data["models"]["fall"] = {"weights": "fall.pt", "classes": ["Normal", "Fall"], "on_demand": True}
    config = parse_config(yaml.safe_dump(data, sort_keys=False))
    person = ScriptedDetector(lambda i: [], name="person")
    fall = ScriptedDetector(
        lambda i: [((0.3, 0.6, 0.7, 0.9), "Fall", 0.8)], names={0: "Normal", 1: "Fall"}, name="fall"
    )
    pipe = CameraPipeline(
        LoadedConfig(config, Path("site.yaml"), "0" * 64),
        config.cameras[0],
        _Pool({"person": person, "fall": fall}),
        None,
    )
    assert [m.name for m in pipe.due_models(0.0)] == ["person"]
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for i in range(5):
        pipe.process(Frame("cam-01", i, i / FPS, START + timedelta(seconds=i / FPS), image))
    assert fall.calls == 0 and person.calls == 5
    found = pipe._redetect(image, "Fall", (0.0, 0.0, 1.0, 1.0), pad_frac=0.0)
    assert fall.calls == 1 and list(found.data["class_name"]) == ["Fall"]


def test_a_person_lost_while_lying_is_searched_for_without_a_fall_model(tmp_path):
    """The default `fall_labels` on a site with no fall model (the usual one): the search for a person who
    vanished lying down re-detects on crops, its fall-model cue finds nothing, and the rule never fails."""
    config = site_config([rule_dict()])
    assert config.cameras[0].rules[0].fall_labels == ["Fall"]

    class PoseOnFrames(ScriptedDetector):
        """A person standing for 1 s, falling, lying down for 1.2 s (less than `down_s`: no alert yet), then
        gone; nobody on the crops."""

        def __init__(self):
            super().__init__(lambda i: [])
            self.frames, self.crops = 0, 0

        def detect(self, images, labels=None):
            out = []
            for image in images:
                if image.shape[:2] != (HEIGHT, WIDTH):
                    self.crops += 1
                    out.append(detections([]))
                    continue
                self.frames += 1
                posture = "standing" if self.frames <= 5 else "lying_head_left"
                found = detections([P(1, posture)] if self.frames <= 11 else [])
                found.tracker_id = None
                found.data["model"] = np.array(["person"] * len(found), dtype=object)
                out.append(found)
            return out

    detector = PoseOnFrames()
    with Register(tmp_path / "vigie.db") as register:
        pipe = CameraPipeline(
            LoadedConfig(config, Path("site.yaml"), "0" * 64), config.cameras[0], _Pool({"person": detector}), register
        )
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        for i in range(int(8 * FPS)):
            pipe.process(Frame("cam-01", i, i / FPS, START + timedelta(seconds=i / FPS), image))
        errors = register.audit_rows(event="rule_error")
    assert errors == [] and pipe.rule_errors == {}
    assert detector.crops > 0  # the turned crops around the vanished person were searched


# -- a fall, not lying on purpose ------------------------------------------------------------------------
# One sit-up as the gym clip shows it: 1.6 s down through a reclining torso, 2.2 s flat on the back, 0.8 s up.
SIT_UP_CYCLE = (
    *((f"recline{deg}", 0.2) for deg in (11, 22, 34, 45, 56, 67, 79, 90)),
    ("lying_head_left", 2.2),
    *((f"recline{deg}", 0.2) for deg in (67, 45, 22, 0)),
    ("floor_sitting", 1.0),
)


def sit_ups(track_id: int = 1, start_s: float = 4.0) -> Script:
    """Standing, sitting down on the floor at 2 s, then sit-ups from `start_s`: the head goes down and up
    through a reclining torso, the hips stay on the ground."""
    cycle_s = sum(d for _, d in SIT_UP_CYCLE)

    def script(t: float) -> list[P]:
        if t < 2.0:
            return [P(track_id, "standing")]
        if t < start_s:
            return [P(track_id, "floor_sitting")]
        phase_t = (t - start_s) % cycle_s
        for posture, duration in SIT_UP_CYCLE:
            if phase_t < duration - 1e-6:
                return [P(track_id, posture)]
            phase_t -= duration
        return [P(track_id, "floor_sitting")]

    return script


# name, rule overrides, script, duration (s), expected alert times (s). Every case but the falls alerted before
# the fall and lying-still cues (a lying pose for down_s was enough).
ON_PURPOSE = [
    ("fast-fall", {}, seq(1, (0, "standing"), (3.0, "tilting"), (3.2, "lying_head_right")), 20.0, [5.2]),
    # Sat on the floor for 4 s, then lay back over 2 s: the hips never came down from upright, the head slowly.
    (
        "slow-lie-down",
        {},
        seq(
            1,
            (0, "standing"),
            (2.0, "floor_sitting"),
            *((6.0 + 0.4 * k, f"recline{deg}") for k, deg in enumerate((15, 30, 45, 60, 75))),
            (8.0, "lying_head_left"),
        ),
        20.0,
        [],
    ),
    ("repeated-sit-ups", {}, sit_ups(), 40.0, []),
    # Crunches right after dropping to the mat fast: the head keeps rising again, the fall is cancelled.
    (
        "crunches-after-a-fast-drop",
        {},
        lambda t: [P(1, "standing" if t < 3.0 else "reclining" if 4.0 <= t % 1.6 + 3.0 < 4.6 else "lying_head_left")],
        20.0,
        [],
    ),
    ("sits-on-the-floor", {}, seq(1, (0, "standing"), (2.0, "floor_sitting")), 30.0, []),
    ("sits-on-a-chair", {}, seq(1, (0, "standing"), (2.0, "sitting")), 30.0, []),
]


@pytest.mark.parametrize(
    ("name", "overrides", "script", "duration", "expected"), ON_PURPOSE, ids=[c[0] for c in ON_PURPOSE]
)
def test_a_fall_alerts_lying_down_on_purpose_does_not(name, overrides, script, duration, expected):
    h = make(**overrides)
    assert times(h.run(script, duration)) == expected


def test_the_alert_says_how_they_fell():
    [alert] = make().run(seq(1, (0, "standing"), (3.0, "tilting"), (3.2, "lying_head_right")), 10.0)
    fall = alert.details["fall"]
    assert fall["cue"] == "hips" and fall["drop"] == pytest.approx(76 / 200, abs=0.01)  # hips 300 -> 376 px
    assert fall["speed_hps"] > 0.5 and alert.details["max_rise"] < 0.2


def test_a_fall_seen_on_the_head_when_the_hips_stay_level():
    """Falling head first into a hole: the hips stay where they were, the head comes down fast (0.4 heights in
    0.2 s); the same drop slower than fall_head_speed is not a fall."""
    script = lambda t: [P(1, "standing")] if t < 3.0 else [P(1, "lying_head_left", bottom=324.0)]  # noqa: E731
    [alert] = make().run(script, 10.0)
    assert alert.details["fall"]["cue"] == "head" and alert.details["fall"]["speed_hps"] > 2.0
    assert make(fall_head_speed=3.0).run(script, 10.0) == []


def test_a_fall_seen_on_the_box_when_no_hip_or_head_keypoint_shows():
    """Between the upright and the lying sightings, a frame with no usable keypoints but a box gone wide: the
    box shape tells the fall (a bystander keeps the frame's keypoints valid)."""
    falling = lambda t: [P(1, "standing")] if t < 3.0 else [P(1, "lying_head_right", keypoints=t >= 3.2)]  # noqa: E731
    [alert] = make().run(merge(BYSTANDER, falling), 10.0)
    assert alert.details["fall"] == {"cue": "box"}


def test_the_fall_must_come_within_the_window():
    """Upright 2.8 s before lying (fall_window_s 3): a fall; with a 2 s window: not."""
    script = seq(1, (0, "standing"), (3.0, "gone"), (5.6, "lying_head_left"))
    assert times(make().run(script, 12.0)) == [7.6]
    assert make(fall_window_s=2.0).run(script, 12.0) == []


def test_lying_still_is_a_cue_of_its_own():
    """Anyone lying (require_fall: false), but exercising: each rise restarts the still clock (down_s)."""
    crunches = lambda t: [P(1, "reclining" if t % 1.6 < 0.6 else "lying_head_left")]  # noqa: E731
    assert make(require_fall=False).run(crunches, 20.0) == []
    assert times(make(require_fall=False, still_max_rise=2.0).run(crunches, 20.0)) != []


def test_someone_lying_who_was_never_seen_falling_costs_no_model_time():
    """Lying when first seen, then lost by the detector: nothing could alert there, so nothing is searched."""
    h = make(redetector=lying_where_redetected("lying_head_left"), fall_on_demand=lambda t: [FALL_AT_SPOT])
    assert h.run(seq(1, (0, "lying_head_left"), (2.0, "gone")), 10.0) == []
    assert h.calls == []
