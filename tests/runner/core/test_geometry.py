"""Plane geometry and ground calibration (runner.core.geometry), as tables of cases."""

from __future__ import annotations

import numpy as np
import pytest

from runner.core.geometry import (
    angle_between_deg,
    bottom_centres,
    ground_area_m2,
    ground_homography,
    points_in_polygon,
    polygon_area,
    project,
    quad_is_degenerate,
    segments_intersect,
    side_of_line,
)

# An "L" (concave): the notch is the top-right quarter.
L_SHAPE = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.25, 0.25), True),  # upper arm
        ((0.75, 0.75), True),  # lower arm
        ((0.25, 0.75), True),  # corner of the L
        ((0.75, 0.25), False),  # in the notch: inside the bounding box, outside the polygon
        ((0.9, 0.1), False),
        ((1.5, 0.5), False),
        ((-0.1, 0.5), False),
        ((0.5, 1.2), False),
    ],
)
def test_points_in_concave_polygon(point, inside):
    assert points_in_polygon(np.array([point]), L_SHAPE).tolist() == [inside]


def test_points_in_polygon_is_vectorised_and_handles_empty_input():
    points = np.array([(0.25, 0.25), (0.75, 0.25), (0.75, 0.75)])
    assert points_in_polygon(points, L_SHAPE).tolist() == [True, False, True]
    assert points_in_polygon(np.empty((0, 2)), L_SHAPE).shape == (0,)


def test_points_in_polygon_with_a_horizontal_edge_level_with_the_point():
    # A ray cast at y=0.5 runs along the notch's horizontal edge: no division-by-zero artefacts.
    points = np.array([(0.25, 0.5), (0.75, 0.5 + 1e-9), (0.75, 0.5 - 1e-9)])
    assert points_in_polygon(points, L_SHAPE).tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("p0", "p1", "a", "b", "expected"),
    [
        ((0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), True),  # an X
        ((0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0), True),  # a plus
        ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), False),  # parallel
        ((0.0, 0.0), (0.4, 0.4), (0.0, 1.0), (1.0, 0.0), False),  # stops short of the other segment
        ((0.0, 0.5), (1.0, 0.5), (0.5, 0.6), (0.5, 1.0), False),  # passes beyond the other's end
        ((0.0, 0.0), (0.5, 0.5), (0.0, 1.0), (1.0, 0.0), False),  # touches at an end point: not a crossing
        ((0.0, 0.0), (1.0, 0.0), (0.2, 0.0), (0.8, 0.0), False),  # collinear overlap: not a crossing
    ],
)
def test_segments_intersect(p0, p1, a, b, expected):
    assert segments_intersect(p0, p1, a, b) is expected
    assert segments_intersect(a, b, p0, p1) is expected  # symmetric
    assert segments_intersect(p1, p0, b, a) is expected  # orientation-free


@pytest.mark.parametrize(
    ("start", "end", "point", "sign"),
    [
        # Walking right along y=0.5: "left" is up on the image (smaller y, y points down).
        ((0.0, 0.5), (1.0, 0.5), (0.5, 0.2), -1),
        ((0.0, 0.5), (1.0, 0.5), (0.5, 0.8), +1),
        # Walking down the image (towards the viewer): the walker's left is the image's right.
        ((0.3, 0.0), (0.3, 1.0), (0.6, 0.5), -1),
        ((0.3, 0.0), (0.3, 1.0), (0.1, 0.5), +1),
        # Reversing the line flips the side.
        ((0.3, 1.0), (0.3, 0.0), (0.6, 0.5), +1),
        ((0.0, 0.5), (1.0, 0.5), (0.7, 0.5), 0),
    ],
)
def test_side_of_line_sign_convention(start, end, point, sign):
    value = side_of_line(point, start, end)
    assert (value > 0) - (value < 0) == sign


def test_side_of_line_is_distance_times_length():
    # |side| / length is the point's distance to the line: the zone rule's margin relies on it.
    start, end = (0.0, 0.0), (0.0, 2.0)
    assert abs(side_of_line((0.25, 1.0), start, end)) / 2.0 == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("u", "v", "degrees"),
    [
        ((1, 0), (1, 0), 0.0),
        ((1, 0), (0, 1), 90.0),
        ((1, 0), (0, -1), 90.0),  # unsigned
        ((1, 0), (-1, 0), 180.0),
        ((1, 1), (1, 0), 45.0),
        ((-1, 1), (1, 0), 135.0),
        ((3, 0), (0.001, 0), 0.0),  # lengths do not matter
        ((1e-12, 0), (-5, 0), 180.0),
        ((0, 0), (1, 0), 0.0),  # a zero vector has no direction: reported as 0
        ((1, 1e-9), (1, 0), 0.0),  # float noise never leaves acos' domain
    ],
)
def test_angle_between_deg(u, v, degrees):
    assert angle_between_deg(u, v) == pytest.approx(degrees, abs=1e-6)


def test_bottom_centres():
    xyxy = np.array([[10, 20, 30, 60], [0, 0, 1, 1]], dtype=float)
    assert bottom_centres(xyxy).tolist() == [[20.0, 60.0], [0.5, 1.0]]
    assert bottom_centres(np.empty((0, 4))).shape == (0, 2)


UNIT_SQUARE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def test_ground_homography_maps_the_calibration_points():
    world = [(0.0, 0.0), (10.0, 0.0), (10.0, 20.0), (0.0, 20.0)]
    homography = ground_homography(UNIT_SQUARE, world)
    assert project(UNIT_SQUARE, homography) == pytest.approx(np.array(world), abs=1e-4)
    assert project([(0.5, 0.5)], homography) == pytest.approx(np.array([[5.0, 10.0]]), abs=1e-4)


@pytest.mark.parametrize(
    ("polygon", "area_m2"),
    [
        (UNIT_SQUARE, 200.0),  # 0..1 square mapped to 10 m x 20 m
        ([(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)], 50.0),  # a quarter of it
        ([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], 100.0),  # a triangle
        (list(reversed(UNIT_SQUARE)), 200.0),  # orientation-free
    ],
)
def test_ground_area_of_a_zone(polygon, area_m2):
    homography = ground_homography(UNIT_SQUARE, [(0.0, 0.0), (10.0, 0.0), (10.0, 20.0), (0.0, 20.0)])
    assert ground_area_m2(polygon, homography) == pytest.approx(area_m2, rel=1e-4)


def test_ground_area_with_perspective():
    # A trapezoid on the image (far side narrower) that is a 4 m x 4 m square on the ground.
    image = [(0.4, 0.2), (0.6, 0.2), (0.9, 0.9), (0.1, 0.9)]
    world = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)]
    homography = ground_homography(image, world)
    assert ground_area_m2(image, homography) == pytest.approx(16.0, rel=1e-4)
    assert polygon_area(image) == pytest.approx(0.35)
    # Its far half (smaller on the image) is still half of the ground.
    far_half = [(0.4, 0.2), (0.6, 0.2), *project([(4.0, 2.0), (0.0, 2.0)], np.linalg.inv(homography)).tolist()]
    assert ground_area_m2(far_half, homography) == pytest.approx(8.0, rel=1e-4)
    assert polygon_area(far_half) < 0.35 / 2


@pytest.mark.parametrize(
    ("quad", "min_area", "degenerate"),
    [
        (UNIT_SQUARE, 1e-4, False),
        ([(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.5, 1.0)], 1e-4, True),  # three points on a line
        ([(0.0, 0.0), (0.5, 0.001), (1.0, 0.0), (0.5, 1.0)], 1e-3, True),  # nearly collinear
        ([(0.0, 0.0), (0.0, 0.0), (1.0, 0.0), (0.5, 1.0)], 1e-4, True),  # repeated point
        ([(0.0, 0.0), (10.0, 0.0), (10.0, 20.0), (0.0, 20.0)], 1e-3, False),  # metres
    ],
)
def test_quad_is_degenerate(quad, min_area, degenerate):
    assert quad_is_degenerate(quad, min_area) is degenerate
