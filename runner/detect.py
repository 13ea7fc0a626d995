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
from pathlib import Path

import numpy as np
import supervision as sv

from runner.config.site import ModelSpec, SiteConfig
from runner.errors import ModelError
from runner.modelref import PACKAGE_PREFIX, ResolvedModel, package_file, resolve_weights

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

    @property
    def has_keypoints(self) -> bool:
        return getattr(self.model, "task", None) == "pose"

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


def load_custom_layers(name: str, reference: str, base_dir=None) -> None:
    """Make custom layer classes that a checkpoint was pickled with resolvable.

    Models trained in a script pickle their custom classes as `__main__.<Class>`: the file that
    defines them is loaded standalone (its package's `__init__` may import heavy things) and its
    classes are published on `__main__`, where unpickling looks for them.
    """
    import __main__
    import importlib.util
    import inspect

    path = package_file(reference) if reference.startswith(PACKAGE_PREFIX) else Path(reference).expanduser()
    if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ModelError(f"model '{name}': custom_layers file '{reference}' not found")
    module_name = f"_vigie_layers_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        raise ModelError(f"model '{name}': cannot load custom_layers {path.name} ({type(exc).__name__}: {exc})") from None
    for attr, value in vars(module).items():
        if inspect.isclass(value) and value.__module__ == module_name and not hasattr(__main__, attr):
            setattr(__main__, attr, value)


def load_detector(name: str, spec: ModelSpec, resolved: ResolvedModel, device: str = "cpu", base_dir=None) -> Detector:
    _use_all_cores()
    from ultralytics import YOLO

    if spec.custom_layers:
        load_custom_layers(name, spec.custom_layers, base_dir)
    try:
        model = YOLO(str(resolved.path), task=spec.task) if spec.task else YOLO(str(resolved.path))
        names = {int(k): str(v) for k, v in dict(model.names).items()}
    except Exception as exc:  # Ultralytics raises many types; the user needs one line
        raise ModelError(f"model '{name}': cannot load {resolved.path.name} ({type(exc).__name__}: {exc})") from None
    if spec.classes is not None and set(spec.classes) != set(names.values()):
        raise ModelError(
            f"model '{name}': models.{name}.classes says {sorted(spec.classes)[:6]} but the weights provide "
            f"{sorted(set(names.values()))[:6]}"
        )
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
            self._loaded[name] = load_detector(name, spec, resolved, self.device, self.base_dir)
        return self._loaded[name]

    def labels_of(self, name: str) -> frozenset[str]:
        """Class names of a model: from its `classes` hint when given (no loading), else from the weights."""
        hint = self.config.models[name].classes
        return frozenset(hint) if hint is not None else frozenset(self.get(name).names.values())

    def loaded(self) -> dict[str, Detector]:
        return dict(self._loaded)

    def plan(self, labels: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
        """Model name -> labels it will detect. Each label goes to the first model (in config order)
        that provides it, so one camera never gets the same class from two models; required labels
        must all be covered, optional ones are taken when some model provides them."""
        plan: dict[str, set[str]] = {}
        remaining, remaining_optional = set(labels), set(optional) - set(labels)
        for name in self.config.models:
            if not remaining and not remaining_optional:
                break
            provided = self.labels_of(name)
            for wanted in (remaining, remaining_optional):
                taken = wanted & provided
                if taken:
                    plan.setdefault(name, set()).update(taken)
                    wanted -= taken
        if remaining:
            offered = "; ".join(
                f"{n}: {', '.join(sorted(self.labels_of(n))[:8])}{'...' if len(self.labels_of(n)) > 8 else ''}"
                for n in self.config.models
            )
            raise ModelError(f"no configured model detects {sorted(remaining)} (models: {offered})")
        return {name: frozenset(taken) for name, taken in plan.items()}
