"""The person cascade's second stage: a pose model on the crops of the persons a detector found.

The detector's boxes stay what the rules see; each person crop (padded, at about its own scale: the smallest
of a few square input sides that holds it, so a far person is not blown up to the whole model input and near
ones share few compiled shapes) goes through the pose model, batched per side, and the keypoints of the pose
detection that overlaps the person's box best are attached to it (the `KEYPOINTS` column, as a pose model
used as the detector gives them). A person the pose model does not find gets keypoints of confidence 0
("not seen"); other classes get NaN rows, as `runner.core.detections.merge_detections` pads them.

A detector trained mostly on upright people often loses a person at the moment they fall, while a pose model
still finds them lying: `LostPersons` remembers where the detector last saw each person, and for
`LOST_SEARCH_S` after it lost one, the pose model also looks around that place (`find_lost`); a person it finds
there is added to the frame's persons, with its keypoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, cast

import numpy as np
import supervision as sv

from runner.config.site import ModelSpec
from runner.core.fields import CLASS_NAME, KEYPOINTS
from runner.inference.crops import Crop, boxes_to_frame, make_crop, points_to_frame

CROP_PAD_FRAC = 0.15  # context around the box: the pose model sees the whole body and a little ground
CROP_SIDES_PX = (128, 256, 384, 640)  # square pose inputs: a crop runs at the smallest that holds it
MAX_CROPS_PER_FRAME = 24  # the largest persons first; the rest get "not seen" keypoints this frame
MIN_MATCH_IOU = 0.3  # a pose detection at least this close to the person's box lends it its keypoints
COCO_KEYPOINTS = 17
LOST_SEARCH_S = 2.0  # how long the pose model looks where the detector lost a person
LOST_PAD_FRAC = 0.5  # around the last box: someone who fell lies across it, wider than they stood
MAX_LOST_SEARCHES = 4  # per frame, the most recently lost first
SAME_PERSON_IOU = 0.3  # a box this close to a remembered one is the same person, still seen


class PoseModel(Protocol):
    """What the cascade needs of a pose detector (`runner.inference.detector.Detector`)."""

    @property
    def spec(self) -> ModelSpec:
        """The model's config (its `imgsz`: the largest crop input)."""
        ...

    @property
    def any_input_size(self) -> bool:
        """Whether a call may ask for another input size than the configured one."""
        ...

    def detect_crops(
        self, images: list[np.ndarray], labels: Iterable[str] | None = None, imgsz: int | None = None
    ) -> list[sv.Detections]:
        """Detections in crops of any shape, padded to a square input.

        Args:
            images: BGR crops.
            labels: the class names wanted.
            imgsz: the square input's side; None for the model's own.

        Returns:
            One `sv.Detections` per crop, in crop pixels.
        """
        ...


def crop_side_px(crop_hw: tuple[int, int], max_side_px: int) -> int:
    """The square input side a crop runs at: the smallest of `CROP_SIDES_PX` that holds its longest side,
    at most the pose model's own input size.

    Args:
        crop_hw: the crop's (height, width), pixels.
        max_side_px: the pose model's input size.

    Returns:
        The side, pixels.
    """
    longest = max(crop_hw)
    fitting = [side for side in CROP_SIDES_PX if side >= longest and side <= max_side_px]
    return fitting[0] if fitting else max_side_px


def attach_keypoints(image: np.ndarray, detections: sv.Detections, label: str, pose: PoseModel) -> int:
    """Run the pose model on the crops of the `label` detections and attach their keypoints (in place).

    Args:
        image: the frame the detections were made on.
        detections: one frame's detections (pixel boxes, `CLASS_NAME` column); a `KEYPOINTS` column is added.
        label: the class whose detections get keypoints (e.g. person).
        pose: the pose model.

    Returns:
        The number of crops the pose model ran on.
    """
    if len(detections) == 0:
        return 0
    names = detections.data.get(CLASS_NAME)
    persons = [i for i in range(len(detections)) if names is not None and str(names[i]) == label]
    keypoints = np.full((len(detections), COCO_KEYPOINTS, 3), np.nan, dtype=np.float32)
    keypoints[persons] = 0.0  # "not seen" until the pose model finds the person
    height, width = image.shape[:2]
    areas = {i: _area(detections.xyxy[i]) for i in persons}
    chosen = sorted(persons, key=lambda i: -areas[i])[:MAX_CROPS_PER_FRAME]
    own_side = pose.spec.imgsz
    by_side: dict[int | None, list[tuple[int, Crop]]] = {}
    for i in chosen:
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        crop = make_crop(image, (x1 / width, y1 / height, x2 / width, y2 / height), CROP_PAD_FRAC, min_side_px=8)
        if crop is None:
            continue
        side = crop_side_px(crop.image.shape[:2], own_side) if pose.any_input_size else None
        by_side.setdefault(side, []).append((i, crop))
    for side, members in by_side.items():
        found = pose.detect_crops([crop.image for _, crop in members], {label}, imgsz=side)
        for (i, crop), in_crop in zip(members, found):
            best = _best_match(detections.xyxy[i], in_crop, crop)
            if best is not None:
                keypoints = _widened(keypoints, best.shape[0])
                keypoints[i] = best
    detections.data[KEYPOINTS] = keypoints
    return sum(len(members) for members in by_side.values())


def _best_match(box: np.ndarray, in_crop: sv.Detections, crop: Crop) -> np.ndarray | None:
    """The frame-pixel keypoints of the crop's pose detection that overlaps `box` best (None: none close)."""
    if len(in_crop) == 0 or not in_crop.data or KEYPOINTS not in in_crop.data:
        return None
    boxes = boxes_to_frame(np.asarray(in_crop.xyxy, dtype=float), crop)
    overlaps = [_iou(box, other) for other in boxes]
    best = int(np.argmax(overlaps))
    if overlaps[best] < MIN_MATCH_IOU:
        return None
    points = np.array(in_crop.data[KEYPOINTS][best], dtype=np.float32)
    points[:, :2] = points_to_frame(points[:, :2], crop)
    return points


def _widened(keypoints: np.ndarray, count: int) -> np.ndarray:
    """The array with `count` keypoints per row (a pose model with another skeleton than COCO-17)."""
    if keypoints.shape[1] == count:
        return keypoints
    resized = np.full((len(keypoints), count, 3), np.nan, dtype=np.float32)
    shared = min(count, keypoints.shape[1])
    resized[:, :shared] = keypoints[:, :shared]
    return resized


def _area(box: np.ndarray) -> float:
    return max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


class LostPersons:
    """Where the detector last saw each person, for `LOST_SEARCH_S` (boxes matched frame to frame by overlap)."""

    def __init__(self) -> None:
        self._last_seen: list[tuple[float, np.ndarray]] = []  # (stream time, pixel xyxy)

    def update(self, t_s: float, boxes: np.ndarray) -> list[np.ndarray]:
        """Remember this frame's person boxes and return the boxes of the persons lost since.

        Args:
            t_s: the frame's stream time, seconds.
            boxes: the detector's person boxes on this frame, pixel xyxy (N, 4).

        Returns:
            The last boxes of persons not seen on this frame but within `LOST_SEARCH_S`, most recent first,
            at most `MAX_LOST_SEARCHES`.
        """
        kept = [
            (t, box)
            for t, box in self._last_seen
            if t_s - t <= LOST_SEARCH_S and not any(_iou(box, seen) >= SAME_PERSON_IOU for seen in boxes)
        ]
        lost = [box for _, box in sorted(kept, key=lambda item: -item[0])][:MAX_LOST_SEARCHES]
        self._last_seen = kept + [(t_s, np.asarray(box, dtype=float)) for box in boxes]
        return lost

    def clear(self) -> None:
        """Forget every person (the stream restarted)."""
        self._last_seen.clear()


def find_lost(
    image: np.ndarray, lost_boxes: list[np.ndarray], current: sv.Detections, label: str, pose: PoseModel
) -> sv.Detections | None:
    """The pose model around where persons were lost: the persons it finds there that the detector's boxes
    do not already cover, in frame pixels with their keypoints.

    Args:
        image: the frame.
        lost_boxes: the persons' last boxes, pixel xyxy.
        current: the frame's detections (the detector's persons are not found twice).
        label: the person class.
        pose: the pose model.

    Returns:
        The persons found (`CLASS_NAME`, `MODEL` of the pose model, `KEYPOINTS`), or None when none.
    """
    height, width = image.shape[:2]
    crops = []
    for x1, y1, x2, y2 in lost_boxes:
        crop = make_crop(image, (x1 / width, y1 / height, x2 / width, y2 / height), LOST_PAD_FRAC, min_side_px=8)
        if crop is not None:
            crops.append(crop)
    if not crops:
        return None
    names = current.data.get(CLASS_NAME) if len(current) else None
    taken = [current.xyxy[i] for i in range(len(current)) if names is not None and str(names[i]) == label]
    found: list[sv.Detections] = []
    for crop in crops:
        side = crop_side_px(crop.image.shape[:2], pose.spec.imgsz) if pose.any_input_size else None
        in_crop = pose.detect_crops([crop.image], {label}, imgsz=side)[0]
        if len(in_crop) == 0 or not in_crop.data or KEYPOINTS not in in_crop.data:
            continue
        in_crop.xyxy = boxes_to_frame(np.asarray(in_crop.xyxy, dtype=float), crop)
        points = np.array(in_crop.data[KEYPOINTS], dtype=np.float32)
        points[..., :2] = points_to_frame(points[..., :2], crop)
        in_crop.data[KEYPOINTS] = points
        new = [j for j in range(len(in_crop)) if not any(_iou(in_crop.xyxy[j], box) >= MIN_MATCH_IOU for box in taken)]
        if new:
            # A boolean mask selects a `sv.Detections` (its stubs' return type covers every kind of index).
            kept = cast(sv.Detections, in_crop[np.isin(np.arange(len(in_crop)), new)])
            taken += list(kept.xyxy)
            found.append(kept)
    return sv.Detections.merge(found) if found else None
