"""The dual-background static-object cue on synthetic frames: what it reports, and what it must not."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from runner.cues.background import BackgroundSettings, DualBackground

W, H = 320, 240  # the working width: no resize cost in these tests
FPS = 2.0


def floor(seed: int = 0, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """A textured grey 'pavement' (BGR), smooth enough to survive the downscale."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, (size[1] // 8, size[0] // 8)).astype(np.float32)
    texture = cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)
    grey = np.clip(110 + 25 * texture, 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def with_rect(image: np.ndarray, box, value: int, texture_seed: int | None = None) -> np.ndarray:
    """A copy with the normalised box filled (a bag, a person), optionally textured."""
    out = image.copy()
    h, w = out.shape[:2]
    x1, y1, x2, y2 = int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)
    patch = np.full((y2 - y1, x2 - x1), value, dtype=np.float32)
    if texture_seed is not None:
        patch += np.random.default_rng(texture_seed).normal(0, 6, patch.shape)
    out[y1:y2, x1:x2] = np.clip(patch, 0, 255).astype(np.uint8)[..., None]
    return out


BAG = (0.45, 0.60, 0.52, 0.70)  # normalised xyxy, about 22 x 24 px at 320 x 240
PERSON = (0.40, 0.20, 0.50, 0.70)


def run(bg: DualBackground, frame_at, duration_s: float, start_s: float = 0.0, persons_at=lambda t: ()):
    """Feed frames at FPS from start_s; return {t: regions} for every frame."""
    out = {}
    for i in range(int(round(duration_s * FPS))):
        t = start_s + i / FPS
        out[round(t, 3)] = bg.update(frame_at(t), t, persons_at(t))
    return out


def hits(regions, box) -> list:
    """Regions whose centre lies inside `box` (normalised)."""
    return [
        r
        for r in regions
        if box[0] <= (r.box[0] + r.box[2]) / 2 <= box[2] and box[1] <= (r.box[1] + r.box[3]) / 2 <= box[3]
    ]


def test_memory_is_bounded_by_the_working_width_not_the_camera_resolution():
    sizes = {}
    for size in ((320, 240), (1920, 1440)):
        bg = DualBackground(BackgroundSettings(width_px=320))
        base = floor(size=size)
        for i in range(3):
            bg.update(base, i / FPS)
        sizes[size] = bg.memory_bytes()
        assert bg.shape == (240, 320)
    assert sizes[(320, 240)] == sizes[(1920, 1440)]
    assert sizes[(320, 240)] < 2_000_000


def test_a_left_object_is_reported_once_it_stops_and_stays_reported():
    base = floor()
    bag = with_rect(base, BAG, 30, texture_seed=1)
    bg = DualBackground()
    seen = run(bg, lambda t: base if t < 10 else bag, 40.0)
    before = [t for t, regions in seen.items() if t < 10 and regions]
    assert before == []
    with_bag = [t for t, regions in seen.items() if hits(regions, BAG)]
    assert with_bag, "the bag was never reported"
    assert 10.0 < min(with_bag) <= 16.0  # once the short-term model has absorbed it
    assert all(hits(seen[t], BAG) for t in seen if t >= min(with_bag) + 1.0)  # and then every frame
    region = hits(seen[max(seen)], BAG)[0]
    assert region.box == pytest.approx(BAG, abs=0.03)
    assert region.contrast > 25


def test_no_person_ever_near_means_an_infinite_person_gap_and_a_recent_one_is_measured():
    base = floor()
    bag = with_rect(base, BAG, 30, texture_seed=1)
    alone = run(DualBackground(), lambda t: base if t < 10 else bag, 20.0)
    assert all(math.isinf(r.person_gap_s) for r in hits(alone[max(alone)], BAG))
    brought = run(
        DualBackground(), lambda t: base if t < 10 else bag, 20.0, persons_at=lambda t: [PERSON] if 8 <= t < 11 else []
    )
    gaps = [r.person_gap_s for r in hits(brought[max(brought)], BAG)]
    assert gaps and all(8.0 <= g <= 10.0 for g in gaps)  # last covered at t = 10.5, seen at t = 19.5


@pytest.mark.parametrize("gain", [0.7, 1.4])
def test_a_global_brightness_change_is_not_an_object(gain):
    base = floor()
    changed = np.clip(base.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    bg = DualBackground()
    seen = run(bg, lambda t: base if t < 10 else changed, 30.0)
    assert [t for t, regions in seen.items() if regions] == []


def test_slow_lighting_drift_is_followed():
    base = floor().astype(np.float32)
    bg = DualBackground()
    # +0.3 grey level per second for 150 s: +45 levels, almost twice the foreground threshold.
    seen = run(bg, lambda t: np.clip(base + 0.3 * t, 0, 255).astype(np.uint8), 150.0)
    assert [t for t, regions in seen.items() if regions] == []


def test_a_ghost_of_an_object_present_at_start_is_healed():
    base = floor()
    bag = with_rect(base, BAG, 30, texture_seed=1)
    bg = DualBackground()
    seen = run(bg, lambda t: bag if t < 5 else base, 30.0)  # learnt at start-up, then taken away
    late = [t for t, regions in seen.items() if t >= 12 and hits(regions, BAG)]
    assert late == []


def test_a_shadow_keeps_the_floor_texture_and_is_healed():
    base = floor()
    shaded = base.copy()
    x1, y1, x2, y2 = int(BAG[0] * W), int(BAG[1] * H), int(BAG[2] * W), int(BAG[3] * H)
    shaded[y1:y2, x1:x2] = (shaded[y1:y2, x1:x2].astype(np.float32) * 0.55).astype(np.uint8)
    bg = DualBackground()
    seen = run(bg, lambda t: base if t < 5 else shaded, 30.0)
    assert [t for t, regions in seen.items() if t >= 12 and hits(regions, BAG)] == []


def test_a_person_standing_for_minutes_never_becomes_background_and_leaves_no_ghost():
    base = floor()
    person = with_rect(base, PERSON, 200, texture_seed=2)
    bg = DualBackground()
    # 150 s standing: longer than the long-term model's time constant (120 s).
    seen = run(
        bg, lambda t: person if 5 <= t < 155 else base, 170.0, persons_at=lambda t: [PERSON] if 5 <= t < 155 else []
    )
    after = [t for t, regions in seen.items() if t >= 155 and regions]
    assert after == []
    # The long-term model under the person is still the floor.
    small = bg._small_grey(base)
    r1, r2, c1, c2 = int(0.3 * 240), int(0.6 * 240), int(0.42 * 320), int(0.48 * 320)
    assert np.abs(bg._long[r1:r2, c1:c2] - small[r1:r2, c1:c2]).mean() < 5


def test_a_person_present_at_start_up_leaves_no_ghost():
    base = floor()
    person = with_rect(base, PERSON, 200, texture_seed=2)
    bg = DualBackground()
    seen = run(bg, lambda t: person if t < 8 else base, 30.0, persons_at=lambda t: [PERSON] if t < 8 else [])
    assert [t for t, regions in seen.items() if regions] == []


def test_a_scene_change_rebuilds_the_model():
    bg = DualBackground()
    first, second = floor(seed=0), floor(seed=5)
    seen = run(bg, lambda t: first if t < 10 else second, 30.0)
    assert bg.rebuilds >= 1
    assert [t for t, regions in seen.items() if regions] == []


def test_nothing_is_reported_inside_an_exclusion_polygon():
    base = floor()
    bag = with_rect(base, BAG, 30, texture_seed=1)
    polygon = [(0.4, 0.55), (0.6, 0.55), (0.6, 0.75), (0.4, 0.75)]
    bg = DualBackground()
    seen = {}
    for i in range(int(30 * FPS)):
        t = i / FPS
        seen[t] = bg.update(base if t < 10 else bag, t, (), [polygon])
    assert [t for t, regions in seen.items() if regions] == []


def test_too_small_and_too_large_regions_are_not_reported():
    base = floor()
    speck = with_rect(base, (0.5, 0.5, 0.505, 0.505), 20)  # 3 x 2 px
    slab = with_rect(base, (0.1, 0.1, 0.6, 0.5), 20)  # 20 % of the image
    for frame in (speck, slab):
        bg = DualBackground(BackgroundSettings(max_change_frac=0.9, unstable_change_frac=0.9))
        seen = run(bg, lambda t, f=frame: base if t < 5 else f, 20.0)
        assert [t for t, regions in seen.items() if regions] == []


def test_old_static_regions_are_absorbed():
    base = floor()
    bag = with_rect(base, BAG, 30, texture_seed=1)
    bg = DualBackground(BackgroundSettings(absorb_s=20.0))
    seen = run(bg, lambda t: base if t < 5 else bag, 40.0)
    assert hits(seen[15.0], BAG)
    assert [t for t, regions in seen.items() if t >= 30 and regions] == []  # static from ~8 s, + 20 s


def test_a_restarted_stream_restarts_the_model():
    base = floor()
    bg = DualBackground()
    run(bg, lambda t: base, 5.0)
    assert bg.update(with_rect(base, BAG, 30), 0.0) == []  # time went backwards: a new start
    assert bg.shape == (240, 320)
