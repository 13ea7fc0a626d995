"""Which model serves which label for each rule of a camera: the person cascade.

A camera's labels go to the models of `models:` in config order, except that a plain detector is preferred
over a pose model for a label both provide (a pose model used as a detector finds far fewer small people:
13 % of the PETS pedestrians the COCO model finds at 640 px). A keypoint rule (`person_down`) then gets the
person cascade: persons, for every rule of the camera, come from the detector, and the keypoint rule gets
keypoints from the pose model run on the crops of the detector's persons (`runner.pipeline.camera`), so a
far person found by the detector still gets keypoints. One exception: on a camera where every rule that
asks for persons reads their keypoints (a fall-only camera), the pose model finds the persons on the
frames, since it keeps finding a person as they fall and lie where the COCO model loses them (with the
cascade, 2 of 8 falls of zones/eval-fall found against 6 of 8, see docs/config.md); naming the detector on
the rule (`model: coco`) gives the cascade there too. A rule's `model:`
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
from functools import lru_cache
from pathlib import PurePath

from runner.config.site import Camera, ModelSpec
from runner.core.boxes import NormBox, bounding, clamped, union
from runner.core.errors import ModelError
from runner.inference.tiling import TileSettings, tile_grid

PERSON_LABEL = "person"
PERSON_MIN_INPUT_PX = 40  # a detector finds people down to ~40 px at its input (docs/config.md, PETS table)
POSE_DETECTOR_MIN_INPUT_PX = 100  # a pose model used as a detector needs ~100 px (14 % of PETS at ~50 px)
MAX_AUTO_IMGSZ = 1280  # `person_height_px` raises the input size up to this (cost grows with its square)
INPUT_SIZE_STEP_PX = 32  # the models' largest stride
# Beyond MAX_AUTO_IMGSZ, the person pass on the region the person rules watch runs at most this many model inputs'
# worth of pixels per frame: this many tiles, or one enlarged input of this many imgsz x imgsz squares.
MAX_PERSON_PASS_INPUTS = 16
MAX_ENLARGED_SIDE_PX = 3840  # the enlarged pass's longest input side (a 1080p region at scale 2)
WHOLE_FRAME: NormBox = (0.0, 0.0, 1.0, 1.0)
# A model runs on the crop around its rules' zones only where that crop is at most this share of the frame: a
# larger crop spares few pixels, and the whole frame keeps every object in view.
DETECTION_CROP_MAX_AREA_FRAC = 0.8


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
        if label in keypoint_labels and _only_read_for_keypoints(rules, label):  # see the module's docstring
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


def _only_read_for_keypoints(rules: list, label: str) -> bool:
    """Whether every rule that asks for `label` reads its keypoints (a fall-only camera): the pose model then
    finds those people on the frames, else the detector does and the pose model runs on its crops."""
    return all(
        label in rule.keypoint_labels() for rule in rules if label in rule.required_labels() | rule.optional_labels()
    )


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


@dataclass(frozen=True)
class PersonPass:
    """How the model that detects a camera's persons sees its frames, chosen from `person_height_px`.

    Up to `MAX_AUTO_IMGSZ` (a fixed-size model: its own size) the whole frame runs at a raised input size
    (`imgsz`) and nothing else. Beyond it, the whole frame runs at the model's own size and a second pass looks
    for persons in the region the camera's person rules watch: that region enlarged `scale` times in one
    inference of long side `enlarged_side_px` (models that take any input size), or cut into `tiles` (fixed-size
    exports), both at most `MAX_PERSON_PASS_INPUTS` model inputs' worth of pixels. The two passes are merged by
    `runner.inference.tiling.merge_passes`.
    """

    frame_hw: tuple[int, int]  # the frame's (height, width), pixels
    imgsz: int  # the whole frame's input size
    person_px: float  # a person `person_height_px` tall at the model's input (the region pass's, when there is one)
    region: NormBox | None = None  # the region pass's box, normalised; None: no region pass
    scale: float = 1.0  # the region pass's enlargement: input pixels per frame pixel
    enlarged_side_px: int | None = None  # the enlarged inference's input long side; None: tiles
    tiles: tuple[tuple[int, int, int, int], ...] = ()  # the tiled pass's tiles, frame pixels xyxy
    tile_imgsz: int = 0  # the tiles' input side (the model's own)

    @property
    def kind(self) -> str:
        """What the pass is: "input" (the whole frame only), "enlarged" or "tiles"."""
        if self.region is None:
            return "input"
        return "enlarged" if self.enlarged_side_px is not None else "tiles"

    @property
    def boxes(self) -> list[NormBox]:
        """The region pass's crops, normalised xyxy: the region, or each tile; none without a region pass."""
        if self.region is None:
            return []
        if self.enlarged_side_px is not None:
            return [self.region]
        height, width = self.frame_hw
        return [(x0 / width, y0 / height, x1 / width, y1 / height) for x0, y0, x1, y1 in self.tiles]

    @property
    def region_imgsz(self) -> int | None:
        """The input size of the region pass's inference: the enlarged side, or None for the tiles (the model's)."""
        return self.enlarged_side_px

    @property
    def inferences(self) -> int:
        """Inputs run per frame: the whole frame, plus the enlarged region or each tile."""
        return 1 + (1 if self.enlarged_side_px is not None else len(self.tiles))

    def region_size_px(self) -> tuple[float, float]:
        """The region pass's size in the frame.

        Returns:
            Its (width, height), frame pixels; (0, 0) without a region pass.
        """
        if self.region is None:
            return (0.0, 0.0)
        height, width = self.frame_hw
        return ((self.region[2] - self.region[0]) * width, (self.region[3] - self.region[1]) * height)

    def cost_ratio(self, imgsz: int) -> float:
        """The input pixels run per frame, every pass included, as a multiple of one frame at `imgsz`.

        Args:
            imgsz: the model's configured input size.

        Returns:
            The ratio (what the cost grows with).
        """
        return self.total_input_px() / input_px(self.frame_hw, imgsz)

    def total_input_px(self) -> int:
        """Input pixels run per frame, every pass included (the cost grows with them).

        Returns:
            The whole frame's letterboxed input area plus the region pass's (the enlarged input, or a square
            of `tile_imgsz` per tile).
        """
        total = input_px(self.frame_hw, self.imgsz)
        if self.enlarged_side_px is not None:
            width, height = self.region_size_px()
            total += input_px((height, width), self.enlarged_side_px)
        return total + len(self.tiles) * self.tile_imgsz**2


def input_px(image_hw: tuple[float, float], side_px: int) -> int:
    """Input pixels of an image letterboxed to a long side of `side_px` (what an inference's cost grows with).

    Args:
        image_hw: the image's (height, width), pixels.
        side_px: the input size (its long side).

    Returns:
        `side_px` times the short side, rounded up to the stride.
    """
    short = min(image_hw) * side_px / max(max(image_hw), 1e-6)
    return side_px * math.ceil(short / INPUT_SIZE_STEP_PX) * INPUT_SIZE_STEP_PX


def person_region(camera: Camera) -> NormBox:
    """Where the camera's person rules look: the bounding box of their zones (exclusion zones left out).

    Args:
        camera: the camera (its enabled rules that use the person label).

    Returns:
        That box, normalised; the whole frame when one of them watches no zone (a tripwire, a whole-frame rule)
        or none uses persons.
    """
    return watched_region(camera, frozenset({PERSON_LABEL}))


def watched_region(camera: Camera, labels: frozenset[str]) -> NormBox:
    """Where the camera's rules that use any of `labels` look: the bounding box of their zones (exclusion zones
    left out).

    Args:
        camera: the camera (its enabled rules).
        labels: the class names a model serves on the camera.

    Returns:
        That box, normalised; the whole frame when one of those rules watches no zone (a tripwire, a whole-frame
        rule) or none uses the labels.
    """
    region: NormBox | None = None
    for rule in camera.rules:
        if not rule.enabled or not labels & (rule.required_labels() | rule.optional_labels()):
            continue
        zones = [z for name, z in rule.zone_refs().items() if not name.startswith("exclude")]
        if not zones:
            return WHOLE_FRAME
        for zone in zones:
            box = bounding(camera.zone(zone).polygon)
            region = box if region is None else union(region, box)
    return clamped(region) if region is not None else WHOLE_FRAME


def detection_box(region: NormBox, margin_frac: float | None) -> NormBox | None:
    """The part of the frame a model's frame pass runs on: the region its rules watch (`watched_region`) grown by
    `margin_frac` of the frame on each side and twice that above (the rules place a person by their feet: one
    standing on a zone's top edge rises above it), so that an object is found, and tracked, before it enters a
    zone and a person on its edge is whole. None (the whole frame) where that part would spare too little.

    Args:
        region: where the rules look, normalised xyxy.
        margin_frac: the margin, a fraction of the frame's width (left, right) and height (bottom; twice that at
            the top); None: the whole frame always (`Camera.detect_margin_frac` empty).

    Returns:
        The crop's box, normalised xyxy, or None.
    """
    if margin_frac is None or region == WHOLE_FRAME:
        return None
    margin = margin_frac
    box = clamped((region[0] - margin, region[1] - 2.0 * margin, region[2] + margin, region[3] + margin))
    if (box[2] - box[0]) * (box[3] - box[1]) > DETECTION_CROP_MAX_AREA_FRAC:
        return None
    return box


def crop_input_size(frame_hw: tuple[int, int], crop_hw: tuple[int, int], frame_imgsz: int) -> int:
    """The input size that runs a crop at the scale the whole frame runs at `frame_imgsz` (or just above: the
    size is rounded up to the stride), so that the crop's objects look the same size to the model.

    Args:
        frame_hw: the frame's (height, width), pixels.
        crop_hw: the crop's (height, width), pixels.
        frame_imgsz: the whole frame's input size (its long side at the model's input).

    Returns:
        The crop's input size (long side), a multiple of `INPUT_SIZE_STEP_PX`, at most `frame_imgsz`.
    """
    side = frame_imgsz * max(crop_hw) / max(frame_hw)
    return min(frame_imgsz, max(INPUT_SIZE_STEP_PX, math.ceil(side / INPUT_SIZE_STEP_PX) * INPUT_SIZE_STEP_PX))


@lru_cache(maxsize=256)
def person_pass(
    frame_hw: tuple[int, int],
    person_height_px: float,
    imgsz: int,
    *,
    any_input_size: bool = True,
    region: NormBox = WHOLE_FRAME,
) -> PersonPass:
    """The pass that shows a person `person_height_px` tall at `PERSON_MIN_INPUT_PX` or more to the model (see
    `PersonPass`): the raised input size up to `MAX_AUTO_IMGSZ` (`person_input_size`; a fixed-size model's own
    size), else a second pass on `region` grown by one person height on each side (a person standing on a
    zone's edge is whole in it), enlarged, or tiled for a fixed-size model, within `MAX_PERSON_PASS_INPUTS`
    inputs' worth of pixels (the enlargement drops below the needed one where the region is too large for them).

    Args:
        frame_hw: the frame's (height, width), pixels.
        person_height_px: the smallest person's height in the frame, pixels.
        imgsz: the model's configured input size.
        any_input_size: whether the model takes any input size (else its size is kept, and where people are
            under `PERSON_MIN_INPUT_PX` at it, the region is tiled).
        region: where the person rules look, normalised xyxy (`person_region`).

    Returns:
        The pass.
    """
    needed = math.ceil(max(frame_hw) * PERSON_MIN_INPUT_PX / person_height_px / INPUT_SIZE_STEP_PX)
    if needed * INPUT_SIZE_STEP_PX <= (MAX_AUTO_IMGSZ if any_input_size else imgsz):
        size = person_input_size(frame_hw, person_height_px, imgsz) if any_input_size else imgsz
        return PersonPass(frame_hw, size, person_px_at_input(frame_hw, person_height_px, size))
    height, width = frame_hw
    pad_x, pad_y = person_height_px / width, person_height_px / height
    box = clamped((region[0] - pad_x, region[1] - pad_y, region[2] + pad_x, region[3] + pad_y))
    region_hw = ((box[3] - box[1]) * height, (box[2] - box[0]) * width)
    scale = PERSON_MIN_INPUT_PX / person_height_px
    if any_input_size:
        side = _enlarged_side_px(region_hw, scale, imgsz)
        return PersonPass(
            frame_hw,
            imgsz,
            person_height_px * side / max(region_hw),
            box,
            side / max(region_hw),
            enlarged_side_px=side,
        )
    settings = TileSettings(scale=scale, imgsz=imgsz, max_tiles=MAX_PERSON_PASS_INPUTS)
    region_px = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
    tiles = tuple(tile_grid(region_px, (width, height), settings))
    tile_side = tiles[0][2] - tiles[0][0]
    return PersonPass(
        frame_hw,
        imgsz,
        person_height_px * imgsz / tile_side,
        box,
        imgsz / tile_side,
        tiles=tiles,
        tile_imgsz=imgsz,
    )


def _enlarged_side_px(region_hw: tuple[float, float], scale: float, imgsz: int) -> int:
    """The enlarged region's input long side: `scale` times the region's, rounded up to the stride, lowered by
    strides until the input fits `MAX_ENLARGED_SIDE_PX` and `MAX_PERSON_PASS_INPUTS` squares of `imgsz`."""
    side = math.ceil(max(region_hw) * scale / INPUT_SIZE_STEP_PX) * INPUT_SIZE_STEP_PX
    budget_px = MAX_PERSON_PASS_INPUTS * imgsz * imgsz
    while side > INPUT_SIZE_STEP_PX and (side > MAX_ENLARGED_SIDE_PX or input_px(region_hw, side) > budget_px):
        side -= INPUT_SIZE_STEP_PX
    return side
