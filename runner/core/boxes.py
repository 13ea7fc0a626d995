"""Axis-aligned boxes in normalised xyxy (0-1 of the frame): the one home of the helpers rules and cues share."""

from __future__ import annotations

NormBox = tuple[float, float, float, float]
"""(x0, y0, x1, y1), each 0-1 of the frame's width or height."""


def centre(box: NormBox) -> tuple[float, float]:
    """The box's centre point."""
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def bottom_centre(box: NormBox) -> tuple[float, float]:
    """Where a standing person touches the ground: the middle of the bottom edge (the rules' anchor)."""
    return ((box[0] + box[2]) / 2, box[3])


def longest_side(box: NormBox) -> float:
    """The larger of width and height, never below 1e-6 (a divisor for scale-free distances)."""
    return max(box[2] - box[0], box[3] - box[1], 1e-6)


def area(box: NormBox) -> float:
    """Area as a share of the frame; 0 for an empty or inverted box."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def padded(box: NormBox, frac: float) -> NormBox:
    """The box grown by `frac` of its width (left and right) and height (top and bottom); not clipped."""
    pad_x, pad_y = (box[2] - box[0]) * frac, (box[3] - box[1]) * frac
    return (box[0] - pad_x, box[1] - pad_y, box[2] + pad_x, box[3] + pad_y)


def clamped(box: NormBox) -> NormBox:
    """Every coordinate clamped to the frame (0-1)."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return (x0, y0, x1, y1)


def union(a: NormBox, b: NormBox) -> NormBox:
    """The smallest box holding both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def covered_share(inner: NormBox, outer: NormBox) -> float:
    """Share of `inner`'s area that lies inside `outer` (0-1): intersection over the area of `inner`."""
    overlap_x = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    overlap_y = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    inner_area = max(1e-12, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return overlap_x * overlap_y / inner_area
