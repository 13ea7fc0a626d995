"""Normalised box helpers: the one home of what rules and cues used to re-implement."""

import pytest

from runner.core.boxes import (
    area,
    bottom_centre,
    bounding,
    centre,
    clamped,
    contains,
    covered_share,
    longest_side,
    padded,
    union,
)

BOX = (0.2, 0.4, 0.6, 0.5)


def test_points_and_sizes():
    assert centre(BOX) == pytest.approx((0.4, 0.45))
    assert bottom_centre(BOX) == pytest.approx((0.4, 0.5))
    assert longest_side(BOX) == pytest.approx(0.4)
    assert longest_side((0.3, 0.3, 0.3, 0.3)) == 1e-6
    assert area(BOX) == pytest.approx(0.04)
    assert area((0.5, 0.5, 0.4, 0.6)) == 0.0


def test_padded_union_and_bounding():
    assert padded(BOX, 0.5) == pytest.approx((0.0, 0.35, 0.8, 0.55))
    assert union(BOX, (0.1, 0.45, 0.3, 0.9)) == (0.1, 0.4, 0.6, 0.9)
    assert bounding([(0.5, 0.5), (1.0, 0.25), (0.75, 1.0)]) == (0.5, 0.25, 1.0, 1.0)


def test_covered_share_is_over_the_inner_box():
    assert covered_share((0.0, 0.0, 0.2, 0.2), (0.1, 0.0, 1.0, 1.0)) == pytest.approx(0.5)
    assert covered_share((0.0, 0.0, 0.2, 0.2), (0.5, 0.5, 1.0, 1.0)) == 0.0


def test_contains_includes_the_edges():
    assert contains(BOX, (0.2, 0.5))
    assert not contains(BOX, (0.61, 0.45))


@pytest.mark.parametrize("box", [(-0.2, 0.1, 0.5, 1.3), (0.0, 0.0, 1.0, 1.0), (0.9, -0.5, 1.5, 0.2), BOX])
def test_clamped_equals_clamping_only_outward_for_boxes_that_overlap_the_frame(box):
    """The fire and weapon rules clamped only x0, y0 up and x1, y1 down; a padded detection overlaps the frame."""
    outward = (max(0.0, box[0]), max(0.0, box[1]), min(1.0, box[2]), min(1.0, box[3]))
    assert clamped(box) == outward
