"""What counts as a region *moving* (`runner.rules._region_voting.moving`): its box translating, not growing.

A light carried by a vehicle shifts every edge of its box; flames rise from a base that stays put, a fire spreads
from where it started, and the fire model boxes now the flames' tips, now the whole fire down to its base. Only the
shift that opposite edges share is a translation.
"""

from __future__ import annotations

from collections import deque

import pytest

from runner.rules._region_voting import MOVING_SIZES_PER_S, Hit, RegionVoter, moving, shared_shift

WHOLE = (0.40, 0.35, 0.60, 0.75)  # a fire, normalised xyxy
TIPS = (0.40, 0.35, 0.60, 0.55)  # its upper half: the tongues of flame


def hit(t_s: float, box: tuple[float, float, float, float]) -> Hit:
    return Hit(t_s=t_s, box=box, confidence=0.8, label="fire")


def shifted(box: tuple[float, float, float, float], dx: float = 0.0, dy: float = 0.0) -> tuple[float, ...]:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def judged(*hits: Hit) -> bool:
    """`moving` of the last hit against the region's hits, oldest first."""
    return moving(deque(hits), hits[-1])


@pytest.mark.parametrize(
    ("edge_a", "edge_b", "expected"),
    [
        (0.1, 0.2, 0.1),  # both edges moved right: the smaller shift is the translation
        (-0.3, -0.05, -0.05),
        (0.1, -0.1, 0.0),  # apart: grew about its centre
        (-0.1, 0.1, 0.0),
        (0.0, 0.2, 0.0),  # one edge fixed: grew from it
        (0.0, 0.0, 0.0),
    ],
)
def test_shared_shift_is_what_opposite_edges_have_in_common(edge_a, edge_b, expected):
    assert shared_shift(edge_a, edge_b) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "before", "after"),
    [
        ("tips-then-whole-fire", TIPS, WHOLE),  # the bottom edge drops half the box's height in 0.33 s
        ("whole-fire-then-tips", WHOLE, TIPS),
        ("spreading-right", (0.40, 0.35, 0.45, 0.75), WHOLE),  # four times as wide from its left edge
        ("flaring-up-about-its-centre", (0.45, 0.50, 0.55, 0.60), WHOLE),
    ],
)
def test_a_box_that_grows_or_shrinks_in_place_is_not_moving(name, before, after):
    assert not judged(hit(0.0, before), hit(1 / 3, after)), name


@pytest.mark.parametrize(
    ("name", "after"),
    [
        ("driving-right", shifted(WHOLE, dx=0.2)),  # a box width in 1/3 s
        ("driving-up", shifted(WHOLE, dy=-0.2)),
        # Headlights approaching an elevated camera: both edges go down the image, the bottom one faster.
        ("approaching", (0.35, 0.50, 0.65, 0.95)),
    ],
)
def test_a_box_that_translates_is_moving(name, after):
    assert judged(hit(0.0, WHOLE), hit(1 / 3, after)), name


def test_the_translation_is_measured_in_box_sizes_per_second_over_about_a_second():
    """Just under the threshold over a second is not moving; the reference is the latest hit at least a second old."""
    slow = MOVING_SIZES_PER_S * 0.9 * (WHOLE[2] - WHOLE[0])
    assert not judged(hit(0.0, WHOLE), hit(0.5, shifted(WHOLE, dx=slow / 2)), hit(1.0, shifted(WHOLE, dx=slow)))
    fast = MOVING_SIZES_PER_S * 1.2 * (WHOLE[2] - WHOLE[0])
    assert judged(hit(0.0, WHOLE), hit(0.5, shifted(WHOLE, dx=fast / 2)), hit(1.0, shifted(WHOLE, dx=fast)))
    assert not judged(hit(0.0, WHOLE), hit(0.0, shifted(WHOLE, dx=0.3)))  # no time elapsed: nothing to measure


def test_a_region_is_settled_from_its_last_translating_hit():
    """`Region.settled_s` (what the fire rule's `min_duration_s` counts from) stays at the first hit while the box
    switches between the flames' tips and the whole fire, and follows a box driving in until it stops."""
    voter = RegionVoter(n_frames=5)
    for k in range(6):
        (region,) = voter.vote([hit(k / 3, TIPS if k % 2 else WHOLE)])
    assert region.settled_s == 0.0

    voter = RegionVoter(n_frames=5)
    for k in range(6):
        box = shifted(WHOLE, dx=0.06 * min(k, 3))  # 0.9 box widths per second for 1 s, then parked
        (region,) = voter.vote([hit(k / 3, box)])
    assert region.settled_s == pytest.approx(1.0)
