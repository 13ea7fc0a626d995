"""Helpers for the one detection type between stages, `supervision.Detections`."""

from __future__ import annotations

import numpy as np
import supervision as sv

from runner.core.fields import CLASS_NAME, KEYPOINTS, MODEL


def empty_detections(*, with_model: bool = True) -> sv.Detections:
    """No boxes, with the columns every stage reads: class names (and the producing model's name).

    Args:
        with_model: also add the empty `MODEL` column (a detector's output has it; a merge of passes does not).

    Returns:
        An empty `sv.Detections` whose `CLASS_NAME` (and `MODEL`) columns are empty object arrays.
    """
    detections = sv.Detections.empty()
    detections.data[CLASS_NAME] = np.array([], dtype=object)
    if with_model:
        detections.data[MODEL] = np.array([], dtype=object)
    return detections


def merge_detections(parts: list[sv.Detections]) -> sv.Detections:
    """Merge the outputs of several models; pose keypoints are NaN-padded for the others.

    Args:
        parts: one `sv.Detections` per model (empty ones are skipped).

    Returns:
        One `sv.Detections`; `empty_detections()` when every part is empty.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_detections()
    if len(parts) == 1:
        return parts[0]
    with_kp = [p.data[KEYPOINTS] for p in parts if KEYPOINTS in p.data]
    if with_kp:
        shape = np.shape(with_kp[0])[1:]  # (K, 3) of the first pose model
        for part in parts:
            if KEYPOINTS not in part.data:
                part.data[KEYPOINTS] = np.full((len(part), *shape), np.nan, dtype=np.float32)
    return sv.Detections.merge(parts)
