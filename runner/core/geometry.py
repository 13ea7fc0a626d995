"""Plane geometry on normalised image coordinates (0..1, y down) and the ground-plane calibration."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]


def bottom_centres(xyxy: np.ndarray) -> np.ndarray:
    """Anchor of each box: the middle of its bottom edge, where a person or vehicle touches the ground.

    Args:
        xyxy: boxes as (N, 4) x0, y0, x1, y1 (any units; a flat array of 4N values is reshaped).

    Returns:
        (N, 2) float array of (x, y) anchors, in the boxes' units.
    """
    xyxy = np.asarray(xyxy, dtype=float).reshape(-1, 4)
    return np.column_stack(((xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]))


def normalised_anchors(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bottom-centre anchors in normalised coordinates, kept strictly inside the image.

    A box clipped by the frame's bottom edge has its anchor exactly on y = 1.0, which an even-odd
    test counts as outside a zone drawn up to that edge: nudging it inside keeps such people in.

    Args:
        xyxy: boxes as (N, 4) x0, y0, x1, y1 in pixels.
        width: the frame's width, pixels.
        height: the frame's height, pixels.

    Returns:
        (N, 2) float array of normalised (x, y) anchors, each clipped to [0, 1 - 1e-6].
    """
    anchors = bottom_centres(xyxy) / np.array([width, height], dtype=float)
    return np.clip(anchors, 0.0, 1.0 - 1e-6)


def points_in_polygon(points: np.ndarray, polygon: Sequence[Point]) -> np.ndarray:
    """Vectorised even-odd ray casting: a boolean per point (points on an edge may fall either way).

    Args:
        points: (N, 2) (x, y) points, in the polygon's units.
        polygon: the polygon's vertices in order (closed implicitly).

    Returns:
        (N,) bool array, True for each point inside.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=float)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    hits = straddles & (x < x_cross)
    return (np.count_nonzero(hits, axis=1) % 2) == 1


def side_of_line(point: Point, start: Point, end: Point) -> float:
    """Signed area: < 0 when `point` is on the left walking from start to end on the image (y down).

    Args:
        point: the point to place.
        start: the line's first point.
        end: the line's second point.

    Returns:
        Twice the signed area of the triangle start-end-point: negative on the left, positive on the right,
        0 on the line.
    """
    return (end[0] - start[0]) * (point[1] - start[1]) - (end[1] - start[1]) * (point[0] - start[0])


def segments_intersect(p0: Point, p1: Point, a: Point, b: Point) -> bool:
    """True when segment p0-p1 properly crosses segment a-b (touching an end point does not count).

    Args:
        p0: first segment's start (e.g. a track's previous anchor).
        p1: first segment's end.
        a: second segment's start (e.g. a counting line's first point).
        b: second segment's end.

    Returns:
        Whether the segments cross strictly; collinear or touching segments give False.
    """
    d1, d2 = side_of_line(p0, a, b), side_of_line(p1, a, b)
    d3, d4 = side_of_line(a, p0, p1), side_of_line(b, p0, p1)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


def angle_between_deg(u: Sequence[float], v: Sequence[float]) -> float:
    """Unsigned angle between two non-zero vectors, 0..180 degrees.

    Args:
        u: a 2-D vector (its first two components are used).
        v: a 2-D vector.

    Returns:
        The angle in degrees, 0-180; 0 when either vector is zero.
    """
    nu, nv = math.hypot(u[0], u[1]), math.hypot(v[0], v[1])
    if nu == 0.0 or nv == 0.0:
        return 0.0
    cos = (u[0] * v[0] + u[1] * v[1]) / (nu * nv)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def to_pixels(points: Sequence[Point], width: int, height: int) -> np.ndarray:
    """Normalised points scaled to pixel coordinates.

    Args:
        points: (x, y) points, normalised.
        width: the frame's width, pixels.
        height: the frame's height, pixels.

    Returns:
        (N, 2) float array of pixel coordinates (not rounded).
    """
    return np.asarray(points, dtype=float).reshape(-1, 2) * np.array([width, height], dtype=float)


def ground_homography(image_points: Sequence[Point], world_points_m: Sequence[Point]) -> np.ndarray:
    """3x3 homography mapping normalised image points to ground-plane metres.

    Args:
        image_points: four normalised image points.
        world_points_m: the same four points on the ground plane, metres.

    Returns:
        The 3x3 perspective transform (float64).
    """
    src = np.asarray(image_points, dtype=np.float32).reshape(4, 2)
    dst = np.asarray(world_points_m, dtype=np.float32).reshape(4, 2)
    return cv2.getPerspectiveTransform(src, dst)


def project(points: Sequence[Point], homography: np.ndarray) -> np.ndarray:
    """Points mapped through a homography.

    Args:
        points: (x, y) points in the homography's source space (normalised image coordinates here).
        homography: a 3x3 perspective transform.

    Returns:
        (N, 2) float64 array of the mapped points (metres for a ground homography).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, np.asarray(homography, dtype=np.float64)).reshape(-1, 2)


def polygon_area(points: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Unsigned area of a simple polygon (shoelace formula).

    Args:
        points: the vertices in order, as (x, y) pairs or an (N, 2) array.

    Returns:
        The area, in the points' units squared.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def ground_area_m2(polygon: Sequence[Point], homography: np.ndarray) -> float:
    """Area in square metres of a normalised image polygon lying on the calibrated ground plane.

    Args:
        polygon: the polygon's vertices, normalised image coordinates.
        homography: the camera's ground homography (image to metres).

    Returns:
        The polygon's ground area, square metres.
    """
    return polygon_area(project(polygon, homography))


def quad_is_degenerate(points: Sequence[Point], min_area: float) -> bool:
    """True when three of the four points are (nearly) collinear: no usable homography.

    Args:
        points: the four calibration points.
        min_area: the smallest triangle area, in the points' units squared, that counts as not collinear.

    Returns:
        Whether any three of the four points span a triangle smaller than `min_area`.
    """
    pts = [tuple(p) for p in points]
    for i in range(4):
        tri = [pts[j] for j in range(4) if j != i]
        if polygon_area(tri) < min_area:
            return True
    return False
