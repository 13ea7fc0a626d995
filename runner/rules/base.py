"""The one small interface every event rule implements, and the data it sees each frame.

A rule owns no model, tracker, drawing or I/O: it is built from its config (`runner.config.rules`)
and a `CameraView` (the zones, lines and calibration of its camera, nothing else), reads a
`FrameContext` (detections with track ids, bounded track history, frame timestamp) and returns
`AlertCandidate`s. Time comes only from `FrameContext.t_s` (stream time), never from the wall clock,
so replay and live behave alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import supervision as sv

from runner.config.base import by_id
from runner.config.rules.base import RuleConfig
from runner.config.site import Calibration, Camera, Line, Zone
from runner.core.alerts import AlertCandidate
from runner.core.boxes import NormBox
from runner.core.fields import CLASS_NAME, KEYPOINTS
from runner.core.geometry import Point, normalised_anchors, points_in_polygon
from runner.cues.crowd_pixels import small_frame

if TYPE_CHECKING:
    from runner.tracking.tracker import TrackHistory

__all__ = ["CameraView", "FrameContext", "Redetect", "RedetectEnlarged", "RedetectMany", "Rule", "RuleConfig"]


class Redetect(Protocol):
    """Runs the camera's model for `label` on a crop around `box` (normalised xyxy), enlarged by
    `pad_frac` of its size on each side and rotated by `rotate_deg` (0, 90, 180, 270) before
    inference; returns detections in full-frame pixel coordinates (untracked)."""

    def __call__(
        self, label: str, box: tuple[float, float, float, float], *, rotate_deg: int = 0, pad_frac: float = 0.5
    ) -> sv.Detections: ...


class RedetectMany(Protocol):
    """`Redetect` on several boxes at once (one batched inference: the tiles of a density pass);
    one result per box, in order."""

    def __call__(
        self, label: str, boxes: list[tuple[float, float, float, float]], *, pad_frac: float = 0.5
    ) -> list[sv.Detections]: ...


class RedetectEnlarged(Protocol):
    """Runs the camera's model for `label` once on the crop `box` (normalised xyxy) enlarged `scale` times
    (one rectangular inference at a larger input size); full-frame pixel detections (untracked), or None
    when the model has a fixed input size or the enlarged crop would exceed `max_side_px`."""

    def __call__(
        self, label: str, box: tuple[float, float, float, float], scale: float, *, max_side_px: int
    ) -> sv.Detections | None: ...


@dataclass(frozen=True)
class CameraView:
    """What a rule may know about its camera: the geometry it refers to by id and the rate the rule is evaluated at.

    Not the whole `Camera` (source, privacy masks, tracker and motion-gate settings, the other rules):
    a rule reads only this, so what it can depend on is visible here. Built by
    `runner.rules.registry.build_rule` with `CameraView.of(camera)`.
    """

    camera_id: str
    process_fps: float
    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    calibration: Calibration | None = None

    @classmethod
    def of(cls, camera: Camera, rule: RuleConfig | None = None) -> CameraView:
        """The view of a configured camera, as one of its rules sees it.

        Args:
            camera: the camera's validated config.
            rule: the rule that will read the view: its rate is the view's (`RuleConfig.rate_fps`); None: the
                camera's analysed rate.

        Returns:
            Its id, rate, zones, lines and ground calibration.
        """
        return cls(
            camera_id=camera.id,
            process_fps=rule.rate_fps(camera.process_fps) if rule is not None else camera.analysed_fps,
            zones=tuple(camera.zones),
            lines=tuple(camera.lines),
            calibration=camera.calibration,
        )

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (the config checked that every rule's references exist).

        Args:
            zone_id: a zone id of the camera.

        Returns:
            The zone.

        Raises:
            KeyError: the camera has no such zone.
        """
        return by_id(self.zones, zone_id)

    def line(self, line_id: str) -> Line:
        """The tripwire with this id.

        Args:
            line_id: a line id of the camera.

        Returns:
            The line.

        Raises:
            KeyError: the camera has no such line.
        """
        return by_id(self.lines, line_id)


@dataclass
class FrameContext:
    """Everything a rule may read about one processed frame of one camera."""

    camera_id: str
    t_s: float
    frame_index: int
    wall_time: datetime  # aware, in the site's time zone (for active hours); never used as rule time
    width: int
    height: int
    detections: sv.Detections  # pixel xyxy, `tracker_id` (-1 when untracked), data[CLASS_NAME]
    tracks: TrackHistory
    ended_track_ids: frozenset[int] = frozenset()
    image: np.ndarray | None = None  # BGR, privacy masks already applied
    # Models that ran on this frame: a model with `max_fps` skips frames, and a rule voting over
    # frames (fire, weapon) must only count the frames its model actually looked at.
    models_run: frozenset[str] = frozenset()
    # The tracked detections are the tracker's predictions (no tracked model ran on this frame): only confirmed
    # tracks, no untracked row; counts and fits that need fresh detections hold their last value.
    predicted: bool = False
    # Re-detection around a region (e.g. a person lost while lying down): see `Redetect`.
    redetect: Redetect | None = None
    redetect_many: RedetectMany | None = None
    redetect_enlarged: RedetectEnlarged | None = None
    _downscaled: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def keypoints(self) -> np.ndarray | None:
        """(N, K, 3) pixel keypoints (x, y, confidence) from a pose model, NaN rows for other models."""
        if not self.detections.data or KEYPOINTS not in self.detections.data:
            return None
        return np.asarray(self.detections.data[KEYPOINTS], dtype=float)

    @cached_property
    def anchors(self) -> np.ndarray:
        """Normalised bottom-centre of every detection, shape (N, 2)."""
        if len(self.detections) == 0:
            return np.empty((0, 2))
        return normalised_anchors(self.detections.xyxy, self.width, self.height)

    @cached_property
    def centres(self) -> np.ndarray:
        """Normalised centre of every detection, shape (N, 2)."""
        if len(self.detections) == 0:
            return np.empty((0, 2))
        xyxy = np.asarray(self.detections.xyxy, dtype=float)
        return np.stack(
            [(xyxy[:, 0] + xyxy[:, 2]) / (2 * self.width), (xyxy[:, 1] + xyxy[:, 3]) / (2 * self.height)], axis=1
        )

    @cached_property
    def area_fracs(self) -> np.ndarray:
        """Area of every detection's box as a fraction of the frame's, shape (N,)."""
        if len(self.detections) == 0:
            return np.empty(0)
        xyxy = np.asarray(self.detections.xyxy, dtype=float)
        return (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / float(self.width * self.height)

    @cached_property
    def class_names(self) -> np.ndarray:
        names = self.detections.data.get(CLASS_NAME) if self.detections.data else None
        return np.asarray(names if names is not None else [""] * len(self.detections), dtype=str)

    @cached_property
    def track_ids(self) -> np.ndarray:
        ids = self.detections.tracker_id
        return np.asarray(ids if ids is not None else [-1] * len(self.detections), dtype=int)

    @cached_property
    def confidences(self) -> np.ndarray:
        conf = self.detections.confidence
        return np.asarray(conf if conf is not None else [1.0] * len(self.detections), dtype=float)

    def select(self, labels: Collection[str], min_confidence: float = 0.0) -> np.ndarray:
        """Boolean mask of detections whose class is in `labels` with at least that confidence.

        Args:
            labels: the class names to keep.
            min_confidence: the lowest confidence kept (0-1); detections without a confidence count as 1.

        Returns:
            One bool per detection, shape (N,).
        """
        if len(self.detections) == 0:
            return np.zeros(0, dtype=bool)
        return np.isin(self.class_names, list(labels)) & (self.confidences >= min_confidence)

    def in_polygon(self, polygon: Sequence[Point]) -> np.ndarray:
        """Boolean mask of detections whose anchor lies inside the normalised polygon.

        Args:
            polygon: the vertices, normalised image coordinates.

        Returns:
            One bool per detection, shape (N,): its bottom-centre anchor is inside (even-odd rule).
        """
        if len(self.detections) == 0:
            return np.zeros(0, dtype=bool)
        return points_in_polygon(self.anchors, polygon)

    def box_norm(self, index: int | np.integer) -> NormBox:
        """The normalised box of detection `index`.

        Args:
            index: a detection's position in `detections`.

        Returns:
            Its (x0, y0, x1, y1), each 0-1 of the frame's width or height.
        """
        x1, y1, x2, y2 = (float(v) for v in self.detections.xyxy[index])
        return (x1 / self.width, y1 / self.height, x2 / self.width, y2 / self.height)

    def union_box_norm(self, mask: np.ndarray) -> NormBox | None:
        """The normalised box around the selected detections.

        Args:
            mask: boolean mask over `detections`.

        Returns:
            The smallest box holding every selected detection, or None when none is selected.
        """
        if not mask.any():
            return None
        boxes = self.detections.xyxy[mask]
        return (
            float(boxes[:, 0].min() / self.width),
            float(boxes[:, 1].min() / self.height),
            float(boxes[:, 2].max() / self.width),
            float(boxes[:, 3].max() / self.height),
        )

    def downscaled(self, width_px: int) -> np.ndarray | None:
        """`image` downscaled to `width_px` wide (`runner.cues.crowd_pixels.small_frame`), made once per frame for
        all the camera's rules: an INTER_AREA downscale of a 720p frame costs a few milliseconds, and a crowd
        camera's density and movement rules each want the same one.

        Args:
            width_px: the width wanted, pixels (the height keeps the aspect ratio).

        Returns:
            The small BGR frame (the same array for every call with this width on this frame), or None when the
            frame carries no image.
        """
        if self.image is None:
            return None
        small = self._downscaled.get(width_px)
        if small is None:
            small = self._downscaled[width_px] = small_frame(self.image, width_px)
        return small


class Rule(ABC):
    """One event kind. Instances hold only bounded per-track / per-zone state."""

    kind: ClassVar[str]
    config_model: ClassVar[type[RuleConfig]]

    def __init__(self, config: RuleConfig, camera: CameraView):
        """A rule with no state yet.

        Args:
            config: this rule's config (of the class `config_model`).
            camera: the view of the camera it runs on (`CameraView.of(camera)`, see `registry.build_rule`).
        """
        self.config = config
        self.camera = camera

    @abstractmethod
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Advance the rule by one processed frame; return the alerts raised on it.

        Args:
            ctx: the processed frame (frames come in stream-time order).

        Returns:
            The alerts raised on this frame, before the camera's cooldown gate; often empty.
        """

    @abstractmethod
    def state_size(self) -> int:
        """Number of per-track / per-zone entries held (returns to 0 once tracks end).

        Returns:
            The count, for the bounded-state checks.
        """

    def crop_labels(self) -> frozenset[str]:
        """Labels this rule re-detects on crops of the frame (`FrameContext.redetect`): their model's square
        crop input is compiled by `CameraPipeline.warm_up` before the first frames.

        Returns:
            The labels; none by default.
        """
        return frozenset()

    def enlarged_passes(self) -> list[tuple[str, tuple[float, float, float, float], float, int]]:
        """The enlarged re-detections this rule may ask for (`FrameContext.redetect_enlarged`'s label, box,
        scale and largest input side), so that `CameraPipeline.warm_up` compiles them before the first frames.

        Returns:
            (label, normalised box, scale, largest input side in pixels) per pass; none by default.
        """
        return []

    def reset(self) -> None:
        """Forget everything (the stream restarted: a reconnect or a looped file)."""
        self.__init__(self.config, self.camera)  # type: ignore[misc]

    def candidate(self, *, subject: str, score: float, t_s: float, **kwargs: Any) -> AlertCandidate:
        """An alert of this rule (its id and kind filled in).

        Args:
            subject: what the alert is about, the cooldown's key (`track:<id>`, `zone:<id>`...).
            score: the rule's confidence in it, 0-1.
            t_s: the frame's stream time, seconds.
            **kwargs: the other `AlertCandidate` fields (bbox, track_id, details...).

        Returns:
            The candidate.
        """
        return AlertCandidate(rule_id=self.config.id, kind=self.kind, subject=subject, score=score, t_s=t_s, **kwargs)
