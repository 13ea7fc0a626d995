"""Which model serves which label for each rule of a camera: the person cascade.

A camera's labels go to the models of `models:` in config order, except that a plain detector is preferred
over a pose model for a label both provide (a pose model used as a detector finds far fewer small people:
13 % of the PETS pedestrians the COCO model finds at 640 px), unless a rule of the camera reads that label's
keypoints (`person_down`): its persons then come from the pose model, which on the fall clips keeps finding
a person as they fall and lie where the COCO model loses them (with the cascade, 1 of 5 falls of
zones/eval-fall found against 5 of 5, see docs/config.md). The cascade is chosen by naming the detector on
the keypoint rule (`model: coco`): persons, for every rule of the camera, then come from the detector, and
the keypoint rule gets keypoints from the pose model run on the crops of the detector's persons
(`runner.pipeline.camera`), so a far person found by the detector still gets keypoints. A rule's `model:`
names the model that serves its labels on its camera (all the camera's rules then see those labels from it:
one camera never gets a class from two models).

The routing is decided on `ModelFacts` (labels and keypoints of each model), from the models' `classes` hints
and `task` without loading anything (`static_facts`, for `vigie validate`) or from the loaded models
(`runner.inference.detector.ModelPool.camera_routes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from runner.config.site import Camera, ModelSpec
from runner.core.errors import ModelError

PERSON_LABEL = "person"
PERSON_MIN_INPUT_PX = 40  # a detector finds people down to ~40 px at its input (docs/config.md, PETS table)
POSE_DETECTOR_MIN_INPUT_PX = 100  # a pose model used as a detector needs ~100 px (14 % of PETS at ~50 px)
MAX_AUTO_IMGSZ = 1280  # `person_height_px` raises the input size up to this (cost grows with its square)
INPUT_SIZE_STEP_PX = 32  # the models' largest stride


@dataclass(frozen=True)
class ModelFacts:
    """What routing needs to know of one model: None where it is unknown without loading it."""

    labels: frozenset[str] | None
    keypoints: bool | None
    on_demand: bool = False


@dataclass
class CameraRoutes:
    """One camera's routing."""

    detect: dict[str, frozenset[str]]  # model -> labels it detects on the camera's frames, in config order
    keypoints: dict[str, str] = field(default_factory=dict)  # label -> pose model run on its detections' crops
    by_rule: dict[str, dict[str, str]] = field(default_factory=dict)  # rule id -> label -> model (and "+ pose")
    missing_keypoints: dict[str, frozenset[str]] = field(default_factory=dict)  # rule id -> labels without any
    pose_as_detector: dict[str, str] = field(default_factory=dict)  # label -> pose model serving it on frames

    def model_for(self, label: str) -> str | None:
        """The model that detects `label` on the camera's frames.

        Args:
            label: a class name.

        Returns:
            The model's name, or None when no model serves the label here.
        """
        return next((name for name, labels in self.detect.items() if label in labels), None)


def static_facts(spec: ModelSpec) -> ModelFacts:
    """A model's facts from its config alone: its `classes` hint, and keypoints from `task` (or a weights
    name with "pose", as Ultralytics names its pose models).

    Args:
        spec: the model's config.

    Returns:
        Its facts; labels None without a `classes` hint, keypoints None when neither says.
    """
    name = PurePath(spec.weights).name.lower()
    if spec.task == "pose" or (spec.task is None and "pose" in name):
        keypoints: bool | None = True
    elif spec.task is not None:
        keypoints = False
    else:
        keypoints = None
    labels = frozenset(spec.classes) if spec.classes is not None else None
    if labels is None and keypoints and "pose" in name:
        labels = frozenset({PERSON_LABEL})  # Ultralytics' pose models detect persons only
    return ModelFacts(labels, keypoints, spec.on_demand)


def route_camera(
    camera: Camera,
    model_names: list[str],
    labels_of: Callable[[str], frozenset[str] | None],
    keypoints_of: Callable[[str], bool | None],
    *,
    strict: bool = True,
) -> CameraRoutes:
    """Route a camera's labels to models (see the module's docstring).

    Args:
        camera: the camera (its enabled rules' labels, `model:` overrides and keypoint labels).
        model_names: the configured models, in config order.
        labels_of: a model's labels (None: unknown, treated as providing nothing).
        keypoints_of: whether a model gives keypoints (None: unknown, treated as no); only asked about
            models that provide a label another model provides too, or a keypoint rule's label.
        strict: raise when a required label has no model; False leaves it out (static checks).

    Returns:
        The camera's routing.

    Raises:
        ModelError: a required label no model provides (strict), a rule's `model:` that does not provide its
            labels, or two rules of the camera that name different models for one label.
    """
    rules = [rule for rule in camera.rules if rule.enabled]
    known: dict[str, frozenset[str]] = {}

    def provides(name: str, label: str) -> bool:  # loads a model without a `classes` hint only when asked
        if name not in known:
            known[name] = labels_of(name) or frozenset()
        return label in known[name]

    chosen = _overrides(rules, provides)
    required, optional = camera.required_labels(), camera.optional_labels()
    keypoint_labels = frozenset().union(*(rule.keypoint_labels() for rule in rules))
    for label in sorted(required | optional):
        if label in chosen:
            continue
        first = next((name for name in model_names if provides(name, label)), None)
        if first is None:
            if label in required and strict:
                offered = "; ".join(_offered(name, labels_of(name) or frozenset()) for name in model_names)
                raise ModelError(f"no configured model detects {[label]} (models: {offered})")
            continue
        if label in keypoint_labels:  # measured better on falls than the cascade: see the module's docstring
            preferred = next((n for n in model_names if provides(n, label) and keypoints_of(n)), None)
        else:
            preferred = (
                next((n for n in model_names if provides(n, label) and not keypoints_of(n)), None)
                if keypoints_of(first)
                else None
            )
        chosen[label] = preferred or first
    routes = CameraRoutes(
        detect={
            name: frozenset(label for label, model in chosen.items() if model == name)
            for name in model_names
            if name in chosen.values()
        }
    )
    for label, name in chosen.items():
        if keypoints_of(name) and any(provides(n, label) and not keypoints_of(n) for n in model_names):
            routes.pose_as_detector[label] = name
    for rule in rules:
        labels = sorted(rule.required_labels() | rule.optional_labels())
        served = {label: chosen[label] for label in labels if label in chosen}
        for label in sorted(rule.keypoint_labels()):
            if label not in chosen or keypoints_of(chosen[label]):
                continue
            pose = next((n for n in model_names if provides(n, label) and keypoints_of(n)), None)
            if pose is None:
                routes.missing_keypoints[rule.id] = routes.missing_keypoints.get(rule.id, frozenset()) | {label}
                continue
            routes.keypoints[label] = pose
            served[label] = f"{chosen[label]} + {pose} keypoints on its crops"
        routes.by_rule[rule.id] = served
    return routes


def _overrides(rules: list, provides: Callable[[str, str], bool]) -> dict[str, str]:
    """Label -> model for the labels of rules that name their model."""
    chosen: dict[str, str] = {}
    for rule in rules:
        if rule.model is None:
            continue
        for label in sorted(rule.required_labels()):
            if not provides(rule.model, label):
                raise ModelError(f"rule {rule.id}: model '{rule.model}' does not detect '{label}'")
            if chosen.setdefault(label, rule.model) != rule.model:
                raise ModelError(
                    f"rule {rule.id}: model '{rule.model}' for '{label}', but another rule of the camera names "
                    f"'{chosen[label]}' (one camera gets a label from one model)"
                )
    return chosen


def _offered(name: str, labels: frozenset[str]) -> str:
    return f"{name}: {', '.join(sorted(labels)[:8])}{'...' if len(labels) > 8 else ''}"


def person_input_size(frame_hw: tuple[int, int], person_height_px: float, imgsz: int) -> int:
    """The input size at which a person `person_height_px` tall in the frame is at least `PERSON_MIN_INPUT_PX`
    at the model's input: the configured `imgsz`, raised (never lowered) up to `MAX_AUTO_IMGSZ`.

    Args:
        frame_hw: the frame's (height, width), pixels.
        person_height_px: the smallest person's height in the frame, pixels.
        imgsz: the model's configured input size.

    Returns:
        The input size, a multiple of `INPUT_SIZE_STEP_PX`.
    """
    needed = max(frame_hw) * PERSON_MIN_INPUT_PX / person_height_px
    stepped = math.ceil(needed / INPUT_SIZE_STEP_PX) * INPUT_SIZE_STEP_PX
    return max(imgsz, min(stepped, MAX_AUTO_IMGSZ))


def person_px_at_input(frame_hw: tuple[int, int], person_height_px: float, imgsz: int) -> float:
    """How tall a person `person_height_px` tall in the frame is at the model's input (letterboxed to `imgsz`).

    Args:
        frame_hw: the frame's (height, width), pixels.
        person_height_px: the person's height in the frame, pixels.
        imgsz: the model's input size.

    Returns:
        The height at the input, pixels.
    """
    return person_height_px * imgsz / max(frame_hw)
