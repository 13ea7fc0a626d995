"""One camera's analysis chain: mask -> detect -> track -> history -> rules -> gate -> register.

`process(frame)` does the whole chain; `detect()` and `analyse()` are separate so that a
scheduler can batch the detection of several cameras and keep everything else per camera.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv

from runner.alerts import AlertGate, AlertRecord
from runner.capture import Frame
from runner.config.loading import LoadedConfig, redact
from runner.config.site import Camera
from runner.config.site import ModelSpec
from runner.crops import boxes_to_frame, make_crop, points_to_frame
from runner.detect import Detector, ModelPool, empty_detections, merge_detections
from runner.privacy import PrivacyMasker
from runner.rules.base import AlertCandidate, FrameContext, Rule
from runner.rules.registry import build_rule
from runner.snapshots import render_snapshot
from runner.store import Register, StoredAlert, iso
from runner.tracking import CameraTracker, TrackerSettings, TrackHistory

log = logging.getLogger(__name__)


@dataclass
class PlannedModel:
    """A model a camera runs, the labels it is asked for, and its cadence."""

    detector: Detector
    labels: frozenset[str]
    spec: ModelSpec
    next_due_s: float | None = None

    @property
    def name(self) -> str:
        return self.detector.name

    def is_due(self, t_s: float) -> bool:
        return self.next_due_s is None or t_s >= self.next_due_s - 1e-6

    def mark_run(self, t_s: float) -> None:
        if self.spec.max_fps is None:
            return
        period_s = 1.0 / self.spec.max_fps
        # Keep to the schedule (0, 0.5, 1.0 ... at 2 fps) rather than to the last run, which would
        # drift to a lower rate whenever frames do not fall exactly on it; restart after a gap.
        due = (self.next_due_s if self.next_due_s is not None else t_s) + period_s
        self.next_due_s = due if due > t_s else t_s + period_s


@dataclass
class FrameDetections:
    to_track: sv.Detections  # from models whose objects are tracked (people, vehicles, bags)
    untracked: sv.Detections  # regions that bypass the tracker (fire, smoke)
    models_run: frozenset[str]


@dataclass
class RaisedAlert:
    record: AlertRecord
    stored: StoredAlert | None
    snapshot_jpeg: bytes | None = field(repr=False, default=None)


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
    ):
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
        self.models = [
            PlannedModel(pool.get(name), labels, self.site.models[name])
            for name, labels in pool.plan(camera.required_labels(), camera.optional_labels()).items()
        ]
        self.models_info = [m.detector.resolved.describe() for m in self.models]
        self.masker = PrivacyMasker(camera.privacy_masks)
        self.tracker = CameraTracker(
            TrackerSettings(
                process_fps=camera.process_fps,
                lost_s=camera.tracking.lost_s,
                activation_conf=camera.tracking.activation_conf,
            )
        )
        self.history = TrackHistory(max_points=camera.tracking.history_points, expiry_s=camera.tracking.lost_s + 1.0)
        self.gate = AlertGate({r.id: r.cooldown_s for r in camera.rules})
        self._rule_errors: dict[str, int] = {}
        self.frames_processed = 0

    # -- stages ----------------------------------------------------------------------------------
    def prepare(self, frame: Frame) -> np.ndarray:
        """Privacy masks applied before anything else sees the pixels."""
        return self.masker.apply(frame.image)

    def due_models(self, t_s: float) -> list[PlannedModel]:
        """The models to run on the frame at `t_s` (those with `max_fps` skip frames, `on_demand` ones
        run only through re-detection)."""
        return [m for m in self.models if not m.spec.on_demand and m.is_due(t_s)]

    def detect(self, image: np.ndarray, t_s: float) -> FrameDetections:
        ran = self.due_models(t_s)
        outputs = {m.name: m.detector.detect([image], m.labels)[0] for m in ran}
        return self.combine(outputs, t_s)

    def combine(self, outputs: dict[str, sv.Detections], t_s: float) -> FrameDetections:
        """Group per-model outputs into what goes through the tracker and what bypasses it."""
        for model in self.models:
            if model.name in outputs:
                model.mark_run(t_s)
        by_track = {True: [], False: []}
        for model in self.models:
            if model.name in outputs:
                by_track[model.spec.track].append(outputs[model.name])
        return FrameDetections(merge_detections(by_track[True]), merge_detections(by_track[False]), frozenset(outputs))

    def analyse(self, frame: Frame, image: np.ndarray, detected: FrameDetections) -> list[RaisedAlert]:
        height, width = image.shape[:2]
        tracked = self.tracker.update(detected.to_track, frame.t_s)
        ended = self.history.update(tracked, frame.t_s, width, height)
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
            redetect=partial(self._redetect, image),
        )
        candidates: list[AlertCandidate] = []
        for rule in self.rules:
            candidates += self._run_rule(rule, ctx)
        self.frames_processed += 1
        return [self._raise(frame, image, c) for c in self.gate.admit(candidates, frame.t_s)]

    def process(self, frame: Frame) -> list[RaisedAlert]:
        image = self.prepare(frame)
        return self.analyse(frame, image, self.detect(image, frame.t_s))

    def _redetect(self, image: np.ndarray, label: str, box, *, rotate_deg: int = 0, pad_frac: float = 0.5) -> sv.Detections:
        """Run the model that provides `label` on a (rotated) crop around `box`; full-frame pixel boxes."""
        model = next((m for m in self.models if label in m.labels), None)
        crop = make_crop(image, box, pad_frac=pad_frac, rotate_deg=rotate_deg) if model is not None else None
        if crop is None:
            return empty_detections()
        found = model.detector.detect([crop.image], {label})[0]
        if len(found):
            found.xyxy = boxes_to_frame(found.xyxy, crop)
            if "keypoints" in found.data:
                keypoints = np.array(found.data["keypoints"], dtype=np.float32)
                keypoints[..., :2] = points_to_frame(keypoints[..., :2], crop)
                found.data["keypoints"] = keypoints
        found.tracker_id = np.full(len(found), -1, dtype=int)
        return found

    def reset(self) -> None:
        """The stream restarted (reconnect or looped file): tracks and dwell clocks are void."""
        self.tracker.reset()
        self.history.clear()
        for rule in self.rules:
            rule.reset()
        for model in self.models:
            model.next_due_s = None

    def state_size(self) -> int:
        return len(self.history) + sum(r.state_size() for r in self.rules)

    # -- helpers ---------------------------------------------------------------------------------
    def _run_rule(self, rule: Rule, ctx: FrameContext) -> list[AlertCandidate]:
        # Error boundary: one rule's bug must not stop the camera's other rules or other cameras.
        try:
            return rule.update(ctx)
        except Exception as exc:
            count = self._rule_errors.get(rule.config.id, 0) + 1
            self._rule_errors[rule.config.id] = count
            if count == 1 or count % 1000 == 0:
                log.exception("camera %s rule %s failed (%d times)", self.camera.id, rule.config.id, count)
                if self.register is not None:
                    self.register.audit(
                        "rule_error", "runner", self.camera.id,
                        {"rule_id": rule.config.id, "error": f"{type(exc).__name__}: {exc}"[:500], "count": count},
                    )
            return []

    def _raise(self, frame: Frame, image: np.ndarray, candidate: AlertCandidate) -> RaisedAlert:
        record = AlertRecord(
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
        snapshot, note = self._snapshot(image, candidate)
        stored = self.register.add_alert(record, snapshot, note) if self.register is not None else None
        raised = RaisedAlert(record, stored, snapshot)
        if self.on_alert is not None:
            self.on_alert(raised)
        return raised

    def _snapshot(self, image: np.ndarray, candidate: AlertCandidate) -> tuple[bytes | None, str | None]:
        """(JPEG, None), or (None, why) when the image could not be made: that never costs the alert."""
        try:
            rule_cfg = next(r for r in self.camera.rules if r.id == candidate.rule_id)
            # The zone the rule watches, not its exclusion zones, is drawn around the alert.
            zones = [self.camera.zone(z) for field, z in rule_cfg.zone_refs().items() if not field.startswith("exclude")]
            lines = [(self.camera.line(ln).start, self.camera.line(ln).end) for ln in rule_cfg.line_refs().values()]
            arrows = [(_centroid(z.polygon), z.direction) for z in zones if z.direction is not None]
            label = f"{candidate.kind} {candidate.score:.2f}"
            return render_snapshot(image, candidate.bbox, label, [z.polygon for z in zones], lines, arrows), None
        except Exception as exc:
            log.error("camera %s: snapshot failed: %s", self.camera.id, exc)
            return None, f"snapshot failed: {type(exc).__name__}: {exc}"[:300]


def _centroid(polygon: list[tuple[float, float]]) -> tuple[float, float]:
    return (sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon))
