"""Excessive crowd density in a zone.

With a ground calibration (four image points with their positions in metres), the zone's real
area gives persons per m²; the alert fires when the median over `sustain_s` exceeds
`max_per_m2` (crowd-safety literature: flow degrades past ~2 p/m², danger from ~4-5 p/m²).
Without calibration, or in addition, `max_count` is a plain head-count threshold.

Three ways of counting, each reported as the alert's `method`:

- `detections` (always): every detection (tracked or not) whose anchor is in the zone. Each
  frame's count is held for one more frame (max with the previous frame's count: a person missed
  on one frame is still there), then the median over the window rejects spikes and the remaining
  flicker. Without the hold, a detector dropping people on every other frame makes the median sit
  halfway between the two levels, or toggle with the parity of the window, alerting and re-arming
  again and again. Complete up to ~10 people; small people seen from above are missed.
- `tiled` (`tiled_every_s`): every few seconds the person model also runs on the zone's bounding
  box enlarged `tile_scale` times: one inference at a larger input size where the model allows it
  (`tile_pass: enlarged`), else overlapping tiles (through the pipeline's re-detection hooks, see
  `runner.inference.tiling`), merged with the full-frame detections; that count holds until the next pass.
  For mid densities of small people (30-40 people seen from above).
- `foreground` (`foreground: true`): detector-free, for packed zones where detections see a few
  per cent of the heads. The zone's foreground (background model + recent activity, on a small
  frame), each pixel weighted by 1 / (area of a person at its row, from the perspective fitted on
  the detections), gives *person-equivalents*; times `foreground_coef` (fitted per camera by
  `python -m runner.tools.crowd_calibrate`, on frames where counting works) it is a head count.

The level compared with the threshold is the largest of the methods' medians over the window;
the method that produced it is reported. One alert per episode; the episode clears when the
level falls below `rearm_ratio` x the threshold.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels
from runner.core.alerts import AlertCandidate
from runner.core.geometry import ground_area_m2, ground_homography, normalised_anchors, points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.cues.crowd_pixels import ForegroundModel, PersonScale, person_equivalents, person_weights, polygon_mask
from runner.inference.tiling import TileSettings, enlarged_pass, tiled_detect
from runner.rules.base import FrameContext, Rule, RuleConfig


class CrowdDensityConfig(RuleConfig):
    kind: Literal["crowd_density"]
    zone: str = Field(description="Zone whose density is measured.")
    labels: Labels = Field(["person"], description="Detector classes counted as people.")
    min_confidence: float = Field(0.25, ge=0.0, le=1.0, description="Detections below this confidence are not counted.")
    max_per_m2: float | None = Field(
        4.0,
        gt=0.0,
        le=10.0,
        description="Alert above this many persons per square metre (needs the camera's ground calibration).",
    )
    max_count: int | None = Field(
        None,
        ge=1,
        le=100000,
        description="Alert above this many detected persons in the zone (works without calibration).",
    )
    sustain_s: float = Field(
        3.0, ge=0.0, le=600.0, description="The median over this window (seconds) must exceed the threshold."
    )
    rearm_ratio: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="After an alert, the median must fall below this fraction of the threshold to re-arm.",
    )
    tiled_every_s: float | None = Field(
        None,
        ge=0.5,
        le=600.0,
        description="Also count on the zone enlarged `tile_scale` times every this many seconds (finds small people; "
        "costs one large inference, or one per tile on the grid); empty = never.",
    )
    tile_pass: Literal["enlarged", "grid"] = Field(
        "enlarged",
        description="How the zone is enlarged: one inference on the whole enlarged zone where the model accepts any "
        "input size (fewer pixels), else `grid`: overlapping square tiles of the model's input size.",
    )
    tile_scale: float = Field(
        2.0,
        ge=1.0,
        le=4.0,
        description="Enlargement of the tiles: each tile is (model input size / this) pixels of the frame.",
    )
    tile_overlap_frac: float = Field(
        0.25, ge=0.0, le=0.5, description="Overlap between neighbouring tiles (fraction of a tile)."
    )
    foreground: bool = Field(
        False,
        description="Also estimate the count without detections, from the zone's foreground area (packed crowds).",
    )
    foreground_coef: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="Persons per person-sized area of foreground; fit it per camera with `python -m runner.tools.crowd_calibrate` "
        "(1.0 = one person per person-sized blob, the prior when counting never works on the camera).",
    )
    person_height_frac: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Height of a person in the zone as a fraction of the image height (perspective scale for the "
        "foreground estimate); empty = fitted from the detections.",
    )
    foreground_history_s: float = Field(
        60.0,
        ge=5.0,
        le=3600.0,
        description="Memory of the background model (seconds): a crowd still for longer fades into it.",
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
        # (t_s, raw count, held count, tiled count or None, foreground estimate or None)
        self._counts: deque[tuple[float, int, int, float | None, float | None]] = deque()
        self._alerting = False
        self._tiled: tuple[float, int] | None = None  # (t_s of the last tiled pass, its count)
        self._tile_settings = TileSettings(
            scale=config.tile_scale, overlap_frac=config.tile_overlap_frac, enlarged=config.tile_pass == "enlarged"
        )
        self._foreground = (
            ForegroundModel(history_s=config.foreground_history_s, process_fps=camera.process_fps)
            if config.foreground
            else None
        )
        self._scale = PersonScale(fixed_frac=config.person_height_frac)
        self._zone_mask: np.ndarray | None = None
        # The last frame's raw measures (for `runner.tools.crowd_calibrate`): detections in the zone, the
        # foreground's person-equivalents (before the coefficient) and its cover of the zone.
        self.last_measure: dict[str, float | int | None] = {}

    def state_size(self) -> int:
        return 0  # zone-level state only, bounded by the window

    def crop_labels(self) -> frozenset[str]:
        return frozenset(self.config.labels[:1]) if self.config.tiled_every_s is not None else frozenset()  # tiles

    def enlarged_passes(self) -> list[tuple[str, tuple[float, float, float, float], float, int]]:
        if self.config.tiled_every_s is None or not self._tile_settings.enlarged:
            return []
        return [(self.config.labels[0], *enlarged_pass(self._zone_box, self._tile_settings))]

    def threshold_count(self) -> float:
        """The head count that corresponds to the tightest configured threshold."""
        limits = []
        if self._area_m2 is not None and self.config.max_per_m2 is not None:
            limits.append(self.config.max_per_m2 * self._area_m2)
        if self.config.max_count is not None:
            limits.append(float(self.config.max_count))
        return min(limits)

    # -- counting methods ----------------------------------------------------------------------
    def _tiled_count(self, ctx: FrameContext, people) -> int | None:
        cfg = self.config
        if cfg.tiled_every_s is None or ctx.redetect is None:
            return None
        if self._tiled is None or ctx.t_s - self._tiled[0] >= cfg.tiled_every_s - TIME_EPSILON_S:
            label = cfg.labels[0]
            many, enlarged = ctx.redetect_many, ctx.redetect_enlarged
            merged, _ = tiled_detect(
                lambda box: ctx.redetect(label, box, pad_frac=0.0),
                (ctx.width, ctx.height),
                self._zone_box,
                self._tile_settings,
                full_frame=ctx.detections[people],
                detect_boxes=(lambda boxes: many(label, boxes, pad_frac=0.0)) if many is not None else None,
                detect_enlarged=(lambda box, scale, max_side_px: enlarged(label, box, scale, max_side_px=max_side_px))
                if enlarged is not None
                else None,
            )
            count = 0
            if len(merged):
                names = np.asarray(merged.data.get("class_name", [label] * len(merged)), dtype=str)
                conf = merged.confidence if merged.confidence is not None else np.ones(len(merged))
                keep = np.isin(names, list(cfg.labels)) & (np.asarray(conf) >= cfg.min_confidence)
                anchors = normalised_anchors(merged.xyxy[keep], ctx.width, ctx.height)
                count = int(points_in_polygon(anchors, self._polygon).sum()) if len(anchors) else 0
            self._tiled = (ctx.t_s, count)
        # A pass holds until the next one is due (plus a frame's slack for the processing stride).
        if ctx.t_s - self._tiled[0] > 1.5 * cfg.tiled_every_s + TIME_EPSILON_S:
            return None
        return self._tiled[1]

    def _foreground_estimate(self, ctx: FrameContext, people) -> float | None:
        if self._foreground is None or ctx.image is None:
            return None
        if people.any():
            self._scale.add_boxes(ctx.detections.xyxy[people] / np.array([ctx.width, ctx.height] * 2, dtype=float))
        mask = self._foreground.apply(ctx.downscaled(self._foreground.width_px), ctx.t_s)
        weights = person_weights(self._scale, mask.shape, aspect=PERSON_ASPECT)
        if weights is None:
            return None  # no perspective yet: no person seen and no person_height_frac
        if self._zone_mask is None or self._zone_mask.shape != mask.shape:
            self._zone_mask = polygon_mask(self._polygon, mask.shape)
        people_eq = person_equivalents(mask, self._zone_mask, weights)
        self.last_measure.update(
            person_equivalents=people_eq, cover=float(mask[self._zone_mask].mean()) if self._zone_mask.any() else 0.0
        )
        return self.config.foreground_coef * people_eq

    # -- rule ----------------------------------------------------------------------------------
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        cfg = self.config
        people = ctx.select(cfg.labels, cfg.min_confidence)
        inside = people & ctx.in_polygon(self._polygon)
        count = int(inside.sum())
        self.last_measure = {"count": count, "person_equivalents": None, "cover": None}
        tiled = self._tiled_count(ctx, people)
        estimate = self._foreground_estimate(ctx, people)
        while self._counts and ctx.t_s - self._counts[0][0] > cfg.sustain_s + TIME_EPSILON_S:
            self._counts.popleft()
        held = max(count, self._counts[-1][1]) if self._counts else count
        self._counts.append((ctx.t_s, count, held, tiled, estimate))
        covered_s = ctx.t_s - self._counts[0][0]
        levels = self._levels()
        method = max(levels, key=levels.get)
        level = levels[method]
        limit = self.threshold_count()
        if self._alerting:
            if level < cfg.rearm_ratio * limit:
                self._alerting = False
            return []
        if covered_s < 0.9 * cfg.sustain_s - TIME_EPSILON_S or level <= limit:
            return []
        self._alerting = True
        details = {"zone": cfg.zone, "count": count, "median_count": round(level, 2), "method": method}
        if len(levels) > 1:
            details["method_counts"] = {m: round(v, 2) for m, v in levels.items()}
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

    def _levels(self) -> dict[str, float]:
        """Median over the window of each method that produced values (detections always)."""
        levels = {"detections": float(median(h for _, _, h, _, _ in self._counts))}
        tiled = [t for _, _, _, t, _ in self._counts if t is not None]
        if tiled:
            levels["tiled"] = float(median(tiled))
        estimates = [e for _, _, _, _, e in self._counts if e is not None]
        if estimates:
            levels["foreground"] = float(median(estimates))
        return levels


PERSON_ASPECT = 0.4  # width / height of a standing person's box: a person covers about 0.4 h² pixels


def _union_box(ctx: FrameContext, mask) -> tuple[float, float, float, float] | None:
    if not mask.any():
        return None
    boxes = ctx.detections.xyxy[mask]
    x1, y1 = boxes[:, 0].min() / ctx.width, boxes[:, 1].min() / ctx.height
    x2, y2 = boxes[:, 2].max() / ctx.width, boxes[:, 3].max() / ctx.height
    return (float(x1), float(y1), float(x2), float(y2))
