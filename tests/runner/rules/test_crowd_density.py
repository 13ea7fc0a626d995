"""crowd_density on scripted crowds at 5 fps, with and without a ground-plane calibration.

The zone is `lawn` (x, y in 0.5..1 of the image). The level compared with the threshold is the median,
over `sustain_s`, of the per-frame head count in the zone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runner.alerts import AlertGate
from tests.helpers import Obj, box_at, harness, run_gated

FPS = 5.0


def crowd(count: int | Callable[[float], int], *, first_id: int = 1, area=(0.52, 0.55, 0.98, 0.98),
          label: str = "person", conf: float = 0.9, tracked: bool = True):
    """t -> `count(t)` people spread on a grid over `area` (x0, y0, x1, y1 of the anchors)."""

    def script(t: float) -> list[Obj]:
        n = count(t) if callable(count) else count
        cols = max(1, int(n**0.5 + 0.999))
        rows = max(1, -(-n // cols))
        x0, y0, x1, y1 = area
        objects = []
        for k in range(n):
            r, c = divmod(k, cols)
            x = x0 + (x1 - x0) * (c + 0.5) / cols
            y = y0 + (y1 - y0) * (r + 0.5) / rows
            objects.append(Obj(first_id + k if tracked else -1, box_at(x, y, height=0.05, width=0.02), label, conf))
        return objects

    return script


def frame(t: float) -> int:
    return round(t * FPS)


def steps(*segments: tuple[float, int]) -> Callable[[float], int]:
    """Piecewise-constant count: segments (from_s, count), each until the next one starts."""
    def count(t: float) -> int:
        value = 0
        for start, n in segments:
            if t >= start - 1e-6:
                value = n
        return value
    return count


def rule(**overrides) -> dict:
    return {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn", "max_count": 5, "sustain_s": 3.0,
            "rearm_ratio": 0.8, "cooldown_s": 0.0, **overrides}


# name, rule overrides, script, duration, expected alert times
CASES = [
    # The window is full (>= 0.9 x sustain_s) at t=2.8.
    ("sustained-above", {}, crowd(8), 10.0, [2.8]),
    ("at-the-threshold", {}, crowd(5), 10.0, []),
    ("just-above", {}, crowd(6), 10.0, [2.8]),
    ("below", {}, crowd(3), 10.0, []),
    # 1 s of 8 people over a background of 2: a short spike, well under sustain_s, is ignored.
    ("short-spike", {}, crowd(steps((0.0, 2), (2.0, 8), (3.0, 2))), 10.0, []),
    ("single-frame-spikes", {}, crowd(lambda t: 30 if frame(t) % 7 == 0 else 2), 10.0, []),
    # A crowd that forms at t=5: alert once the median of the last 3 s is above 5, i.e. once more than half
    # of the window's 16 frames (9 frames: 5.0 .. 6.6) see it.
    ("crowd-forms", {}, crowd(steps((0.0, 2), (5.0, 8))), 12.0, [6.6]),
    # Detector flicker: people missed on every other frame, or on two frames out of three.
    ("flicker-every-other-frame-all-missed", {}, crowd(lambda t: 8 if frame(t) % 2 == 0 else 0), 10.0, [2.8]),
    ("flicker-every-other-frame-some-missed", {}, crowd(lambda t: 8 if frame(t) % 2 else 3), 10.0, [2.8]),
    ("flicker-two-of-three-missed", {}, crowd(lambda t: 8 if frame(t) % 3 == 0 else 0), 10.0, [2.8]),
    ("outside-the-zone", {}, crowd(12, area=(0.05, 0.55, 0.45, 0.98)), 10.0, []),
    ("half-outside", {}, crowd(12, area=(0.1, 0.55, 0.9, 0.98)), 10.0, [2.8]),  # 6 of 12 anchors in the lawn
    ("label-filter", {}, crowd(8, label="car"), 10.0, []),
    ("other-labels", {"labels": ["person", "bicycle"]}, crowd(8, label="bicycle"), 10.0, [2.8]),
    ("low-confidence", {}, crowd(8, conf=0.2), 10.0, []),
    ("untracked-people-count", {}, crowd(8, tracked=False), 10.0, [2.8]),
    ("shorter-sustain", {"sustain_s": 1.0}, crowd(8), 10.0, [1.0]),
    # Re-arm: after the alert the median must fall below rearm_ratio x 5 = 4 before a new alert. The crowd
    # is back at t=12; at 13.4 the window holds 8 frames of 3 and 8 frames of 8: median 5.5 > 5.
    ("rearm-after-drop", {}, crowd(steps((0.0, 8), (6.0, 3), (12.0, 8))), 18.0, [2.8, 13.4]),
    ("no-rearm-without-drop", {}, crowd(steps((0.0, 8), (6.0, 4), (12.0, 8))), 18.0, [2.8]),
    ("rearm-ratio-1", {"rearm_ratio": 1.0}, crowd(steps((0.0, 8), (6.0, 4), (12.0, 8))), 18.0, [2.8, 13.4]),
    ("one-alert-per-episode", {}, crowd(8), 60.0, [2.8]),
]


@pytest.mark.parametrize(
    ("overrides", "script", "duration_s", "expected_s"), [pytest.param(*case[1:], id=case[0]) for case in CASES]
)
def test_crowd_density_head_count(overrides, script, duration_s, expected_s):
    h = harness(rule(**overrides))
    alerts = h.run(script, duration_s, fps=FPS)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    for alert in alerts:
        assert (alert.kind, alert.rule_id, alert.subject, alert.track_id) == ("crowd_density", "lawn-density", "zone:lawn", None)
        assert alert.details["method"] == "detections"
        assert alert.details["median_count"] > 5
        assert "density_per_m2" not in alert.details  # no calibration
        assert alert.score == pytest.approx(alert.details["median_count"] / 5)
        assert alert.bbox is not None and all(0.0 <= v <= 1.0 for v in alert.bbox)


# The lawn's four corners on the image are a 2 m x 2.5 m rectangle on the ground: 5 m².
LAWN_5M2 = {"image": [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]], "world_m": [[0, 0], [2, 0], [2, 2.5], [0, 2.5]]}
# The whole image is 10 m x 20 m on the ground: the lawn (a quarter of it) is 50 m².
IMAGE_200M2 = {"image": [[0, 0], [1, 0], [1, 1], [0, 1]], "world_m": [[0, 0], [10, 0], [10, 20], [0, 20]]}


@pytest.mark.parametrize(
    ("calibration", "overrides", "people", "expected_s", "area_m2", "density"),
    [
        pytest.param(LAWN_5M2, {}, 21, [2.8], 5.0, 4.2, id="4.2-per-m2-above-4"),
        pytest.param(LAWN_5M2, {}, 20, [], 5.0, None, id="4.0-per-m2-not-above-4"),
        pytest.param(LAWN_5M2, {"max_per_m2": 2.0}, 11, [2.8], 5.0, 2.2, id="2.2-per-m2-above-2"),
        pytest.param(IMAGE_200M2, {"max_per_m2": 0.2}, 11, [2.8], 50.0, 0.22, id="zone-inside-a-larger-calibration"),
        pytest.param(IMAGE_200M2, {"max_per_m2": 0.2}, 10, [], 50.0, None, id="0.2-per-m2-not-above-0.2"),
        # Both thresholds: the tighter one wins (10 people < 4 p/m2 x 5 m2 = 20).
        pytest.param(LAWN_5M2, {"max_count": 10}, 12, [2.8], 5.0, 2.4, id="head-count-tighter"),
        pytest.param(LAWN_5M2, {"max_count": 30}, 21, [2.8], 5.0, 4.2, id="density-tighter"),
    ],
)
def test_crowd_density_calibrated(calibration, overrides, people, expected_s, area_m2, density):
    config = rule(**{"max_per_m2": 4.0, **overrides})
    if "max_count" not in overrides:
        config.pop("max_count")
    h = harness(config, calibration=calibration)
    alerts = h.run(crowd(people), 10.0)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    for alert in alerts:
        assert alert.details["method"] == "detections"
        assert alert.details["area_m2"] == pytest.approx(area_m2, rel=1e-3)
        assert alert.details["density_per_m2"] == pytest.approx(density, rel=1e-3)
        assert alert.details["count"] == people and alert.details["median_count"] == people


def test_calibrated_rearm_uses_the_density_threshold():
    # Limit 4 p/m2 x 5 m2 = 20 people; re-arm below 0.8 x 20 = 16.
    config = rule(max_per_m2=4.0)
    config.pop("max_count")
    h = harness(config, calibration=LAWN_5M2)
    alerts = h.run(crowd(steps((0.0, 24), (6.0, 17), (12.0, 24), (18.0, 15), (24.0, 24))), 30.0)
    assert [a.t_s for a in alerts] == pytest.approx([2.8, 25.6])
    assert [a.details["density_per_m2"] for a in alerts] == pytest.approx([4.8, 4.8])


def test_cooldown_through_the_alert_gate():
    h = harness(rule(cooldown_s=30.0))
    gate = AlertGate({"lawn-density": 30.0})
    script = crowd(steps((0.0, 8), (6.0, 0), (12.0, 8), (18.0, 0), (40.0, 8)))
    candidates, admitted = run_gated(h, gate, script, 50.0)
    assert [c.t_s for c in candidates] == pytest.approx([2.8, 13.6, 41.6])
    assert [a.t_s for a in admitted] == pytest.approx([2.8, 41.6])


def test_state_returns_to_zero_after_tracks_end():
    h = harness(rule())
    h.run(crowd(steps((0.0, 8), (5.0, 12), (8.0, 0))), 8.0)
    assert len(h.history) > 0
    for i in range(1, 21):  # 4 s of empty frames > the history's expiry (3 s)
        h.step(8.0 + i / FPS, [])
    assert h.rule.state_size() == 0
    assert len(h.history) == 0


def test_zone_level_memory_is_bounded_by_the_window():
    h = harness(rule(sustain_s=2.0))
    h.run(crowd(8), 120.0)
    assert 0 < len(h.rule._counts) <= 2.0 * FPS + 1  # a window's worth of frames, not the whole stream
