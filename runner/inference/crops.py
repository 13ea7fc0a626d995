"""Crops with rotation for re-detection, and the mapping of boxes back to the full frame.

Used when a rule asks the pipeline to look again around a region, e.g. at a person who was upright
and is now lying: detectors trained on upright people find a lying one far better once the crop is
rotated by 90 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ROTATIONS = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Crop:
    image: np.ndarray  # the (rotated) crop handed to the detector
    x0: int  # top-left of the crop in the full frame, pixels
    y0: int
    width: int  # crop size before rotation
    height: int
    rotate_deg: int


def make_crop(
    frame: np.ndarray,
    box: tuple[float, float, float, float],
    pad_frac: float = 0.5,
    rotate_deg: int = 0,
    min_side_px: int = 32,
) -> Crop | None:
    """Crop `box` (normalised xyxy) enlarged by `pad_frac` of its size per side, clipped to the frame.

    Args:
        frame: the full BGR frame.
        box: the region, normalised xyxy.
        pad_frac: padding added on each side, as a fraction of the box's width (left, right) and height
            (top, bottom).
        rotate_deg: clockwise rotation of the crop: 0, 90, 180 or 270.
        min_side_px: smallest crop side, in frame pixels before rotation.

    Returns:
        The crop (contiguous, rotated) and where it lies in the frame; None when the clipped crop is
        narrower or shorter than `min_side_px`.

    Raises:
        ValueError: `rotate_deg` is not one of 0, 90, 180, 270.
    """
    if rotate_deg not in ROTATIONS:
        raise ValueError(f"rotate_deg must be one of {sorted(ROTATIONS)}")
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    pad_x, pad_y = (x2 - x1) * pad_frac, (y2 - y1) * pad_frac
    x0, y0 = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
    xe, ye = min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y)))
    if xe - x0 < min_side_px or ye - y0 < min_side_px:
        return None
    crop = frame[y0:ye, x0:xe]
    code = ROTATIONS[rotate_deg]
    rotated = np.ascontiguousarray(cv2.rotate(crop, code) if code is not None else crop)
    return Crop(rotated, x0, y0, xe - x0, ye - y0, rotate_deg)


def boxes_to_frame(xyxy: np.ndarray, crop: Crop) -> np.ndarray:
    """Map pixel boxes found in the rotated crop back to full-frame pixel coordinates.

    Args:
        xyxy: (N, 4) pixel boxes in the rotated crop's image.
        crop: the crop they were found in.

    Returns:
        (N, 4) float pixel boxes in the full frame, axis-aligned (each box's corners turned back, then
        re-ordered so x1 <= x2 and y1 <= y2).
    """
    boxes = np.asarray(xyxy, dtype=float).reshape(-1, 4)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 3]]], axis=1)  # (N, 2, 2)
    points = _unrotate(corners.reshape(-1, 2), crop).reshape(-1, 2, 2)
    lo, hi = points.min(axis=1), points.max(axis=1)
    return np.column_stack([lo[:, 0] + crop.x0, lo[:, 1] + crop.y0, hi[:, 0] + crop.x0, hi[:, 1] + crop.y0])


def points_to_frame(points: np.ndarray, crop: Crop) -> np.ndarray:
    """Map (..., 2) pixel points (e.g. keypoints) from the rotated crop back to the full frame.

    Args:
        points: (..., 2) pixel (x, y) points in the rotated crop's image.
        crop: the crop they were found in.

    Returns:
        Float points of the same shape, in full-frame pixels.
    """
    pts = np.asarray(points, dtype=float)
    flat = _unrotate(pts.reshape(-1, 2), crop) + np.array([crop.x0, crop.y0], dtype=float)
    return flat.reshape(pts.shape)


def _unrotate(points: np.ndarray, crop: Crop) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    w, h = crop.width, crop.height
    if crop.rotate_deg == 90:  # the crop was turned clockwise: turn the points back
        return np.column_stack([y, h - x])
    if crop.rotate_deg == 270:
        return np.column_stack([w - y, x])
    if crop.rotate_deg == 180:
        return np.column_stack([w - x, h - y])
    return np.column_stack([x, y])
