"""The naive baseline: what a user would write instead of the runner.

One Ultralytics tracking loop per clip, clips one after another:

    model = YOLO(weights)
    for result in model.track(clip, stream=True, vid_stride=..., imgsz=..., persist=True):
        detections = sv.Detections.from_ultralytics(result)
        for zone in zones: zone.trigger(detections)

with the weights file the site config names (a `.pt` stays a `.pt`), the same image size and
confidence, the frame stride that gives the camera's `process_fps`, and a supervision `PolygonZone`
check per frame on every zone the camera's rules watch (the whole frame for a rule without a zone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import supervision as sv

from runner.config.site import Camera

WHOLE_FRAME = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


@dataclass(frozen=True)
class NaiveClip:
    path: str
    stride: int  # vid_stride: source fps / process_fps, rounded
    polygons: tuple[tuple[tuple[float, float], ...], ...]  # normalised
    labels: frozenset[str]  # classes the camera's rules need


@dataclass
class NaiveResult:
    frames: int = 0
    wall_s: float = 0.0
    frames_per_clip: dict[str, int] = field(default_factory=dict)
    in_zone: int = 0  # detections found inside a zone, summed over frames and zones

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


def frame_stride(source_fps: float, process_fps: float) -> int:
    """Ultralytics' `vid_stride` for a camera: every n-th frame, n = source fps / processed fps."""
    if source_fps <= 0:
        return 1
    return max(1, round(source_fps / process_fps))


def watched_polygons(camera: Camera) -> tuple[tuple[tuple[float, float], ...], ...]:
    """Every zone the camera's enabled rules read; the whole frame stands for a rule without a zone."""
    polygons: list[tuple[tuple[float, float], ...]] = []
    for rule in camera.rules:
        if not rule.enabled:
            continue
        refs = list(rule.zone_refs().values())
        for zone_id in refs:
            polygon = tuple(tuple(p) for p in camera.zone(zone_id).polygon)
            if polygon not in polygons:
                polygons.append(polygon)
        if "zone" not in rule.zone_refs() and WHOLE_FRAME not in polygons:
            polygons.append(WHOLE_FRAME)
    return tuple(polygons)


def naive_clip(camera: Camera, path: str) -> NaiveClip:
    capture = cv2.VideoCapture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return NaiveClip(path, frame_stride(fps, camera.process_fps), watched_polygons(camera), camera.required_labels())


def pixel_zones(polygons, width: int, height: int) -> list[sv.PolygonZone]:
    scale = np.array([width, height], dtype=float)
    return [
        sv.PolygonZone(
            np.round(np.array(p, dtype=float) * scale).astype(np.int64), triggering_anchors=(sv.Position.BOTTOM_CENTER,)
        )
        for p in polygons
    ]


def frame_size(path: str) -> tuple[int, int]:
    capture = cv2.VideoCapture(path)
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()


def load_model(weights: str, task: str | None = None):
    from ultralytics import YOLO

    return YOLO(weights, task=task) if task else YOLO(weights)


def warm_up(model, imgsz: int, device: str) -> None:
    """First call builds the predictor and the tracker: kept out of the timing, as for the runner."""
    model.track(np.zeros((imgsz, imgsz, 3), dtype=np.uint8), imgsz=imgsz, device=device, persist=True, verbose=False)


def run_naive(model, clips: list[NaiveClip], *, imgsz: int, conf: float, device: str = "cpu") -> NaiveResult:
    """Track every clip in turn, as fast as the loop goes; zone checks on every processed frame."""
    result = NaiveResult()
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    started = time.perf_counter()
    for clip in clips:
        width, height = frame_size(clip.path)
        zones = pixel_zones(clip.polygons, width, height)
        classes = sorted(i for i, n in names.items() if n in clip.labels) or None
        frames = 0
        for output in model.track(
            source=clip.path,
            stream=True,
            vid_stride=clip.stride,
            imgsz=imgsz,
            conf=conf,
            classes=classes,
            device=device,
            persist=True,
            verbose=False,
        ):
            detections = sv.Detections.from_ultralytics(output)
            result.in_zone += sum(int(zone.trigger(detections).sum()) for zone in zones)
            frames += 1
        result.frames_per_clip[clip.path] = frames
        result.frames += frames
    result.wall_s = time.perf_counter() - started
    return result
