"""Greedy non-maximum suppression: the one loop behind the engine's per-class NMS and the tiles' merge.

Two rules share it and keep their own arithmetic, so that each caller keeps exactly the boxes it kept before:

- `nms`: torchvision's rule (drop IoU > threshold), what Ultralytics' predictor runs; the OpenVINO engine
  copies it (`runner.inference.ov_engine.postprocess`).
- `nms_with_containment`: the tiled density pass's merge (`runner.inference.tiling.merge_nms`): same class
  only, and a box lying mostly inside a kept one goes too (a person cut by a tile's edge).

Why not `supervision.box_non_max_suppression`: it orders equal scores differently (an unstable argsort,
reversed), returns a mask instead of the kept indices by decreasing score (the engine cuts at
`max_det` in that order), and builds the full N x N IoU matrix (thousands of candidates per frame).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# (index of the box just kept, indices of the boxes still in play) -> which of those it suppresses
IsDuplicate = Callable[[int, np.ndarray], np.ndarray]


def greedy_keep(scores: np.ndarray, is_duplicate: IsDuplicate) -> np.ndarray:
    """Indices kept by greedy suppression, highest score first (ties: the lower index first).

    Args:
        scores: (N,) score per box.
        is_duplicate: called with each kept box and the boxes still in play after it; returns a boolean
            mask over the latter, True for the boxes it suppresses.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        if not rest.size:
            break
        order = rest[~is_duplicate(best, rest)]
    return np.array(keep, dtype=np.int64)


def intersection_areas(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Area of the overlap of one xyxy box with each of `others`.

    Args:
        box: (4,) xyxy.
        others: (M, 4) xyxy.

    Returns:
        (M,) areas, 0 where they do not overlap.
    """
    left_top = np.maximum(box[:2], others[:, :2])
    right_bottom = np.minimum(box[2:], others[:, 2:])
    return np.prod(np.clip(right_bottom - left_top, 0, None), axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS, highest score first (torchvision.ops.nms' rule: drop IoU > threshold).

    Args:
        boxes: (N, 4) xyxy; class-agnostic (offset each class's boxes apart for a per-class NMS).
        scores: (N,) confidences.
        iou_threshold: a box whose IoU with a kept one exceeds this is dropped.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def overlaps_too_much(best: int, rest: np.ndarray) -> np.ndarray:
        inter = intersection_areas(boxes[best], boxes[rest])
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        return ~(iou <= iou_threshold)  # torchvision keeps IoU == threshold (and NaN, as before)

    return greedy_keep(scores, overlaps_too_much)


def nms_with_containment(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, containment: float
) -> np.ndarray:
    """Indices kept by a greedy class-aware NMS that also drops a box lying mostly inside a kept one.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,) confidences.
        classes: (N,) class of each box; only boxes of the same class suppress each other.
        iou_threshold: a box whose IoU with a kept box exceeds this is dropped.
        containment: ... or when the smaller of the two lies inside the other for more than this share of
            its area.

    Returns:
        (K,) int64 indices of the kept boxes, in increasing index order.
    """
    areas = np.maximum(0.0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0.0, boxes[:, 3] - boxes[:, 1])

    def duplicates(best: int, rest: np.ndarray) -> np.ndarray:
        same_class = classes[rest] == classes[best]
        found = np.zeros(len(rest), dtype=bool)
        others = rest[same_class]
        if not len(others):
            return found
        inter = intersection_areas(boxes[best], boxes[others])
        union = areas[best] + areas[others] - inter
        smaller = np.minimum(areas[best], areas[others])
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = np.where(union > 0, inter / union, 0.0)
            inside = np.where(smaller > 0, inter / smaller, 0.0)
        found[same_class] = (overlap > iou_threshold) | (inside > containment)
        return found

    return np.sort(greedy_keep(scores, duplicates))
