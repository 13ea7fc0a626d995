"""Excessive crowd density in a zone.

With a ground calibration (four image points with their positions in metres), the zone's real
area gives persons per m²; the alert fires when the median over `sustain_s` exceeds
`max_per_m2` (crowd-safety literature: flow degrades past ~2 p/m², danger from ~4-5 p/m²).
Without calibration, or in addition, `max_count` is a plain head-count threshold. Counting uses
every detection (tracked or not) whose anchor is in the zone. Each frame's count is held for one
more frame (max with the previous frame's count: a person missed on one frame is still there),
then the median over the window rejects spikes and the remaining flicker. Without the hold, a
detector dropping people on every other frame makes the median sit halfway between the two
levels, or toggle with the parity of the window, alerting and re-arming again and again. One
alert per episode; the episode clears when the median falls below `rearm_ratio` x the threshold.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels
from runner.geometry import ground_area_m2, ground_homography
from runner.rules.base import TIME_EPSILON_S, AlertCandidate, FrameContext, Rule, RuleConfig


class CrowdDensityConfig(RuleConfig):
    kind: Literal["crowd_density"]
    zone: str = Field(description="Zone whose density is measured.")
    labels: Labels = Field(["person"], description="Detector classes counted as people.")
    min_confidence: float = Field(0.25, ge=0.0, le=1.0, description="Detections below this confidence are not counted.")
    max_per_m2: float | None = Field(
        4.0, gt=0.0, le=10.0,
        description="Alert above this many persons per square metre (needs the camera's ground calibration).",
    )
    max_count: int | None = Field(
        None, ge=1, le=100000, description="Alert above this many detected persons in the zone (works without calibration)."
    )
    sustain_s: float = Field(3.0, ge=0.0, le=600.0, description="The median over this window (seconds) must exceed the threshold.")
    rearm_ratio: float = Field(
        0.8, gt=0.0, le=1.0, description="After an alert, the median must fall below this fraction of the threshold to re-arm."
    )

    @model_validator(mode="after")
    def _some_threshold(self) -> CrowdDensityConfig:
        if self.max_per_m2 is None and self.max_count is None:
            raise ConfigProblems([("max_count", "set max_per_m2 (with a calibration) or max_count")])
        return self

    def camera_problems(self, camera) -> list[tuple[str, str]]:
        if camera.calibration is None and self.max_count is None:
            return [("max_per_m2", "needs the camera's ground calibration; add `calibration` or set max_count")]
        return []


class CrowdDensityRule(Rule):
    kind = "crowd_density"
    config_model = CrowdDensityConfig
    config: CrowdDensityConfig

    def __init__(self, config: CrowdDensityConfig, camera):
        super().__init__(config, camera)
        self._polygon = camera.zone(config.zone).polygon
        xs, ys = [p[0] for p in self._polygon], [p[1] for p in self._polygon]
        self._zone_box = (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))
        self._area_m2: float | None = None
        if camera.calibration is not None and config.max_per_m2 is not None:
            homography = ground_homography(camera.calibration.image, camera.calibration.world_m)
            self._area_m2 = ground_area_m2(self._polygon, homography)
        self._counts: deque[tuple[float, int, int]] = deque()  # (t_s, raw count, held count)
        self._alerting = False

    def state_size(self) -> int:
        return 0  # zone-level state only, bounded by the window

    def threshold_count(self) -> float:
        """The head count that corresponds to the tightest configured threshold."""
        limits = []
        if self._area_m2 is not None and self.config.max_per_m2 is not None:
            limits.append(self.config.max_per_m2 * self._area_m2)
        if self.config.max_count is not None:
            limits.append(float(self.config.max_count))
        return min(limits)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        cfg = self.config
        inside = ctx.select(cfg.labels, cfg.min_confidence) & ctx.in_polygon(self._polygon)
        count = int(inside.sum())
        while self._counts and ctx.t_s - self._counts[0][0] > cfg.sustain_s + TIME_EPSILON_S:
            self._counts.popleft()
        held = max(count, self._counts[-1][1]) if self._counts else count
        self._counts.append((ctx.t_s, count, held))
        covered_s = ctx.t_s - self._counts[0][0]
        level = median(h for _, _, h in self._counts)
        limit = self.threshold_count()
        if self._alerting:
            if level < cfg.rearm_ratio * limit:
                self._alerting = False
            return []
        if covered_s < 0.9 * cfg.sustain_s - TIME_EPSILON_S or level <= limit:
            return []
        self._alerting = True
        details = {"zone": cfg.zone, "count": count, "median_count": level, "method": "detections"}
        score = level / limit
        if self._area_m2:
            details.update(area_m2=round(self._area_m2, 2), density_per_m2=round(level / self._area_m2, 3))
        return [
            self.candidate(
                subject=f"zone:{cfg.zone}",
                score=float(score),
                t_s=ctx.t_s,
                # On a frame where the detector missed everyone (flicker), point at the zone itself.
                bbox=_union_box(ctx, inside) or self._zone_box,
                details=details,
            )
        ]


def _union_box(ctx: FrameContext, mask) -> tuple[float, float, float, float] | None:
    if not mask.any():
        return None
    boxes = ctx.detections.xyxy[mask]
    x1, y1 = boxes[:, 0].min() / ctx.width, boxes[:, 1].min() / ctx.height
    x2, y2 = boxes[:, 2].max() / ctx.width, boxes[:, 3].max() / ctx.height
    return (float(x1), float(y1), float(x2), float(y2))
