"""weapon on scripted detections: k-of-n voting over the frames where a weapon model ran.

Frames come at 5 fps. Detections carry the name of the model that produced them (`data["model"]`)
and each frame says which models ran (`models_run`), as in the pipeline. The harness camera
(tests.helpers.BASE_CONFIG) has the zone `lawn` = the bottom-right quarter of the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml

from runner.config.loading import LoadedConfig, parse_config
from runner.config.rules import WeaponConfig
from runner.core.alerts import AlertCandidate
from runner.core.errors import ConfigError
from runner.inference.detector import ModelPool
from runner.pipeline.camera import CameraPipeline
from runner.pipeline.gate import AlertGate
from runner.rules.base import FrameContext
from runner.rules.registry import build_rule
from runner.rules.weapon import WeaponRule
from runner.sources.capture import Frame
from runner.tracking.tracker import TrackHistory
from tests.helpers import HEIGHT, WIDTH, ScriptedDetector, config_dict, site_config

FPS = 5.0
START = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
KNIFE = (0.40, 0.50, 0.44, 0.56)  # 0.24 % of the image: a knife in a hand
IN_LAWN = (0.70, 0.70, 0.74, 0.76)

# (box, label, confidence, model, track id)
Item = tuple[tuple[float, float, float, float], str, float, str, int]
Script = Callable[[int], list[Item]]


def seen(
    box=KNIFE,
    label: str = "knife",
    conf: float = 0.8,
    model: str = "coco",
    track_id: int = -1,
    frames: Callable[[int], bool] = lambda i: True,
) -> Script:
    return lambda i: [(box, label, conf, model, track_id)] if frames(i) else []


def on(*indices: int) -> Callable[[int], bool]:
    wanted = set(indices)
    return lambda i: i in wanted


def both(*scripts: Script) -> Script:
    return lambda i: [item for s in scripts for item in s(i)]


def detections(items: list[Item]) -> sv.Detections:
    if not items:
        empty = sv.Detections.empty()
        empty.tracker_id = np.array([], dtype=int)
        empty.data["class_name"] = np.array([], dtype=object)
        empty.data["model"] = np.array([], dtype=object)
        return empty
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=float)
    return sv.Detections(
        xyxy=np.array([it[0] for it in items], dtype=float) * scale,
        confidence=np.array([it[2] for it in items], dtype=float),
        class_id=np.zeros(len(items), dtype=int),
        tracker_id=np.array([it[4] for it in items], dtype=int),
        data={
            "class_name": np.array([it[1] for it in items], dtype=object),
            "model": np.array([it[3] for it in items], dtype=object),
        },
    )


def run(
    script: Script,
    n_frames: int = 30,
    models_run: Callable[[int], frozenset[str]] | None = None,
    gate: AlertGate | None = None,
    **overrides,
) -> tuple[list[AlertCandidate], WeaponRule, list[int]]:
    config = site_config([{"kind": "weapon", "id": "weapon", "cooldown_s": 0.0, **overrides}])
    camera = config.cameras[0]
    rule: WeaponRule = build_rule(camera.rules[0], camera)  # type: ignore[assignment]
    history = TrackHistory()
    alerts, sizes = [], []
    for i in range(n_frames):
        t = i / FPS
        ran = models_run(i) if models_run is not None else frozenset({"coco", "guns"})
        items = [it for it in script(i) if it[3] in ran]
        ctx = FrameContext(
            camera_id="cam-01",
            t_s=t,
            frame_index=i,
            wall_time=START + timedelta(seconds=t),
            width=WIDTH,
            height=HEIGHT,
            detections=detections(items),
            tracks=history,
            models_run=ran,
        )
        raised = rule.update(ctx)
        alerts += gate.admit(raised, t) if gate is not None else raised
        sizes.append(rule.state_size())
    return alerts, rule, sizes


def drifting(i: int) -> tuple[float, float, float, float]:
    """A knife carried across the image, 0.02 of the width per frame (0.1 per second)."""
    x = 0.2 + 0.02 * i
    return (x, 0.5, x + 0.04, 0.56)


def jumping(i: int) -> tuple[float, float, float, float]:
    """A false detection somewhere else on every frame."""
    x, y = (0.1 + 0.37 * i) % 0.85, (0.1 + 0.23 * i) % 0.8
    return (x, y, x + 0.04, y + 0.06)


# name, script, rule overrides, expected alert frame indices
CASES = [
    ("knife-3-frames-in-a-row", seen(frames=lambda i: i < 3), {}, [2]),
    ("knife-held-for-6-s", seen(), {}, [2]),
    ("knife-3-of-5", seen(frames=on(0, 2, 4)), {}, [4]),
    ("knife-2-of-5", seen(frames=on(0, 2, 5, 7, 10, 12)), {}, []),
    ("knife-once", seen(frames=on(4)), {}, []),
    ("knife-1-of-1-when-asked", seen(frames=on(4)), {"min_hit_frames": 1, "window_frames": 1}, [4]),
    ("low-confidence", seen(conf=0.45), {}, []),
    ("confidence-at-threshold", seen(conf=0.5), {}, [2]),
    ("stricter-threshold", seen(conf=0.6), {"min_confidence": 0.7}, []),
    ("too-small", seen(box=(0.40, 0.50, 0.405, 0.505)), {}, []),
    ("whole-person-box", seen(box=(0.3, 0.2, 0.6, 0.9), label="weapon", model="guns"), {}, []),
    ("whole-scene-box", seen(box=(0.0, 0.0, 1.0, 1.0), label="weapon", model="guns"), {}, []),
    (
        "big-boxes-allowed",
        seen(box=(0.3, 0.2, 0.6, 0.9), label="weapon", model="guns"),
        {"max_box_area_frac": 0.5},
        [2],
    ),
    ("not-a-weapon-label", seen(label="person"), {}, []),
    ("pistol-from-a-weapon-model", seen(label="pistol", model="guns"), {}, [2]),
    ("pistol-not-in-extra-labels", seen(label="pistol", model="guns"), {"extra_labels": ["rifle"]}, []),
    ("outside-the-zone", seen(), {"zone": "lawn"}, []),
    ("inside-the-zone", seen(box=IN_LAWN), {"zone": "lawn"}, [2]),
    ("carried-across-the-image", lambda i: [(drifting(i), "knife", 0.8, "coco", -1)], {}, [2]),
    ("false-boxes-jumping-around", lambda i: [(jumping(i), "knife", 0.9, "coco", -1)], {}, []),
    (
        "tracked-knife-jumps-far",
        lambda i: [((0.1, 0.5, 0.14, 0.56) if i % 2 else (0.8, 0.2, 0.84, 0.26), "knife", 0.8, "coco", 7)],
        {},
        [2],
    ),
    # One alert per episode: back after more than clear_s (10 s = 50 frames) without any weapon.
    ("weapon-back-after-clear-s", seen(frames=lambda i: i < 10 or i >= 62), {}, [2, 64]),
    ("weapon-back-too-soon", seen(frames=lambda i: i < 10 or i >= 55), {}, [2]),
    ("two-weapons-one-episode", both(seen(), seen(box=IN_LAWN, label="pistol", model="guns")), {}, [2]),
]


@pytest.mark.parametrize(("name", "script", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_weapon_cases(name, script, overrides, expected):
    alerts, _, _ = run(script, n_frames=80, **overrides)
    assert [round(a.t_s * FPS) for a in alerts] == expected
    assert all(a.kind == "weapon" and a.subject == f"zone:{overrides.get('zone', 'image')}" for a in alerts)


def test_frames_the_weapon_model_skipped_are_not_misses():
    """A weapon model at a third of the camera's rate: 3 of 3 means its own 3 frames in a row."""
    every_third = lambda i: frozenset({"coco", "guns"}) if i % 3 == 0 else frozenset({"coco"})  # noqa: E731
    alerts, _, _ = run(seen(label="pistol", model="guns"), 20, every_third, min_hit_frames=3, window_frames=3)
    assert [round(a.t_s * FPS) for a in alerts] == [6]
    # Counted over camera frames instead, the model's absences would have been misses: 3 of 3 never.


def test_two_weapon_models_at_different_rates_vote_on_their_own_frames():
    """COCO (every frame) once saw a knife elsewhere; the weapon model (every third frame) sees a
    pistol: COCO's frames are not misses for the pistol."""
    every_third = lambda i: frozenset({"coco", "guns"}) if i % 3 == 0 else frozenset({"coco"})  # noqa: E731
    script = both(seen(box=(0.1, 0.1, 0.14, 0.16), frames=on(1)), seen(label="pistol", model="guns"))
    alerts, _, _ = run(script, 20, every_third, min_hit_frames=3, window_frames=3)
    assert [(round(a.t_s * FPS), a.details["label"]) for a in alerts] == [(6, "pistol")]


def test_the_alert_keeps_the_crop():
    alerts, _, _ = run(seen(box=(0.40, 0.50, 0.44, 0.56), track_id=4), 5, crop_pad_frac=0.5)
    (alert,) = alerts
    assert alert.bbox == pytest.approx((0.40, 0.50, 0.44, 0.56))
    assert alert.details["crop_box"] == pytest.approx([0.38, 0.47, 0.46, 0.59])
    assert alert.details["label"] == "knife" and alert.details["model"] == "coco"
    assert alert.details["hit_frames"] == "3/3" and alert.track_id == 4
    assert alert.score == pytest.approx(0.8)
    corner, _, _ = run(seen(box=(0.0, 0.0, 0.05, 0.05)), 5)
    assert corner[0].details["crop_box"] == pytest.approx([0.0, 0.0, 0.075, 0.075])  # clipped to the image


def test_cooldown_through_the_gate():
    """clear_s 0: every return after a gap is a candidate; the gate keeps one per cooldown_s."""
    script = seen(frames=lambda i: i % 20 < 10)  # 2 s on, 2 s off
    candidates, _, _ = run(script, 100, clear_s=0.0)
    admitted, _, _ = run(script, 100, gate=AlertGate({"weapon": 10.0}), clear_s=0.0)
    assert [round(a.t_s, 1) for a in candidates] == [0.4, 4.4, 8.4, 12.4, 16.4]
    assert [round(a.t_s, 1) for a in admitted] == [0.4, 12.4]


def test_state_returns_to_zero_when_the_weapons_are_gone():
    script = both(seen(frames=lambda i: i < 15), lambda i: [(jumping(i), "knife", 0.9, "coco", -1)] if i < 15 else [])
    _, rule, sizes = run(script, 40)
    assert max(sizes) >= 2
    assert sizes[-1] == 0 and rule.state_size() == 0


def test_regions_are_bounded():
    def script(i):
        return [
            (
                (0.05 * (k % 19), 0.05 * (k // 19), 0.05 * (k % 19) + 0.02, 0.05 * (k // 19) + 0.03),
                "knife",
                0.9,
                "coco",
                -1,
            )
            for k in range(40)
        ]

    _, _, sizes = run(script, 10)
    assert max(sizes) <= 16


def test_reset_forgets_everything():
    _, rule, _ = run(seen(), 3)
    assert rule.state_size() == 1
    rule.reset()
    assert rule.state_size() == 0


# -- configuration and the plug-in path --------------------------------------------------------------
def test_defaults_suit_a_street_camera():
    config = WeaponConfig(kind="weapon", id="weapon")
    assert config.required_labels() == {"knife"}
    assert {"pistol", "rifle", "weapon", "gun"} <= config.optional_labels()
    assert "knife" not in config.optional_labels()
    assert (config.min_hit_frames, config.window_frames, config.min_confidence) == (3, 5, 0.5)
    assert config.zone is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"min_hit_frames": 6}, "cameras[0].rules[0].min_hit_frames: must be at most window_frames (5)"),
        ({"min_box_area_frac": 0.3, "max_box_area_frac": 0.2}, "cameras[0].rules[0].max_box_area_frac: must be larger"),
        ({"zone": "nope"}, "cameras[0].rules[0].zone: unknown zone 'nope'"),
        ({"labels": []}, "cameras[0].rules[0].labels"),
    ],
)
def test_config_problems_name_the_field(rule, message):
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(config_dict([{"kind": "weapon", "id": "weapon", **rule}])))
    assert message in str(info.value)


def test_every_field_has_a_description():
    for name, field in WeaponConfig.model_fields.items():
        assert name == "kind" or field.description, name


def _config(models: dict, rule: dict | None = None):
    data = config_dict([rule or {"kind": "weapon", "id": "weapon"}])
    data["models"] = models
    return parse_config(yaml.safe_dump(data, sort_keys=False))


def test_a_weapon_model_plugs_in_by_its_class_names():
    """Adding a weapon detector = a models: entry whose classes include a weapon label."""
    models = {
        "coco": {"weights": "coco.pt", "classes": ["person", "knife", "car"]},
        "guns": {"weights": "guns.pt", "classes": ["pistol", "rifle", "person"], "track": False, "max_fps": 3},
    }
    config = _config(models)
    camera = config.cameras[0]
    plan = ModelPool(config).plan(camera.required_labels(), camera.optional_labels())
    assert {k: set(v) for k, v in plan.items()} == {"coco": {"knife"}, "guns": {"pistol", "rifle"}}
    # Without a weapon model the rule still runs on COCO's knife ...
    alone = _config({"coco": models["coco"]})
    assert set(ModelPool(alone).plan(alone.cameras[0].required_labels(), alone.cameras[0].optional_labels())) == {
        "coco"
    }
    # ... and a one-class weapon model can be the only one, if the rule asks for its label.
    only = _config(
        {"basegun": {"weights": "b.pt", "classes": ["weapon"]}}, {"kind": "weapon", "id": "w", "labels": ["weapon"]}
    )
    assert set(ModelPool(only).plan(only.cameras[0].required_labels(), only.cameras[0].optional_labels())) == {
        "basegun"
    }


class _Pool(ModelPool):
    def __init__(self, config, detectors):
        super().__init__(config)
        self.detectors = detectors

    def get(self, name):
        return self.detectors[name]


def test_end_to_end_through_the_pipeline_with_an_untracked_weapon_model():
    models = {
        "coco": {"weights": "coco.pt", "classes": ["person", "knife"]},
        "guns": {"weights": "guns.pt", "classes": ["pistol"], "track": False, "max_fps": 2.5},
    }
    config = _config(models)
    pistol = (0.50, 0.40, 0.55, 0.47)
    detectors = {
        "coco": ScriptedDetector(
            lambda i: [((0.45, 0.30, 0.60, 0.95), "person", 0.9)], names={0: "person", 1: "knife"}, name="coco"
        ),
        "guns": ScriptedDetector(lambda i: [(pistol, "pistol", 0.7)], names={0: "pistol"}, name="guns"),
    }
    pipe = CameraPipeline(
        LoadedConfig(config, Path("site.yaml"), "0" * 64),
        config.cameras[0],
        _Pool(config, detectors),
        None,
        mode="replay",
    )
    raised = []
    for i in range(15):  # 3 s at 5 fps; the weapon model runs at 2.5 fps: frames 0, 2, 4, ...
        t = i / FPS
        raised += pipe.process(
            Frame("cam-01", i, t, START + timedelta(seconds=t), np.full((HEIGHT, WIDTH, 3), 90, np.uint8))
        )
    assert detectors["guns"].calls == 8
    (alert,) = raised
    record = alert.record
    assert (record.kind, record.rule_id, record.t_s) == ("weapon", "weapon", 0.8)  # its 3rd frame: 0, 0.4, 0.8
    assert record.bbox == pytest.approx(list(pistol), abs=1e-4)
    assert record.details["crop_box"] == pytest.approx([0.475, 0.365, 0.575, 0.505], abs=1e-4)
    assert record.details["model"] == "guns" and record.track_id is None
    assert alert.snapshot_jpeg and alert.snapshot_jpeg[:2] == b"\xff\xd8"
    assert math.isclose(record.score, 0.7)
