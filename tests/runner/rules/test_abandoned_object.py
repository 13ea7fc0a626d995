"""abandoned_object on scripted tracks at 5 fps (detector stage) and on synthetic frames (static stage).

The harness camera (tests.helpers.BASE_CONFIG) is 640 x 480 with the zone `lawn` = the bottom-right
quarter (x, y in 0.5..1) and `path` = the top half. Anchors are bottom-centres of boxes in normalised
coordinates. People are 0.2 of the image high (96 px), so the default owner radius (1 person height)
is 96 px, 0.15 of the image width.
"""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest
import yaml

from runner.config.loading import parse_config
from runner.config.rules import AbandonedObjectConfig
from runner.core.errors import ConfigError
from runner.pipeline.gate import AlertGate
from runner.rules.base import FrameContext
from tests.helpers import (
    HEIGHT,
    WIDTH,
    Obj,
    box_at,
    config_dict,
    detections_from,
    harness,
    merge,
    path,
    run_gated,
    track,
)

FPS = 5.0
BAG_AT = (0.55, 0.8)
OWNER_AT = (0.5, 0.8)  # 32 px from the bag: beside it


def rule(**overrides) -> dict:
    return {"kind": "abandoned_object", "id": "left-luggage", "abandon_s": 10.0, "cooldown_s": 0.0, **overrides}


def bag(track_id: int = 10, where=BAG_AT, start_s: float = 0.0, end_s: float = float("inf"), **kwargs):
    kwargs.setdefault("label", "suitcase")
    return track(track_id, where, start_s, end_s, height=0.08, width=0.06, **kwargs)


# The owner stands beside the bag until t=5, then walks left out of the radius (1 person height per
# second): still "standing" on the frame at 5.2 (speed over the last second 0.2 h/s), walking from 5.4.
OWNER_LEAVES = path((0.0, *OWNER_AT), (5.0, *OWNER_AT), (8.0, 0.05, 0.8))
# ... comes back at 11-13 and stays beside it ...
OWNER_RETURNS = path((0.0, *OWNER_AT), (5.0, *OWNER_AT), (8.0, 0.05, 0.8), (11.0, 0.05, 0.8), (13.0, *OWNER_AT))
# ... and leaves again at 20 (last standing frame 20.2).
OWNER_LEAVES_AGAIN = path(
    (0.0, *OWNER_AT),
    (5.0, *OWNER_AT),
    (8.0, 0.05, 0.8),
    (11.0, 0.05, 0.8),
    (13.0, *OWNER_AT),
    (20.0, *OWNER_AT),
    (23.0, 0.05, 0.8),
)
PASSER_BY = path((5.0, 0.3, 0.82), (7.0, 0.8, 0.82))  # 1.7 person heights per second, through the radius


def every(period_s: float, obj_at):
    """A detection on one frame every `period_s` (a sleeping person the detector mostly misses), each
    time with a new track id."""

    def script(t: float):
        n = round(t * FPS)
        return [obj_at(n)] if n % round(period_s * FPS) == 0 else []

    return script


def visible(pattern: str, script):
    """The script's objects only on frames whose index modulo len(pattern) is '1' in the pattern."""
    return lambda t: script(t) if pattern[round(t * FPS) % len(pattern)] == "1" else []


def switching_ids(t: float):
    """A still bag whose tracker id changes every 3 s, with 2 px of box jitter."""
    jitter = 0.003 if round(t * FPS) % 2 else 0.0
    return bag(100 + int(t // 3), (BAG_AT[0] + jitter, BAG_AT[1]))(t)


# name, rule overrides, script, duration (s), expected alert times (s)
CASES = [
    ("alone-from-the-start", {}, bag(), 20.0, [10.0]),
    ("owner-walks-away", {}, merge(bag(), track(1, OWNER_LEAVES)), 25.0, [15.2]),
    ("owner-stays", {}, merge(bag(), track(1, OWNER_AT)), 40.0, []),
    ("owner-comes-back-in-time", {}, merge(bag(), track(1, OWNER_RETURNS)), 40.0, []),
    ("owner-leaves-again", {}, merge(bag(), track(1, OWNER_LEAVES_AGAIN)), 40.0, [30.2]),
    ("owner-walks-away-longer-abandon", {"abandon_s": 15.0}, merge(bag(), track(1, OWNER_LEAVES)), 25.0, [20.2]),
    # 64 px = 0.67 person heights from the bag, boxes apart: inside the default radius, outside 0.5.
    ("owner-a-metre-away", {}, merge(bag(), track(1, (0.45, 0.8))), 20.0, []),
    (
        "owner-a-metre-away-small-radius",
        {"owner_radius_heights": 0.5},
        merge(bag(), track(1, (0.45, 0.8))),
        20.0,
        [10.0],
    ),
    ("passer-by-does-not-cancel", {}, merge(bag(), track(2, PASSER_BY, 5.0, 7.0)), 20.0, [10.0]),
    (
        "slow-walker-attends",
        {"walk_speed_heights_per_s": 5.0},
        merge(bag(), track(2, PASSER_BY, 5.0, 7.0)),
        20.0,
        [16.4],
    ),
    (
        "sleeper-seen-every-2s",
        {},
        merge(bag(), every(2.0, lambda n: Obj(1000 + n, box_at(0.5, 0.85, 0.1, 0.25)))),
        40.0,
        [],
    ),
    ("id-switches-while-still", {}, switching_ids, 20.0, [10.0]),
    ("moved-at-6s", {}, merge(bag(10, BAG_AT, 0.0, 6.0), bag(10, (0.75, 0.8), 6.2)), 25.0, [16.2]),
    ("jitter-within-tolerance", {}, bag(10, path((0.0, *BAG_AT), (20.0, BAG_AT[0] + 0.01, BAG_AT[1]))), 20.0, [10.0]),
    ("missed-2-frames-of-5", {}, visible("11100", bag()), 20.0, [10.0]),
    ("missed-3-frames-of-5", {}, visible("11000", bag()), 20.0, []),
    ("low-confidence", {}, bag(conf=0.3), 20.0, []),
    ("backpack", {}, bag(label="backpack"), 20.0, [10.0]),
    ("not-a-bag-label", {}, bag(label="umbrella"), 20.0, []),
    ("custom-labels", {"labels": ["umbrella"]}, bag(label="umbrella"), 20.0, [10.0]),
    ("person-alone-is-not-an-object", {}, track(1, OWNER_AT), 20.0, []),
    ("two-bags-two-alerts", {}, merge(bag(10, (0.3, 0.8)), bag(11, (0.8, 0.8))), 20.0, [10.0, 10.0]),
    ("in-excluded-zone", {"exclude_zones": ["lawn"]}, bag(10, (0.7, 0.8)), 20.0, []),
    ("outside-excluded-zone", {"exclude_zones": ["path"]}, bag(10, (0.7, 0.8)), 20.0, [10.0]),
    ("outside-watched-zone", {"zone": "path"}, bag(10, (0.7, 0.8)), 20.0, []),
    ("inside-watched-zone", {"zone": "lawn"}, bag(10, (0.7, 0.8)), 20.0, [10.0]),
    ("gone-before-abandon", {}, bag(10, BAG_AT, 0.0, 8.0), 20.0, []),
]


@pytest.mark.parametrize(
    ("overrides", "script", "duration_s", "expected_s"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_detector_stage(overrides, script, duration_s, expected_s):
    h = harness(rule(**overrides))
    alerts = h.run(script, duration_s, FPS)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s, abs=1e-6)
    assert len({a.subject for a in alerts}) == len(alerts)  # one alert per object


def test_alert_details():
    h = harness(rule())
    (alert,) = h.run(merge(bag(), track(1, OWNER_LEAVES)), 20.0, FPS)
    assert alert.kind == "abandoned_object" and alert.rule_id == "left-luggage"
    assert alert.subject.startswith("object:")
    assert alert.track_id == 10
    assert alert.score == pytest.approx(0.9)
    assert alert.bbox == pytest.approx(box_at(*BAG_AT, 0.08, 0.06))
    assert alert.details["label"] == "suitcase"
    assert alert.details["seen_by"] == ["detector"]
    assert alert.details["owner_left_s"] == pytest.approx(5.2)
    assert alert.details["alone_s"] == pytest.approx(10.0)
    assert alert.details["still_s"] == pytest.approx(15.2)


@pytest.mark.parametrize(("cooldown_s", "admitted_s"), [(0.0, [10.0, 24.2]), (600.0, [10.0])])
def test_cooldown_through_the_alert_gate(cooldown_s, admitted_s):
    # Alone from the start (alert at 10), attended 12-14.2 (someone checks it and leaves), alone again.
    checker = track(1, path((12.0, *OWNER_AT), (14.0, *OWNER_AT), (17.0, 0.05, 0.8)), 12.0)
    h = harness(rule(cooldown_s=cooldown_s))
    candidates, admitted = run_gated(h, AlertGate({"left-luggage": cooldown_s}), merge(bag(), checker), 30.0, FPS)
    assert [c.t_s for c in candidates] == pytest.approx([10.0, 24.2])
    assert len({c.subject for c in candidates}) == 1  # the same object both times
    assert [a.t_s for a in admitted] == pytest.approx(admitted_s)


def test_state_returns_to_zero_when_objects_are_gone():
    h = harness(rule(memory_s=5.0))
    h.run(merge(bag(10, BAG_AT), bag(11, (0.2, 0.8)), track(1, OWNER_AT)), 12.0, FPS)
    assert h.rule.state_size() == 2
    sizes = []
    for i in range(1, 27):  # nothing seen any more
        h.step(12.0 + i / FPS)
        sizes.append(h.rule.state_size())
    assert sizes[:25] == [2] * 25  # remembered for memory_s (until t = 17.0)...
    assert sizes[25] == 0  # ... and forgotten on the next frame


def test_object_memory_is_capped():
    h = harness(rule(memory_s=600.0))
    for i in range(100):  # a hundred bags, each seen once at a different place
        h.step(i / FPS, [Obj(i, box_at(0.05 + (i % 10) * 0.09, 0.1 + (i // 10) * 0.09, 0.05, 0.04), "suitcase")])
    assert h.rule.state_size() <= 64


def test_reset_forgets_everything():
    h = harness(rule())
    h.run(bag(), 8.0, FPS)
    assert h.rule.state_size() == 1
    h.rule.reset()
    assert h.rule.state_size() == 0
    assert h.run(bag(), 9.8, FPS) == []  # the clock restarted


# -- config ----------------------------------------------------------------------------------------
def parse(rule_dict: dict):
    return parse_config(yaml.safe_dump(config_dict([rule_dict])))


def test_kind_and_id_are_enough_and_defaults_suit_a_street_camera():
    camera = parse({"kind": "abandoned_object", "id": "left"}).cameras[0]
    cfg = camera.rules[0]
    assert cfg.abandon_s == 60.0 and cfg.static_stage is True and cfg.zone is None
    assert cfg.required_labels() == {"suitcase", "handbag", "backpack", "person"}
    assert {"car", "bench", "chair"} <= cfg.optional_labels()
    assert camera.required_labels() == {"suitcase", "handbag", "backpack", "person"}


def test_without_the_static_stage_no_optional_labels():
    cfg = parse({"kind": "abandoned_object", "id": "left", "static_stage": False}).cameras[0].rules[0]
    assert cfg.optional_labels() == frozenset()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"abandon_s": 900.0}, "cameras[0].rules[0].static_absorb_s: must be longer than abandon_s"),
        ({"abandon_s": 0.5}, "cameras[0].rules[0].abandon_s"),
        ({"owner_radius_heights": -1}, "cameras[0].rules[0].owner_radius_heights"),
        ({"exclude_zones": ["nowhere"]}, "cameras[0].rules[0].exclude_zones[0]: unknown zone 'nowhere'"),
        ({"zone": "nowhere"}, "cameras[0].rules[0].zone: unknown zone 'nowhere'"),
        ({"static_min_area_frac": 0.1, "static_max_area_frac": 0.05}, "static_min_area_frac: must be smaller"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as err:
        parse({"kind": "abandoned_object", "id": "left", **overrides})
    assert message in str(err.value)


def test_a_long_abandon_time_is_fine_without_the_static_stage():
    cfg = (
        parse({"kind": "abandoned_object", "id": "left", "abandon_s": 900.0, "static_stage": False}).cameras[0].rules[0]
    )
    assert isinstance(cfg, AbandonedObjectConfig) and cfg.abandon_s == 900.0


# -- static stage on synthetic frames --------------------------------------------------------------
def floor() -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 1.0, (HEIGHT // 16, WIDTH // 16)).astype(np.float32)
    grey = np.clip(110 + 25 * cv2.resize(noise, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC), 0, 255)
    return cv2.cvtColor(grey.astype(np.uint8), cv2.COLOR_GRAY2BGR)


FLOOR = floor()
DARK_BAG = box_at(*BAG_AT, 0.08, 0.06)  # no detector sees it in these tests


def paint(image: np.ndarray, box, value: int) -> None:
    x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (WIDTH, HEIGHT, WIDTH, HEIGHT)))
    image[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = value


def scene(objects_at, bag_from_s: float | None = 3.0, bag_box=DARK_BAG, extra=None):
    """(t -> image, t -> detections): `objects_at(t)` are the scripted detections (people are painted
    bright where their box is); a dark bag is painted from `bag_from_s` on (never detected)."""

    def image_at(t: float) -> np.ndarray:
        image = FLOOR.copy()
        if bag_from_s is not None and t >= bag_from_s - 1e-6:
            paint(image, bag_box, 25)
        for obj in objects_at(t):
            if obj.label == "person":
                paint(image, obj.box, 215)
        if extra is not None:
            extra(image, t)
        return image

    return image_at, objects_at


IMAGE_FPS = 2.5  # the background works in stream time: a low rate keeps these tests quick


def run_with_images(rule_dict: dict, image_at, objects_at, duration_s: float):
    h = harness(rule_dict)
    alerts = []
    for i in range(int(round(duration_s * IMAGE_FPS)) + 1):
        t = i / IMAGE_FPS
        detections = detections_from(objects_at(t))
        ended = h.history.update(detections, t, WIDTH, HEIGHT)
        ctx = FrameContext(
            camera_id="cam-01",
            t_s=t,
            frame_index=i,
            wall_time=h.start + timedelta(seconds=t),
            width=WIDTH,
            height=HEIGHT,
            detections=detections,
            tracks=h.history,
            ended_track_ids=ended,
            image=image_at(t),
        )
        alerts += h.rule.update(ctx)
    return alerts, h


# The owner walks in from the right carrying the (undetected) dark bag, puts it down at t=3 and stands
# over it until 6, then walks out to the left (gone by 9).
OWNER_DROPS = path((0.0, 0.95, 0.81), (2.0, 0.52, 0.81), (6.0, 0.52, 0.81), (9.0, -0.1, 0.81))


def test_static_stage_alone_raises_the_alert_for_an_undetected_bag():
    image_at, objects_at = scene(track(1, OWNER_DROPS, 0.0, 8.6))
    alerts, h = run_with_images(rule(), image_at, objects_at, 25.0)
    assert len(alerts) == 1
    (alert,) = alerts
    assert 15.0 <= alert.t_s <= 20.0  # the owner's last standing frame is ~6.2, + 10 s
    assert alert.details["seen_by"] == ["static"] and alert.details["label"] == "static object"
    assert alert.bbox == pytest.approx(DARK_BAG, abs=0.03)
    assert alert.track_id is None


def test_static_stage_switched_off_misses_the_undetected_bag():
    image_at, objects_at = scene(track(1, OWNER_DROPS, 0.0, 8.6))
    alerts, h = run_with_images(rule(static_stage=False), image_at, objects_at, 25.0)
    assert alerts == []
    assert h.rule.state_size() == 0


def test_a_static_region_nobody_brought_is_not_an_object():
    image_at, objects_at = scene(lambda t: [])  # appears by itself: a ghost, a light, a reflection
    assert run_with_images(rule(), image_at, objects_at, 20.0)[0] == []
    alerts, _ = run_with_images(rule(static_owner_s=None), image_at, objects_at, 20.0)
    assert len(alerts) == 1 and alerts[0].details["seen_by"] == ["static"]


def test_a_person_standing_still_is_not_an_object_and_leaves_no_ghost():
    image_at, objects_at = scene(track(1, OWNER_AT, 2.0, 40.0), bag_from_s=None)
    alerts, h = run_with_images(rule(), image_at, objects_at, 60.0)
    assert alerts == []


def test_a_static_region_in_an_excluded_zone_is_ignored():
    image_at, objects_at = scene(track(1, OWNER_DROPS, 0.0, 8.6))
    assert run_with_images(rule(exclude_zones=["lawn"]), image_at, objects_at, 25.0)[0] == []


def test_a_static_region_under_a_parked_car_is_ignored():
    car = track(7, (0.55, 0.83), 0.0, 30.0, label="car", height=0.15, width=0.2)
    image_at, objects_at = scene(merge(track(1, OWNER_DROPS, 0.0, 8.6), car))
    assert run_with_images(rule(), image_at, objects_at, 25.0)[0] == []


def test_a_bag_seen_by_both_stages_is_one_object_with_one_alert():
    detected = bag(10, BAG_AT, 3.0)
    image_at, objects_at = scene(merge(track(1, OWNER_DROPS, 0.0, 8.6), detected))
    alerts, h = run_with_images(rule(), image_at, objects_at, 25.0)
    assert len(alerts) == 1
    assert alerts[0].details["sources"] == ["detector", "static"]
    assert alerts[0].details["label"] == "suitcase"
    assert h.rule.state_size() == 1
