"""crowd_movement on scripted crowds at 5 fps (tracks path) and on synthetic packed crowds (flow path).

Speeds are in body-heights per second: a scripted person is 0.2 of the image tall (96 px of 480), so
moving 0.1 of the width (64 px) per second is 0.67 body-heights/s. Walkers here go at 0.6 bh/s,
runners at 2.4 bh/s; the default "fast" threshold is 1.5 bh/s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from runner.pipeline.gate import AlertGate
from runner.rules.base import FrameContext
from tests.helpers import HEIGHT, WIDTH, Obj, box_at, detections_from, harness, run_gated

FPS = 5.0
BODY = 0.2  # person height, fraction of the image height
WALK_BH_S = 0.6
RUN_BH_S = 2.4


def mover(
    track_id: int,
    lane_y: float,
    speed_bh_s: float,
    phase: float = 0.0,
    start_s: float = 0.0,
    end_s: float = float("inf"),
    label: str = "person",
    x_range=(0.1, 0.9),
    height: float = BODY,
):
    """A person going back and forth along a horizontal lane at a constant speed (bh/s)."""
    speed_x = speed_bh_s * height * HEIGHT / WIDTH  # normalised x per second
    low, high = x_range
    span = high - low

    def script(t: float) -> list[Obj]:
        if t < start_s - 1e-6 or t > end_s + 1e-6:
            return []
        travelled = (phase * span + speed_x * t) % (2 * span)
        x = low + (travelled if travelled <= span else 2 * span - travelled)
        return [Obj(track_id, box_at(x, lane_y, height, 0.06), label)]

    return script


def crowd(
    n: int, speed, first_id: int = 1, *, ids=None, label: str = "person", lanes=(0.3, 0.95), height: float = BODY
):
    """`n` people on their own lanes; `speed(t, k)` gives person k's speed in bh/s at t (or a number).

    The distance walked is integrated frame by frame, so positions stay continuous when speeds change
    (the script must be called at increasing times, as the harness does).
    """
    walked = {"t": 0.0, "d": [0.0] * n}

    def script(t: float) -> list[Obj]:
        dt = t - walked["t"]
        for k in range(n):
            walked["d"][k] += (speed(walked["t"], k) if callable(speed) else speed) * max(0.0, dt)
        walked["t"] = t
        objects = []
        for k in range(n):
            lane = lanes[0] + (lanes[1] - lanes[0]) * k / max(1, n - 1)
            track_id = ids(t, k) if ids is not None else first_id + k
            objects += mover(track_id, lane, 1.0, phase=(k * 0.13) % 1.0, label=label, height=height)(walked["d"][k])
        return objects

    return script


def walking_then_running(switch_s: float, runners: int):
    return lambda t, k: RUN_BH_S if (t >= switch_s and k < runners) else WALK_BH_S


def rule(**overrides) -> dict:
    return {"kind": "crowd_movement", "id": "move", "cooldown_s": 0.0, **overrides}


# name, rule overrides, script, duration, expected alert times (None = any one alert in [lo, hi])
CASES = [
    ("calm-crowd-walking", {}, crowd(8, WALK_BH_S), 40.0, []),
    # 6 of 8 start running at 20 s: each runner's 1 s speed window must be mostly fast, then the
    # median over sustain_s (1 s) must exceed the baseline (0) by min_rise (0.3).
    ("sudden-run-after-calm", {}, crowd(8, walking_then_running(20.0, 6)), 30.0, [(20.4, 21.8)]),
    (
        "runners-outside-the-zone",
        {"zone": "lawn"},
        crowd(8, walking_then_running(20.0, 6), lanes=(0.25, 0.45)),
        30.0,
        [],
    ),
    (
        "runners-inside-the-zone",
        {"zone": "lawn"},
        crowd(8, walking_then_running(20.0, 6), lanes=(0.7, 0.95)),
        30.0,
        [(20.4, 21.8)],
    ),
    ("too-few-runners-for-min-rise", {}, crowd(8, walking_then_running(20.0, 2)), 30.0, []),
    ("lower-min-rise", {"min_rise": 0.2}, crowd(8, walking_then_running(20.0, 2)), 30.0, [(20.4, 21.8)]),
    ("too-few-people", {}, crowd(3, walking_then_running(20.0, 3)), 30.0, []),
    ("fewer-people-allowed", {"min_people": 3}, crowd(3, walking_then_running(20.0, 3)), 30.0, [(20.4, 21.8)]),
    # Running from the first frame: no baseline yet, the absolute share (0.6) decides.
    ("running-from-the-start", {}, crowd(8, RUN_BH_S), 15.0, [(1.0, 2.4)]),
    ("running-from-the-start-no-absolute", {"absolute_fast_share": None}, crowd(8, RUN_BH_S), 30.0, []),
    # A steady jogging crowd (half of it fast all along) is its own baseline and stays under 0.6.
    ("steady-half-fast-crowd", {}, crowd(8, lambda t, k: RUN_BH_S if k % 2 else WALK_BH_S), 40.0, []),
    ("one-alert-per-episode", {}, crowd(8, walking_then_running(20.0, 8)), 60.0, [(20.4, 21.8)]),
    ("cars-are-not-people", {}, crowd(8, walking_then_running(20.0, 8), label="car"), 30.0, []),
    (
        "cars-when-asked",
        {"labels": ["car"]},
        crowd(8, walking_then_running(20.0, 8), label="car"),
        30.0,
        [(20.4, 21.8)],
    ),
    ("higher-fast-threshold", {"fast_speed_bh_per_s": 3.0}, crowd(8, walking_then_running(20.0, 8)), 30.0, []),
    # The tracker gives everyone a new id every 3 s: a new track needs 0.6 s of history for a speed.
    (
        "id-switches-while-running",
        {},
        crowd(8, walking_then_running(20.0, 6), ids=lambda t, k: 100 * (1 + int(t // 3.0)) + k),
        30.0,
        [(20.4, 22.4)],
    ),
    ("id-switches-while-walking", {}, crowd(8, WALK_BH_S, ids=lambda t, k: 100 * (1 + int(t // 3.0)) + k), 40.0, []),
]


@pytest.mark.parametrize(
    ("overrides", "script", "duration_s", "expected"), [pytest.param(*case[1:], id=case[0]) for case in CASES]
)
def test_crowd_movement_tracks(overrides, script, duration_s, expected):
    h = harness(rule(**overrides))
    alerts = h.run(script, duration_s, fps=FPS)
    assert len(alerts) == len(expected), [(a.t_s, dict(a.details)) for a in alerts]
    for alert, (low, high) in zip(alerts, expected):
        assert low - 1e-6 <= alert.t_s <= high + 1e-6, (alert.t_s, dict(alert.details))
        assert (alert.kind, alert.rule_id, alert.track_id) == ("crowd_movement", "move", None)
        assert alert.subject == f"zone:{overrides.get('zone', 'image')}"
        assert alert.details["path"] == "tracks"
        assert alert.details["people"] >= overrides.get("min_people", 4)
        assert alert.bbox is not None and all(0.0 <= v <= 1.0 for v in alert.bbox)


def test_the_rise_is_measured_against_the_baseline():
    h = harness(rule())
    alerts = h.run(crowd(8, walking_then_running(20.0, 6)), 25.0, fps=FPS)
    (alert,) = alerts
    assert alert.details["reason"] == "rise"
    assert alert.details["baseline_share"] == 0.0
    assert alert.details["fast_share"] >= 0.3  # baseline 0 + min_rise


def test_absolute_share_alerts_without_a_baseline():
    h = harness(rule())
    (alert,) = h.run(crowd(8, RUN_BH_S), 10.0, fps=FPS)
    assert alert.details["reason"] == "absolute" and alert.details["baseline_share"] is None
    assert alert.details["median_speed_bh_per_s"] == pytest.approx(RUN_BH_S, rel=0.1)


def test_speeds_are_scale_free():
    """The same motion in body-heights per second by people half as tall: the same decision."""
    for height in (BODY, BODY / 2):
        h = harness(rule())
        alerts = h.run(crowd(8, walking_then_running(20.0, 6), height=height), 30.0, fps=FPS)
        assert len(alerts) == 1 and 20.0 <= alerts[0].t_s <= 22.0, (height, [a.t_s for a in alerts])
        assert alerts[0].details["reason"] == "rise" and alerts[0].details["fast_share"] >= 0.3


def test_rearms_after_the_crowd_calms_down():
    speed = lambda t, k: RUN_BH_S if (20.0 <= t < 26.0 or t >= 45.0) and k < 7 else WALK_BH_S  # noqa: E731
    h = harness(rule())
    alerts = h.run(crowd(8, speed), 50.0, fps=FPS)
    assert len(alerts) == 2
    assert 20.0 < alerts[0].t_s < 22.0 and 45.0 < alerts[1].t_s < 47.0


def test_cooldown_through_the_alert_gate():
    speed = lambda t, k: RUN_BH_S if (20.0 <= t < 26.0 or t >= 45.0) and k < 7 else WALK_BH_S  # noqa: E731
    h = harness(rule(cooldown_s=60.0))
    gate = AlertGate({"move": 60.0})
    candidates, admitted = run_gated(h, gate, crowd(8, speed), 50.0)
    assert len(candidates) == 2 and len(admitted) == 1


def test_state_is_bounded_and_drops_with_the_tracks():
    h = harness(rule(baseline_s=10.0, sustain_s=1.0))
    h.run(crowd(8, WALK_BH_S), 60.0, fps=FPS)
    assert len(h.rule._tracks.samples) <= (10.0 + 1.0) * FPS + 1
    assert h.rule.state_size() == 0
    for i in range(1, 21):  # 4 s without anyone: the history's expiry (3 s) ends every track
        h.step(60.0 + i / FPS, [])
    assert len(h.history) == 0 and h.rule.state_size() == 0


# -- optical flow on a synthetic packed crowd ------------------------------------------------------
RNG = np.random.default_rng(7)
TEXTURE = cv2.GaussianBlur(RNG.integers(0, 255, size=(HEIGHT * 2, WIDTH * 2), dtype=np.uint8), (5, 5), 0)
BACKGROUND = np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)
CROWD_BODY = 0.3  # person height in the packed crowd, fraction of the image


def packed_frame(offset_px: float, crowd_rows=(0.25, 1.0)) -> np.ndarray:
    """A flat background with a textured 'packed crowd' band shifted right by `offset_px`."""
    image = BACKGROUND.copy()
    y0, y1 = int(crowd_rows[0] * HEIGHT), int(crowd_rows[1] * HEIGHT)
    shift = int(round(offset_px)) % WIDTH
    image[y0:y1] = TEXTURE[y0:y1, shift : shift + WIDTH]
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def run_flow(rule_cfg: dict, speed_bh_s, duration_s: float, *, tracked: int = 2, fps: float = FPS):
    """Packed crowd whose speed (bh/s) is `speed_bh_s(t)`; `tracked` people are detected in it."""
    h = harness(rule_cfg)
    alerts, offset = [], 0.0
    start = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
    for i in range(int(round(duration_s * fps)) + 1):
        t = i / fps
        if i:
            offset += speed_bh_s(t) * CROWD_BODY * HEIGHT / fps
        objects = [
            Obj(k + 1, box_at(0.1 + 0.8 * (k % 8) / 8 + 0.02 * (k // 8), 0.6 + 0.35 * (k // 8) / 3, CROWD_BODY, 0.08))
            for k in range(tracked)
        ]
        detections = detections_from(objects)
        ended = h.history.update(detections, t, WIDTH, HEIGHT)
        ctx = FrameContext(
            camera_id="cam-01",
            t_s=t,
            frame_index=i,
            wall_time=start + timedelta(seconds=t),
            width=WIDTH,
            height=HEIGHT,
            detections=detections,
            tracks=h.history,
            ended_track_ids=ended,
            image=packed_frame(offset),
        )
        alerts += h.rule.update(ctx)
    return alerts, h


def surge_at(t0: float, calm: float = 0.0, surge: float = 0.8):
    return lambda t: surge if t >= t0 else calm


FLOW = {"baseline_s": 10.0, "min_baseline_s": 5.0}  # shorter than the defaults: shorter tests
FLOW_CASES = [
    # flow: on (a choke point): the packed crowd starts moving at 0.8 bh/s after 8 s still.
    ("on-surge-after-calm", {"flow": "on"}, surge_at(8.0), 12.0, 2, [(8.0, 9.6)], "rise"),
    ("on-moving-from-the-start", {"flow": "on"}, surge_at(0.0), 6.0, 2, [(0.2, 2.0)], "absolute"),
    ("on-slow-shuffle", {"flow": "on"}, surge_at(0.0, surge=0.1), 12.0, 2, [], None),
    ("on-still", {"flow": "on"}, surge_at(100.0), 12.0, 2, [], None),
    ("off-never-looks", {}, surge_at(8.0), 12.0, 2, [], None),
    # auto: 2 tracks for ~30 person-sized areas of foreground = packed; 24 tracks = not packed.
    ("auto-packed", {"flow": "auto"}, surge_at(8.0), 12.0, 2, [(8.0, 9.6)], "rise"),
    ("auto-enough-tracks", {"flow": "auto"}, surge_at(8.0), 12.0, 24, [], None),
    # The camera's fitted coefficient says its foreground holds few people: not packed, and too few.
    ("auto-calibrated-coefficient", {"flow": "auto", "foreground_coef": 0.05}, surge_at(8.0), 12.0, 2, [], None),
    ("on-too-few-people", {"flow": "on", "flow_min_people": 100.0}, surge_at(0.0), 6.0, 2, [], None),
    ("on-higher-speed-threshold", {"flow": "on", "flow_fast_speed_bh_per_s": 1.5}, surge_at(0.0), 6.0, 2, [], None),
]


@pytest.mark.parametrize(
    ("overrides", "speed", "duration_s", "tracked", "expected", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in FLOW_CASES],
)
def test_crowd_movement_flow(overrides, speed, duration_s, tracked, expected, reason):
    alerts, _ = run_flow(rule(person_height_frac=CROWD_BODY, **FLOW, **overrides), speed, duration_s, tracked=tracked)
    assert len(alerts) == len(expected), [(a.t_s, dict(a.details)) for a in alerts]
    for alert, (low, high) in zip(alerts, expected):
        assert low - 1e-6 <= alert.t_s <= high + 1e-6, (alert.t_s, dict(alert.details))
        assert alert.details["path"] == "flow" and alert.details["reason"] == reason
        assert alert.details["fast_share"] >= 0.3
        assert alert.details["people_equivalent"] >= 6.0


def test_flow_scale_is_learnt_from_the_detections():
    """Without person_height_frac, the few detected boxes (0.3 of the image tall) give the scale."""
    alerts, h = run_flow(rule(flow="on", **FLOW), surge_at(8.0), 12.0, tracked=6)
    assert len(alerts) == 1 and 8.0 <= alerts[0].t_s <= 9.6
    assert h.rule._scale.height_frac(np.array([0.5]))[0] == pytest.approx(CROWD_BODY, rel=0.05)


def test_flow_memory_is_bounded():
    alerts, h = run_flow(
        rule(flow="on", person_height_frac=CROWD_BODY, baseline_s=5.0, min_baseline_s=2.0), surge_at(100.0), 12.0
    )
    assert alerts == []
    assert len(h.rule._flow_series.samples) <= (5.0 + 1.0) * FPS + 1
    assert h.rule.state_size() == 0


def test_zone_defaults_work_with_kind_and_id_only():
    h = harness({"kind": "crowd_movement", "id": "m"})
    cfg = h.rule.config
    assert cfg.zone is None and cfg.flow == "off" and cfg.fast_speed_bh_per_s == 1.5 and cfg.min_people == 4
    assert cfg.foreground_coef == 1.0 and cfg.absolute_fast_share == 0.6
    assert h.run(crowd(8, WALK_BH_S), 20.0) == []


def test_a_camera_s_crowd_rules_share_one_downscale_per_width_and_frame(monkeypatch):
    """Density's foreground and movement's foreground (192 px) and flow (160 px) read the frame downscaled
    once per width, and decide exactly as each rule alone on its own frames."""
    import runner.rules.base as base

    density_cfg = {
        "kind": "crowd_density",
        "id": "d",
        "zone": "lawn",
        "max_count": 4,
        "foreground": True,
        "person_height_frac": CROWD_BODY,
        "sustain_s": 2.0,
    }
    movement_cfg = rule(flow="on", person_height_frac=CROWD_BODY, **FLOW)
    start = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
    speed = surge_at(8.0)

    def play(rules_cfg: list[dict]) -> tuple[list, int]:
        harnesses = [harness(cfg) for cfg in rules_cfg]
        calls = 0
        real = base.small_frame

        def counting(image, width_px):
            nonlocal calls
            calls += 1
            return real(image, width_px)

        monkeypatch.setattr(base, "small_frame", counting)
        alerts, offset = [], 0.0
        for i in range(int(12.0 * FPS) + 1):
            t = i / FPS
            if i:
                offset += speed(t) * CROWD_BODY * HEIGHT / FPS
            detections = detections_from([Obj(k + 1, box_at(0.1 + 0.2 * k, 0.7, CROWD_BODY, 0.08)) for k in range(2)])
            ctx = None
            for h in harnesses:
                ended = h.history.update(detections, t, WIDTH, HEIGHT)
                ctx = ctx or FrameContext(
                    camera_id="cam-01",
                    t_s=t,
                    frame_index=i,
                    wall_time=start + timedelta(seconds=t),
                    width=WIDTH,
                    height=HEIGHT,
                    detections=detections,
                    tracks=h.history,
                    ended_track_ids=ended,
                    image=packed_frame(offset),
                )
                alerts += [(h.rule.config.id, a.t_s) for a in h.rule.update(ctx)]
        monkeypatch.setattr(base, "small_frame", real)
        return alerts, calls

    frames = int(12.0 * FPS) + 1
    together, calls_together = play([density_cfg, movement_cfg])
    density_alone, _ = play([density_cfg])
    movement_alone, calls_movement = play([movement_cfg])
    assert calls_together == calls_movement == 2 * frames  # 192 and 160 px, each once per frame
    assert sorted(together) == sorted(density_alone + movement_alone)
    assert {rule_id for rule_id, _ in together} == {"d", "move"}  # both rules did raise
