"""One camera's analysis chain: mask -> detect -> track -> history -> rules -> gate -> register.

`process(frame)` does the whole chain; `detect()` and `analyse()` are separate so that a
scheduler can batch the detection of several cameras and keep everything else per camera.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv

from runner.alerts import AlertGate, AlertRecord
from runner.capture import Frame
from runner.config.loading import LoadedConfig, redact
from runner.config.site import Camera
from runner.detect import Detector, ModelPool, merge_detections
from runner.privacy import PrivacyMasker
from runner.rules.base import AlertCandidate, FrameContext, Rule
from runner.rules.registry import build_rule
from runner.snapshots import render_snapshot
from runner.store import Register, StoredAlert, iso
from runner.tracking import CameraTracker, TrackerSettings, TrackHistory

log = logging.getLogger(__name__)


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
        self.detectors: list[tuple[Detector, frozenset[str]]] = [
            (pool.get(name), labels) for name, labels in pool.plan(camera.required_labels()).items()
        ]
        self.models_info = [d.resolved.describe() for d, _ in self.detectors]
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

    def detect(self, image: np.ndarray) -> sv.Detections:
        return merge_detections([d.detect([image], labels)[0] for d, labels in self.detectors])

    def analyse(self, frame: Frame, image: np.ndarray, detections: sv.Detections) -> list[RaisedAlert]:
        height, width = image.shape[:2]
        tracked = self.tracker.update(detections, frame.t_s)
        ended = self.history.update(tracked, frame.t_s, width, height)
        ctx = FrameContext(
            camera_id=self.camera.id,
            t_s=frame.t_s,
            frame_index=frame.index,
            wall_time=frame.wall_time.astimezone(self.timezone),
            width=width,
            height=height,
            detections=tracked,
            tracks=self.history,
            ended_track_ids=ended,
            image=image,
        )
        candidates: list[AlertCandidate] = []
        for rule in self.rules:
            candidates += self._run_rule(rule, ctx)
        self.frames_processed += 1
        return [self._raise(frame, image, c) for c in self.gate.admit(candidates, frame.t_s)]

    def process(self, frame: Frame) -> list[RaisedAlert]:
        image = self.prepare(frame)
        return self.analyse(frame, image, self.detect(image))

    def reset(self) -> None:
        """The stream restarted (reconnect or looped file): tracks and dwell clocks are void."""
        self.tracker.reset()
        self.history.clear()
        for rule in self.rules:
            rule.reset()

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
            zones = [self.camera.zone(z) for z in rule_cfg.zone_refs().values()]
            lines = [(self.camera.line(ln).start, self.camera.line(ln).end) for ln in rule_cfg.line_refs().values()]
            arrows = [(_centroid(z.polygon), z.direction) for z in zones if z.direction is not None]
            label = f"{candidate.kind} {candidate.score:.2f}"
            return render_snapshot(image, candidate.bbox, label, [z.polygon for z in zones], lines, arrows), None
        except Exception as exc:
            log.error("camera %s: snapshot failed: %s", self.camera.id, exc)
            return None, f"snapshot failed: {type(exc).__name__}: {exc}"[:300]


def _centroid(polygon: list[tuple[float, float]]) -> tuple[float, float]:
    return (sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon))
