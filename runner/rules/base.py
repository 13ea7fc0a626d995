"""The one small interface every event rule implements, and the data it sees each frame.

A rule owns no model, tracker, drawing or I/O: it reads a `FrameContext` (detections with track
ids, bounded track history, frame timestamp) and returns `AlertCandidate`s. Time comes only from
`FrameContext.t_s` (stream time), never from the wall clock, so replay and live behave alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import supervision as sv
from pydantic import Field

from runner.config.base import Frozen, Slug
from runner.core.alerts import AlertCandidate
from runner.core.geometry import normalised_anchors, points_in_polygon
from runner.cues.crowd_pixels import small_frame

if TYPE_CHECKING:
    from runner.config.site import Camera
    from runner.tracking.tracker import TrackHistory


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


class RuleConfig(Frozen):
    """Fields every rule has. Subclasses add `kind: Literal[...]` and their own thresholds."""

    kind: str
    id: Slug
    enabled: bool = Field(True, description="A disabled rule is kept in the config but not evaluated.")
    cooldown_s: float = Field(
        10.0,
        ge=0.0,
        le=86400.0,
        description="Minimum time in seconds between two alerts of this rule for the same subject (track or zone).",
    )

    def zone_refs(self) -> dict[str, str]:
        """Field path -> zone id, for every zone this rule reads (`zone`, `exclude_zones[i]`), checked
        against the camera's zones."""
        zone = getattr(self, "zone", None)
        refs = {"zone": zone} if zone else {}
        refs.update({f"exclude_zones[{i}]": z for i, z in enumerate(getattr(self, "exclude_zones", None) or ())})
        return refs

    def line_refs(self) -> dict[str, str]:
        line = getattr(self, "line", None)
        return {"line": line} if line else {}

    def required_labels(self) -> frozenset[str]:
        """Detector class names this rule needs; the runner loads the models that provide them."""
        return frozenset(getattr(self, "labels", ()))

    def optional_labels(self) -> frozenset[str]:
        """Labels used when some configured model provides them, ignored otherwise."""
        return frozenset()

    def camera_problems(self, camera: Camera) -> list[tuple[str, str]]:
        """Checks that need the camera (a zone's direction, a calibration): (field, message) pairs."""
        return []


@dataclass
class FrameContext:
    """Everything a rule may read about one processed frame of one camera."""

    camera_id: str
    t_s: float
    frame_index: int
    wall_time: datetime  # aware, in the site's time zone (for active hours); never used as rule time
    width: int
    height: int
    detections: sv.Detections  # pixel xyxy, `tracker_id` (-1 when untracked), data["class_name"]
    tracks: TrackHistory
    ended_track_ids: frozenset[int] = frozenset()
    image: np.ndarray | None = None  # BGR, privacy masks already applied
    # Models that ran on this frame: a model with `max_fps` skips frames, and a rule voting over
    # frames (fire, weapon) must only count the frames its model actually looked at.
    models_run: frozenset[str] = frozenset()
    # Re-detection around a region (e.g. a person lost while lying down): see `Redetect`.
    redetect: Redetect | None = None
    redetect_many: RedetectMany | None = None
    redetect_enlarged: RedetectEnlarged | None = None
    _downscaled: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def keypoints(self) -> np.ndarray | None:
        """(N, K, 3) pixel keypoints (x, y, confidence) from a pose model, NaN rows for other models."""
        if not self.detections.data or "keypoints" not in self.detections.data:
            return None
        return np.asarray(self.detections.data["keypoints"], dtype=float)

    @cached_property
    def anchors(self) -> np.ndarray:
        """Normalised bottom-centre of every detection, shape (N, 2)."""
        if len(self.detections) == 0:
            return np.empty((0, 2))
        return normalised_anchors(self.detections.xyxy, self.width, self.height)

    @cached_property
    def class_names(self) -> np.ndarray:
        names = self.detections.data.get("class_name") if self.detections.data else None
        return np.asarray(names if names is not None else [""] * len(self.detections), dtype=str)

    @cached_property
    def track_ids(self) -> np.ndarray:
        ids = self.detections.tracker_id
        return np.asarray(ids if ids is not None else [-1] * len(self.detections), dtype=int)

    @cached_property
    def confidences(self) -> np.ndarray:
        conf = self.detections.confidence
        return np.asarray(conf if conf is not None else [1.0] * len(self.detections), dtype=float)

    def select(self, labels: frozenset[str] | set[str], min_confidence: float = 0.0) -> np.ndarray:
        """Boolean mask of detections whose class is in `labels` with at least that confidence."""
        if len(self.detections) == 0:
            return np.zeros(0, dtype=bool)
        return np.isin(self.class_names, list(labels)) & (self.confidences >= min_confidence)

    def in_polygon(self, polygon) -> np.ndarray:
        """Boolean mask of detections whose anchor lies inside the normalised polygon."""
        if len(self.detections) == 0:
            return np.zeros(0, dtype=bool)
        return points_in_polygon(self.anchors, polygon)

    def box_norm(self, index: int) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (float(v) for v in self.detections.xyxy[index])
        return (x1 / self.width, y1 / self.height, x2 / self.width, y2 / self.height)

    def downscaled(self, width_px: int) -> np.ndarray | None:
        """`image` downscaled to `width_px` wide (`runner.cues.crowd_pixels.small_frame`), made once per frame for
        all the camera's rules: an INTER_AREA downscale of a 720p frame costs a few milliseconds, and a crowd
        camera's density and movement rules each want the same one."""
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

    def __init__(self, config: RuleConfig, camera: Camera):
        self.config = config
        self.camera = camera

    @abstractmethod
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Advance the rule by one processed frame; return the alerts raised on it."""

    @abstractmethod
    def state_size(self) -> int:
        """Number of per-track / per-zone entries held (returns to 0 once tracks end)."""

    def crop_labels(self) -> frozenset[str]:
        """Labels this rule re-detects on crops of the frame (`FrameContext.redetect`): their model's square
        crop input is compiled by `CameraPipeline.warm_up` before the first frames."""
        return frozenset()

    def enlarged_passes(self) -> list[tuple[str, tuple[float, float, float, float], float, int]]:
        """The enlarged re-detections this rule may ask for (`FrameContext.redetect_enlarged`'s label, box,
        scale and largest input side), so that `CameraPipeline.warm_up` compiles them before the first frames."""
        return []

    def reset(self) -> None:
        """Forget everything (the stream restarted: a reconnect or a looped file)."""
        self.__init__(self.config, self.camera)  # type: ignore[misc]

    def candidate(self, *, subject: str, score: float, t_s: float, **kwargs: Any) -> AlertCandidate:
        return AlertCandidate(rule_id=self.config.id, kind=self.kind, subject=subject, score=score, t_s=t_s, **kwargs)
