"""Axis-aligned boxes in normalised xyxy (0-1 of the frame): the one home of the helpers rules and cues share."""

from __future__ import annotations

from collections.abc import Sequence

NormBox = tuple[float, float, float, float]
"""(x0, y0, x1, y1), each 0-1 of the frame's width or height."""


def centre(box: NormBox) -> tuple[float, float]:
    """The box's centre point.

    Args:
        box: normalised xyxy.

    Returns:
        (x, y), normalised.
    """
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def bottom_centre(box: NormBox) -> tuple[float, float]:
    """Where a standing person touches the ground: the middle of the bottom edge (the rules' anchor).

    Args:
        box: normalised xyxy.

    Returns:
        (x, y), normalised: the middle of the box's bottom edge.
    """
    return ((box[0] + box[2]) / 2, box[3])


def longest_side(box: NormBox) -> float:
    """The larger of width and height, never below 1e-6 (a divisor for scale-free distances).

    Args:
        box: normalised xyxy.

    Returns:
        The longest side as a share of the frame, at least 1e-6.
    """
    return max(box[2] - box[0], box[3] - box[1], 1e-6)


def area(box: NormBox) -> float:
    """Area as a share of the frame; 0 for an empty or inverted box.

    Args:
        box: normalised xyxy.

    Returns:
        The area, 0-1 of the frame's area for a box inside the frame.
    """
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def padded(box: NormBox, frac: float) -> NormBox:
    """The box grown by `frac` of its width (left and right) and height (top and bottom); not clipped.

    Args:
        box: normalised xyxy.
        frac: the margin added on each side, as a share of the box's own width or height (negative shrinks).

    Returns:
        The grown box, which may reach outside 0-1.
    """
    pad_x, pad_y = (box[2] - box[0]) * frac, (box[3] - box[1]) * frac
    return (box[0] - pad_x, box[1] - pad_y, box[2] + pad_x, box[3] + pad_y)


def clamped(box: NormBox) -> NormBox:
    """Every coordinate clamped to the frame (0-1).

    For a box that overlaps the frame (x0, y0 <= 1 and x1, y1 >= 0: every detection's box and its padded
    copies) this equals clamping only outward (x0, y0 up to 0; x1, y1 down to 1).

    Args:
        box: normalised xyxy, possibly reaching outside the frame.

    Returns:
        The box with each coordinate as a float within 0-1.
    """
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return (x0, y0, x1, y1)


def union(a: NormBox, b: NormBox) -> NormBox:
    """The smallest box holding both.

    Args:
        a: normalised xyxy.
        b: normalised xyxy.

    Returns:
        The bounding box of `a` and `b`.
    """
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def covered_share(inner: NormBox, outer: NormBox) -> float:
    """Share of `inner`'s area that lies inside `outer` (0-1): intersection over the area of `inner`.

    Args:
        inner: the box whose coverage is measured.
        outer: the box that covers it.

    Returns:
        Intersection area over `inner`'s area (floored at 1e-12, so an empty `inner` gives 0, not an error).
    """
    overlap_x = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    overlap_y = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    inner_area = max(1e-12, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return overlap_x * overlap_y / inner_area


def contains(box: NormBox, point: tuple[float, float]) -> bool:
    """Whether `point` lies inside the box or on its edge.

    Args:
        box: normalised xyxy.
        point: (x, y), normalised.

    Returns:
        True when x0 <= x <= x1 and y0 <= y <= y1.
    """
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def bounding(points: Sequence[tuple[float, float]]) -> NormBox:
    """The smallest box holding every point (a polygon's bounding box).

    Args:
        points: (x, y) pairs, normalised; at least one (an empty sequence raises ValueError).

    Returns:
        Their bounding box as floats.
    """
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))
