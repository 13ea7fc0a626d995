"""What runs a loaded model for the `Detector`: one protocol, two backends.

- `OpenVinoBackend`: Vigie's own OpenVINO engine (`runner.inference.ov_engine`), for YOLO detect and pose
  models on the CPU: one call takes frames of any shapes (the engine groups them by letterboxed input),
  its requests start now and are collected later.
- `UltralyticsBackend`: Ultralytics' predictor for everything else (PyTorch weights, ONNX, TensorRT, any
  model on a GPU, an OpenVINO folder the engine cannot run): frames of one shape per call, one call at a
  time, run when started.

Both return `supervision.Detections` with pixel boxes and the columns of `runner.core.fields`: class
names, the model's config name and, for pose models, keypoints of shape (N, K, 3) = (x, y, conf).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt
import supervision as sv

from runner.core.detections import empty_detections
from runner.core.fields import CLASS_NAME, KEYPOINTS, MODEL
from runner.inference import ov_engine
from runner.inference.export_cache import inference_threads

ClassIds = set[int] | None
"""The class ids kept for one image; None keeps every class."""

PendingDetections = Callable[[], list[sv.Detections]]
"""Waits for started inferences and returns one `sv.Detections` per image, in order."""


@runtime_checkable
class DetectorBackend(Protocol):
    """What a loaded model offers the `Detector`."""

    names: dict[int, str]
    """Class id -> class name, as the weights provide them."""

    max_batch: int | None
    """Frames of one shape per `start_predict` call; None: any number of frames of any shapes in one call."""

    @property
    def has_keypoints(self) -> bool:
        """True for a pose model (its detections carry keypoints)."""
        ...

    @property
    def any_input_size(self) -> bool:
        """True when a call may ask for another input size than the configured one."""
        ...

    def warm_up(self, height: int, width: int, imgsz: int | None = None) -> None:
        """Prepare for images of this size at input size `imgsz` (the configured one when None).

        Args:
            height: image height in pixels.
            width: image width in pixels.
            imgsz: the input size it will run at; None for the configured one.
        """
        ...

    def start_predict(
        self,
        images: list[np.ndarray],
        class_ids_per_image: Sequence[ClassIds],
        imgsz: int | None = None,
        square: bool = False,
    ) -> PendingDetections:
        """Start the inference of `images`; the result waits for it and gives each image's detections.

        Args:
            images: BGR frames or crops (of one shape per call when `max_batch` is not None).
            class_ids_per_image: the class ids each image keeps (None: every class).
            imgsz: input size for this call; None for the configured one.
            square: pad every image to a square input (crops of any aspect ratio), where the backend can.

        Returns:
            What waits for the inference and returns one `sv.Detections` per image, in order.
        """
        ...


def use_all_cores() -> None:
    """Give torch every core (or `$VIGIE_INFER_THREADS` threads) for one inference.

    Ultralytics sets torch to one thread on a 2-core machine (~1.7-2x slower): undone on each load, and
    once after the first predict (importing Ultralytics again, or building its predictor, resets it).
    """
    import torch

    torch.set_num_threads(inference_threads())


def classes_to_run(class_ids_per_image: Sequence[ClassIds]) -> list[int] | None:
    """The classes one batched call must find: every class when an image wants them all, else the union.

    Args:
        class_ids_per_image: the class ids each image of the call keeps (None: every class).

    Returns:
        Sorted class ids, or None for every class.
    """
    wanted: set[int] = set()
    for ids in class_ids_per_image:
        if ids is None:
            return None
        wanted |= ids
    return sorted(wanted)


def _names_of(names: dict[int, str], class_id: np.ndarray) -> np.ndarray:
    return np.array([names[int(c)] for c in class_id], dtype=object)


class OpenVinoBackend:
    """Vigie's OpenVINO engine (`ov_engine.OpenVinoEngine`): batches frames of any shapes, any input size."""

    max_batch: int | None = None  # the engine groups frames by letterboxed input shape itself

    def __init__(self, engine: ov_engine.OpenVinoEngine, model_name: str, conf: float):
        """Wrap a loaded engine.

        Args:
            engine: the loaded engine.
            model_name: the model's config name, written in each detection's `MODEL` column.
            conf: the confidence threshold.
        """
        self.engine = engine
        self.model_name = model_name
        self.conf = conf
        self.names = engine.names

    @property
    def has_keypoints(self) -> bool:
        return self.engine.task == "pose"

    @property
    def any_input_size(self) -> bool:
        return True  # each input shape gets its own compiled model

    def warm_up(self, height: int, width: int, imgsz: int | None = None) -> None:
        """Compile (and run once) the models this image size needs: about a second per shape.

        Args:
            height: image height in pixels.
            width: image width in pixels.
            imgsz: the input size it will run at; None for the configured one.
        """
        self.engine.warm_up(height, width, imgsz)

    def start_predict(
        self,
        images: list[np.ndarray],
        class_ids_per_image: Sequence[ClassIds],
        imgsz: int | None = None,
        square: bool = False,
    ) -> PendingDetections:
        """Start the engine's requests now; the result waits for them (see `OpenVinoEngine.start_predict`).

        Args:
            images: BGR frames or crops, of any shapes.
            class_ids_per_image: the class ids each image keeps (None: every class).
            imgsz: input size for this call; None for the configured one.
            square: pad every image to a square input (crops of any aspect ratio share one compiled model).

        Returns:
            What waits for the requests and returns one `sv.Detections` per image, in order.
        """
        waiting = self.engine.start_predict(
            images, conf=self.conf, classes=classes_to_run(class_ids_per_image), imgsz=imgsz, square=square
        )
        return lambda: [self._to_detections(found, ids) for found, ids in zip(waiting(), class_ids_per_image)]

    def _to_detections(self, prediction: ov_engine.Prediction, class_ids: ClassIds) -> sv.Detections:
        keep = (
            np.ones(len(prediction.class_id), bool)
            if class_ids is None
            else np.isin(prediction.class_id, sorted(class_ids))
        )
        if not keep.any():
            return empty_detections()
        class_id = prediction.class_id[keep]
        data: dict[str, npt.NDArray[np.generic] | list[Any]] = {  # the type of `sv.Detections.data`
            CLASS_NAME: _names_of(self.names, class_id),
            MODEL: np.full(len(class_id), self.model_name, dtype=object),
        }
        if prediction.keypoints is not None:
            data[KEYPOINTS] = prediction.keypoints[keep]
        return sv.Detections(
            xyxy=prediction.xyxy[keep], confidence=prediction.confidence[keep], class_id=class_id, data=data
        )


class UltralyticsBackend:
    """Ultralytics' predictor on a loaded `ultralytics.YOLO`: frames of one shape per call, one call at a time."""

    def __init__(
        self,
        yolo: object,
        names: dict[int, str],
        model_name: str,
        weights_format: str,
        conf: float,
        imgsz: int,
        device: str = "cpu",
        half: bool = False,
        max_batch: int = 16,
    ):
        """Wrap a loaded Ultralytics model.

        Args:
            yolo: the loaded `ultralytics.YOLO`.
            names: class id -> class name of the weights.
            model_name: the model's config name, written in each detection's `MODEL` column.
            weights_format: the format it runs (pt | openvino | onnx | engine | torchscript).
            conf: the confidence threshold.
            imgsz: the configured input size.
            device: the torch device ("cpu", "cuda:0").
            half: fp16 inference (CUDA PyTorch only).
            max_batch: frames per inference call.
        """
        self.yolo = yolo
        self.names = names
        self.model_name = model_name
        self.weights_format = weights_format
        self.conf = conf
        self.imgsz = imgsz
        self.device = device
        self.half = half
        self.max_batch: int | None = max_batch
        self._lock = threading.Lock()  # Ultralytics predictors are not thread-safe
        self._threads_restored = False

    @property
    def has_keypoints(self) -> bool:
        return getattr(self.yolo, "task", None) == "pose"

    @property
    def any_input_size(self) -> bool:
        return self.weights_format == "pt"  # PyTorch weights take any size; an export has the one it was made at

    def warm_up(self, height: int, width: int, imgsz: int | None = None) -> None:
        """One blank image through the predictor (it builds itself on its first call).

        Args:
            height: image height in pixels.
            width: image width in pixels.
            imgsz: the input size it will run at; None for the configured one.
        """
        self.start_predict([np.zeros((height, width, 3), np.uint8)], [None], imgsz)()

    def start_predict(
        self,
        images: list[np.ndarray],
        class_ids_per_image: Sequence[ClassIds],
        imgsz: int | None = None,
        square: bool = False,
    ) -> PendingDetections:
        """Run the predictor now (it has no asynchronous call); the result converts its output.

        Args:
            images: BGR frames of one shape (Ultralytics squares a batch of mixed shapes).
            class_ids_per_image: the class ids each image keeps (None: every class).
            imgsz: input size for this call; None for the configured one.
            square: unused: the predictor letterboxes each batch its own way.

        Returns:
            What returns one `sv.Detections` per image, in order.
        """
        results = self._predict(images, classes_to_run(class_ids_per_image), imgsz)
        return lambda: [self._to_detections(result, ids) for result, ids in zip(results, class_ids_per_image)]

    def _predict(self, images: list[np.ndarray], classes: list[int] | None, imgsz: int | None = None) -> list:
        options = {"half": True} if self.half else {}
        with self._lock:
            results = self.yolo.predict(  # type: ignore[attr-defined]
                images,
                imgsz=imgsz or self.imgsz,
                conf=self.conf,
                classes=classes,
                device=self.device,
                verbose=False,
                **options,
            )
            if not self._threads_restored:
                # The first predict builds Ultralytics' predictor, whose select_device() sets torch back to
                # cpu_count-1 threads (1 here): restore ours once it has.
                use_all_cores()
                self._threads_restored = True
            return results

    def _to_detections(self, result, class_ids: ClassIds) -> sv.Detections:
        detections = sv.Detections.from_ultralytics(result)
        assert detections.class_id is not None  # from_ultralytics sets class ids on every path, empty ones included
        detections.data[MODEL] = np.full(len(detections), self.model_name, dtype=object)
        keypoints = getattr(result, "keypoints", None)
        if keypoints is not None and keypoints.data is not None and len(detections):
            detections.data[KEYPOINTS] = keypoints.data.cpu().numpy().astype(np.float32)
        if CLASS_NAME not in detections.data:
            detections.data[CLASS_NAME] = _names_of(self.names, detections.class_id)
        if class_ids is not None and len(detections):
            # A boolean mask selects detections (indexing by a string would return a data column).
            detections = cast(sv.Detections, detections[np.isin(detections.class_id, sorted(class_ids))])
        return detections
