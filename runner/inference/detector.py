"""Detectors: Ultralytics models loaded once per process and shared by every camera.

A detector returns `supervision.Detections` with pixel boxes, `data["class_name"]`,
`data["model"]` and, for pose models, `data["keypoints"]` of shape (N, K, 3) = (x, y, conf).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import supervision as sv

from runner.config.site import ModelSpec, SiteConfig
from runner.core.detections import empty_detections
from runner.core.errors import ModelError
from runner.inference import ov_engine
from runner.inference.export_cache import (
    Runtime,
    choose_runtime,
    forget,
    inference_threads,
    is_gpu,
    openvino_config,
    quiet_ultralytics,
    recompile_openvino,
)
from runner.inference.modelref import PACKAGE_PREFIX, ResolvedModel, package_file, resolve_weights

log = logging.getLogger(__name__)


def _use_all_cores() -> None:
    # Ultralytics sets torch to one thread on a 2-core machine (~1.7-2x slower): undo that (every core,
    # or $VIGIE_INFER_THREADS). Set on each load: importing Ultralytics again could have reset it.
    import torch

    torch.set_num_threads(inference_threads())


@dataclass
class Detector:
    name: str
    spec: ModelSpec
    resolved: ResolvedModel
    model: object
    names: dict[int, str]
    device: str = "cpu"
    runtime: Runtime | None = None  # None: the weights as resolved, fp32
    max_batch: int = 16  # frames per inference call in detect_many (Ultralytics' predictor)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # Ultralytics predictors are not thread-safe
        self._threads_restored = False
        self._warmed: set[tuple[int, int, int]] = set()  # (height, width, input size) already compiled for

    @property
    def has_keypoints(self) -> bool:
        return getattr(self.model, "task", None) == "pose"

    @property
    def direct(self) -> bool:
        """True when the model runs in runner.inference.ov_engine rather than Ultralytics' predictor."""
        return isinstance(self.model, ov_engine.OpenVinoEngine)

    @property
    def backend(self) -> str:
        return self.runtime.backend if self.runtime else self.resolved.backend

    @property
    def any_input_size(self) -> bool:
        """True when `detect(..., imgsz=)` may ask for another input size than the configured one: the
        OpenVINO engine compiles per shape, PyTorch weights take any; a fixed-size export does not."""
        return self.direct or self.backend == "pt"

    def class_ids(self, labels: Iterable[str]) -> list[int]:
        wanted = set(labels)
        return [i for i, n in self.names.items() if n in wanted]

    def warm_up(self, shapes: Iterable[tuple[int, int]], imgsz: int | None = None) -> None:
        """Compile for each image size (height, width) at input size `imgsz` (the model's by default) ahead
        of the first frames: the OpenVINO engine builds one model per input shape (about a second each);
        Ultralytics' predictor only needs one call. Each size is warmed once per process."""
        for height, width in sorted(set(shapes)):
            key = (height, width, imgsz or self.spec.imgsz)
            if key in self._warmed:
                continue
            if self.direct:
                self.model.warm_up(height, width, imgsz)  # type: ignore[attr-defined]
            else:
                self.detect([np.zeros((height, width, 3), np.uint8)], imgsz=imgsz)
            self._warmed.add(key)

    def detect(
        self, images: list[np.ndarray], labels: Iterable[str] | None = None, imgsz: int | None = None
    ) -> list[sv.Detections]:
        """Detections of `labels` (all classes when None) in each image; `imgsz` overrides the model's
        input size for this call (only where `any_input_size`)."""
        labels = None if labels is None else frozenset(labels)
        return self.detect_many(images, [labels] * len(images), imgsz=imgsz)

    def detect_crops(self, images: list[np.ndarray], labels: Iterable[str] | None = None) -> list[sv.Detections]:
        """`detect` on crops of any shape (re-detection): the OpenVINO engine pads them to a square input,
        one compiled model for every crop, instead of compiling (about half a second) each new aspect ratio."""
        labels = None if labels is None else frozenset(labels)
        return self.start_detect_many(images, [labels] * len(images), square=True)()

    def start_detect(
        self, images: list[np.ndarray], labels: Iterable[str] | None = None, imgsz: int | None = None
    ) -> Callable[[], list[sv.Detections]]:
        """`detect` in two steps (see `start_detect_many`)."""
        labels = None if labels is None else frozenset(labels)
        return self.start_detect_many(images, [labels] * len(images), imgsz=imgsz)

    def detect_many(
        self, images: list[np.ndarray], labels_per_image: list[Iterable[str] | None], imgsz: int | None = None
    ) -> list[sv.Detections]:
        """Detections for frames of several cameras, each filtered to its own labels (None = all classes).

        Frames of the same shape go through one batched inference (at most `max_batch` per call), so each
        keeps its smallest letterbox rectangle (Ultralytics squares a batch of mixed shapes); frames whose
        labels this model does not provide are not run at all. Returns one `sv.Detections` per image, in
        order. Thread-safe (the OpenVINO engine shares its cores across calling threads; Ultralytics' predictor runs one call at a time). On 2 CPU cores a batch costs about the
        same per frame as single calls; on a GPU batching is what scales to many cameras.
        """
        return self.start_detect_many(images, labels_per_image, imgsz)()

    def start_detect_many(
        self,
        images: list[np.ndarray],
        labels_per_image: list[Iterable[str] | None],
        imgsz: int | None = None,
        square: bool = False,
    ) -> Callable[[], list[sv.Detections]]:
        """`detect_many` in two steps: the OpenVINO engine's requests start now, and calling the result waits
        for them, so that the caller can start its next frames meanwhile; other backends run now."""
        if len(images) != len(labels_per_image):
            raise ValueError("detect_many: one labels entry per image")
        if imgsz is not None and imgsz != self.spec.imgsz and not self.any_input_size:
            raise ValueError(
                f"model {self.name}: its {self.backend} weights have a fixed input size ({self.spec.imgsz})"
            )
        wanted = [None if labels is None else set(self.class_ids(labels)) for labels in labels_per_image]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (image, ids) in enumerate(zip(images, wanted)):
            if ids is None or ids:
                # The OpenVINO engine groups frames by letterboxed input shape itself (frames of different
                # cameras often share one, e.g. 640x384 for every 16:9 size): one call for all.
                groups.setdefault(() if self.direct else image.shape, []).append(index)
        pending: list[tuple[list[int], Callable[[], list]]] = []
        for indices in groups.values():
            step = len(indices) if self.direct else self.max_batch
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                chunk_ids = [wanted[i] for i in chunk]
                classes = None if any(ids is None for ids in chunk_ids) else sorted(set().union(*chunk_ids))
                pending.append((chunk, self._start_predict([images[i] for i in chunk], classes, imgsz, square)))

        def detections() -> list[sv.Detections]:
            out: list[sv.Detections] = [empty_detections() for _ in images]
            for chunk, results in pending:
                for index, result in zip(chunk, results()):
                    out[index] = self._to_detections(result, wanted[index])
            return out

        return detections

    def _start_predict(
        self, images: list[np.ndarray], classes: list[int] | None, imgsz: int | None = None, square: bool = False
    ):
        if self.direct:
            return self.model.start_predict(
                images,
                conf=self.spec.conf,
                classes=classes,
                imgsz=imgsz,  # type: ignore[attr-defined]
                square=square,
            )
        results = self._predict(images, classes, imgsz)
        return lambda: results

    def _predict(self, images: list[np.ndarray], classes: list[int] | None, imgsz: int | None = None) -> list:
        options = {"half": True} if self.runtime and self.runtime.half else {}
        with self._lock:
            results = self.model.predict(  # type: ignore[attr-defined]
                images,
                imgsz=imgsz or self.spec.imgsz,
                conf=self.spec.conf,
                classes=classes,
                device=self.device,
                verbose=False,
                **options,
            )
            if not self._threads_restored:
                # The first predict builds Ultralytics' predictor, whose select_device() sets torch back to
                # cpu_count-1 threads (1 here): restore ours once it has.
                _use_all_cores()
                self._threads_restored = True
            return results

    def _to_detections(self, result, class_ids: set[int] | None = None) -> sv.Detections:
        if isinstance(result, ov_engine.Prediction):
            return self._prediction_to_detections(result, class_ids)
        detections = sv.Detections.from_ultralytics(result)
        detections.data["model"] = np.full(len(detections), self.name, dtype=object)
        keypoints = getattr(result, "keypoints", None)
        if keypoints is not None and keypoints.data is not None and len(detections):
            detections.data["keypoints"] = keypoints.data.cpu().numpy().astype(np.float32)
        if "class_name" not in detections.data:
            detections.data["class_name"] = np.array([self.names[int(c)] for c in detections.class_id], dtype=object)
        if class_ids is not None and len(detections):
            detections = detections[np.isin(detections.class_id, sorted(class_ids))]
        return detections

    def _prediction_to_detections(self, prediction: ov_engine.Prediction, class_ids: set[int] | None) -> sv.Detections:
        keep = (
            np.ones(len(prediction.class_id), bool)
            if class_ids is None
            else np.isin(prediction.class_id, sorted(class_ids))
        )
        if not keep.any():
            return empty_detections()
        class_id = prediction.class_id[keep]
        data = {
            "class_name": np.array([self.names[int(c)] for c in class_id], dtype=object),
            "model": np.full(len(class_id), self.name, dtype=object),
        }
        if prediction.keypoints is not None:
            data["keypoints"] = prediction.keypoints[keep]
        return sv.Detections(
            xyxy=prediction.xyxy[keep], confidence=prediction.confidence[keep], class_id=class_id, data=data
        )


def load_custom_layers(name: str, reference: str, base_dir=None) -> None:
    """Make custom layer classes that a checkpoint was pickled with resolvable.

    Models trained in a script pickle their custom classes as `__main__.<Class>`: the file that
    defines them is loaded standalone (its package's `__init__` may import heavy things) and its
    classes are published on `__main__`, where unpickling looks for them.
    """
    import importlib.util
    import inspect

    import __main__

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
        raise ModelError(
            f"model '{name}': cannot load custom_layers {path.name} ({type(exc).__name__}: {exc})"
        ) from None
    for attr, value in vars(module).items():
        if inspect.isclass(value) and value.__module__ == module_name and not hasattr(__main__, attr):
            setattr(__main__, attr, value)


def load_detector(name: str, spec: ModelSpec, resolved: ResolvedModel, device: str = "cpu", base_dir=None) -> Detector:
    """Load a model once, in the runtime `choose_runtime` picks (see runner/inference/export_cache.py)."""
    _use_all_cores()
    if spec.custom_layers:  # before any unpickling, the export included
        load_custom_layers(name, spec.custom_layers, base_dir)
    engine = _direct_engine(name, spec, resolved, device)
    if engine is not None:
        return engine
    runtime = choose_runtime(name, spec, resolved, device)
    try:
        model, names = _load(name, spec, runtime.path, device)
    except ModelError:
        if runtime.path == resolved.path:
            raise
        # A cache entry that will not load is dropped (rebuilt next start); this start runs the weights as given.
        log.warning(
            "model %s: cannot load %s: dropped from the cache, running %s as given",
            name,
            runtime.path,
            resolved.path.name,
        )
        forget(runtime.path)
        runtime = Runtime(resolved.path, resolved.backend, half=runtime.half, how="as given (cache entry unusable)")
        model, names = _load(name, spec, resolved.path, device)
    compile_options = openvino_config(spec, inference_threads())
    if runtime.backend == "openvino" and compile_options:
        recompile_openvino(model, runtime.path, compile_options)
    check_classes(name, spec, names)
    log.info(
        "loaded model %s (%s, %d classes) from %s, runs %s",
        name,
        resolved.backend,
        len(names),
        resolved.found_by,
        runtime.how,
    )
    return Detector(name=name, spec=spec, resolved=resolved, model=model, names=names, device=device, runtime=runtime)


def check_classes(name: str, spec: ModelSpec, names: dict[int, str]) -> None:
    """The config's `classes` hint must be what the weights provide (it lets cameras plan without loading)."""
    if spec.classes is not None and set(spec.classes) != set(names.values()):
        raise ModelError(
            f"model '{name}': models.{name}.classes says {sorted(spec.classes)[:6]} but the weights provide "
            f"{sorted(set(names.values()))[:6]}"
        )


def _direct_engine(name: str, spec: ModelSpec, resolved: ResolvedModel, device: str) -> Detector | None:
    """The detector run by runner.inference.ov_engine, when the model is (or exports to) an OpenVINO YOLO detect or
    pose model on the CPU; None otherwise (Ultralytics' predictor runs it). An engine that fails to
    build falls back to the predictor with one log line."""
    if is_gpu(device) or spec.runtime == "torch" or resolved.backend not in ("pt", "openvino"):
        return None
    if resolved.backend == "openvino":
        folder, how = resolved.path, "OpenVINO engine, as given"
    else:
        runtime = choose_runtime(name, spec, resolved, device)
        if runtime.backend != "openvino":
            return None
        folder, how = runtime.path, "OpenVINO engine, cached export"
    if not ov_engine.supports(folder, spec.task):
        return None
    # Settings read before the fallback below: a bad one is the user's to fix, said in one line, not a silent
    # switch to the slower predictor.
    threads, pinning = inference_threads(), ov_engine.cpu_pinning()
    try:
        engine = ov_engine.OpenVinoEngine(folder, spec.imgsz, threads, spec.openvino_precision, pinning=pinning)
        engine.check()
    except Exception as exc:  # the predictor can still run it: say why once
        log.warning(
            "model %s: OpenVINO engine unavailable (%s: %s); using Ultralytics' predictor",
            name,
            type(exc).__name__,
            str(exc)[:200],
        )
        return None
    names = engine.names
    check_classes(name, spec, names)
    how += ", static input patched per frame shape" if engine.static else ", compiled per frame shape"
    runtime = Runtime(folder, "openvino", half=False, how=how)
    log.info(
        "loaded model %s (%s, %d classes) from %s, runs %s", name, resolved.backend, len(names), resolved.found_by, how
    )
    return Detector(name=name, spec=spec, resolved=resolved, model=engine, names=names, device=device, runtime=runtime)


def _load(name: str, spec: ModelSpec, path: Path, device: str) -> tuple[object, dict[int, str]]:
    from ultralytics import YOLO

    try:
        with quiet_ultralytics():
            model = YOLO(str(path), task=spec.task) if spec.task else YOLO(str(path))
            if not str(path).endswith(".pt"):
                # An exported model is compiled by its first predict; `model.names` would compile a throw-away
                # copy first. One blank frame with the same device sets up the predictor that detect() reuses.
                model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=spec.imgsz, device=device, verbose=False)
            names = {int(k): str(v) for k, v in dict(model.names).items()}
    except Exception as exc:  # Ultralytics raises many types; the user needs one line
        raise ModelError(f"model '{name}': cannot load {path.name} ({type(exc).__name__}: {exc})") from None
    return model, names


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
