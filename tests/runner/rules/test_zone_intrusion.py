"""zone_intrusion on scripted tracks at 5 fps: zone mode (dwell episodes) and line mode (tripwire).

The harness camera (tests.helpers.BASE_CONFIG) has the zone `lawn` = the bottom-right quarter of the
image (x, y in 0.5..1) and the line `gate` from (0.3, 0) to (0.3, 1), drawn top to bottom. Anchors
are bottom-centres of boxes, in normalised image coordinates.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.pipeline.gate import AlertGate
from runner.rules.zone_intrusion import ZoneIntrusionRule
from tests.helpers import harness, merge, path, run_gated, track

FPS = 5.0
IN = (0.7, 0.8)  # inside the lawn
IN2 = (0.72, 0.78)  # a step away from IN
OUT = (0.3, 0.8)  # left of the lawn


def border_jitter(t: float) -> tuple[float, float]:
    """An anchor hopping across the lawn's left edge every frame: inside on even frames."""
    return (0.51 if round(t * FPS) % 2 == 0 else 0.49, 0.8)


def zone_rule(**overrides) -> dict:
    return {
        "kind": "zone_intrusion",
        "id": "lawn-intrusion",
        "zone": "lawn",
        "min_dwell_s": 1.0,
        "clear_s": 2.0,
        "cooldown_s": 0.0,
        **overrides,
    }


def line_rule(**overrides) -> dict:
    return {
        "kind": "zone_intrusion",
        "id": "gate-crossing",
        "line": "gate",
        "crossing": "any",
        "crossing_margin_frac": 0.01,
        "cooldown_s": 0.0,
        **overrides,
    }


# name, rule overrides, script, duration (s), expected alert times (s), expected track ids
ZONE_CASES = [
    ("dwell-shorter-than-min", {}, track(1, IN, 0.0, 0.6), 6.0, [], []),
    ("dwell-exactly-min", {}, track(1, IN, 0.0, 1.0), 6.0, [1.0], [1]),
    ("long-dwell-one-alert", {}, track(1, IN), 20.0, [1.0], [1]),
    ("longer-min-dwell", {"min_dwell_s": 3.0}, track(1, IN), 10.0, [3.0], [1]),
    # Walks in from the left: first anchor inside at t=1.8 (x=0.515), alert min_dwell_s later.
    ("walks-in", {}, track(1, path((0.0, 0.2, 0.8), (4.0, 0.9, 0.8))), 8.0, [2.8], [1]),
    ("walks-in-no-dwell", {"min_dwell_s": 0.0}, track(1, path((0.0, 0.2, 0.8), (4.0, 0.9, 0.8))), 8.0, [1.8], [1]),
    (
        "walks-through-quickly",
        {"min_dwell_s": 2.0},
        track(1, path((0.0, 0.4, 0.8), (1.0, 0.4, 0.8), (2.0, 0.6, 0.8), (3.0, 0.4, 0.8))),
        8.0,
        [],
        [],
    ),
    ("outside", {}, track(1, OUT), 10.0, [], []),
    ("above-the-zone", {}, track(1, (0.7, 0.45)), 10.0, [], []),
    ("car-not-in-labels", {}, track(1, IN, label="car"), 10.0, [], []),
    ("car-in-labels", {"labels": ["person", "car"]}, track(1, IN, label="car"), 10.0, [1.0], [1]),
    ("low-confidence", {}, track(1, IN, conf=0.2), 10.0, [], []),
    ("confidence-at-threshold", {}, track(1, IN, conf=0.3), 10.0, [1.0], [1]),
    ("untracked", {}, track(-1, IN), 10.0, [], []),
    ("two-people-one-episode", {}, merge(track(1, IN), track(2, (0.8, 0.7), 0.4)), 10.0, [1.0], [1]),
    # Same person, new track id (the tracker lost it behind an occluder).
    ("id-switch-after-alert", {}, merge(track(1, IN, 0.0, 2.0), track(2, IN2, 2.2)), 10.0, [1.0], [1]),
    ("id-switch-before-alert", {}, merge(track(1, IN, 0.0, 0.6), track(2, IN2, 0.8)), 10.0, [1.0], [2]),
    (
        "id-switch-twice-before-alert",
        {"min_dwell_s": 3.0},
        merge(track(1, IN, 0.0, 0.8), track(2, IN2, 1.0, 2.0), track(3, IN, 2.4)),
        10.0,
        [3.0],
        [3],
    ),
    # Not an id switch: the second track is far from where the first was lost...
    ("new-track-far-away", {}, merge(track(1, (0.55, 0.55), 0.0, 0.6), track(2, (0.95, 0.95), 0.8)), 10.0, [1.8], [2]),
    # ... or it was already alive before the first was lost (another person walking in).
    (
        "other-person-walks-in",
        {},
        merge(track(1, (0.52, 0.8), 0.0, 0.6), track(2, path((0.0, 0.2, 0.8), (4.0, 0.9, 0.8)))),
        10.0,
        [2.8],
        [2],
    ),
    ("missed-frames-before-alert", {}, track(1, IN, missing=[(0.4, 0.6)]), 10.0, [1.0], [1]),
    ("missed-at-alert-time", {}, track(1, IN, missing=[(0.8, 1.0)]), 10.0, [1.2], [1]),
    ("missed-frames-after-alert", {}, track(1, IN, missing=[(2.0, 2.6), (4.0, 5.0)]), 10.0, [1.0], [1]),
    ("two-visits-apart", {}, merge(track(1, IN, 0.0, 2.0), track(2, IN, 5.0, 8.0)), 10.0, [1.0, 6.0], [1, 2]),
    (
        "same-track-two-visits",
        {},
        track(1, path((0.0, 0.7, 0.8), (2.0, 0.7, 0.8), (2.2, 0.3, 0.8), (6.0, 0.3, 0.8), (6.2, 0.7, 0.8))),
        12.0,
        [1.0, 7.2],
        [1, 1],
    ),
    # Empty from 2.4 to 4.2 only: 4.2 - 2.2 = 2.0000000000000004 is still "clear_s", not more.
    ("gap-of-exactly-clear-s", {}, merge(track(1, IN, 0.0, 2.2), track(2, IN, 4.4, 8.0)), 10.0, [1.0], [1]),
    ("two-visits-within-clear", {}, merge(track(1, IN, 0.0, 2.0), track(2, IN, 3.0, 8.0)), 10.0, [1.0], [1]),
    ("border-jitter", {}, track(1, border_jitter), 30.0, [1.2], [1]),
    (
        "leaves-through-border-jitter",
        {},
        track(1, lambda t: IN if t < 3.0 else border_jitter(t) if t < 5.0 else OUT),
        12.0,
        [1.0],
        [1],
    ),
]


@pytest.mark.parametrize(
    ("rule", "script", "duration_s", "expected_s", "expected_ids"),
    [pytest.param(*case[1:], id=case[0]) for case in ZONE_CASES],
)
def test_zone_mode(rule, script, duration_s, expected_s, expected_ids):
    h = harness(zone_rule(**rule))
    alerts = h.run(script, duration_s, fps=FPS)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    assert [a.track_id for a in alerts] == expected_ids
    for alert in alerts:
        assert (alert.kind, alert.rule_id, alert.subject) == ("zone_intrusion", "lawn-intrusion", "zone:lawn")
        assert alert.details["zone"] == "lawn"
        assert alert.bbox is not None and all(0.0 <= v <= 1.0 for v in alert.bbox)


def test_zone_alert_details():
    h = harness(zone_rule(min_dwell_s=2.0, labels=["person", "car"]))
    script = merge(track(1, IN, 0.0, conf=0.8), track(2, (0.9, 0.9), 1.0, label="car", conf=0.95), track(3, OUT))
    [alert] = h.run(script, 5.0)
    assert alert.t_s == pytest.approx(2.0)
    assert alert.track_id == 1 and alert.score == pytest.approx(0.8)
    assert alert.details == {"zone": "lawn", "label": "person", "dwell_s": 2.0, "count_inside": 2}
    assert alert.bbox == pytest.approx((0.67, 0.6, 0.73, 0.8))


# Active hours are read from the frame's wall time (site time zone), never from the clock of the machine.
@pytest.mark.parametrize(
    ("windows", "clock", "expected_s"),
    [
        pytest.param([], (12, 0, 0), [1.0], id="no-window-always-active"),
        pytest.param([("11:00", "13:00")], (12, 0, 0), [1.0], id="inside-window"),
        pytest.param([("13:00", "14:00")], (12, 0, 0), [], id="outside-window"),
        pytest.param([("08:00", "09:00"), ("11:30", "12:30")], (12, 0, 0), [1.0], id="second-window"),
        pytest.param([("22:00", "06:00")], (23, 30, 0), [1.0], id="wrapping-evening"),
        pytest.param([("22:00", "06:00")], (3, 0, 0), [1.0], id="wrapping-after-midnight"),
        pytest.param([("22:00", "06:00")], (7, 0, 0), [], id="wrapping-daytime"),
        pytest.param([("22:00", "06:00")], (12, 0, 0), [], id="wrapping-noon"),
        # Present before the window opens: the dwell counts from the opening (22:00:00 = t 1.0).
        pytest.param([("22:00", "06:00")], (21, 59, 59), [2.0], id="window-opens-during-visit"),
        # The window closes at 06:00:00 (t 2.0): the alert at 05:59:59 is raised, nothing after.
        pytest.param([("22:00", "06:00")], (5, 59, 58), [1.0], id="window-closes-after-alert"),
        pytest.param([("22:00", "06:00")], (5, 59, 59.5), [], id="window-closes-before-dwell"),
    ],
)
def test_zone_active_hours(windows, clock, expected_s):
    h = harness(zone_rule(active_hours=[{"start": a, "end": b} for a, b in windows]))
    hour, minute, second = clock
    h.start = datetime(2025, 5, 13, hour, minute, int(second), int((second % 1) * 1e6), tzinfo=UTC)
    alerts = h.run(track(1, IN), 10.0)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    assert h.rule.state_size() <= 1


def test_zone_state_is_dropped_outside_active_hours():
    h = harness(zone_rule(active_hours=[{"start": "12:00", "end": "12:01"}]))
    h.start = datetime(2025, 5, 13, 12, 0, 50, tzinfo=UTC)
    h.run(merge(track(1, IN), track(2, (0.9, 0.9))), 20.0)
    assert h.rule.state_size() == 0


# -- line (tripwire) mode ------------------------------------------------------------------------
# `gate` runs from (0.3, 0) down to (0.3, 1). Walking from its start to its end (down the image),
# the walker's left is the image's right: an anchor moving left -> right on the image crosses
# from the line's right side to its left side ("right_to_left").
LEFT_TO_RIGHT_ON_IMAGE = path((0.0, 0.1, 0.8), (2.0, 0.5, 0.8))  # x = 0.3 at t=1.0, past the margin at 1.2
RIGHT_TO_LEFT_ON_IMAGE = path((0.0, 0.5, 0.8), (2.0, 0.1, 0.8))
SHORT_GATE = [{"id": "gate", "start": [0.3, 0.2], "end": [0.3, 0.6]}]
HORIZONTAL_GATE = [{"id": "gate", "start": [0.0, 0.5], "end": [1.0, 0.5]}]  # walking right: left = up


def line_jitter(t: float) -> tuple[float, float]:
    return (0.295 if round(t * FPS) % 2 == 0 else 0.305, 0.8)  # 0.005 from the line, margin 0.01


# name, rule overrides, camera overrides, script, expected alert times, expected directions
LINE_CASES = [
    ("any-image-left-to-right", {}, {}, track(1, LEFT_TO_RIGHT_ON_IMAGE), [1.2], ["right_to_left"]),
    ("any-image-right-to-left", {}, {}, track(1, RIGHT_TO_LEFT_ON_IMAGE), [1.2], ["left_to_right"]),
    (
        "forbidden-direction",
        {"crossing": "right_to_left"},
        {},
        track(1, LEFT_TO_RIGHT_ON_IMAGE),
        [1.2],
        ["right_to_left"],
    ),
    ("allowed-direction", {"crossing": "left_to_right"}, {}, track(1, LEFT_TO_RIGHT_ON_IMAGE), [], []),
    (
        "reverse-forbidden",
        {"crossing": "left_to_right"},
        {},
        track(1, RIGHT_TO_LEFT_ON_IMAGE),
        [1.2],
        ["left_to_right"],
    ),
    ("reverse-allowed", {"crossing": "right_to_left"}, {}, track(1, RIGHT_TO_LEFT_ON_IMAGE), [], []),
    (
        "there-and-back",
        {},
        {},
        track(1, path((0.0, 0.1, 0.8), (2.0, 0.5, 0.8), (4.0, 0.1, 0.8))),
        [1.2, 3.2],
        ["right_to_left", "left_to_right"],
    ),
    (
        "there-and-back-one-direction",
        {"crossing": "left_to_right"},
        {},
        track(1, path((0.0, 0.1, 0.8), (2.0, 0.5, 0.8), (4.0, 0.1, 0.8))),
        [3.2],
        ["left_to_right"],
    ),
    (
        "horizontal-line-walking-down",
        {},
        {"lines": HORIZONTAL_GATE},
        track(1, path((0.0, 0.5, 0.3), (2.0, 0.5, 0.7))),
        [1.2],
        ["left_to_right"],
    ),
    (
        "short-line-crossed",
        {},
        {"lines": SHORT_GATE},
        track(1, path((0.0, 0.1, 0.4), (2.0, 0.5, 0.4))),
        [1.2],
        ["right_to_left"],
    ),
    ("beyond-the-line-end", {}, {"lines": SHORT_GATE}, track(1, LEFT_TO_RIGHT_ON_IMAGE), [], []),
    ("beyond-the-line-start", {}, {"lines": SHORT_GATE}, track(1, path((0.0, 0.1, 0.1), (2.0, 0.5, 0.1))), [], []),
    ("jitter-on-the-line", {}, {}, track(1, line_jitter), [], []),
    (
        "approach-jitter-and-return",
        {},
        {},
        track(1, lambda t: (0.1 + 0.1 * t, 0.8) if t < 2.0 else line_jitter(t) if t < 6.0 else (0.1, 0.8)),
        [],
        [],
    ),
    (
        "slow-crossing-through-the-margin",
        {"crossing_margin_frac": 0.05},
        {},
        track(1, path((0.0, 0.2, 0.8), (10.0, 0.4, 0.8))),
        [7.6],
        ["right_to_left"],
    ),
    ("first-seen-on-the-far-side", {}, {}, track(1, (0.5, 0.8)), [], []),
    ("untracked", {}, {}, track(-1, LEFT_TO_RIGHT_ON_IMAGE), [], []),
    ("label-filter", {}, {}, track(1, LEFT_TO_RIGHT_ON_IMAGE, label="car"), [], []),
    ("low-confidence", {}, {}, track(1, LEFT_TO_RIGHT_ON_IMAGE, conf=0.1), [], []),
    (
        "two-people",
        {},
        {},
        merge(track(1, LEFT_TO_RIGHT_ON_IMAGE), track(2, path((0.0, 0.5, 0.6), (2.0, 0.1, 0.6)))),
        [1.2, 1.2],
        ["right_to_left", "left_to_right"],
    ),
]


@pytest.mark.parametrize(
    ("rule", "camera", "script", "expected_s", "directions"),
    [pytest.param(*case[1:], id=case[0]) for case in LINE_CASES],
)
def test_line_mode(rule, camera, script, expected_s, directions):
    h = harness(line_rule(**rule), **camera)
    alerts = h.run(script, 10.0, fps=FPS)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    assert [a.details["direction"] for a in alerts] == directions
    for alert in alerts:
        assert alert.subject == f"track:{alert.track_id}"
        assert alert.details["line"] == "gate"


# -- cooldown and bounded state --------------------------------------------------------------------
def test_zone_cooldown_through_the_alert_gate():
    h = harness(zone_rule(cooldown_s=30.0))
    gate = AlertGate({"lawn-intrusion": 30.0})
    script = merge(track(1, IN, 0.0, 2.0), track(2, IN, 5.0, 8.0), track(3, IN, 40.0, 45.0))
    candidates, admitted = run_gated(h, gate, script, 50.0)
    assert [c.t_s for c in candidates] == pytest.approx([1.0, 6.0, 41.0])
    assert [a.t_s for a in admitted] == pytest.approx([1.0, 41.0])  # 6.0 is within 30 s of 1.0 for zone:lawn


def test_line_cooldown_is_per_track():
    h = harness(line_rule(cooldown_s=10.0))
    gate = AlertGate({"gate-crossing": 10.0})
    back_and_forth = path(
        (0.0, 0.1, 0.8), (2.0, 0.5, 0.8), (4.0, 0.1, 0.8), (6.0, 0.5, 0.8), (14.0, 0.5, 0.8), (16.0, 0.1, 0.8)
    )
    script = merge(track(1, back_and_forth), track(2, path((5.0, 0.5, 0.6), (7.0, 0.1, 0.6))))
    candidates, admitted = run_gated(h, gate, script, 20.0)
    assert [(c.t_s, c.track_id) for c in candidates] == [
        (pytest.approx(1.2), 1),
        (pytest.approx(3.2), 1),
        (pytest.approx(5.2), 1),
        (pytest.approx(6.2), 2),
        (pytest.approx(15.2), 1),
    ]
    assert [(a.t_s, a.track_id) for a in admitted] == [
        (pytest.approx(1.2), 1),
        (pytest.approx(6.2), 2),
        (pytest.approx(15.2), 1),
    ]


@pytest.mark.parametrize("rule", [zone_rule(), line_rule()], ids=["zone", "line"])
def test_state_returns_to_zero_after_tracks_end(rule):
    h = harness(rule)
    people = [
        track(i, path((0.0, 0.1 + 0.02 * i, 0.9 - 0.05 * i), (6.0, 0.9 - 0.02 * i, 0.6 + 0.03 * i)), 0.0, 6.0)
        for i in range(1, 9)
    ]
    h.run(merge(*people, track(20, IN, 0.0, 6.0), track(21, OUT, 0.0, 6.0)), 6.0)
    assert h.rule.state_size() > 0 and len(h.history) > 0
    for i in range(1, 21):  # empty frames for 4 s > the history's expiry (3 s)
        h.step(6.0 + i / FPS, [])
    assert h.rule.state_size() == 0
    assert len(h.history) == 0


def test_reset_forgets_everything():
    h = harness(zone_rule())
    h.run(track(1, IN), 3.0)
    assert h.rule.state_size() == 1
    h.rule.reset()
    assert isinstance(h.rule, ZoneIntrusionRule) and h.rule.state_size() == 0
