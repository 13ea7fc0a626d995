"""Pose geometry for `person_down`: is one detected person lying, upright, or unclear?

Works on the 17 COCO keypoints (x, y, confidence) of a pose model, in full-frame pixels. The body
axis is the torso (mid-hips -> mid-shoulders) when both are visible; when the shoulders are not
(a person lying with the head out of frame, or turned away), the legs (mid-ankles, else mid-knees
-> mid-hips) stand in for it. Its angle from the image vertical is 0 for a standing person, 90 for
one lying across the image and up to 180 head-down. A person counts as *lying* only when that angle
AND the box shape (wider than tall) agree: a seated person leans back but keeps a tall box, a person
bending or crouching has a tilted torso but a compact box, and a box made wide by an arm or a
partial detection keeps an upright torso.

It also gives the image height of the head and of the hips (pixels, y grows downwards): the rule follows
them over time to tell a fall (the hips come down fast from a standing position) from lying down on
purpose (the hips of a seated person or of someone doing sit-ups hardly move), and to see whether a
person on the ground lies still (the head does not rise again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

# COCO-17 keypoint indices
SHOULDERS = (5, 6)
HIPS = (11, 12)
KNEES = (13, 14)
ANKLES = (15, 16)
HEAD = (0, 1, 2, 3, 4)

State = Literal["lying", "upright", "unclear"]
Axis = Literal["torso", "legs"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    lying_angle_deg: float = 60.0
    lying_min_aspect: float = 1.0
    upright_angle_deg: float = 30.0
    keypoint_min_confidence: float = 0.3


@dataclass(frozen=True, slots=True)
class PoseObservation:
    state: State
    angle_deg: float | None  # body axis from vertical, 0..180 (None: not enough keypoints)
    axis: Axis | None
    aspect: float  # box width / height
    head_side: int  # -1: head left of the hips in the image, +1: right, 0: unknown
    head_y: float | None = None  # image height of the head (pixels, mean of the visible head keypoints)
    hip_y: float | None = None  # image height of the mid-hips (pixels)


def _mean_point(keypoints: np.ndarray, indices: tuple[int, ...], min_conf: float) -> np.ndarray | None:
    rows = keypoints[list(indices)]
    ok = np.isfinite(rows).all(axis=1) & (rows[:, 2] >= min_conf)
    if not ok.any():
        return None
    return rows[ok, :2].mean(axis=0)


def _angle_from_vertical(upper: np.ndarray, lower: np.ndarray) -> float | None:
    dx, dy = float(upper[0] - lower[0]), float(upper[1] - lower[1])
    if math.hypot(dx, dy) < 1e-6:
        return None
    return math.degrees(math.atan2(abs(dx), -dy))  # image y points down: "up" is -y


def body_axis(keypoints: np.ndarray | None, min_conf: float = 0.3) -> tuple[float | None, Axis | None, int]:
    """The direction of one person's body in the image, from its keypoints.

    Args:
        keypoints: (K, 3) pixel keypoints (x, y, confidence) in COCO-17 order; None, or fewer than 17 rows,
            gives no axis.
        min_conf: keypoints below this confidence (or not finite) are ignored.

    Returns:
        (angle of the body axis from the image vertical in degrees, 0..180; the axis it was measured on,
        "torso" or "legs"; the side of the head, -1 left of the hips, +1 right, 0 unknown), or
        (None, None, 0) when the visible keypoints give no axis.
    """
    if keypoints is None:
        return None, None, 0
    kp = np.asarray(keypoints, dtype=float)
    if kp.ndim != 2 or kp.shape[0] < 17 or kp.shape[1] < 3:
        return None, None, 0
    shoulders = _mean_point(kp, SHOULDERS, min_conf)
    hips = _mean_point(kp, HIPS, min_conf)
    angle: float | None = None
    axis: Axis | None = None
    upper: np.ndarray | None = None
    lower: np.ndarray | None = None
    if shoulders is not None and hips is not None:
        angle, axis, upper, lower = _angle_from_vertical(shoulders, hips), "torso", shoulders, hips
    if angle is None and hips is not None:
        feet = _mean_point(kp, ANKLES, min_conf)
        if feet is None:
            feet = _mean_point(kp, KNEES, min_conf)
        if feet is not None:
            angle, axis, upper, lower = _angle_from_vertical(hips, feet), "legs", hips, feet
    if angle is None:
        return None, None, 0
    assert upper is not None and lower is not None  # set together with angle
    head = _mean_point(kp, HEAD, min_conf)
    reference = head if head is not None else upper
    dx = float(reference[0] - lower[0])
    scale = math.hypot(float(upper[0] - lower[0]), float(upper[1] - lower[1]))
    head_side = 0 if abs(dx) < 0.25 * scale else (1 if dx > 0 else -1)
    return angle, axis, head_side


def observe(
    box_xyxy: np.ndarray | tuple[float, float, float, float],
    keypoints: np.ndarray | None,
    thresholds: Thresholds = Thresholds(),
) -> PoseObservation:
    """Classify one person detection (pixel box and keypoints) as lying, upright or unclear.

    Args:
        box_xyxy: the person's box, full-frame pixels (x1, y1, x2, y2).
        keypoints: its (K, 3) pixel keypoints (x, y, confidence), COCO-17 order; None when the model has none.
        thresholds: the angles, box aspect and keypoint confidence that decide.

    Returns:
        The state with what decided it: body angle (rounded to 0.1 degree, None without enough keypoints),
        axis, box aspect (width / height) and head side.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    aspect = (x2 - x1) / max(1e-6, y2 - y1)
    angle, axis, head_side = body_axis(keypoints, thresholds.keypoint_min_confidence)
    if angle is None:
        state: State = "unclear"
    elif angle >= thresholds.lying_angle_deg and aspect >= thresholds.lying_min_aspect:
        state = "lying"
    elif angle <= thresholds.upright_angle_deg and aspect < thresholds.lying_min_aspect:
        state = "upright"
    else:
        state = "unclear"
    angle_deg = None if angle is None else round(angle, 1)
    head_y, hip_y = head_and_hip_heights(keypoints, thresholds.keypoint_min_confidence)
    return PoseObservation(state, angle_deg, axis, round(aspect, 3), head_side, head_y, hip_y)


def head_and_hip_heights(keypoints: np.ndarray | None, min_conf: float = 0.3) -> tuple[float | None, float | None]:
    """The image heights of one person's head and mid-hips, from its keypoints.

    Args:
        keypoints: (K, 3) pixel keypoints (x, y, confidence) in COCO-17 order; None, or fewer than 17 rows,
            gives neither.
        min_conf: keypoints below this confidence (or not finite) are ignored.

    Returns:
        (head y, hip y) in pixels, each None when none of its keypoints is visible.
    """
    if keypoints is None:
        return None, None
    kp = np.asarray(keypoints, dtype=float)
    if kp.ndim != 2 or kp.shape[0] < 17 or kp.shape[1] < 3:
        return None, None
    head = _mean_point(kp, HEAD, min_conf)
    hips = _mean_point(kp, HIPS, min_conf)
    return (None if head is None else float(head[1])), (None if hips is None else float(hips[1]))
