"""Detectors: Ultralytics models loaded once per process and shared by every camera.

A detector returns `supervision.Detections` with pixel boxes, `data["class_name"]`,
`data["model"]` and, for pose models, `data["keypoints"]` of shape (N, K, 3) = (x, y, conf).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import supervision as sv

from runner.config.site import ModelSpec, SiteConfig
from runner.errors import ModelError
from runner.modelref import ResolvedModel, resolve_weights

log = logging.getLogger(__name__)
_torch_threads_set = False


def _use_all_cores() -> None:
    # Ultralytics sets torch to one thread on a 2-core machine (~1.7-2x slower): undo that once.
    global _torch_threads_set
    if not _torch_threads_set:
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        _torch_threads_set = True


@dataclass
class Detector:
    name: str
    spec: ModelSpec
    resolved: ResolvedModel
    model: object
    names: dict[int, str]
    device: str = "cpu"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # Ultralytics predictors are not thread-safe

    def class_ids(self, labels: Iterable[str]) -> list[int]:
        wanted = set(labels)
        return [i for i, n in self.names.items() if n in wanted]

    def detect(self, images: list[np.ndarray], labels: Iterable[str] | None = None) -> list[sv.Detections]:
        classes = self.class_ids(labels) if labels is not None else None
        if classes is not None and not classes:
            return [empty_detections() for _ in images]
        with self._lock:
            results = self.model.predict(  # type: ignore[attr-defined]
                images, imgsz=self.spec.imgsz, conf=self.spec.conf, classes=classes, device=self.device, verbose=False
            )
        return [self._to_detections(r) for r in results]

    def _to_detections(self, result) -> sv.Detections:
        detections = sv.Detections.from_ultralytics(result)
        detections.data["model"] = np.full(len(detections), self.name, dtype=object)
        keypoints = getattr(result, "keypoints", None)
        if keypoints is not None and keypoints.data is not None and len(detections):
            detections.data["keypoints"] = keypoints.data.cpu().numpy().astype(np.float32)
        if "class_name" not in detections.data:
            detections.data["class_name"] = np.array([self.names[int(c)] for c in detections.class_id], dtype=object)
        return detections


def empty_detections() -> sv.Detections:
    detections = sv.Detections.empty()
    detections.data["class_name"] = np.array([], dtype=object)
    detections.data["model"] = np.array([], dtype=object)
    return detections


def merge_detections(parts: list[sv.Detections]) -> sv.Detections:
    """Merge the outputs of several models; pose keypoints are NaN-padded for the others."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_detections()
    if len(parts) == 1:
        return parts[0]
    with_kp = [p.data["keypoints"] for p in parts if "keypoints" in p.data]
    if with_kp:
        shape = with_kp[0].shape[1:]
        for part in parts:
            if "keypoints" not in part.data:
                part.data["keypoints"] = np.full((len(part), *shape), np.nan, dtype=np.float32)
    return sv.Detections.merge(parts)


def load_detector(name: str, spec: ModelSpec, resolved: ResolvedModel, device: str = "cpu") -> Detector:
    _use_all_cores()
    from ultralytics import YOLO

    try:
        model = YOLO(str(resolved.path), task=spec.task) if spec.task else YOLO(str(resolved.path))
        names = {int(k): str(v) for k, v in dict(model.names).items()}
    except Exception as exc:  # Ultralytics raises many types; the user needs one line
        raise ModelError(f"model '{name}': cannot load {resolved.path.name} ({type(exc).__name__}: {exc})") from None
    log.info("loaded model %s (%s, %d classes) from %s", name, resolved.backend, len(names), resolved.found_by)
    return Detector(name=name, spec=spec, resolved=resolved, model=model, names=names, device=device)


class ModelPool:
    """Resolves and loads each configured model at most once, on first need."""

    def __init__(self, config: SiteConfig, base_dir=None, device: str | None = None):
        self.config = config
        self.base_dir = base_dir
        self.device = device or os.environ.get("VIGIE_DEVICE", "cpu")
        self._loaded: dict[str, Detector] = {}

    def get(self, name: str) -> Detector:
        if name not in self._loaded:
            spec = self.config.models[name]
            resolved = resolve_weights(name, spec, self.base_dir)
            self._loaded[name] = load_detector(name, spec, resolved, self.device)
        return self._loaded[name]

    def loaded(self) -> dict[str, Detector]:
        return dict(self._loaded)

    def plan(self, labels: frozenset[str]) -> dict[str, frozenset[str]]:
        """Model name -> labels it will detect, taking models in config order until all labels are covered."""
        remaining, plan = set(labels), {}
        for name in self.config.models:
            if not remaining:
                break
            provided = remaining & set(self.get(name).names.values())
            if provided:
                plan[name] = frozenset(provided)
                remaining -= provided
        if remaining:
            offered = {n: sorted(set(d.names.values()))[:8] for n, d in self._loaded.items()}
            raise ModelError(
                f"no configured model detects {sorted(remaining)} (models: "
                + "; ".join(f"{n}: {', '.join(v)}{'...' if len(self._loaded[n].names) > 8 else ''}" for n, v in offered.items())
                + ")"
            )
        return plan
