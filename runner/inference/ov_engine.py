"""OpenVINO inference without Ultralytics' predictor, for exported YOLO detect and pose models.

Why not `YOLO(folder).predict`: on a 2-core CPU its Python pre/post-processing costs ~8 ms a frame, it
runs one synchronous request at a time (LATENCY hint: one frame keeps both cores half idle between
layers), and it cannot letterbox a static export (such as the shared COCO INT8 model) to a rectangle.
Here:

- each input shape gets its own static compiled model (a few per site: one per camera resolution,
  bounded), so a 16:9 frame runs at 640x384 instead of 640x640 (40 % fewer pixels). A static YOLO11
  export had its attention reshapes and anchor grid traced for 640x640: those constants are rewritten
  for the new shape (`_static_for_shape`), and the output is checked against the expected anchor count;
- frames of several cameras run as parallel infer requests of a throughput-compiled model (one stream
  per core); a lone frame uses a latency-compiled one (every core on it). A request starts as soon
  as another ends, across shapes and across calling threads (`_Slots`: `threads` single-core requests
  in flight, a latency request takes them all), so the detector thread's round and a rule's
  re-detection on the analysis thread share the cores instead of waiting for each other's call;
- `start_predict` starts the requests and returns what waits for them: a request gives its slots back
  when it ends (completion callback), so the detector thread starts the next round's frames while the
  last requests of this round run, instead of one core idling at the end of every round;
- stream threads are not pinned to cores (`cpu_pinning`): every compiled model pins its streams to the
  same cores, so two requests of different shapes in flight often shared one core while the other idled;
- a new shape is compiled (about half a second) outside the lock and before any slot is taken: the
  other callers' requests go on meanwhile;
- `predict(imgsz=)` runs a call at another input size (the density rule's enlarged zone, see
  `runner.inference.tiling`): its shape gets its own compiled model like any frame size; `square=True` pads crops
  of any aspect ratio to one square input (re-detection), instead of compiling one model per ratio;
- letterbox, confidence filter, per-class NMS and rescaling copy Ultralytics' (LetterBox(auto=True),
  non_max_suppression(iou=0.7, max_det=300; the loop is `runner.inference.nms`), scale_boxes): the same
  boxes within float rounding (tests/runner/inference/test_ov_engine.py compares both on real frames).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runner.core.errors import ModelError
from runner.inference.modelref import read_metadata
from runner.inference.nms import nms

log = logging.getLogger(__name__)

IOU_THRESHOLD = 0.7  # Ultralytics' predict default
MAX_DETECTIONS = 300
REQUESTS_KEPT = 16  # idle infer requests kept per compiled model: a round of frames is collected after the next starts
MAX_COMPILED_SHAPES = 8  # compiled models kept (per mode); a site has a handful of camera resolutions
PAD_VALUE = 114
SUPPORTED_TASKS = ("detect", "pose")
PINNING_ENV = "VIGIE_CPU_PINNING"


@dataclass(frozen=True)
class Prediction:
    """One frame's detections in original image pixels."""

    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int64
    keypoints: np.ndarray | None = None  # (N, K, 3) float32 for pose models


def cpu_pinning() -> bool:
    """Whether compiled models pin their stream threads to cores: `$VIGIE_CPU_PINNING` (1 or 0), default no.

    OpenVINO pins stream i of every compiled model to core i, and a site has one compiled model per frame
    shape: two requests of different shapes in flight can then both run on one core while the other core
    idles (rounds of 8 frames of 4 shapes kept 2 cores 69-77 % busy pinned, 89-92 % unpinned).
    Unpinned, the OS puts them on free cores. Pinning may pay on a large machine with one frame shape;
    `bench/perf.py --without unpinned_threads` measures it.

    Returns:
        True when `$VIGIE_CPU_PINNING` is 1; False when it is 0, empty or unset.

    Raises:
        ModelError: the variable has another value.
    """
    value = os.environ.get(PINNING_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ModelError(f"{PINNING_ENV} must be 1 (pin inference threads to cores) or 0, got '{value}'")
    return value == "1"


def supports(folder: Path, task: str | None) -> bool:
    """True when this engine can run the OpenVINO folder (a YOLO detect or pose export).

    Args:
        folder: an OpenVINO folder with Ultralytics' `metadata.yaml`.
        task: the task the config asks for; None for whatever the export is.

    Returns:
        True when its metadata is readable, names a detect or pose task (the one asked for) and class
        names, and the folder holds an .xml.
    """
    try:
        metadata = read_metadata(folder)
    except ModelError:
        return False
    found_task = metadata.get("task")
    has_names = isinstance(metadata.get("names"), dict) and bool(metadata["names"])
    return (
        found_task in SUPPORTED_TASKS
        and (task is None or task == found_task)
        and has_names
        and any(folder.glob("*.xml"))
    )


# -- geometry shared with Ultralytics -----------------------------------------------------------------
def letterbox_shape(
    height: int, width: int, imgsz: int, stride: int, square: bool = False
) -> tuple[float, int, int, int, int]:
    """(gain, resized_h, resized_w, input_h, input_w): the image scaled so its long side is `imgsz`,
    padded to the smallest multiple of `stride` (Ultralytics LetterBox with auto=True), or to a square
    `imgsz` (auto=False).

    Args:
        height: image height in pixels.
        width: image width in pixels.
        imgsz: the model input's long side, pixels.
        stride: the model's largest stride; each padded side is a multiple of it.
        square: pad to an `imgsz` x `imgsz` input instead.

    Returns:
        (scale factor, resized height, resized width, input height, input width), sizes in pixels.
    """
    gain = min(imgsz / height, imgsz / width)
    resized_w, resized_h = round(width * gain), round(height * gain)
    if square:
        return gain, resized_h, resized_w, imgsz, imgsz
    pad_w, pad_h = (imgsz - resized_w) % stride, (imgsz - resized_h) % stride
    return gain, resized_h, resized_w, resized_h + pad_h, resized_w + pad_w


def letterbox(
    image: np.ndarray, imgsz: int, stride: int, square: bool = False
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The BGR uint8 image resized and padded to the model input (HWC), the gain, the (left, top) padding.
    Channel order, scaling to [0, 1] and NCHW layout are done inside the compiled model (`_with_preprocessing`).

    Args:
        image: a BGR uint8 frame (HWC).
        imgsz: the model input's long side, pixels.
        stride: the model's largest stride (see `letterbox_shape`).
        square: pad to a square input.

    Returns:
        (the input, (1, H, W, 3) uint8 and contiguous; the scale factor; the (left, top) padding in pixels).
    """
    height, width = image.shape[:2]
    gain, resized_h, resized_w, input_h, input_w = letterbox_shape(height, width, imgsz, stride, square)
    if (resized_h, resized_w) != (height, width):
        image = cv2.resize(image, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    half_w, half_h = (input_w - resized_w) / 2, (input_h - resized_h) / 2
    top, bottom = round(half_h - 0.1), round(half_h + 0.1)
    left, right = round(half_w - 0.1), round(half_w + 0.1)
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return np.ascontiguousarray(image)[None], gain, (left, top)


def _with_preprocessing(model):
    """Feed the model BGR uint8 NHWC frames: conversion, channel swap and 1/255 scaling run in OpenVINO
    (fused, multithreaded) instead of numpy on the analysis thread."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def anchor_grid(input_h: int, input_w: int, strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics make_anchors(offset 0.5): cell centres (2, N) in grid units and their strides (N,).

    Args:
        input_h: model input height, pixels.
        input_w: model input width, pixels.
        strides: the detection head's strides, one per level.

    Returns:
        ((2, N) float32 x, y cell centres in grid units; (N,) float32 stride of each), level after level in
        the order of `strides`, row-major within a level.
    """
    points, stride_of = [], []
    for stride in strides:
        h, w = input_h // stride, input_w // stride
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        stride_of.append(np.full(h * w, stride, np.float32))
    return np.concatenate(points, axis=1), np.concatenate(stride_of)


def postprocess(
    output: np.ndarray,
    num_classes: int,
    conf: float,
    classes: list[int] | None,
    gain: float,
    pad: tuple[int, int],
    image_hw: tuple[int, int],
    keypoint_shape: tuple[int, int] | None,
) -> Prediction:
    """Raw (4 + classes + keypoints, anchors) output -> detections in image pixels.

    Args:
        output: one frame's raw output, (4 + classes + keypoint values, anchors): centre-size boxes in input
            pixels, then class scores, then keypoints.
        num_classes: the model's number of classes.
        conf: keep anchors whose best class score exceeds this.
        classes: class ids kept (before NMS, like Ultralytics); None keeps every class.
        gain: the letterbox's scale factor.
        pad: the letterbox's (left, top) padding, input pixels.
        image_hw: the original image's (height, width), pixels: boxes and keypoints are clipped to it.
        keypoint_shape: (keypoints, values each) of a pose model; None for a detect model.

    Returns:
        At most `MAX_DETECTIONS` detections after per-class NMS, by decreasing confidence.
    """
    scores = output[4 : 4 + num_classes]  # (classes, anchors)
    candidates = np.flatnonzero(scores.max(axis=0) > conf)  # most anchors go here, before any per-anchor work
    rows = output[:, candidates].T  # (candidates, channels)
    best = rows[:, 4 : 4 + num_classes].argmax(axis=1)
    best_score = rows[np.arange(len(rows)), 4 + best]
    if classes is not None:
        keep = np.isin(best, classes)
        rows, best, best_score = rows[keep], best[keep], best_score[keep]
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    # Per-class NMS by offsetting each class far apart (Ultralytics' max_wh trick).
    kept = nms(boxes + best[:, None] * 7680.0, best_score, IOU_THRESHOLD)[:MAX_DETECTIONS]
    boxes, best, best_score, rows = boxes[kept], best[kept], best_score[kept], rows[kept]
    left, top = pad
    height, width = image_hw
    boxes = (boxes - np.array([left, top, left, top], np.float32)) / gain
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keypoints = None
    if keypoint_shape is not None:
        count, dims = keypoint_shape
        keypoints = rows[:, 4 + num_classes : 4 + num_classes + count * dims].reshape(-1, count, dims).copy()
        keypoints[..., 0] = ((keypoints[..., 0] - left) / gain).clip(0, width)
        keypoints[..., 1] = ((keypoints[..., 1] - top) / gain).clip(0, height)
        keypoints = keypoints.astype(np.float32)
    return Prediction(boxes.astype(np.float32), best_score.astype(np.float32), best.astype(np.int64), keypoints)


# -- graph surgery for static exports -----------------------------------------------------------------
def _static_for_shape(template, input_h: int, input_w: int, traced_hw: tuple[int, int], strides: tuple[int, ...]):
    """A copy of a YOLO export reshaped to a static (1, 3, input_h, input_w) input.

    A dynamic export just gets the shape. A static one (traced at `traced_hw`) also has constants
    baked for that size, rewritten here: Reshape targets that name a feature map's cell count or its
    (h, w), and the anchor-point and stride tensors of the detection head (recognised by value).
    """
    import openvino as ov
    from openvino import opset13 as ops

    model = template.clone()
    if model.input().get_partial_shape().is_dynamic or (input_h, input_w) == traced_hw:
        model.reshape([1, 3, input_h, input_w])
        return model
    old_levels = {s: (traced_hw[0] // s, traced_hw[1] // s) for s in strides}
    new_levels = {s: (input_h // s, input_w // s) for s in strides}
    old_anchors, old_strides = anchor_grid(*traced_hw, strides)
    new_anchors, new_strides = anchor_grid(input_h, input_w, strides)
    old_total, new_total = old_anchors.shape[1], new_anchors.shape[1]
    cells = {old_levels[s][0] * old_levels[s][1]: new_levels[s][0] * new_levels[s][1] for s in strides}
    grids = {old_levels[s]: new_levels[s] for s in strides}
    replaced_anchors = replaced_strides = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Reshape" and op.input_value(1).get_node().get_type_name() == "Constant":
            target = op.input_value(1).get_node().get_vector().astype(np.int64)
            patched = target.copy()
            if len(patched) == 4 and tuple(patched[2:]) in grids:
                patched[2:] = grids[tuple(patched[2:])]
            elif patched[-1] == old_total:
                patched[-1] = new_total
            elif patched[-1] in cells:
                patched[-1] = cells[patched[-1]]
            if not np.array_equal(patched, target):
                op.input(1).replace_source_output(ops.constant(patched).output(0))
        elif kind == "Constant" and op.get_output_shape(0) and op.get_output_shape(0)[-1] == old_total:
            data = op.get_data()
            if data.shape[-2:] == (2, old_total) and np.allclose(data.reshape(2, -1), old_anchors):
                new = new_anchors.reshape(*data.shape[:-2], 2, new_total).astype(data.dtype)
                replaced_anchors += 1
            elif data.shape[-2:] == (1, old_total) and np.allclose(data.reshape(-1), old_strides):
                new = new_strides.reshape(*data.shape[:-1], new_total).astype(data.dtype)
                replaced_strides += 1
            else:
                continue
            replacement = ops.constant(new).output(0)
            for target_input in list(op.output(0).get_target_inputs()):
                target_input.replace_source_output(replacement)
    if replaced_anchors != 1 or replaced_strides != 1:
        raise ModelError(
            f"not a YOLO head this engine knows (anchor tensors found: {replaced_anchors}, strides: {replaced_strides})"
        )
    # The input changes last: model.reshape() would first validate the patched constants at the old size.
    old_input = model.get_parameters()[0]
    new_input = ops.parameter(
        [1, 3, input_h, input_w], old_input.get_element_type(), name=old_input.get_friendly_name()
    )
    new_input.output(0).set_names(old_input.output(0).get_names())
    for target_input in list(old_input.output(0).get_target_inputs()):
        target_input.replace_source_output(new_input.output(0))
    model = ov.Model(model.get_results(), [new_input], model.get_friendly_name())
    model.validate_nodes_and_infer_types()
    if model.output(0).get_partial_shape()[-1].get_length() != new_total:
        raise ModelError(f"reshaped output has {model.output(0).get_partial_shape()} anchors, expected {new_total}")
    return model


class _Slots:
    """A counting semaphore that can take several slots at once (a latency request takes them all)."""

    def __init__(self, count: int):
        self.free = count
        self._cond = threading.Condition()

    def take(self, count: int) -> None:
        with self._cond:
            while self.free < count:
                self._cond.wait()
            self.free -= count

    def give(self, count: int) -> None:
        with self._cond:
            self.free += count
            self._cond.notify_all()


@dataclass(eq=False)
class _Held:
    """The slots a started request holds, given back once: by OpenVINO's completion callback or by `_collect`.

    It references neither the request nor the engine. OpenVINO keeps the callback and its argument inside
    the request, where Python's garbage collector cannot see them: a reference back to the request made a
    cycle that was never freed, so each request dropped from a full pool stayed alive with its tensors
    (about 2 MB each; 9 MB a minute on the 17-camera site, docs/performance.md)."""

    semaphore: _Slots
    count: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: bool = False

    def release(self) -> None:
        """Give the slots back (the second call does nothing); also OpenVINO's completion callback, called
        as `_Held.release(held)`."""
        with self.lock:
            if self.released:
                return
            self.released = True
        self.semaphore.give(self.count)


@dataclass(eq=False)
class _Started:
    """A request in flight: its slots go back once (when it ends), the request itself when it is collected."""

    request: Any
    key: tuple[int, int, str]
    held: _Held


class OpenVinoEngine:
    """Runs one exported YOLO detect/pose OpenVINO folder on the CPU; thread-safe."""

    def __init__(self, folder: Path, imgsz: int, threads: int, precision: str = "auto", pinning: bool | None = None):
        import openvino as ov

        self.folder = Path(folder)
        metadata = read_metadata(self.folder)
        self.task = metadata.get("task")
        if self.task not in SUPPORTED_TASKS:
            raise ModelError(f"{self.folder.name}: task '{self.task}' is not run by the OpenVINO engine")
        self.names = {int(k): str(v) for k, v in (metadata.get("names") or {}).items()}
        self.stride = int(max(metadata.get("stride") or 32, 32))
        self.strides = tuple(s for s in (8, 16, 32, 64) if s <= self.stride)
        traced = metadata.get("imgsz") or [imgsz, imgsz]
        self.traced_hw = (int(traced[0]), int(traced[1]))
        kpt = metadata.get("kpt_shape")
        self.keypoint_shape = (int(kpt[0]), int(kpt[1])) if self.task == "pose" and kpt else None
        self.imgsz = imgsz
        self.threads = threads
        self.pinning = cpu_pinning() if pinning is None else pinning  # None: from the environment
        self.core = ov.Core()
        xml = next(self.folder.glob("*.xml"))
        self.template = self.core.read_model(str(xml), str(xml.with_suffix(".bin")))
        self.static = not self.template.input().get_partial_shape().is_dynamic
        self.base_config = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}
        self._compiled: OrderedDict[tuple[int, int, str], object] = OrderedDict()
        self._requests: dict[tuple[int, int, str], list] = {}
        self._lock = threading.Lock()  # compiled models and their idle requests
        self._slots = _Slots(max(1, threads))  # requests in flight, across calling threads

    # -- compiled models --------------------------------------------------------------------------
    def _compiled_for(self, input_h: int, input_w: int, mode: str):
        """The compiled model for this input shape and mode, and its idle requests; called under the lock.
        A shape not compiled yet is compiled here, holding the lock: `_infer` calls `_ensure_compiled` first."""
        key = (input_h, input_w, mode)
        if key not in self._compiled:
            self._keep(key, *self._compile(input_h, input_w, mode))
        self._compiled.move_to_end(key)
        return self._compiled[key], self._requests[key]

    def _ensure_compiled(self, input_h: int, input_w: int, mode: str) -> None:
        """Compile a new shape without holding the lock or any slot (about a second for a large shape): the
        other callers' requests go on meanwhile. Two callers may both compile a new shape; the first is kept."""
        key = (input_h, input_w, mode)
        with self._lock:
            if key in self._compiled:
                return
        compiled, requests = self._compile(input_h, input_w, mode)
        with self._lock:
            if key not in self._compiled:
                self._keep(key, compiled, requests)

    def _compile(self, input_h: int, input_w: int, mode: str):
        model = _with_preprocessing(_static_for_shape(self.template, input_h, input_w, self.traced_hw, self.strides))
        if mode == "throughput":
            config = {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": self.threads,
                "INFERENCE_NUM_THREADS": self.threads,
            }
        else:
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads}
        config["ENABLE_CPU_PINNING"] = self.pinning
        compiled = self.core.compile_model(model, "CPU", {**config, **self.base_config})
        streams = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if mode == "throughput" else 1
        log.debug("OpenVINO %s compiled for %dx%d (%s)", self.folder.name, input_w, input_h, mode)
        return compiled, [compiled.create_infer_request() for _ in range(max(1, min(streams, REQUESTS_KEPT)))]

    def _keep(self, key: tuple[int, int, str], compiled, requests: list) -> None:
        self._compiled[key] = compiled
        self._requests[key] = requests
        while len(self._compiled) > MAX_COMPILED_SHAPES * 2:
            old, _ = self._compiled.popitem(last=False)
            self._requests.pop(old, None)

    def check(self) -> None:
        """Compile for a 16:9 frame now (the common camera shape), so that a graph the patch cannot handle
        is refused at load time, when the caller can still fall back, not on the first frame."""
        with self._lock:
            _, _, _, input_h, input_w = letterbox_shape(self.imgsz * 9 // 16, self.imgsz, self.imgsz, self.stride)
            self._compiled_for(input_h, input_w, "latency")

    def warm_up(self, height: int, width: int, imgsz: int | None = None) -> None:
        """Compile (and run once) the models an image of this size needs at input size `imgsz`, before the
        clock starts: a frame runs in a batch (throughput) or alone (latency); an enlarged crop runs alone.

        Args:
            height: image height in pixels.
            width: image width in pixels.
            imgsz: the input size it will run at; None for the configured one.
        """
        blank = np.zeros((height, width, 3), np.uint8)
        if imgsz is None or imgsz == self.imgsz:
            self.predict([blank] * 2, conf=0.99)
        self.predict([blank], conf=0.99, imgsz=imgsz)

    # -- inference --------------------------------------------------------------------------------
    def _infer(self, prepared: list[tuple[np.ndarray, float, tuple[int, int]]]) -> list[np.ndarray]:
        """Raw outputs of letterboxed frames, in order (`_start`, then `_collect`)."""
        return self._collect(self._start(prepared))

    def _start(self, prepared: list[tuple[np.ndarray, float, tuple[int, int]]]) -> list[_Started]:
        """Start the inference of letterboxed frames; `_collect` waits for their outputs.

        Several frames run as parallel requests of throughput-compiled models (one per input shape); a
        lone frame runs on a latency-compiled model, every core on it. A request starts as soon as a slot
        is free: `threads` single-core requests in flight at most, across calling threads (a latency
        request takes every slot), so the detector thread's round and a rule's re-detection on the
        analysis thread interleave instead of queueing behind a lock. A request gives its slots back the
        moment it ends (completion callback), not when its caller collects it: the detector thread starts
        the next round's frames while the last request of this round runs, then collects this round."""
        mode = "latency" if len(prepared) == 1 or self.threads == 1 else "throughput"
        slots_each = self.threads if mode == "latency" else 1
        for input_h, input_w in {blob.shape[1:3] for blob, _, _ in prepared}:
            self._ensure_compiled(input_h, input_w, mode)
        started: list[_Started] = []
        try:
            for blob, _, _ in prepared:
                self._slots.take(slots_each)
                try:
                    request, key = self._request_for(blob.shape[1], blob.shape[2], mode)
                    entry = _Started(request, key, _Held(self._slots, slots_each))
                    request.set_callback(_Held.release, entry.held)
                    request.start_async({0: blob})
                except BaseException:
                    self._slots.give(slots_each)
                    raise
                started.append(entry)
        except BaseException:
            try:  # give every slot and request back before raising
                self._collect(started)
            except Exception:
                pass
            raise
        return started

    def _collect(self, started: list[_Started]) -> list[np.ndarray]:
        """Wait for started requests and copy their outputs, in order; their requests go back for reuse."""
        outputs, error = [], None
        for entry in started:
            try:
                entry.request.wait()
                if error is None:
                    outputs.append(entry.request.get_output_tensor(0).data[0].copy())
            except Exception as exc:
                error = error or exc
            finally:
                entry.held.release()  # when the completion callback has not (yet) done it
                self._give_back(entry.request, entry.key)
        if error is not None:
            raise error
        return outputs

    def _request_for(self, input_h: int, input_w: int, mode: str):
        with self._lock:
            compiled, idle = self._compiled_for(input_h, input_w, mode)
            key = (input_h, input_w, mode)
            return (idle.pop() if idle else compiled.create_infer_request()), key

    def _give_back(self, request, key: tuple[int, int, str]) -> None:
        with self._lock:
            idle = self._requests.get(key)
            if idle is not None and len(idle) < REQUESTS_KEPT:  # an evicted model's requests just go
                idle.append(request)

    def raw_output(self, blob: np.ndarray) -> np.ndarray:
        """The model's raw (channels, anchors) output for one letterboxed frame (tests, diagnostics).

        Args:
            blob: a (1, H, W, 3) uint8 BGR input, as `letterbox` makes it.

        Returns:
            The output, (4 + classes + keypoint values, anchors), a copy.
        """
        return self._infer([(blob, 1.0, (0, 0))])[0]

    def predict(
        self,
        images: list[np.ndarray],
        conf: float,
        classes: list[int] | None = None,
        imgsz: int | None = None,
        square: bool = False,
    ) -> list[Prediction]:
        """Detections per image; `imgsz` (long side of the model input) overrides the configured size for
        this call, e.g. an enlarged zone for small people: its shape gets its own compiled model.

        Args:
            images: BGR uint8 frames or crops, of any shapes.
            conf: confidence threshold.
            classes: class ids kept; None keeps every class.
            imgsz: input size for this call; None for the configured one.
            square: pad every image to a square input (see `start_predict`).

        Returns:
            One `Prediction` per image, in order, in image pixels.
        """
        return self.start_predict(images, conf, classes, imgsz, square)()

    def start_predict(
        self,
        images: list[np.ndarray],
        conf: float,
        classes: list[int] | None = None,
        imgsz: int | None = None,
        square: bool = False,
    ) -> Callable[[], list[Prediction]]:
        """`predict` in two steps: the requests start now; calling the result waits for them (from any
        thread, once). Meanwhile the caller may start other frames: their requests take the slots of
        these as soon as they end. `square` pads to a square input (crops of any shape share one
        compiled model instead of compiling one per aspect ratio).

        Args:
            images: BGR uint8 frames or crops, of any shapes.
            conf: confidence threshold.
            classes: class ids kept; None keeps every class.
            imgsz: input size for this call; None for the configured one.
            square: pad every image to a square input.

        Returns:
            What waits for the requests and returns one `Prediction` per image, in order; it raises the
            first inference error, after every request has been given back.
        """
        size = imgsz or self.imgsz
        prepared = [letterbox(image, size, self.stride, square) for image in images]
        started = self._start(prepared)
        shapes = [image.shape[:2] for image in images]

        def predictions() -> list[Prediction]:
            return [
                postprocess(output, len(self.names), conf, classes, gain, pad, shape, self.keypoint_shape)
                for output, (_, gain, pad), shape in zip(self._collect(started), prepared, shapes)
            ]

        return predictions
