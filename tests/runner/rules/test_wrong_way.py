"""wrong_way on scripted tracks at 5 fps.

Zones: `path` = the top half of the image with allowed direction +x (to the right); `road` = the
whole image, allowed +x; `ramp` = the whole image, allowed (1, -1) in normalised coordinates, which
is (640, -480) px on the 640x480 harness image (36.87 degrees above the horizontal, not 45).
"""

from __future__ import annotations

import math

import pytest

from runner.core.geometry import angle_between_deg
from runner.pipeline.gate import AlertGate
from tests.helpers import HEIGHT, WIDTH, harness, merge, path, run_gated, track

FPS = 5.0
ZONES = [
    {"id": "lawn", "polygon": [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]},
    {"id": "path", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]], "direction": [1.0, 0.0]},
    {"id": "road", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], "direction": [1.0, 0.0]},
    {"id": "ramp", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], "direction": [1.0, -1.0]},
]


def rule(**overrides) -> dict:
    return {
        "kind": "wrong_way",
        "id": "path-wrong-way",
        "zone": "path",
        "min_travel_frac": 0.05,
        "max_angle_deg": 120.0,
        "hysteresis_deg": 15.0,
        "window_s": 2.0,
        "sustain_s": 1.0,
        "cooldown_s": 0.0,
        **overrides,
    }


def heading(angle_deg: float, speed_px_s: float, start: tuple[float, float], wobble_px: float = 0.0):
    """t -> anchor moving at `angle_deg` (pixels, from +x, y down) and `speed_px_s`; with `wobble_px`, the
    anchor also steps +wobble / -wobble sideways on even / odd frames (box jitter)."""
    a = math.radians(angle_deg)
    ux, uy = math.cos(a), math.sin(a)
    nx, ny = -uy, ux  # +90 degrees: adding it increases the angle

    def where(t: float) -> tuple[float, float]:
        side = wobble_px if round(t * FPS) % 2 == 0 else -wobble_px
        x_px = start[0] * WIDTH + speed_px_s * t * ux + side * nx
        y_px = start[1] * HEIGHT + speed_px_s * t * uy + side * ny
        return (x_px / WIDTH, y_px / HEIGHT)

    return where


def jitter(mean_deg: float, swing_deg: float, window_s: float = 1.8, speed_px_s: float = 50.0):
    """A track whose displacement over `window_s` (an odd number of frames) alternates between
    mean + swing and mean - swing degrees from +x, frame after frame."""
    wobble = speed_px_s * window_s / 2 * math.tan(math.radians(swing_deg))
    return heading(mean_deg, speed_px_s, (0.8, 0.2), wobble)


AGAINST = path((0.0, 0.9, 0.3), (8.0, 0.1, 0.3))  # 64 px/s to the left inside `path`
ALONG = path((0.0, 0.1, 0.3), (8.0, 0.9, 0.3))

# name, rule overrides, script, duration, expected alert times, expected track ids
CASES = [
    ("along", {}, track(1, ALONG), 10.0, [], []),
    # Motion is judged from t=1.0 (half a window of history); wrong-way for sustain_s => alert at 2.0.
    ("against", {}, track(1, AGAINST), 10.0, [2.0], [1]),
    # Starts at 0.8: judged from 1.8, alert at 2.8 (2.8 - 1.8 is 0.9999999999999998 in floating point).
    ("against-late-start", {}, track(1, path((0.8, 0.9, 0.3), (8.8, 0.1, 0.3)), 0.8), 10.0, [2.8], [1]),
    ("against-longer-sustain", {"sustain_s": 3.0}, track(1, AGAINST), 10.0, [4.0], [1]),
    ("against-keeps-going-one-alert", {}, track(1, path((0.0, 0.95, 0.3), (20.0, 0.05, 0.3))), 20.0, [2.0], [1]),
    (
        "against-too-briefly",
        {"sustain_s": 3.0},
        track(1, path((0.0, 0.9, 0.3), (1.0, 0.8, 0.3), (1.6, 0.8, 0.3))),
        10.0,
        [],
        [],
    ),
    ("stationary", {}, track(1, (0.5, 0.3)), 10.0, [], []),
    ("perpendicular-down", {}, track(1, path((0.0, 0.5, 0.05), (4.0, 0.5, 0.45))), 5.0, [], []),
    ("perpendicular-up", {}, track(1, path((0.0, 0.5, 0.45), (4.0, 0.5, 0.05))), 5.0, [], []),
    ("135-degrees", {}, track(1, heading(135.0, 60.0, (0.8, 0.05))), 3.0, [2.0], [1]),
    ("-135-degrees", {}, track(1, heading(-135.0, 60.0, (0.8, 0.45))), 3.0, [2.0], [1]),
    ("115-degrees", {}, track(1, heading(115.0, 60.0, (0.8, 0.05))), 3.0, [], []),
    (
        "115-degrees-lower-threshold",
        {"max_angle_deg": 100.0},
        track(1, heading(115.0, 60.0, (0.8, 0.05))),
        3.0,
        [2.0],
        [1],
    ),
    # min_travel_frac 0.05 of the 800 px diagonal = 40 px over the 2 s window = 20 px/s.
    ("too-slow", {}, track(1, heading(180.0, 15.0, (0.9, 0.3))), 10.0, [], []),
    ("slow-but-enough", {}, track(1, heading(180.0, 25.0, (0.9, 0.3))), 10.0, [2.0], [1]),
    ("outside-the-zone", {}, track(1, path((0.0, 0.9, 0.8), (8.0, 0.1, 0.8))), 10.0, [], []),
    ("leaves-the-zone-before-sustain", {}, track(1, path((0.0, 0.5, 0.45), (4.0, 0.1, 0.85))), 10.0, [], []),
    # Wrong way inside for 0.6 s, then out of the lane moving the allowed way, then back in at 112 degrees
    # (inside the hysteresis band, below the threshold): the old wrong-way run must not be resumed.
    (
        "no-stale-run-after-leaving",
        {},
        track(
            1,
            path(
                (0.0, 0.9, 0.45),
                (1.6, 0.74, 0.45),
                (2.2, 0.74, 0.65),
                (6.0, 0.9, 0.65),
                (7.0, 0.9, 0.95),
                (12.0, 0.9 - 0.0351 * 5, 0.95 - 0.1159 * 5),
            ),
        ),
        12.0,
        [],
        [],
    ),
    ("car-not-in-labels", {}, track(1, AGAINST, label="car"), 10.0, [], []),
    ("car-in-labels", {"labels": ["car"]}, track(1, AGAINST, label="car"), 10.0, [2.0], [1]),
    ("low-confidence", {}, track(1, AGAINST, conf=0.1), 10.0, [], []),
    ("untracked", {}, track(-1, AGAINST), 10.0, [], []),
    (
        "one-alert-per-track",
        {},
        merge(track(1, AGAINST), track(2, path((1.0, 0.9, 0.2), (9.0, 0.1, 0.2)), 1.0)),
        10.0,
        [2.0, 3.0],
        [1, 2],
    ),
    (
        "only-the-wrong-one",
        {},
        merge(track(1, ALONG), track(2, path((0.0, 0.9, 0.2), (8.0, 0.1, 0.2)))),
        10.0,
        [2.0],
        [2],
    ),
    # Turns around at t=4: the 2 s displacement points left and is long enough from t=5.4.
    ("u-turn", {}, track(1, path((0.0, 0.1, 0.3), (4.0, 0.5, 0.3), (8.0, 0.1, 0.3))), 10.0, [6.4], [1]),
    # Hysteresis: the measured angle alternates frame after frame (window 1.8 s = 9 frames).
    # 125 / 110 with the band 105..120: wrong-way from 2.0 (the first 125), 110 does not clear it; the alert
    # comes on the first frame past the threshold once sustain_s has passed (3.0 is a 110 frame: 3.2).
    ("jitter-inside-the-band", {"zone": "road", "window_s": 1.8}, track(1, jitter(117.5, 7.5)), 5.0, [3.2], [1]),
    # 125 / 95: the dips leave the band and clear it every other frame => never sustained.
    ("jitter-across-the-band", {"zone": "road", "window_s": 1.8}, track(1, jitter(110.0, 15.0)), 5.0, [], []),
    (
        "jitter-across-wider-band",
        {"zone": "road", "window_s": 1.8, "hysteresis_deg": 40.0},
        track(1, jitter(110.0, 15.0)),
        5.0,
        [3.2],
        [1],
    ),
    # 115.5 / 109.5: never above the threshold => never starts.
    ("jitter-below-threshold", {"zone": "road", "window_s": 1.8}, track(1, jitter(112.5, 3.0)), 5.0, [], []),
    # Aspect ratio: angles are measured in pixels. On `ramp`, moving (-1, -1) in normalised coordinates is
    # 90 degrees from the arrow in normalised units but 106.3 degrees in pixels; (1, 1) is 73.7 in pixels.
    (
        "pixels-not-normalised-alert",
        {"zone": "ramp", "max_angle_deg": 100.0},
        track(1, path((0.0, 0.8, 0.8), (6.0, 0.2, 0.2))),
        6.0,
        [2.0],
        [1],
    ),
    (
        "pixels-not-normalised-none",
        {"zone": "ramp", "max_angle_deg": 80.0},
        track(1, path((0.0, 0.2, 0.2), (6.0, 0.8, 0.8))),
        6.0,
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    ("overrides", "script", "duration_s", "expected_s", "expected_ids"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_wrong_way(overrides, script, duration_s, expected_s, expected_ids):
    config = rule(**overrides)
    h = harness(config, zones=ZONES)
    alerts = h.run(script, duration_s, fps=FPS)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    assert [a.track_id for a in alerts] == expected_ids
    for alert in alerts:
        assert (alert.kind, alert.rule_id, alert.subject) == ("wrong_way", "path-wrong-way", f"track:{alert.track_id}")
        assert alert.details["zone"] == config["zone"]
        assert alert.details["angle_deg"] > config["max_angle_deg"]
        assert alert.details["travel_frac"] >= config["min_travel_frac"] * 0.5
        assert alert.details["wrong_way_for_s"] >= config["sustain_s"] - 1e-6


@pytest.mark.parametrize(("mean_deg", "swing_deg"), [(117.5, 7.5), (110.0, 15.0), (112.5, 3.0)])
def test_jitter_script_alternates_as_described(mean_deg, swing_deg):
    """The hysteresis cases above rely on this: after the first window, the angle measured over 1.8 s
    alternates between mean + swing and mean - swing."""
    where = jitter(mean_deg, swing_deg)
    angles = []
    for i in range(9, 25):
        t = i / FPS
        (x1, y1), (x0, y0) = where(t), where(t - 1.8)
        angles.append(angle_between_deg(((x1 - x0) * WIDTH, (y1 - y0) * HEIGHT), (1.0, 0.0)))
    assert angles[0::2] == pytest.approx([mean_deg - swing_deg] * 8)
    assert angles[1::2] == pytest.approx([mean_deg + swing_deg] * 8)


def test_alert_details():
    h = harness(rule(), zones=ZONES)
    [alert] = h.run(track(1, AGAINST, conf=0.7), 5.0)
    assert alert.score == pytest.approx(0.7)
    assert alert.details == {
        "zone": "path",
        "label": "person",
        "angle_deg": 180.0,
        "travel_frac": pytest.approx(0.16),
        "wrong_way_for_s": 1.0,
    }
    x = 0.9 - 0.1 * 2.0
    assert alert.bbox == pytest.approx((x - 0.03, 0.1, x + 0.03, 0.3))


def test_cooldown_through_the_alert_gate():
    h = harness(rule(cooldown_s=30.0), zones=ZONES)
    gate = AlertGate({"path-wrong-way": 30.0})
    script = merge(
        track(1, AGAINST, 0.0, 4.0),
        # The same id again after the track ended (3 s of history expiry): within the cooldown...
        track(1, path((10.0, 0.9, 0.3), (18.0, 0.1, 0.3)), 10.0, 14.0),
        # ... another subject meanwhile ...
        track(2, path((10.0, 0.9, 0.2), (18.0, 0.1, 0.2)), 10.0, 14.0),
        # ... and past the cooldown.
        track(1, path((40.0, 0.9, 0.3), (48.0, 0.1, 0.3)), 40.0, 44.0),
    )
    candidates, admitted = run_gated(h, gate, script, 45.0)
    assert [(c.t_s, c.track_id) for c in candidates] == [
        (pytest.approx(2.0), 1),
        (pytest.approx(12.0), 1),
        (pytest.approx(12.0), 2),
        (pytest.approx(42.0), 1),
    ]
    assert [(a.t_s, a.track_id) for a in admitted] == [
        (pytest.approx(2.0), 1),
        (pytest.approx(12.0), 2),
        (pytest.approx(42.0), 1),
    ]


def test_state_returns_to_zero_after_tracks_end():
    h = harness(rule(), zones=ZONES)
    script = merge(
        track(1, AGAINST, 0.0, 6.0),
        track(2, ALONG, 0.0, 6.0),
        track(3, path((0.0, 0.9, 0.2), (8.0, 0.1, 0.2)), 1.0, 1.6),  # wrong way, not sustained
        track(4, heading(170.0, 60.0, (0.9, 0.4)), 0.0, 6.0),
        track(5, (0.5, 0.8), 0.0, 6.0),  # outside the zone
    )
    alerts = h.run(script, 6.0)
    assert {a.track_id for a in alerts} == {1, 4}
    assert h.rule.state_size() > 0 and len(h.history) > 0
    for i in range(1, 21):  # 4 s of empty frames > the history's expiry (3 s)
        h.step(6.0 + i / FPS, [])
    assert h.rule.state_size() == 0
    assert len(h.history) == 0
