"""fire on synthetic scenes: scripted fire-model regions over generated frames.

The camera processes 6 frames per second and the fire model runs on every other one (3 fps, like
`max_fps: 3` on an untracked model). Each scene draws a light source in the box REGION; the
scripted fire model reports that box as "fire" on the frames it runs on, so everything the rule
decides comes from persistence and from the pixels: flames (irregular), a static neon sign, a
rotating beacon (periodic, saturated, constant area), chasing bulbs, a beacon driving in and
parking, a fire growing without much flicker, drifting smoke.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
import supervision as sv
import yaml

from runner.config.loading import parse_config
from runner.config.rules import FireConfig
from runner.core.alerts import AlertCandidate
from runner.core.errors import ConfigError
from runner.pipeline.gate import AlertGate
from runner.rules._fire_flicker import FrameRing
from runner.rules.base import FrameContext
from runner.rules.fire import FireRule
from runner.rules.registry import build_rule
from runner.tracking.tracker import TrackHistory
from tests.helpers import config_dict, site_config

W, H = 320, 240
FPS = 6.0
MODEL = "flames"
REGION = (0.40, 0.35, 0.60, 0.75)  # normalised xyxy of the light source / fire
START = datetime(2025, 5, 13, 21, 0, tzinfo=UTC)

Scene = Callable[[float], np.ndarray]
Regions = Callable[[float], list[tuple[tuple[float, float, float, float], str, float]]]


# -- scenes ------------------------------------------------------------------------------------------
def _background(t: float) -> np.ndarray:
    rng = np.random.default_rng(int(round(t * FPS)))  # sensor noise, different on every frame
    base = np.full((H, W, 3), 25, np.uint8)
    return cv2.add(base, rng.integers(0, 6, size=(H, W, 3), dtype=np.uint8))


def _px(box):
    return int(box[0] * W), int(box[1] * H), int(box[2] * W), int(box[3] * H)


def flames(t: float, box=REGION, seed: int = 0) -> np.ndarray:
    """Tongues of flame whose heights, widths and sway change irregularly on every frame."""
    image = _background(t)
    x1, y1, x2, y2 = _px(box)
    rng = np.random.default_rng(1000 * seed + int(round(t * FPS)))
    for k in range(7):
        cx = x1 + (k + 0.5) * (x2 - x1) / 7 + rng.normal(0, 4)
        height = (y2 - y1) * rng.uniform(0.3, 1.0)
        half_w = (x2 - x1) / 14 * rng.uniform(0.6, 1.6)
        tip = (int(cx + rng.normal(0, 6)), int(y2 - height))
        pts = np.array([(int(cx - half_w), y2), tip, (int(cx + half_w), y2)], np.int32)
        cv2.fillPoly(image, [pts], (0, int(rng.uniform(90, 200)), 255))
        cv2.circle(image, (int(cx), int(y2 - height / 4)), int(half_w / 2) + 1, (200, 250, 255), -1)  # hot core
    return image


def static_sign(t: float) -> np.ndarray:
    """A neon sign: orange frame and letters, constant but for sensor noise."""
    image = _background(t)
    x1, y1, x2, y2 = _px(REGION)
    cv2.rectangle(image, (x1, y1), (x2, y2), (0, 120, 255), 3)
    for k in range(4):
        cv2.putText(
            image, "BAR"[k % 3], (x1 + 6 + 14 * k, (y1 + y2) // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 160, 255), 2
        )
    return image


BEACON_HZ = 1.3


def beacon(t: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """A rotating beacon: a saturated orange dome of constant size whose reflector sweeps a bright
    beam around (1.3 turns per second) and flashes when it faces the camera."""
    image = _background(t)
    x1, y1, x2, y2 = _px(REGION)
    cx, cy = centre if centre is not None else ((x1 + x2) // 2, (y1 + y2) // 2)
    radius = (x2 - x1) // 3
    phase = 2 * math.pi * BEACON_HZ * t
    flash = max(0.0, math.cos(phase)) ** 4
    cv2.circle(image, (cx, cy), radius, (0, int(60 + 80 * flash), int(150 + 105 * flash)), -1)
    angle = math.degrees(phase)
    cv2.ellipse(image, (cx, cy), (radius, radius), angle, -40, 40, (60, 200, 255), -1)  # the beam's lit sector
    cv2.circle(image, (cx, cy), radius // 3, (200, 255, 255), -1)  # the lamp, saturated
    return image


def chasing_bulbs(t: float) -> np.ndarray:
    """A sign whose ring of bulbs lights one after the other (a 1 s cycle), with a blinking star."""
    image = static_sign(t)
    x1, y1, x2, y2 = _px(REGION)
    step = int(t * 8) % 8
    for k in range(8):
        lit = (k - step) % 8 < 3
        cv2.circle(image, (x1 + 4 + k * (x2 - x1 - 8) // 7, y1 - 6), 3, (80, 220, 255) if lit else (20, 60, 90), -1)
    if int(t * 2) % 2 == 0:
        cv2.drawMarker(image, ((x1 + x2) // 2, y1 + 12), (0, 140, 255), cv2.MARKER_STAR, 14, 2)
    return image


def _driving_centre(t: float) -> tuple[int, int]:
    x1, y1, x2, y2 = _px(REGION)
    progress = min(1.0, t / 1.5)
    return int(20 + ((x1 + x2) // 2 - 20) * progress), (y1 + y2) // 2


def beacon_driving_in(t: float) -> np.ndarray:
    """A vehicle's beacon arriving from the left for 1.5 s, then parked with its beacon turning."""
    return beacon(t, _driving_centre(t))


def beacon_boxes(t: float):
    """The fire model follows the beacon as it drives in."""
    cx, cy = _driving_centre(t)
    half_w, half_h = (REGION[2] - REGION[0]) / 2, (REGION[3] - REGION[1]) / 2
    return [((cx / W - half_w, cy / H - half_h, cx / W + half_w, cy / H + half_h), "fire", 0.8)]


def tips_then_whole(t: float):
    """The fire model boxes the flames' tips on one frame and the whole fire down to its base on the next: the
    region's bottom edge jumps by half its height, but the fire has not moved."""
    x1, y1, x2, y2 = REGION
    tips = (x1, y1, x2, (y1 + y2) / 2)
    return [(tips if round(t * 3) % 2 else REGION, "fire", 0.8)]


# Headlights of a car coming towards a camera mounted 4 m above them (focal length 120 px, horizon at 30 % of the
# height), from 30 m at 8 m/s, stopping 6 m away with its lights on.
FOCAL_PX, ABOVE_M, HORIZON_Y = 120.0, 4.0, 0.3 * H


def _headlights(t: float, stop_s: float) -> tuple[float, float, float, float]:
    """Where the headlights are: centre (px), half their spacing and their glare's radius (px)."""
    distance_m = 30.0 - 8.0 * min(t, stop_s)
    return W / 2, HORIZON_Y + FOCAL_PX * ABOVE_M / distance_m, FOCAL_PX * 0.7 / distance_m, FOCAL_PX * 0.35 / distance_m


def approaching_headlights(stop_s: float = 3.0) -> Scene:
    def scene(t: float) -> np.ndarray:
        image = _background(t)
        cx, cy, half_gap, glare = _headlights(t, stop_s)
        for side in (-1, 1):
            centre = (int(cx + side * half_gap), int(cy))
            cv2.circle(image, centre, max(2, int(glare)), (60, 170, 255), -1)  # warm halogen glare
            cv2.circle(image, centre, max(1, int(glare / 2)), (220, 245, 255), -1)  # the lamp, saturated
        return image

    return scene


def headlight_boxes(stop_s: float = 3.0, seen_from_s: float = 0.5) -> Regions:
    """The fire model takes the pair of headlights for flames once they are close enough."""

    def script(t: float):
        if t < seen_from_s:
            return []
        cx, cy, half_gap, glare = _headlights(t, stop_s)
        pad = glare + 2
        return [(((cx - half_gap - pad) / W, (cy - pad) / H, (cx + half_gap + pad) / W, (cy + pad) / H), "fire", 0.8)]

    return script


def growing_glow(t: float) -> np.ndarray:
    """A fire starting: a smooth orange glow whose size grows steadily, with little frame-to-frame change."""
    image = _background(t)
    x1, y1, x2, y2 = _px(REGION)
    radius = int(2 + 30 * min(1.0, t / 6.0))
    cv2.circle(image, ((x1 + x2) // 2, y2 - radius), radius, (0, 140, 255), -1)
    return image


def smoke(t: float) -> np.ndarray:
    """Grey puffs drifting up and changing shape."""
    image = _background(t)
    x1, y1, x2, y2 = _px(REGION)
    rng = np.random.default_rng(int(round(t * FPS)) + 7)
    for _ in range(6):
        cx = int(rng.uniform(x1, x2))
        cy = int(y2 - ((t * 20 + rng.uniform(0, y2 - y1)) % (y2 - y1)))
        cv2.circle(image, (cx, cy), int(rng.uniform(6, 16)), (150, 150, 150), -1)
    return image


def dark(t: float) -> np.ndarray:
    return _background(t)


# -- the scripted fire model ------------------------------------------------------------------------
def regions(
    label: str = "fire",
    conf: float = 0.8,
    box=REGION,
    start_s: float = 0.0,
    end_s: float = math.inf,
    missing: tuple[tuple[float, float], ...] = (),
) -> Regions:
    def script(t: float):
        if t < start_s - 1e-6 or t > end_s + 1e-6 or any(a - 1e-6 <= t <= b + 1e-6 for a, b in missing):
            return []
        return [(box, label, conf)]

    return script


def no_regions(t: float):
    return []


def detections(items, model: str = MODEL) -> sv.Detections:
    if not items:
        empty = sv.Detections.empty()
        empty.tracker_id = np.array([], dtype=int)
        empty.data["class_name"] = np.array([], dtype=object)
        empty.data["model"] = np.array([], dtype=object)
        return empty
    scale = np.array([W, H, W, H], dtype=float)
    return sv.Detections(
        xyxy=np.array([b for b, _, _ in items], dtype=float) * scale,
        confidence=np.array([c for _, _, c in items], dtype=float),
        class_id=np.zeros(len(items), dtype=int),
        tracker_id=np.full(len(items), -1, dtype=int),
        data={
            "class_name": np.array([lbl for _, lbl, _ in items], dtype=object),
            "model": np.array([model] * len(items), dtype=object),
        },
    )


class FireHarness:
    """Feeds a scene and the scripted model's regions to the rule, like the pipeline does: the model
    runs on every `model_every`-th frame (`models_run` says so), other models on every frame."""

    def __init__(self, rule: FireRule, model_every: int = 2, with_image: bool = True):
        self.rule = rule
        self.model_every = model_every
        self.with_image = with_image
        self.history = TrackHistory()
        self.sizes: list[int] = []

    def run(
        self, scene: Scene, script: Regions, duration_s: float, gate: AlertGate | None = None
    ) -> list[AlertCandidate]:
        alerts = []
        for i in range(int(round(duration_s * FPS)) + 1):
            t = i / FPS
            model_ran = i % self.model_every == 0
            ctx = FrameContext(
                camera_id="cam-01",
                t_s=t,
                frame_index=i,
                wall_time=START + timedelta(seconds=t),
                width=W,
                height=H,
                detections=detections(script(t) if model_ran else []),
                tracks=self.history,
                image=scene(t) if self.with_image else None,
                models_run=frozenset({MODEL, "coco"}) if model_ran else frozenset({"coco"}),
            )
            raised = self.rule.update(ctx)
            alerts += gate.admit(raised, t) if gate is not None else raised
            self.sizes.append(self.rule.state_size())
        return alerts


ZONES = [
    {"id": "lawn", "polygon": [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]},
    {"id": "path", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]], "direction": [1.0, 0.0]},
    {"id": "sign", "polygon": [[0.35, 0.3], [0.65, 0.3], [0.65, 0.8], [0.35, 0.8]]},
    {"id": "left", "polygon": [[0.0, 0.0], [0.3, 0.0], [0.3, 1.0], [0.0, 1.0]]},
]


def fire_rule(**overrides) -> FireRule:
    config = site_config([{"kind": "fire", "id": "fire", "cooldown_s": 0.0, **overrides}], zones=ZONES, process_fps=FPS)
    camera = config.cameras[0]
    return build_rule(camera.rules[0], camera)  # type: ignore[return-value]


def run(
    scene: Scene, script: Regions, duration_s: float = 12.0, model_every: int = 2, with_image: bool = True, **overrides
) -> tuple[list[AlertCandidate], FireHarness]:
    h = FireHarness(fire_rule(**overrides), model_every=model_every, with_image=with_image)
    return h.run(scene, script, duration_s), h


# -- what the pixels say ----------------------------------------------------------------------------
def measured(scene: Scene, duration_s: float = 8.0):
    ring = FrameRing(window_s=4.0, max_samples=25)
    for i in range(int(round(duration_s * FPS)) + 1):
        ring.add(scene(i / FPS), i / FPS)
    return ring.region_stats((0.38, 0.31, 0.62, 0.79))


@pytest.mark.parametrize(
    ("name", "scene", "low", "high"),
    [
        ("flames", flames, 0.1, 1.0),
        ("static-sign", static_sign, 0.0, 0.01),
        ("rotating-beacon", beacon, 0.0, 0.01),
        ("chasing-bulbs", chasing_bulbs, 0.0, 0.01),
    ],
)
def test_irregular_flicker_separates_flames_from_static_and_periodic_lights(name, scene, low, high):
    stats = measured(scene)
    assert stats is not None
    assert low <= stats.irregular_flicker <= high, f"{name}: {stats}"


def test_a_beacon_has_plenty_of_plain_brightness_variance():
    """Why plain temporal variance cannot decide: the beacon varies as much as flames do."""
    assert measured(beacon).brightness_std_frac > 0.5 * measured(flames).brightness_std_frac


def test_no_statistics_before_the_window_is_mostly_covered_or_without_flame_coloured_pixels():
    ring = FrameRing(window_s=4.0, max_samples=25)
    for i in range(12):  # 1.83 s of a 4 s window
        ring.add(flames(i / FPS), i / FPS)
    assert ring.region_stats(REGION) is None
    for i in range(12, 25):
        ring.add(dark(i / FPS), i / FPS)
    assert ring.region_stats((0.0, 0.0, 0.2, 0.2)) is None  # nothing flame-coloured there


def test_the_ring_restarts_when_time_goes_backwards_and_stays_bounded():
    ring = FrameRing(window_s=4.0, max_samples=25)
    for i in range(100):
        ring.add(dark(i / FPS), i / FPS)
    assert len(ring) == 25
    ring.add(dark(0.0), 0.0)
    assert len(ring) == 1


# -- the rule ----------------------------------------------------------------------------------------
# name, scene, scripted regions, rule overrides, expected alert times (s)
CASES = [
    # Flames from t=0: judged once the kept frames cover min_history_s (1.5 s; the flicker needed is doubled
    # there) and the region was hit on 2 of the last 5 model frames, the newest included (model at 3 fps).
    ("flames", flames, regions(), {}, [1.7]),
    # Flames appearing in a running camera: judged on the frames kept from before they appeared, at the
    # second hit.
    ("flames-appear-later", flames, regions(start_s=5.0), {}, [5.3]),
    ("static-neon-sign", static_sign, regions(), {}, []),
    ("rotating-beacon", beacon, regions(), {}, []),
    ("chasing-bulbs", chasing_bulbs, regions(), {}, []),
    ("beacon-drives-in-and-parks", beacon_driving_in, beacon_boxes, {}, []),
    # Without the flicker check, persistence alone takes the sign for a fire: the check is what saves it.
    ("static-sign-persistence-only", static_sign, regions(), {"confirm_by_flicker": False}, [0.3]),
    ("flames-low-confidence", flames, regions(conf=0.45), {}, []),
    ("flames-confidence-at-threshold", flames, regions(conf=0.5), {}, [1.7]),
    ("flames-higher-threshold", flames, regions(conf=0.55), {"min_confidence": 0.6}, []),
    # 2 of the last 5 model frames (model at 3 fps: missing 2 frames out of every 3 model frames): enough by
    # default, not when 3 are asked for.
    ("flames-seen-1-in-3", flames, lambda t: regions()(t) if round(t * 3) % 3 == 0 else [], {}, [2.0]),
    (
        "flames-seen-too-rarely-for-3-of-5",
        flames,
        lambda t: regions()(t) if round(t * 3) % 3 == 0 else [],
        {"min_hit_frames": 3},
        [],
    ),
    ("flames-seen-1-in-5", flames, lambda t: regions()(t) if round(t * 3) % 5 == 0 else [], {}, []),
    # Weak detections keep a region alive once a confident one is among them; alone they do not alert.
    ("flames-weak-with-one-confident", flames, lambda t: regions(conf=0.8 if t < 0.4 else 0.35)(t), {}, [1.7]),
    ("flames-weak-below-hit-confidence", flames, lambda t: regions(conf=0.8 if t < 0.4 else 0.25)(t), {}, []),
    ("flames-in-excluded-zone", flames, regions(), {"exclude_zones": ["sign"]}, []),
    ("flames-excluded-elsewhere", flames, regions(), {"exclude_zones": ["left"]}, [1.7]),
    ("flames-outside-zone", flames, regions(), {"zone": "left"}, []),
    ("flames-inside-zone", flames, regions(), {"zone": "sign"}, [1.7]),
    ("flames-too-small", flames, regions(), {"min_box_area_frac": 0.1}, []),
    ("not-a-fire-label", flames, regions(label="smoke"), {}, []),
    ("nothing-detected", flames, no_regions, {}, []),
    # A glow growing smoothly: its early growth is novel on every frame (flicker); judged only from 3 s on, it
    # grows too slowly for flicker and is confirmed by growth alone.
    # The model boxing now the flames' tips, now the whole fire: growth and shrinking in place, not a light driving
    # in, so the region is judged at once like steady flames (it used to wait min_duration_s from the last jump).
    ("flames-tips-then-whole", flames, tips_then_whole, {}, [1.7]),
    # Headlights coming towards the camera translate down the image as they grow: they must stop for min_duration_s
    # before they are judged, and parked they are a steady light. Without that wait their approach, new on every
    # frame, looks like flicker.
    ("headlights-approach-and-stop", approaching_headlights(), headlight_boxes(), {}, []),
    ("headlights-approach-no-wait", approaching_headlights(), headlight_boxes(), {"min_duration_s": 0.0}, [1.7]),
    ("growing-glow", growing_glow, regions(), {}, [1.7]),
    ("growing-glow-later", growing_glow, regions(), {"min_history_s": 3.0}, [3.0]),
    ("growing-glow-later-growth-off", growing_glow, regions(), {"min_history_s": 3.0, "min_growth_ratio": None}, []),
    ("smoke-off-by-default", smoke, regions(label="smoke"), {}, []),
    ("smoke-on", smoke, regions(label="smoke"), {"smoke": True}, [1.7]),
    # One alert per episode: back after more than clear_s without any detection.
    ("flames-come-back", flames, regions(missing=((6.0, 17.0),)), {"clear_s": 10.0}, [1.7, 17.7]),
    ("flames-come-back-too-soon", flames, regions(missing=((6.0, 12.0),)), {"clear_s": 10.0}, [1.7]),
]


@pytest.mark.parametrize(("name", "scene", "script", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fire_cases(name, scene, script, overrides, expected):
    alerts, h = run(scene, script, duration_s=24.0, **overrides)
    assert [round(a.t_s, 1) for a in alerts] == expected
    assert all(a.kind == "fire" and a.subject == f"zone:{overrides.get('zone', 'image')}" for a in alerts)


def test_the_alert_says_what_confirmed_it():
    alerts, _ = run(flames, regions(), 6.0)
    (alert,) = alerts
    assert alert.details["confirmed_by"] == "flicker" and alert.details["flicker"] >= 0.04
    assert alert.details["hit_frames"] == "5/5" and alert.details["model"] == MODEL
    assert alert.score == pytest.approx(0.8)
    x1, y1, x2, y2 = alert.bbox
    assert (x1, y1, x2, y2) == pytest.approx(REGION)
    growth, _ = run(growing_glow, regions(), 6.0, min_history_s=3.0)
    assert growth[0].details["confirmed_by"] == "growth" and growth[0].details["growth_ratio"] >= 3.0


def test_frames_the_model_skipped_are_not_misses():
    """At 3 fps on a 6 fps camera, 3 of 3 means 3 consecutive *model* frames, not camera frames."""
    alerts, _ = run(flames, regions(), 6.0, min_hit_frames=3, window_frames=3)
    assert [round(a.t_s, 2) for a in alerts] == [1.67]
    assert alerts[0].details["hit_frames"] == "3/3"


def test_model_running_on_every_frame():
    alerts, _ = run(flames, regions(), 6.0, model_every=1)
    assert [a.t_s for a in alerts] == [1.5]


def test_without_frames_the_flicker_check_cannot_confirm():
    alerts, _ = run(flames, regions(), 8.0, with_image=False)
    assert alerts == []
    alerts, _ = run(flames, regions(), 8.0, with_image=False, confirm_by_flicker=False)
    assert [round(a.t_s, 2) for a in alerts] == [0.33]


def test_cooldown_through_the_gate():
    """With clear_s 0 every return of the flames after a gap is a new candidate; the gate keeps
    at most one per cooldown_s for the subject "zone:image"."""
    gaps = tuple((float(a), a + 1.0) for a in range(4, 24, 4))
    candidates, _ = run(flames, regions(missing=gaps), 24.0, clear_s=0.0)
    h = FireHarness(fire_rule(clear_s=0.0, cooldown_s=10.0))
    admitted = h.run(flames, regions(missing=gaps), 24.0, gate=AlertGate({"fire": 10.0}))
    times = [round(a.t_s, 1) for a in candidates]
    assert len(times) >= 4 and times[0] == 1.7
    kept = [times[0]]
    for t in times[1:]:
        if t - kept[-1] >= 10.0:
            kept.append(t)
    assert [round(a.t_s, 1) for a in admitted] == kept and len(kept) < len(times)


def test_two_fires_one_episode_and_state_back_to_zero():
    left = (0.05, 0.4, 0.25, 0.8)

    def two_fires(t):
        image = flames(t)
        return cv2.max(image, flames(t, left, seed=1))

    script = lambda t: regions()(t) + regions(box=left)(t) if t <= 10.0 else []  # noqa: E731
    h = FireHarness(fire_rule())
    alerts = h.run(two_fires, script, 16.0)
    assert [round(a.t_s, 2) for a in alerts] == [1.67]
    assert max(h.sizes) == 2  # one region per fire
    assert h.sizes[-1] == 0  # both forgotten once the model stopped seeing them


def test_a_jittering_box_stays_one_region():
    rng = np.random.default_rng(3)

    def jitter(t):
        dx, dy = rng.normal(0, 0.02, 2)
        return [((REGION[0] + dx, REGION[1] + dy, REGION[2] + dx, REGION[3] + dy), "fire", 0.8)]

    h = FireHarness(fire_rule())
    alerts = h.run(flames, jitter, 8.0)
    assert [round(a.t_s, 2) for a in alerts] == [1.67]
    assert max(h.sizes) == 1


def test_overlapping_boxes_whose_confidences_swap_are_one_steady_region():
    """The model often gives a fire as a tall and a wide box whose confidences swap from frame to frame:
    merged into their union, the region's base stays put instead of jumping like a light driving in."""
    tall, wide = (0.45, 0.35, 0.55, 0.75), (0.40, 0.35, 0.60, 0.50)

    def swapping(t):
        first = round(t * 3) % 2 == 0
        return [(tall, "fire", 0.7 if first else 0.4), (wide, "fire", 0.4 if first else 0.7)]

    h = FireHarness(fire_rule())
    alerts = h.run(flames, swapping, 8.0)
    assert [round(a.t_s, 2) for a in alerts] == [1.67]
    assert max(h.sizes) == 1
    assert alerts[0].bbox == pytest.approx(REGION)


def test_reset_forgets_everything():
    rule = fire_rule()
    FireHarness(rule).run(flames, regions(), 4.0)
    assert rule.state_size() == 1
    rule.reset()
    assert rule.state_size() == 0


# -- low frame rates (time-lapse, snapshot feeds) --------------------------------------------------------
def blob(t: float, radius: int) -> np.ndarray:
    """An orange blob of `radius` px standing on the bottom of REGION, with a ragged, changing edge."""
    image = _background(t)
    x1, y1, x2, y2 = _px(REGION)
    centre = ((x1 + x2) // 2, y2 - radius)
    cv2.circle(image, centre, radius, (0, 140, 255), -1)
    rng = np.random.default_rng(int(t * 10))
    for _ in range(6):  # tongues that differ on every frame
        dx, dy = rng.integers(-radius, radius + 1, 2)
        cv2.circle(image, (centre[0] + int(dx), centre[1] + int(dy)), max(2, radius // 3), (60, 220, 255), -1)
    return image


def lamp(t: float) -> np.ndarray:
    """A steady orange lamp: the same disc on every frame, but for sensor noise."""
    image = _background(t)
    x1, y1, x2, y2 = _px(REGION)
    cv2.circle(image, ((x1 + x2) // 2, (y1 + y2) // 2), (x2 - x1) // 3, (0, 140, 255), -1)
    cv2.circle(image, ((x1 + x2) // 2, (y1 + y2) // 2), (x2 - x1) // 8, (200, 250, 255), -1)
    return image


def run_slow(scene: Scene, interval_s: float, n_frames: int, **overrides) -> list[AlertCandidate]:
    """Frames `interval_s` apart on a camera configured at 6 fps (the source is slower: a time-lapse or a
    snapshot feed); the fire model runs on every frame and reports REGION."""
    rule = fire_rule(**overrides)
    history = TrackHistory()
    alerts = []
    for i in range(n_frames):
        t = i * interval_s
        ctx = FrameContext(
            camera_id="cam-01",
            t_s=t,
            frame_index=i,
            wall_time=START + timedelta(seconds=t),
            width=W,
            height=H,
            detections=detections(regions()(t)),
            tracks=history,
            image=scene(t),
            models_run=frozenset({MODEL}),
        )
        alerts += rule.update(ctx)
    return alerts


def growing_blob_every(interval_s: float) -> Scene:
    return lambda t: blob(t, radius=int(3 + 2.5 * round(t / interval_s)))


@pytest.mark.parametrize("interval_s", [1.0, 30.0])
def test_a_fire_growing_on_a_slow_camera_alerts_through_growth(interval_s):
    """One frame per second, or a time-lapse at one frame per 30 s: flicker cannot be measured, growth can.
    The ring keeps its last 6 frames however old, and the region must have been in place over all of them."""
    alerts = run_slow(growing_blob_every(interval_s), interval_s, 12)
    assert [round(a.t_s / interval_s) for a in alerts] == [5]  # the 6th frame
    assert alerts[0].details["confirmed_by"] == "growth"
    assert alerts[0].details["flicker_samples"] == 6


@pytest.mark.parametrize("interval_s", [1.0, 30.0])
def test_a_steady_lamp_on_a_slow_camera_does_not_alert(interval_s):
    """Detected as fire on every frame, but it neither grows nor changes."""
    assert run_slow(lamp, interval_s, 40) == []


def test_a_fire_changing_without_growing_on_a_slow_camera_alerts_through_persistence():
    """Flames that do not grow, at one frame per 10 s: their pixels change between frames, a lamp's do not."""
    alerts = run_slow(flames, 10.0, 12)
    assert [a.t_s for a in alerts] == [50.0]
    assert alerts[0].details["confirmed_by"] == "persistence"


def test_at_6_fps_changing_pixels_need_the_flicker_statistics():
    """Above 1 frame per `low_fps_interval_s` the persistence path does not exist: the same changing blob
    at 2 frames per second, with the interval threshold moved below it, still alerts, but as flicker."""
    alerts = run_slow(flames, 0.5, 12)
    assert [a.details["confirmed_by"] for a in alerts] == ["flicker"]
    slow = run_slow(flames, 0.5, 12, low_fps_interval_s=0.5)
    assert [a.details["confirmed_by"] for a in slow] == ["persistence"]


def test_the_ring_keeps_its_last_frames_however_old_and_measures_their_interval():
    ring = FrameRing(window_s=4.0, max_samples=25)
    for i in range(20):
        ring.add(dark(i * 60.0), i * 60.0)
    assert len(ring) == 6 and ring.frame_interval_s() == 60.0
    assert ring.region_stats(REGION) is None  # needs 3 s of history by default ...
    stats = ring.region_stats((0.0, 0.0, 1.0, 1.0), hot_only=False, min_span_s=0.0)  # ... or none at low rates
    assert stats is not None and stats.samples == 6 and stats.span_s == 300.0


# -- configuration ------------------------------------------------------------------------------------
def test_defaults_suit_a_street_camera():
    config = FireConfig(kind="fire", id="fire")
    assert (config.labels, config.smoke, config.min_hit_frames, config.window_frames) == (["fire"], False, 2, 5)
    assert config.required_labels() == {"fire"}
    assert FireConfig(kind="fire", id="f", smoke=True).required_labels() == {"fire", "smoke"}
    assert config.zone is None and config.exclude_zones == []


def _parse(rule: dict):
    data = config_dict([rule], zones=ZONES)
    return parse_config(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"min_hit_frames": 6}, "cameras[0].rules[0].min_hit_frames: must be at most window_frames (5)"),
        ({"exclude_zones": ["sign", "nope"]}, "cameras[0].rules[0].exclude_zones[1]: unknown zone 'nope'"),
        ({"zone": "nope"}, "cameras[0].rules[0].zone: unknown zone 'nope'"),
        ({"min_flicker_frac": 1.5}, "cameras[0].rules[0].min_flicker_frac"),
        ({"flicker_window_s": 0.5}, "cameras[0].rules[0].flicker_window_s"),
        ({"hit_confidence": 0.6}, "cameras[0].rules[0].hit_confidence: must be at most min_confidence (0.5)"),
    ],
)
def test_config_problems_name_the_field(rule, message):
    with pytest.raises(ConfigError) as info:
        _parse({"kind": "fire", "id": "fire", **rule})
    assert message in str(info.value)


def test_every_field_has_a_description():
    for name, field in FireConfig.model_fields.items():
        assert name == "kind" or field.description, name
