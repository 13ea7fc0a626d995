"""Tiled inference: small people found by running the detector on enlarged tiles of the frame.

A detector with a 640 px input sees a 1280 px frame at half size, and people a few tens of pixels
tall vanish. Cutting the region of interest into tiles of `imgsz / scale` source pixels, each
enlarged `scale` times to the model's input by its own letterbox, lets it see them at `scale` x
their size. The tiles overlap by `overlap_frac` so that a person cut by one tile's edge is whole in
its neighbour; the tiles' detections and the full-frame pass are then merged by a greedy NMS that
also drops a box lying mostly inside a kept one (the half person seen at a tile's edge).

The hook is the pipeline's existing re-detection (`FrameContext.redetect`): it runs the camera's
model for a label on a crop (`pad_frac=0`: exactly the tile) and returns full-frame pixel boxes.
This module only decides the tiles and merges; the caller decides the rate (a tiled pass costs
one inference per tile, so rules run it every few seconds, not on every frame).

When the model accepts any input size (the OpenVINO engine, PyTorch weights), the pass is one
inference on the whole region enlarged `scale` times instead (`detect_enlarged`): people are seen at
the same size as in the tiles, but no pixel is run twice (overlaps) and no tile is padded to a
square. A 640x360 zone at scale 2 is one 1280x736 input instead of six 640x640 tiles: 2.6 x fewer
pixels (measured on the crossing clips: the same counts within a few people, 3 x faster). The grid
remains for fixed-size exports and for regions that would exceed `max_enlarged_px`.

A camera whose people are too small for the largest input size (`person_height_px`) gets the same two passes
on every frame, chosen by `runner.inference.routing.person_pass` and run by the pipeline's detection; their
persons are merged with the whole frame's by `merge_passes`, which keeps the model's own columns (its name,
keypoints) for the tracker and the rules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import supervision as sv

from runner.core.boxes import NormBox, clamped
from runner.core.detections import empty_detections
from runner.core.fields import CLASS_NAME
from runner.inference.nms import nms_with_containment

# Runs the model on one normalised box of the frame; returns full-frame pixel detections.
DetectBox = Callable[[NormBox], sv.Detections]
# The same on several boxes at once (one result per box, in order).
DetectBoxes = Callable[[list[NormBox]], list[sv.Detections]]
# Runs the model once on a normalised box enlarged `scale` times, its input side at most `max_side_px`;
# full-frame pixel detections, or None when it cannot (fixed input size, region too large).
DetectEnlarged = Callable[[NormBox, float, int], "sv.Detections | None"]


@dataclass(frozen=True)
class TileSettings:
    scale: float = 2.0  # enlargement of each tile (tile side = imgsz / scale source pixels)
    overlap_frac: float = 0.25  # overlap between neighbouring tiles, fraction of the tile side
    imgsz: int = 640  # the model's input side
    iou: float = 0.5  # NMS: a box overlapping a kept one more than this (IoU) is a duplicate
    containment: float = 0.8  # ... or when the smaller of the two boxes lies this much inside the other
    max_tiles: int = 64  # never more inferences than this per pass
    enlarged: bool = True  # one enlarged inference instead of tiles, where the model allows it
    max_enlarged_px: int = 3840  # longest input side of that inference (a 1080p zone at scale 2)


def _axis_starts(start: float, length: float, tile: float, step: float) -> list[float]:
    if length <= tile:
        return [start + (length - tile) / 2.0]  # one tile, centred (it extends past the region)
    count = 1 + math.ceil((length - tile) / step - 1e-9)
    # Spread the tiles evenly so that the last one ends exactly at the region's end.
    return [start + (length - tile) * i / (count - 1) for i in range(count)]


def tile_grid(
    region_px: Sequence[float], frame_size: tuple[int, int], settings: TileSettings = TileSettings()
) -> list[tuple[int, int, int, int]]:
    """Pixel xyxy tiles covering `region_px` (xyxy) of a frame of `frame_size` (width, height).

    Tiles are squares of `imgsz / scale` pixels (smaller when the frame is), overlapping by at
    least `overlap_frac`, clipped to the frame. When more than `max_tiles` would be needed the
    tiles grow (the enlargement drops) until they fit.

    Args:
        region_px: the region to cover, pixel xyxy (clipped to the frame).
        frame_size: the frame's (width, height), pixels.
        settings: tile size (`imgsz / scale`), overlap and `max_tiles`.

    Returns:
        Distinct square tiles, pixel xyxy, row by row; empty when the clipped region is under a pixel wide
        or tall.
    """
    width, height = frame_size
    x0, y0, x1, y1 = (float(v) for v in region_px)
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return []
    tile = settings.imgsz / max(settings.scale, 1e-6)
    while True:
        side = min(tile, float(width), float(height))
        step = side * (1.0 - settings.overlap_frac)
        xs = _axis_starts(x0, x1 - x0, side, step)
        ys = _axis_starts(y0, y1 - y0, side, step)
        if len(xs) * len(ys) <= settings.max_tiles:
            break
        tile *= 1.25
    tiles = []
    side_px = int(round(side))
    for ty in ys:
        for tx in xs:
            ax = int(round(min(max(0.0, tx), width - side)))
            ay = int(round(min(max(0.0, ty), height - side)))
            ax, ay = min(ax, width - side_px), min(ay, height - side_px)
            tiles.append((ax, ay, ax + side_px, ay + side_px))
    return list(dict.fromkeys(tiles))


def merge_nms(parts: Sequence[sv.Detections], iou: float = 0.5, containment: float = 0.8) -> sv.Detections:
    """Greedy class-aware NMS over the union of `parts`, by decreasing confidence.

    A box is dropped when its IoU with a kept box of the same class exceeds `iou`, or when the
    smaller of the two lies inside the other for more than `containment` of its area (a person cut
    by a tile's edge, found whole in the next tile, or found whole by the full-frame pass).

    Args:
        parts: detections of the passes to merge (full frame, tiles, enlarged region), in frame pixels.
        iou: IoU above which a box of the same class as a kept one is a duplicate.
        containment: share of the smaller box's area inside the other above which it is a duplicate.

    Returns:
        The kept boxes with their confidences, class ids and class names only, in the order of the union.
    """
    plain = [_plain(p) for p in parts if len(p)]
    if not plain:
        return empty_detections(with_model=False)
    merged = sv.Detections.merge(plain) if len(plain) > 1 else plain[0]
    return _deduplicated(merged, iou, containment)


def merge_passes(parts: Sequence[sv.Detections], iou: float = 0.5, containment: float = 0.8) -> sv.Detections:
    """`merge_nms` over passes of one model on one frame (the whole frame, then an enlarged region or tiles,
    each in frame pixels), keeping every column they share (the model's name, keypoints); no tracker ids.

    Args:
        parts: one model's detections per pass, with the same data columns; the first may be the only one.
        iou: IoU above which a box of the same class as a kept one is a duplicate.
        containment: share of the smaller box's area inside the other above which it is a duplicate.

    Returns:
        The kept boxes; the first part itself when every other part is empty (nothing to merge).
    """
    rest = [part for part in parts[1:] if len(part)]
    if not rest:
        return parts[0]
    untracked = []
    for part in [parts[0], *rest] if len(parts[0]) else rest:
        part = copy.copy(part)  # the caller's detections keep their tracker ids
        part.tracker_id = None
        untracked.append(part)
    merged = sv.Detections.merge(untracked) if len(untracked) > 1 else untracked[0]
    return _deduplicated(merged, iou, containment)


def _deduplicated(merged: sv.Detections, iou: float, containment: float) -> sv.Detections:
    """The boxes `nms_with_containment` keeps, by class name (see `merge_nms`)."""
    if len(merged) <= 1:
        return merged
    conf = merged.confidence if merged.confidence is not None else np.ones(len(merged))
    names = merged.data.get(CLASS_NAME)
    classes = np.asarray(names, dtype=str) if names is not None else np.zeros(len(merged), dtype=str)
    keep = nms_with_containment(merged.xyxy.astype(float), np.asarray(conf, dtype=float), classes, iou, containment)
    return cast(sv.Detections, merged[keep.astype(int)])  # indices select detections (a string, a data column)


def _plain(detections: sv.Detections) -> sv.Detections:
    """Boxes, confidences, classes and class names only: parts from different passes (tracked or not,
    with or without keypoints) must carry the same fields to be merged."""
    n = len(detections)
    names = detections.data.get(CLASS_NAME) if detections.data else None
    return sv.Detections(
        xyxy=np.asarray(detections.xyxy, dtype=float).reshape(-1, 4),
        confidence=np.asarray(detections.confidence if detections.confidence is not None else np.ones(n), dtype=float),
        class_id=np.asarray(detections.class_id if detections.class_id is not None else np.zeros(n), dtype=int),
        data={CLASS_NAME: np.asarray(names if names is not None else [""] * n, dtype=object)},
    )


def tiled_detect(
    detect_box: DetectBox,
    frame_size: tuple[int, int],
    region: NormBox = (0.0, 0.0, 1.0, 1.0),
    settings: TileSettings = TileSettings(),
    full_frame: sv.Detections | None = None,
    detect_boxes: DetectBoxes | None = None,
    detect_enlarged: DetectEnlarged | None = None,
) -> tuple[sv.Detections, int]:
    """Run `detect_box` on every tile of `region` (normalised xyxy) and merge with `full_frame`; with
    `detect_boxes`, all tiles go in one call instead (one batched inference: the tiles share a size);
    with `detect_enlarged` (and `settings.enlarged`), one inference on the enlarged region when it can.

    Args:
        detect_box: runs the model on one normalised box (each tile, when `detect_boxes` is not given).
        frame_size: the frame's (width, height), pixels.
        region: the region to search, normalised xyxy.
        settings: tiles, enlargement and the merge's thresholds.
        full_frame: detections of the full-frame pass, merged with the tiles' (None: none).
        detect_boxes: runs the model on every tile in one call; None to call `detect_box` per tile.
        detect_enlarged: runs one inference on the enlarged region, or returns None when it cannot (the
            tiles are run then); None to always tile.

    Returns:
        (merged full-frame pixel detections with class names only, number of inferences run: 1 for the
        enlarged pass, else the number of tiles).
    """
    parts = [full_frame] if full_frame is not None and len(full_frame) else []
    if detect_enlarged is not None and settings.enlarged:
        found = detect_enlarged(*enlarged_pass(region, settings))
        if found is not None:
            parts += [found] if len(found) else []
            return (
                merge_nms(parts, settings.iou, settings.containment) if parts else empty_detections(with_model=False)
            ), 1
    width, height = frame_size
    region_px = (region[0] * width, region[1] * height, region[2] * width, region[3] * height)
    tiles = tile_grid(region_px, frame_size, settings)
    boxes = [(x0 / width, y0 / height, x1 / width, y1 / height) for x0, y0, x1, y1 in tiles]
    found_per_tile = detect_boxes(boxes) if detect_boxes is not None and boxes else [detect_box(box) for box in boxes]
    parts += [found for found in found_per_tile if len(found)]
    if not parts:
        return empty_detections(with_model=False), len(tiles)
    return merge_nms(parts, settings.iou, settings.containment), len(tiles)


def enlarged_pass(region: NormBox, settings: TileSettings) -> tuple[NormBox, float, int]:
    """What `tiled_detect` asks `detect_enlarged` for: (region clipped to the frame, scale, largest input side).

    Args:
        region: the region to search, normalised xyxy.
        settings: `scale` and `max_enlarged_px`.

    Returns:
        (the region clamped to [0, 1], enlargement, longest input side in pixels).
    """
    return clamped(region), settings.scale, settings.max_enlarged_px


def crop_detector(detect_images: Callable[[list[np.ndarray]], list[sv.Detections]], image: np.ndarray) -> DetectBox:
    """A `DetectBox` over an image held in memory (benchmarks; the pipeline uses `ctx.redetect`).

    Args:
        detect_images: runs the model on a list of images (one `sv.Detections` each, in image pixels).
        image: the full frame.

    Returns:
        What crops `image` to a normalised box (no padding), runs `detect_images` on the crop and maps its
        boxes to frame pixels; empty detections when the crop would be under 32 pixels a side.
    """
    from runner.inference.crops import boxes_to_frame, make_crop

    def run(box: NormBox) -> sv.Detections:
        crop = make_crop(image, box, pad_frac=0.0)
        if crop is None:
            return empty_detections(with_model=False)
        found = detect_images([crop.image])[0]
        if len(found):
            found.xyxy = boxes_to_frame(found.xyxy, crop)
        return found

    return run
