"""One camera's analysis chain: mask -> motion gate -> detect -> track -> history -> rules -> gate -> register.

`process(frame)` does the whole chain; `prepare()`, `plan()`, `combine()` and `analyse()` are
separate so that the runner can batch the detection of several cameras (one inference per model for
all of them) and keep everything else per camera. With a `writer` given to the constructor, snapshots and
register writes leave the analysis thread (alerts then reach `on_alert` once committed); without one, as
when tests or the workbench call `process()`, they are done in line.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv

from runner.config.loading import LoadedConfig, redact
from runner.config.rules.base import RuleConfig
from runner.config.site import Camera, ModelSpec
from runner.core.alerts import AlertCandidate, AlertRecord
from runner.core.boxes import NormBox
from runner.core.detections import empty_detections, merge_detections
from runner.core.fields import CLASS_NAME, KEYPOINTS
from runner.core.timebase import Cadence
from runner.inference.cascade import CROP_SIDES_PX, LostPersons, attach_keypoints, find_lost
from runner.inference.crops import Crop, boxes_to_frame, make_crop, points_to_frame
from runner.inference.detector import Detector, ModelPool
from runner.inference.routing import (
    PERSON_LABEL,
    WHOLE_FRAME,
    CameraRoutes,
    PersonPass,
    crop_input_size,
    detection_box,
    person_pass,
    person_region,
    watched_region,
)
from runner.inference.tiling import merge_passes
from runner.pipeline.clips import ClipRecorder, FinishedClip, encode_clip
from runner.pipeline.gate import AlertGate
from runner.pipeline.snapshots import render_snapshot, snapshot_label
from runner.register import Register, StoredAlert, iso
from runner.rules.base import FrameContext, Rule
from runner.rules.registry import build_rule
from runner.sources.capture import Frame
from runner.sources.motion import MotionGate, NormPolygon
from runner.sources.privacy import PrivacyMasker
from runner.tracking.tracker import CameraTracker, TrackerSettings, TrackHistory

log = logging.getLogger(__name__)


@dataclass
class PlannedModel:
    """A model a camera runs, the labels it is asked for, and its cadence."""

    detector: Detector
    labels: frozenset[str]
    spec: ModelSpec
    person_height_px: float | None = None  # the camera's: raises the input size when this model finds persons
    person_region: NormBox = WHOLE_FRAME  # where the camera's person rules look (`routing.person_region`)
    watched: NormBox = WHOLE_FRAME  # where the rules this model serves look (`routing.watched_region`)
    detect_margin_frac: float | None = None  # the camera's: the frame pass runs on `watched` grown by this
    cadence: Cadence = field(init=False)

    def __post_init__(self) -> None:
        self.cadence = Cadence(self.spec.max_fps)

    @property
    def name(self) -> str:
        return self.detector.name

    def person_pass(self, frame_hw: tuple[int, int]) -> PersonPass | None:
        """How this model sees the camera's small people (`person_height_px`): a raised input size, or a second
        pass on the person rules' region (`runner.inference.routing.person_pass`).

        Args:
            frame_hw: the frame's (height, width), pixels.

        Returns:
            The pass, or None when the camera gives no person height or this model does not find its persons.
        """
        if self.person_height_px is None or PERSON_LABEL not in self.labels:
            return None
        return person_pass(
            frame_hw,
            self.person_height_px,
            self.spec.imgsz,
            any_input_size=self.detector.any_input_size,
            region=self.person_region,
        )

    def input_size(self, frame_hw: tuple[int, int]) -> int | None:
        """The input size this camera's frames run at: raised for small people (`person_height_px`).

        Args:
            frame_hw: the frame's (height, width), pixels.

        Returns:
            The size, or None for the model's configured one.
        """
        chosen = self.person_pass(frame_hw)
        return chosen.imgsz if chosen is not None and chosen.imgsz != self.spec.imgsz else None

    def frame_input(self, image: np.ndarray) -> FrameInput:
        """What this model's frame pass runs on: the crop around the zones its rules watch (`routing.detection_box`)
        at the whole frame's scale, or the whole frame; at the camera's input size for it (`input_size`).

        Args:
            image: the masked frame.

        Returns:
            The input image, its input size (None: the model's own) and the crop (None: the whole frame).
        """
        imgsz = self.input_size(image.shape[:2])
        box = detection_box(self.watched, self.detect_margin_frac) if self.detector.any_input_size else None
        crop = make_crop(image, box, pad_frac=0.0) if box is not None else None
        if crop is None:
            return FrameInput(image, imgsz, None)
        size = crop_input_size(image.shape[:2], crop.image.shape[:2], imgsz or self.spec.imgsz)
        return FrameInput(crop.image, size, crop)

    def is_due(self, t_s: float) -> bool:
        """Whether the model's cadence (`max_fps`) lets it run on a frame.

        Args:
            t_s: the frame's stream time, seconds.

        Returns:
            True when it has no schedule yet (first frame, no `max_fps`) or the frame is at or past its due time.
        """
        return self.cadence.is_due(t_s)

    def mark_run(self, t_s: float) -> None:
        """Schedules the next run after one at `t_s` (no schedule without `max_fps`: every frame is due).

        Args:
            t_s: the stream time of the frame the model runs on, seconds.
        """
        self.cadence.mark(t_s)


@dataclass(frozen=True)
class FrameInput:
    """The image a model's frame pass runs on (`PlannedModel.frame_input`)."""

    image: np.ndarray  # the frame, or the crop around the zones
    imgsz: int | None  # its input size; None: the model's own
    crop: Crop | None  # where the crop lies in the frame; None: the whole frame

    def to_frame(self, found: sv.Detections) -> sv.Detections:
        """Detections found on this input, in frame pixels (boxes and keypoints moved by the crop's offset).

        Args:
            found: the model's detections on `image`.

        Returns:
            The same detections, moved (the object itself).
        """
        return found if self.crop is None else _moved_to_frame(found, self.crop)


@dataclass
class DetectionPlan:
    """What one frame needs from the detectors: the models to run on it, and the tracked models whose
    last outputs the motion gate lets it reuse instead (nothing moved since)."""

    run: list[PlannedModel]
    reuse: frozenset[str] = frozenset()
    predicted: bool = False  # the tracked models do not run: the tracker predicts their tracks on this frame

    @property
    def gated(self) -> bool:
        return bool(self.reuse)


@dataclass
class FrameDetections:
    to_track: sv.Detections  # from models whose objects are tracked (people, vehicles, bags)
    untracked: sv.Detections  # regions that bypass the tracker (fire, smoke)
    # Models whose output stands for this frame: those that ran, and those whose last output the motion
    # gate reused (the detector would have seen the same: nothing moved).
    models_run: frozenset[str]
    gated: bool = False
    predicted: bool = False  # no tracked model ran: `to_track` is empty and the tracker predicts the tracks


@dataclass
class RaisedAlert:
    record: AlertRecord
    stored: StoredAlert | None
    snapshot_jpeg: bytes | None = field(repr=False, default=None)
    latency_s: float | None = None  # from the frame leaving the source to the row committed


class AlertSink(Protocol):
    """Where a pipeline hands the storing of an alert when it is not done in line (see runner.service.writer)."""

    def submit(self, camera_id: str, job: Callable[[], object]) -> None:
        """Queues the storing of one alert.

        Args:
            camera_id: the camera the alert belongs to.
            job: stores the alert (snapshot, register row, `on_alert`) when called.
        """
        ...


STAGES = ("detect", "track", "rules", "store")
# A plan reads whether every track was confirmed this many of the camera's frames before it: the scheduler's detector
# runs at most two rounds ahead of the rules (`runner.service.scheduler.ROUNDS_AHEAD`), so that frame is always
# analysed by then, and the threads' timing never changes which frames are detected.
SETTLED_LAG_FRAMES = 3
ENLARGED_SIZE_STEP_PX = 32  # an enlarged crop's input side is a multiple of the models' largest stride


class CameraPipeline:
    def __init__(
        self,
        loaded: LoadedConfig,
        camera: Camera,
        pool: ModelPool,
        register: Register | None,
        *,
        mode: str = "live",
        source_label: str | None = None,
        on_alert: Callable[[RaisedAlert], None] | None = None,
        writer: AlertSink | None = None,
    ):
        """One camera's chain, built from the site config.

        Args:
            loaded: the site config, with its path and hash (recorded with every alert).
            camera: the camera this pipeline analyses.
            pool: the detectors, shared by the cameras.
            register: where alerts and rule errors are recorded (None: nothing is stored).
            mode: "live" or "replay" (a replay's alerts are tests).
            source_label: the source recorded with each alert (default: the camera's), secrets redacted.
            on_alert: called with each alert once stored.
            writer: where the storing of alerts is handed, off the analysis thread (None: stored in line).
        """
        self.loaded = loaded
        self.site = loaded.config
        self.camera = camera
        self.register = register
        self.mode = mode
        self.is_test = self.site.phase == "design" or mode == "replay"
        self.source_label = redact(source_label or camera.source)
        self.on_alert = on_alert
        self.timezone = ZoneInfo(self.site.timezone)
        self.rules: list[Rule] = [build_rule(r, camera) for r in camera.rules if r.enabled]
        # Rules needing fewer frames than the camera analyses (a still bag, a crowd's level) skip the others;
        # the track ids ended meanwhile wait for their next frame.
        self.analysed_fps = camera.analysed_fps
        self._rule_cadences: dict[int, tuple[Cadence, set[int]]] = {}  # id(rule) -> (schedule, ended ids waiting)
        self.routes = _camera_routes(pool, camera)
        self.models = [
            PlannedModel(
                pool.get(name),
                labels,
                self.site.models[name],
                person_height_px=camera.person_height_px,
                person_region=person_region(camera),
                watched=watched_region(camera, labels),
                detect_margin_frac=camera.detect_margin_frac,
            )
            for name, labels in self.routes.detect.items()
        ]
        # The person cascade: label -> pose model run on the crops of that label's detections.
        self.keypoint_models: dict[str, Detector] = {
            label: pool.get(name) for label, name in self.routes.keypoints.items()
        }
        self.pose_crops = 0  # crops the cascade's pose models ran on
        self._lost = {label: LostPersons() for label in self.keypoint_models}  # where the detector lost persons
        self.models_info = [m.detector.resolved.describe() for m in self.models] + [
            d.resolved.describe() for d in {d.name: d for d in self.keypoint_models.values()}.values()
        ]
        self.masker = PrivacyMasker(camera.privacy_masks)
        self.tracker = CameraTracker(
            TrackerSettings(
                process_fps=camera.analysed_fps,
                lost_s=camera.tracking.lost_s,
                activation_conf=camera.tracking.activation_conf,
            )
        )
        self.history = TrackHistory(max_points=camera.tracking.history_points, expiry_s=camera.tracking.lost_s + 1.0)
        # Fresh detections for the tracked models at the rate the rules need (`Camera.detect_fps`); the analysed
        # frames between get the tracker's predictions, while every track is confirmed.
        self.detect_fps = camera.detect_fps
        self._detect_cadence = (
            Cadence(self.detect_fps, tolerance_s=0.5 / self.analysed_fps)
            if self.detect_fps < self.analysed_fps - 1e-9
            else None
        )
        self._planned_t: deque[float] = deque(maxlen=SETTLED_LAG_FRAMES + 1)  # the last frames planned, by time
        self._settled_at: dict[float, bool] = {}  # frame time -> every track confirmed after it (recent frames)
        self.frames_predicted = 0
        self.gate = AlertGate({r.id: r.cooldown_s for r in camera.rules})
        self.rule_errors: dict[str, int] = {}  # rule id -> updates that raised (the rule skipped that frame)
        self.frames_processed = 0
        self.stage_s: dict[str, float] = dict.fromkeys(STAGES, 0.0)  # cumulative seconds (perf_counter)
        self.rule_s: dict[str, float] = {}  # cumulative seconds per rule kind (part of stage "rules")
        self._writer = writer
        self.motion = self._motion_gate()
        self._last_outputs: dict[str, sv.Detections] = {}  # tracked models' last real outputs (for gated frames)
        self._planned_to_run: set[str] = set()  # models planned on a frame since the last reset
        self.warm_shape: tuple[int, int] | None = None  # the frame size `warm_up` last compiled for
        # The short clip around each stored alert, from the same masked frames as its snapshot.
        self.clips = ClipRecorder() if register is not None else None
        self.clip_stats: dict[str, float] = {"clips": 0, "encode_s": 0.0, "bytes": 0}

    def _rule_schedule(self, rule: Rule) -> tuple[Cadence, set[int]]:
        """When a rule runs: on every analysed frame when it needs the camera's rate, else on the first frame at or
        after each step of its own (within half a camera frame: frames fall near, not on, its grid); and the track
        ids ended on the frames it skipped.

        Args:
            rule: one of the pipeline's rules.

        Returns:
            Its schedule and the ended ids waiting for it (made on first use, void after a reset).
        """
        if id(rule) not in self._rule_cadences:
            config: RuleConfig | None = getattr(rule, "config", None)
            rate_fps = config.rate_fps(self.camera.process_fps) if config is not None else self.analysed_fps
            every_frame = rate_fps >= self.analysed_fps - 1e-9
            cadence = Cadence(None) if every_frame else Cadence(rate_fps, tolerance_s=0.5 / self.analysed_fps)
            self._rule_cadences[id(rule)] = (cadence, set())
        return self._rule_cadences[id(rule)]

    # -- stages ----------------------------------------------------------------------------------
    def prepare(self, frame: Frame) -> np.ndarray:
        """Privacy masks applied before anything else sees the pixels.

        Args:
            frame: the frame as read from the source.

        Returns:
            The masked BGR image (the frame's own image is not modified).
        """
        return self.masker.apply(frame.image)

    def due_models(self, t_s: float) -> list[PlannedModel]:
        """The models to run on the frame at `t_s` (those with `max_fps` skip frames, `on_demand` ones
        run only through re-detection).

        Args:
            t_s: the frame's stream time, seconds.

        Returns:
            The due models, in configured order.
        """
        return [m for m in self.models if not m.spec.on_demand and m.is_due(t_s)]

    def plan(self, image: np.ndarray, t_s: float) -> DetectionPlan:
        """The due models, less the tracked ones when the motion gate says nothing moved (their last
        outputs are reused). Untracked (fire) and on-demand models are never gated.

        A plan never needs the previous frame's outputs (`combine` resolves the reuse), so the detector
        thread may plan and start a frame before the previous frame of the camera is combined.

        Planning marks the models that will run as run (their `max_fps` schedule moves on).

        Args:
            image: the masked frame (the motion gate compares it with the last detected one).
            t_s: the frame's stream time, seconds.

        Returns:
            The models to run and the tracked models whose last outputs are reused.
        """
        run = self.due_models(t_s)
        reuse: frozenset[str] = frozenset()
        gated = [m for m in run if m.spec.track]
        if gated and self._predicts(t_s):
            run = [m for m in run if not m.spec.track]
            for model in run:
                model.mark_run(t_s)
            return DetectionPlan(run, predicted=True)
        if gated and self._detect_cadence is not None and self._detect_cadence.is_due(t_s):
            self._detect_cadence.mark(t_s)  # a newcomer's extra detections leave the grid as it is
        if self.motion is not None and gated:
            ran_before = all(m.name in self._planned_to_run for m in gated)
            if not self.motion.wants_detection(image, t_s, force=not ran_before):
                run, reuse = [m for m in run if not m.spec.track], frozenset(m.name for m in gated)
        for model in run:
            model.mark_run(t_s)
            self._planned_to_run.add(model.name)
        return DetectionPlan(run, reuse)

    def _predicts(self, t_s: float) -> bool:
        """Whether the tracker predicts the tracked models' objects on the frame at `t_s`: a frame between two due
        detections, with every track confirmed `SETTLED_LAG_FRAMES` frames before (a frame the rules have analysed
        whatever the threads' timing, so the same frames are detected on every run)."""
        self._planned_t.append(t_s)
        cadence = self._detect_cadence
        if cadence is None or cadence.next_due_s is None or cadence.is_due(t_s):
            return False
        if len(self._planned_t) <= SETTLED_LAG_FRAMES:
            return False  # the stream just (re)started
        return self._settled_at.get(self._planned_t[0], False)  # unknown (its analysis failed): detect

    def detect(self, image: np.ndarray, t_s: float) -> FrameDetections:
        """Plans, runs the planned models on this one frame and combines their outputs (`process`'s detection).

        Args:
            image: the masked frame.
            t_s: its stream time, seconds.

        Returns:
            The detections to track and those that bypass the tracker.
        """
        started = time.perf_counter()
        plan = self.plan(image, t_s)
        outputs = {m.name: detect_one(m, image) for m in plan.run}
        self.record_stage_s("detect", time.perf_counter() - started)
        return self.combine(outputs, t_s, plan, image)

    def combine(
        self,
        outputs: dict[str, sv.Detections],
        t_s: float,
        plan: DetectionPlan | None = None,
        image: np.ndarray | None = None,
    ) -> FrameDetections:
        """Group per-model outputs (plus those the plan reuses) into what goes through the tracker and
        what bypasses it; with the person cascade, the pose model first runs on the crops of the persons.

        Args:
            outputs: model name -> its detections on this frame (pixel boxes).
            t_s: the frame's stream time, seconds.
            plan: the frame's plan; None when the caller planned nothing (the models' schedules are then
                advanced here, and nothing is reused).
            image: the masked frame the outputs were found on (the cascade crops it); None: no cascade.

        Returns:
            The merged detections to track and untracked, and the models whose output stands for this frame.
        """
        if image is not None:
            self.add_person_passes(image, outputs)
            self.add_keypoints(image, outputs, t_s)
        for model in self.models:
            if model.name in outputs:
                if plan is None:  # a caller that planned nothing: keep the models' schedules here
                    model.mark_run(t_s)
                if self.motion is not None and model.spec.track:
                    # A pristine copy: the tracker and the rules may annotate what they are given.
                    self._last_outputs[model.name] = copy.deepcopy(outputs[model.name])
        # The previous frame's outputs (combined in order); none when its detection failed: the model then
        # did not run on this frame, as far as the rules know.
        reuse = plan.reuse if plan is not None else frozenset()
        reused = {name: copy.deepcopy(self._last_outputs[name]) for name in reuse if name in self._last_outputs}
        everything = {**outputs, **reused}
        by_track: dict[bool, list[sv.Detections]] = {True: [], False: []}
        for model in self.models:
            if model.name in everything:
                by_track[model.spec.track].append(everything[model.name])
        return FrameDetections(
            merge_detections(by_track[True]),
            merge_detections(by_track[False]),
            frozenset(everything),
            gated=bool(reused),
            predicted=plan is not None and plan.predicted,
        )

    def add_person_passes(self, image: np.ndarray, outputs: dict[str, sv.Detections]) -> None:
        """Small people beyond the largest input size: the persons found by each model's region pass (the person
        rules' region enlarged, or tiled; `PlannedModel.person_pass`), merged into its whole-frame output (in
        place); nothing for a model without one.

        Args:
            image: the masked frame.
            outputs: model name -> its detections on this frame (pixel boxes).
        """
        for model in self.models:
            chosen = model.person_pass(image.shape[:2]) if model.name in outputs else None
            if chosen is None or chosen.region is None:
                continue
            started = time.perf_counter()
            outputs[model.name] = merge_passes([outputs[model.name], *run_person_pass(model.detector, image, chosen)])
            self.record_stage_s("detect", time.perf_counter() - started)

    def add_keypoints(self, image: np.ndarray, outputs: dict[str, sv.Detections], t_s: float = 0.0) -> None:
        """The person cascade: keypoints from the pose model on the crops of the persons the detector found,
        attached to the detector's boxes, and the persons the pose model finds where the detector just lost
        someone (a fall), added to its output (in place); nothing without a cascade.

        Args:
            image: the masked frame.
            outputs: model name -> its detections on this frame (pixel boxes).
            t_s: the frame's stream time, seconds.
        """
        started = time.perf_counter()
        for label, pose in self.keypoint_models.items():
            detector_name = self.routes.model_for(label)
            if detector_name not in outputs:
                continue
            found = outputs[detector_name]
            self.pose_crops += attach_keypoints(image, found, label, pose)
            names = found.data.get(CLASS_NAME) if len(found) else None
            persons = np.array([found.xyxy[i] for i in range(len(found)) if names is not None and names[i] == label])
            lost = self._lost[label].update(t_s, persons.reshape(-1, 4))
            extra = find_lost(image, lost, found, label, pose) if lost else None
            self.pose_crops += len(lost)
            if extra is not None:
                detector = next(m.detector for m in self.models if m.name == detector_name)
                ids = [i for i, name in detector.names.items() if name == label]
                extra.class_id = np.full(len(extra), ids[0] if ids else 0, dtype=int)
                outputs[detector_name] = merge_detections([found, extra])
        if self.keypoint_models:
            self.record_stage_s("detect", time.perf_counter() - started)

    def record_stage_s(self, stage: str, seconds: float) -> None:
        """Add time spent on this camera's frames to a stage (the runner's detector thread times its share).

        Args:
            stage: one of `STAGES`.
            seconds: the time spent (perf_counter).
        """
        self.stage_s[stage] += seconds

    @property
    def frames_gated(self) -> int:
        return self.motion.frames_gated if self.motion is not None else 0

    def analyse(self, frame: Frame, image: np.ndarray, detected: FrameDetections) -> list[RaisedAlert]:
        """Track, run the rules, raise the admitted alerts.

        Args:
            frame: the frame (its stream time, index, wall time and read time are recorded).
            image: its masked image, the one the detections were made on.
            detected: the frame's detections (`combine`).

        Returns:
            The alerts stored in line (none when a writer stores them: they reach `on_alert` once committed).
        """
        started = time.perf_counter()
        if self.clips is not None:
            self._save_clips(self.clips.observe(frame.t_s, image))
        height, width = image.shape[:2]
        if detected.predicted:
            tracked = self.tracker.predict(frame.t_s)
            self.frames_predicted += 1
        else:
            tracked = self.tracker.update(detected.to_track, frame.t_s)
        if self._detect_cadence is not None:
            self._record_settled(frame.t_s)
        ended = self.history.update(tracked, frame.t_s, width, height)
        rules_started = time.perf_counter()
        self.record_stage_s("track", rules_started - started)
        untracked = detected.untracked
        untracked.tracker_id = np.full(len(untracked), -1, dtype=int)
        ctx = FrameContext(
            camera_id=self.camera.id,
            t_s=frame.t_s,
            frame_index=frame.index,
            wall_time=frame.wall_time.astimezone(self.timezone),
            width=width,
            height=height,
            detections=merge_detections([tracked, untracked]),
            tracks=self.history,
            ended_track_ids=ended,
            image=image,
            models_run=detected.models_run,
            predicted=detected.predicted,
            redetect=partial(self._redetect, image),
            redetect_many=partial(self._redetect_many, image),
            redetect_enlarged=partial(self._redetect_enlarged, image),
        )
        # Rules that read keypoints re-detect with the cascade's pose model (keypoints on the crop too).
        pose_ctx = (
            dataclasses.replace(
                ctx,
                redetect=partial(self._redetect, image, keypoints=True),
                redetect_many=partial(self._redetect_many, image, keypoints=True),
            )
            if self.keypoint_models
            else ctx
        )
        candidates: list[AlertCandidate] = []
        for rule in self.rules:
            cadence, ended_waiting = self._rule_schedule(rule)
            if not cadence.is_due(frame.t_s) or (detected.predicted and not _reads_predicted(rule)):
                ended_waiting |= ended  # a rule needing fresh detections stays due until the next detected frame
                continue
            cadence.mark(frame.t_s)
            config = getattr(rule, "config", None) if self.keypoint_models else None
            wants_pose = config is not None and bool(config.keypoint_labels() & self.keypoint_models.keys())
            rule_ctx = pose_ctx if wants_pose else ctx
            if ended_waiting:
                rule_ctx = dataclasses.replace(rule_ctx, ended_track_ids=frozenset(ended_waiting | ended))
                ended_waiting.clear()
            candidates += self._run_rule(rule, rule_ctx)
        admitted = self.gate.admit(candidates, frame.t_s)
        self.frames_processed += 1
        self.record_stage_s("rules", time.perf_counter() - rules_started)
        if not admitted:
            return []
        if self._writer is not None:
            # The writer encodes later, while the capture buffer may already hold the next frame.
            evidence = image.copy()
            for candidate in admitted:
                self._writer.submit(
                    self.camera.id,
                    partial(self._store, self._record(frame, candidate), evidence, candidate, frame.read_mono),
                )
            return []
        return [self._store(self._record(frame, c), image, c, frame.read_mono) for c in admitted]

    def process(self, frame: Frame) -> list[RaisedAlert]:
        """The whole chain on one frame: masks, detection, then `analyse`.

        Args:
            frame: the frame as read from the source.

        Returns:
            The alerts stored in line (none with a writer).
        """
        started = time.perf_counter()
        image = self.prepare(frame)
        self.record_stage_s("detect", time.perf_counter() - started)  # masks count with detection
        return self.analyse(frame, image, self.detect(image, frame.t_s))

    def _redetect(
        self,
        image: np.ndarray,
        label: str,
        box: NormBox,
        *,
        rotate_deg: int = 0,
        pad_frac: float = 0.5,
        keypoints: bool = False,
    ) -> sv.Detections:
        """Run the model that provides `label` on a (rotated) crop around `box`; full-frame pixel boxes."""
        return self._redetect_many(image, label, [box], rotate_deg=rotate_deg, pad_frac=pad_frac, keypoints=keypoints)[
            0
        ]

    def _redetect_many(
        self,
        image: np.ndarray,
        label: str,
        boxes: list[NormBox],
        *,
        rotate_deg: int = 0,
        pad_frac: float = 0.5,
        keypoints: bool = False,
    ) -> list[sv.Detections]:
        """`_redetect` on several boxes in one inference call (crops of one size share a batch); with
        `keypoints`, the cascade's pose model where the label has one."""
        planned = self._model_for(label)
        pose = self.keypoint_models.get(label) if keypoints else None
        if planned is None and pose is None:  # no configured model provides the label: nothing to find
            return [empty_detections() for _ in boxes]
        detector = pose if pose is not None else planned.detector  # type: ignore[union-attr]
        crops = [make_crop(image, box, pad_frac=pad_frac, rotate_deg=rotate_deg) for box in boxes]
        usable = [crop for crop in crops if crop is not None]
        # Crops of any shape share one square input; the whole frame (an on-demand model's pass) keeps its own.
        whole = all(crop.image.shape == image.shape for crop in usable)
        detect = detector.detect if whole else detector.detect_crops
        found_all = iter(detect([crop.image for crop in usable], {label}) if usable else [])
        results = []
        for crop in crops:
            if crop is None:
                results.append(empty_detections())
                continue
            results.append(_crop_to_frame(next(found_all), crop))
        return results

    def _redetect_enlarged(
        self, image: np.ndarray, label: str, box: NormBox, scale: float, *, max_side_px: int
    ) -> sv.Detections | None:
        """The crop `box` enlarged `scale` times in one inference (input long side rounded up to a multiple
        of 32, the models' stride); None when the model cannot change its input size or it would be too large."""
        model = self._model_for(label)
        if model is None or not model.detector.any_input_size:
            return None
        crop = make_crop(image, box, pad_frac=0.0)
        if crop is None:
            return empty_detections()
        side_px = enlarged_side_px(crop.image.shape[:2], scale)
        if side_px > max_side_px:
            return None
        return _crop_to_frame(model.detector.detect([crop.image], {label}, imgsz=side_px)[0], crop)

    def _model_for(self, label: str) -> PlannedModel | None:
        """The model that provides `label` to this camera (re-detections run it on crops)."""
        return next((m for m in self.models if label in m.labels), None)

    def warm_up(self, height: int, width: int) -> None:
        """Compile what this camera's frames of this size will need, before they come: each model at the
        frame's size and every enlarged pass of the rules (the OpenVINO engine compiles one model per input
        shape, about a second each; a shape compiled mid-stream holds that camera's analysis meanwhile).

        Args:
            height: the frames' height, pixels.
            width: their width, pixels.
        """
        self.warm_shape = (height, width)  # tried once per size, even when it fails (detection compiles anyway)
        cropped = frozenset().union(*(rule.crop_labels() for rule in self.rules))
        blank = np.zeros((height, width, 3), np.uint8)
        for model in self.models:
            # The frame pass's input (the frame, or the crop around the zones), the whole frame for an on-demand
            # model, and the square input of the crops rules re-detect.
            given = FrameInput(blank, None, None) if model.spec.on_demand else model.frame_input(blank)
            square = [(model.spec.imgsz, model.spec.imgsz)] if model.labels & cropped else []
            if given.crop is None:
                model.detector.warm_up([(height, width), *square], imgsz=model.input_size((height, width)))
            else:
                model.detector.warm_up([given.image.shape[:2]], imgsz=given.imgsz)
                model.detector.warm_up(square, imgsz=model.input_size((height, width)))
            chosen = model.person_pass((height, width))
            if chosen is not None and chosen.region is not None:  # the small people's region pass: one crop shape
                crop = make_crop(blank, chosen.boxes[0], pad_frac=0.0)
                if crop is not None:
                    model.detector.warm_up([crop.image.shape[:2]], imgsz=chosen.region_imgsz)
        for pose in {d.name: d for d in self.keypoint_models.values()}.values():
            # The cascade's crops run at a few square sides; a rule's rotated re-detection at the model's own.
            if pose.any_input_size:
                for side in (s for s in CROP_SIDES_PX if s <= pose.spec.imgsz):
                    pose.warm_up([(side, side)], imgsz=side)
            pose.warm_up([(pose.spec.imgsz, pose.spec.imgsz)])
        for rule in self.rules:
            for label, box, scale, max_side_px in rule.enlarged_passes():
                provider, crop = self._model_for(label), make_crop(blank, box, pad_frac=0.0)
                if provider is None or crop is None or not provider.detector.any_input_size:
                    continue
                side_px = enlarged_side_px(crop.image.shape[:2], scale)
                if side_px <= max_side_px:
                    provider.detector.warm_up([crop.image.shape[:2]], imgsz=side_px)

    def reset(self) -> None:
        """The stream restarted (reconnect or looped file): tracks and dwell clocks are void."""
        self.finish_clips()  # the clips being filled end with the old stream
        self.tracker.reset()
        self.history.clear()
        for rule in self.rules:
            rule.reset()
        self._rule_cadences.clear()
        for model in self.models:
            model.cadence.reset()
        if self._detect_cadence is not None:
            self._detect_cadence.reset()
        self._planned_t.clear()
        self._settled_at.clear()
        for lost in self._lost.values():
            lost.clear()
        # The gate's reference frame and the reused detections belong to the old stream: detect at once.
        self._last_outputs.clear()
        self._planned_to_run.clear()
        if self.motion is not None:
            self.motion.reset()

    def state_size(self) -> int:
        """Entries held by the camera's track history and rules (bounded; back to 0 once tracks end).

        Returns:
            The track history's tracks plus every rule's `state_size()`.
        """
        return len(self.history) + sum(r.state_size() for r in self.rules)

    # -- helpers ---------------------------------------------------------------------------------
    def _record_settled(self, t_s: float) -> None:
        """Keep whether every track is confirmed after the frame at `t_s`, for the plan `SETTLED_LAG_FRAMES` frames
        on (bounded: the frames older than the oldest planned one are dropped)."""
        self._settled_at[t_s] = self.tracker.settled
        oldest = self._planned_t[0] if self._planned_t else t_s
        for old in [t for t in self._settled_at if t < oldest]:
            del self._settled_at[old]

    def _run_rule(self, rule: Rule, ctx: FrameContext) -> list[AlertCandidate]:
        # Error boundary: one rule's bug must not stop the camera's other rules or other cameras.
        started = time.perf_counter()
        try:
            return rule.update(ctx)
        except Exception as exc:
            count = self.rule_errors.get(rule.config.id, 0) + 1
            self.rule_errors[rule.config.id] = count
            if count == 1 or count % 1000 == 0:
                log.exception("camera %s rule %s failed (%d times)", self.camera.id, rule.config.id, count)
                if self.register is not None:
                    self.register.audit(
                        "rule_error",
                        "runner",
                        self.camera.id,
                        {"rule_id": rule.config.id, "error": f"{type(exc).__name__}: {exc}"[:500], "count": count},
                    )
            return []
        finally:
            kind = getattr(getattr(rule, "config", None), "kind", type(rule).__name__)
            self.rule_s[kind] = self.rule_s.get(kind, 0.0) + time.perf_counter() - started

    def _motion_gate(self) -> MotionGate | None:
        """A gate over the zones of the rules that use the gated (tracked, every-frame) models' labels;
        the whole frame when one of them watches no zone (a tripwire, a whole-image rule)."""
        gated_labels = frozenset().union(*(m.labels for m in self.models if m.spec.track and not m.spec.on_demand))
        if not self.camera.motion_gate.enabled or not gated_labels:
            return None
        polygons: list[NormPolygon] = []
        for rule in self.camera.rules:
            if not rule.enabled or not (rule.required_labels() | rule.optional_labels()) & gated_labels:
                continue
            zones = [z for name, z in rule.zone_refs().items() if not name.startswith("exclude")]
            if not zones:
                return MotionGate(self.camera.motion_gate, None)  # the whole frame
            polygons += [self.camera.zone(z).polygon for z in zones]
        return MotionGate(self.camera.motion_gate, polygons or None)

    def _record(self, frame: Frame, candidate: AlertCandidate) -> AlertRecord:
        return AlertRecord(
            uid=uuid.uuid4().hex,
            site=self.site.site,
            camera_id=self.camera.id,
            rule_id=candidate.rule_id,
            kind=candidate.kind,
            ts_utc=iso(frame.wall_time),
            t_s=round(frame.t_s, 3),
            frame_index=frame.index,
            subject=candidate.subject,
            track_id=candidate.track_id,
            score=round(float(candidate.score), 4),
            bbox=[round(float(v), 4) for v in candidate.bbox] if candidate.bbox is not None else None,
            details=dict(candidate.details),
            is_test=self.is_test,
            phase=self.site.phase,
            mode=self.mode,
            source=self.source_label,
            config_revision=self.site.revision,
            config_sha256=self.loaded.sha256,
            models=self.models_info,
        )

    def _store(
        self, record: AlertRecord, image: np.ndarray, candidate: AlertCandidate, read_mono: float
    ) -> RaisedAlert:
        """Snapshot and register row (in line, or on the writer's thread)."""
        started = time.perf_counter()
        snapshot, note = self._snapshot(image, candidate)
        stored = self.register.add_alert(record, snapshot, note) if self.register is not None else None
        if stored is not None and self.clips is not None:
            self.clips.follow(stored.id, record.t_s)
        self.record_stage_s("store", time.perf_counter() - started)
        raised = RaisedAlert(record, stored, snapshot, latency_s=time.monotonic() - read_mono)
        if self.on_alert is not None:
            self.on_alert(raised)
        return raised

    def finish_clips(self) -> None:
        """Store the clips still being filled as they are (the stream ended or restarted)."""
        if self.clips is not None:
            self._save_clips(self.clips.flush())

    def _save_clips(self, finished: list[FinishedClip]) -> None:
        """Encode and store clips, off the analysis thread when a writer is given."""
        for clip in finished:
            if self._writer is not None:
                self._writer.submit(self.camera.id, partial(self._store_clip, clip))
            else:
                self._store_clip(clip)

    def _store_clip(self, clip: FinishedClip) -> None:
        """One alert's clip, encoded and stored; a failure is logged and costs nothing else (the alert is stored)."""
        if self.register is None:
            return
        try:
            encoded = encode_clip(clip.frames)
            self.register.add_clip(
                clip.alert_id,
                encoded.data,
                extension=encoded.extension,
                media_type=encoded.media_type,
                frames=encoded.frames,
                duration_s=encoded.duration_s,
            )
        except Exception as exc:
            log.error("camera %s: clip of alert %s not stored: %s", self.camera.id, clip.alert_id, exc)
            return
        self.clip_stats["clips"] += 1
        self.clip_stats["encode_s"] += encoded.encode_s
        self.clip_stats["bytes"] += len(encoded.data)

    def _snapshot(self, image: np.ndarray, candidate: AlertCandidate) -> tuple[bytes | None, str | None]:
        """(JPEG, None), or (None, why) when the image could not be made: that never costs the alert."""
        try:
            rule_cfg = next(r for r in self.camera.rules if r.id == candidate.rule_id)
            # The zone the rule watches, not its exclusion zones, is drawn around the alert.
            zones = [
                self.camera.zone(z) for field, z in rule_cfg.zone_refs().items() if not field.startswith("exclude")
            ]
            lines = [(self.camera.line(ln).start, self.camera.line(ln).end) for ln in rule_cfg.line_refs().values()]
            arrows = [(_centroid(z.polygon), z.direction) for z in zones if z.direction is not None]
            label = snapshot_label(candidate.kind, candidate.score)
            return render_snapshot(image, candidate.bbox, label, [z.polygon for z in zones], lines, arrows), None
        except Exception as exc:
            log.error("camera %s: snapshot failed: %s", self.camera.id, exc)
            return None, f"snapshot failed: {type(exc).__name__}: {exc}"[:300]


def _camera_routes(pool: ModelPool, camera: Camera) -> CameraRoutes:
    """The camera's routing; a pool that only plans labels (a test double, the workbench's scripted pools)
    gets the order-of-models plan without a cascade."""
    routes = getattr(pool, "camera_routes", None)
    if routes is not None:
        return routes(camera)
    return CameraRoutes(detect=pool.plan(camera.required_labels(), camera.optional_labels()))


def detect_one(model: PlannedModel, image: np.ndarray) -> sv.Detections:
    """One frame through one model, on its input for the camera (`PlannedModel.frame_input`).

    Args:
        model: the camera's model.
        image: the masked frame.

    Returns:
        The model's detections, in frame pixels.
    """
    given = model.frame_input(image)
    if given.imgsz is None:
        return given.to_frame(model.detector.detect([given.image], model.labels)[0])
    return given.to_frame(model.detector.detect([given.image], model.labels, imgsz=given.imgsz)[0])


def enlarged_side_px(crop_hw: tuple[int, int], scale: float) -> int:
    """The input long side of a crop enlarged `scale` times, rounded up to a multiple of the models' stride.

    Args:
        crop_hw: the crop's (height, width), pixels.
        scale: the enlargement factor.

    Returns:
        The side, pixels: a multiple of `ENLARGED_SIZE_STEP_PX`.
    """
    return math.ceil(max(crop_hw) * scale / ENLARGED_SIZE_STEP_PX) * ENLARGED_SIZE_STEP_PX


def run_person_pass(detector: Detector, image: np.ndarray, chosen: PersonPass) -> list[sv.Detections]:
    """The persons a model finds in a frame's small people's region pass (the region enlarged, or each tile).

    Args:
        detector: the model that detects the camera's persons.
        image: the masked frame.
        chosen: its person pass (`PlannedModel.person_pass`).

    Returns:
        One `sv.Detections` per crop, in frame pixels, untracked; none without a region pass.
    """
    crops = [crop for crop in (make_crop(image, box, pad_frac=0.0) for box in chosen.boxes) if crop is not None]
    if not crops:
        return []
    found = detector.detect([crop.image for crop in crops], {PERSON_LABEL}, imgsz=chosen.region_imgsz)
    return [_crop_to_frame(part, crop) for part, crop in zip(found, crops)]


def _crop_to_frame(found: sv.Detections, crop: Crop) -> sv.Detections:
    """Detections found in a crop, moved to full-frame pixels (boxes and keypoints), untracked."""
    found = _moved_to_frame(found, crop)
    found.tracker_id = np.full(len(found), -1, dtype=int)
    return found


def _moved_to_frame(found: sv.Detections, crop: Crop) -> sv.Detections:
    """Detections found in a crop, their boxes and keypoints moved to full-frame pixels (the object itself)."""
    if len(found):
        found.xyxy = boxes_to_frame(found.xyxy, crop)
        if KEYPOINTS in found.data:
            keypoints = np.array(found.data[KEYPOINTS], dtype=np.float32)
            keypoints[..., :2] = points_to_frame(keypoints[..., :2], crop)
            found.data[KEYPOINTS] = keypoints
    return found


def _reads_predicted(rule: Rule) -> bool:
    """Whether a rule may run on a frame whose tracks the tracker predicted (`RuleConfig.READS_PREDICTED_TRACKS`)."""
    config: RuleConfig | None = getattr(rule, "config", None)
    return config is not None and config.READS_PREDICTED_TRACKS


def _centroid(polygon: list[tuple[float, float]]) -> tuple[float, float]:
    return (sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon))
