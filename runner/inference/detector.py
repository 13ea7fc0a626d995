"""Detectors: the configured models, loaded once per process and shared by every camera.

`load_detector` picks what runs a model (`runner.inference.backends`: Vigie's OpenVINO engine for YOLO
detect and pose models on the CPU, Ultralytics' predictor for the rest); `Detector` batches the frames of
several cameras and filters each to its labels. A detector returns `supervision.Detections` with pixel
boxes and the columns of `runner.core.fields`: `CLASS_NAME`, `MODEL` and, for pose models, `KEYPOINTS`
of shape (N, K, 3) = (x, y, conf).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import supervision as sv

from runner.config.site import Camera, ModelSpec, SiteConfig
from runner.core.detections import empty_detections
from runner.core.errors import ModelError
from runner.inference import ov_engine
from runner.inference.backends import DetectorBackend, OpenVinoBackend, UltralyticsBackend, use_all_cores
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
from runner.inference.routing import CameraRoutes, route_camera

log = logging.getLogger(__name__)


@dataclass
class Detector:
    """A configured model, loaded once per process and shared by every camera; thread-safe.

    It picks what to run together (frames of one shape, at most the backend's batch; the labels each camera
    wants) and delegates the inference to its backend (`runner.inference.backends`).
    """

    name: str
    spec: ModelSpec
    resolved: ResolvedModel
    model: DetectorBackend  # what runs the loaded weights: Vigie's OpenVINO engine or Ultralytics' predictor
    device: str = "cpu"
    runtime: Runtime | None = None  # None: the weights as resolved, fp32

    def __post_init__(self) -> None:
        self._warmed: set[tuple[int, int, int]] = set()  # (height, width, input size) already compiled for

    @property
    def names(self) -> dict[int, str]:
        """Class id -> class name, as the weights provide them."""
        return self.model.names

    @property
    def has_keypoints(self) -> bool:
        return self.model.has_keypoints

    @property
    def backend(self) -> str:
        """The weights format that runs (pt | openvino | onnx | engine | torchscript)."""
        return self.runtime.backend if self.runtime else self.resolved.backend

    @property
    def any_input_size(self) -> bool:
        """True when `detect(..., imgsz=)` may ask for another input size than the configured one: the
        OpenVINO engine compiles per shape, PyTorch weights take any; a fixed-size export does not."""
        return self.model.any_input_size

    def class_ids(self, labels: Iterable[str]) -> list[int]:
        """The class ids of these labels (those the model provides).

        Args:
            labels: class names.

        Returns:
            Their ids, in id order; labels the model does not provide are left out.
        """
        wanted = set(labels)
        return [i for i, n in self.names.items() if n in wanted]

    def warm_up(self, shapes: Iterable[tuple[int, int]], imgsz: int | None = None) -> None:
        """Compile for each image size (height, width) at input size `imgsz` (the model's by default) ahead
        of the first frames: the OpenVINO engine builds one model per input shape (about a second each);
        Ultralytics' predictor only needs one call. Each size is warmed once per process.

        Args:
            shapes: image sizes as (height, width).
            imgsz: the input size they will run at; None for the configured one.
        """
        for height, width in sorted(set(shapes)):
            key = (height, width, imgsz or self.spec.imgsz)
            if key in self._warmed:
                continue
            self._check_input_size(imgsz)
            self.model.warm_up(height, width, imgsz)
            self._warmed.add(key)

    def detect(
        self, images: list[np.ndarray], labels: Iterable[str] | None = None, imgsz: int | None = None
    ) -> list[sv.Detections]:
        """Detections of `labels` (all classes when None) in each image; `imgsz` overrides the model's
        input size for this call (only where `any_input_size`).

        Args:
            images: BGR frames.
            labels: the class names wanted in every image; None for every class.
            imgsz: input size for this call; None for the configured one.

        Returns:
            One `sv.Detections` per image, in order, in image pixels.

        Raises:
            ValueError: `imgsz` differs from the configured size and the weights have a fixed input size.
        """
        labels = None if labels is None else frozenset(labels)
        return self.detect_many(images, [labels] * len(images), imgsz=imgsz)

    def detect_crops(
        self, images: list[np.ndarray], labels: Iterable[str] | None = None, imgsz: int | None = None
    ) -> list[sv.Detections]:
        """`detect` on crops of any shape (re-detection): the OpenVINO engine pads them to a square input,
        one compiled model for every crop, instead of compiling (about half a second) each new aspect ratio.

        Args:
            images: BGR crops, of any shapes.
            labels: the class names wanted in every crop; None for every class.
            imgsz: the square input's side for this call (only where `any_input_size`); None for the configured one.

        Returns:
            One `sv.Detections` per crop, in order, in crop pixels.
        """
        labels = None if labels is None else frozenset(labels)
        return self.start_detect_many(images, [labels] * len(images), imgsz=imgsz, square=True)()

    def start_detect(
        self, images: list[np.ndarray], labels: Iterable[str] | None = None, imgsz: int | None = None
    ) -> Callable[[], list[sv.Detections]]:
        """`detect` in two steps (see `start_detect_many`).

        Args:
            images: BGR frames.
            labels: the class names wanted in every image; None for every class.
            imgsz: input size for this call; None for the configured one.

        Returns:
            What waits for the inferences and returns one `sv.Detections` per image, in order.
        """
        labels = None if labels is None else frozenset(labels)
        return self.start_detect_many(images, [labels] * len(images), imgsz=imgsz)

    def detect_many(
        self, images: list[np.ndarray], labels_per_image: list[Iterable[str] | None], imgsz: int | None = None
    ) -> list[sv.Detections]:
        """Detections for frames of several cameras, each filtered to its own labels (None = all classes).

        Frames of the same shape go through one batched inference (at most `max_batch` per call), so each
        keeps its smallest letterbox rectangle (Ultralytics squares a batch of mixed shapes); frames whose
        labels this model does not provide are not run at all. Returns one `sv.Detections` per image, in
        order. Thread-safe (the OpenVINO engine shares its cores across calling threads; Ultralytics'
        predictor runs one call at a time). On 2 CPU cores a batch costs about the same per frame as single
        calls; on a GPU batching is what scales to many cameras.

        Args:
            images: BGR frames, of any shapes.
            labels_per_image: the class names each image wants (None: every class).
            imgsz: input size for this call; None for the configured one.

        Returns:
            One `sv.Detections` per image, in order, in image pixels; empty for an image not run.

        Raises:
            ValueError: `labels_per_image` is not one entry per image, or `imgsz` differs from the configured
                size and the weights have a fixed input size.
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
        for them, so that the caller can start its next frames meanwhile; other backends run now.

        Args:
            images: BGR frames or crops.
            labels_per_image: the labels each image wants (None: every class).
            imgsz: input size for this call; None for the configured one.
            square: pad each image to a square input (crops of any aspect ratio, see `detect_crops`).

        Returns:
            What waits for the inferences and returns one `sv.Detections` per image, in order.

        Raises:
            ValueError: as `detect_many`.
        """
        if len(images) != len(labels_per_image):
            raise ValueError("detect_many: one labels entry per image")
        self._check_input_size(imgsz)
        wanted = [None if labels is None else set(self.class_ids(labels)) for labels in labels_per_image]
        pending = [
            (chunk, self.model.start_predict([images[i] for i in chunk], [wanted[i] for i in chunk], imgsz, square))
            for chunk in self._chunks(images, wanted)
        ]

        def detections() -> list[sv.Detections]:
            out: list[sv.Detections] = [empty_detections() for _ in images]
            for chunk, found in pending:
                for index, image_detections in zip(chunk, found()):
                    out[index] = image_detections
            return out

        return detections

    def _check_input_size(self, imgsz: int | None) -> None:
        if imgsz is not None and imgsz != self.spec.imgsz and not self.any_input_size:
            raise ValueError(
                f"model {self.name}: its {self.backend} weights have a fixed input size ({self.spec.imgsz})"
            )

    def _chunks(self, images: list[np.ndarray], wanted: list[set[int] | None]) -> list[list[int]]:
        """Indices of the images to run together, in order; images that want none of this model's classes
        are left out. A backend without a batch limit takes every image in one call (the OpenVINO engine
        groups frames by letterboxed input shape itself: frames of different cameras often share one, e.g.
        640x384 for every 16:9 size); otherwise one shape per call, at most `max_batch` images."""
        max_batch = self.model.max_batch
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (image, ids) in enumerate(zip(images, wanted)):
            if ids is None or ids:
                groups.setdefault(image.shape if max_batch else (), []).append(index)
        chunks = []
        for indices in groups.values():
            step = max_batch or len(indices)
            chunks += [indices[start : start + step] for start in range(0, len(indices), step)]
        return chunks


def load_custom_layers(name: str, reference: str, base_dir: Path | None = None) -> None:
    """Make custom layer classes that a checkpoint was pickled with resolvable.

    Models trained in a script pickle their custom classes as `__main__.<Class>`: the file that
    defines them is loaded standalone (its package's `__init__` may import heavy things) and its
    classes are published on `__main__`, where unpickling looks for them.

    Args:
        name: the model's config name (for messages and the module's name).
        reference: the config's `custom_layers`: a path, or `package:<module>/<file>.py`.
        base_dir: the config file's folder; a relative path is looked up there first, then in the
            working directory.

    Raises:
        ModelError: the file is missing or fails to load.
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


def load_detector(
    name: str, spec: ModelSpec, resolved: ResolvedModel, device: str = "cpu", base_dir: Path | None = None
) -> Detector:
    """Load a model once, in the runtime `choose_runtime` picks (see runner/inference/export_cache.py).

    Args:
        name: the model's config name.
        spec: its `models.<name>` config.
        resolved: its weights, resolved and verified (`resolve_weights`).
        device: the torch device ("cpu", "cuda:0"); Vigie's OpenVINO engine runs only on "cpu".
        base_dir: the config file's folder, where a relative `custom_layers` path is looked up first.

    Returns:
        The loaded detector: on Vigie's OpenVINO engine when it can run the model, else on Ultralytics'
        predictor (a cache entry that will not load is dropped and the weights run as given).

    Raises:
        ModelError: the weights, their export or the custom layers cannot be loaded, or the config's
            `classes` hint differs from the weights' classes.
    """
    use_all_cores()
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
    predictor = UltralyticsBackend(
        model, names, name, runtime.backend, spec.conf, spec.imgsz, device=device, half=runtime.half
    )
    return Detector(name=name, spec=spec, resolved=resolved, model=predictor, device=device, runtime=runtime)


def check_classes(name: str, spec: ModelSpec, names: dict[int, str]) -> None:
    """The config's `classes` hint must be what the weights provide (it lets cameras plan without loading).

    Args:
        name: the model's config name.
        spec: its `models.<name>` config (`classes` None: no hint, nothing checked).
        names: class id -> class name of the loaded weights.

    Raises:
        ModelError: the hint names other classes than the weights (order and duplicates aside).
    """
    if spec.classes is not None and set(spec.classes) != set(names.values()):
        raise ModelError(
            f"model '{name}': models.{name}.classes says {sorted(spec.classes)[:6]} but the weights provide "
            f"{sorted(set(names.values()))[:6]}"
        )


def _direct_engine(name: str, spec: ModelSpec, resolved: ResolvedModel, device: str) -> Detector | None:
    """The detector run by runner.inference.ov_engine, when the model is (or exports to) an OpenVINO YOLO
    detect or pose model on the CPU; None otherwise (Ultralytics' predictor runs it). An engine that fails
    to build falls back to the predictor with one log line."""
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
    backend = OpenVinoBackend(engine, name, spec.conf)
    return Detector(name=name, spec=spec, resolved=resolved, model=backend, device=device, runtime=runtime)


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

    def __init__(self, config: SiteConfig, base_dir: Path | None = None, device: str | None = None):
        self.config = config
        self.base_dir = base_dir
        self.device = device or os.environ.get("VIGIE_DEVICE", "cpu")
        self._loaded: dict[str, Detector] = {}

    def get(self, name: str) -> Detector:
        """The loaded model `name`, resolved and loaded on the first call.

        Args:
            name: a model's config name (a key of `config.models`).

        Returns:
            Its detector, the same object on every call.

        Raises:
            KeyError: no model of that name in the config.
            ModelError: its weights cannot be resolved or loaded.
        """
        if name not in self._loaded:
            spec = self.config.models[name]
            resolved = resolve_weights(name, spec, self.base_dir)
            self._loaded[name] = load_detector(name, spec, resolved, self.device, self.base_dir)
        return self._loaded[name]

    def labels_of(self, name: str) -> frozenset[str]:
        """Class names of a model: from its `classes` hint when given (no loading), else from the weights.

        Args:
            name: a model's config name.

        Returns:
            The class names it detects.
        """
        hint = self.config.models[name].classes
        return frozenset(hint) if hint is not None else frozenset(self.get(name).names.values())

    def keypoints_of(self, name: str) -> bool:
        """Whether a model gives keypoints: from its `task` when given (no loading), else from the weights.

        Args:
            name: a model's config name.

        Returns:
            True for a pose model.
        """
        task = self.config.models[name].task
        if task is not None:
            return task == "pose"
        return bool(getattr(self.get(name), "has_keypoints", False))

    def camera_routes(self, camera: Camera) -> CameraRoutes:
        """Which model serves which label for each of the camera's rules (`runner.inference.routing`).

        Args:
            camera: one camera of the config.

        Returns:
            Its routing: models run on its frames, pose models run on the crops of its persons.

        Raises:
            ModelError: a required label no model provides, or a rule's `model:` that does not provide it.
        """
        return route_camera(camera, list(self.config.models), self.labels_of, self.keypoints_of)

    def loaded(self) -> dict[str, Detector]:
        """The models loaded so far.

        Returns:
            Model name -> detector, a copy (in load order).
        """
        return dict(self._loaded)

    def plan(self, labels: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
        """Model name -> labels it will detect. Each label goes to the first model (in config order)
        that provides it, so one camera never gets the same class from two models; required labels
        must all be covered, optional ones are taken when some model provides them.

        Args:
            labels: the class names the camera's rules require.
            optional: class names they use when some model provides them.

        Returns:
            Model name -> the labels it detects for this camera; models with none are left out.

        Raises:
            ModelError: no configured model provides some required label.
        """
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
