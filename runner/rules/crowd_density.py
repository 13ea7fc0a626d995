"""Excessive crowd density in a zone.

With a ground calibration (four image points with their positions in metres), the zone's real
area gives persons per m²; the alert fires when the median over `sustain_s` exceeds
`max_per_m2` (crowd-safety literature: flow degrades past ~2 p/m², danger from ~4-5 p/m²).
Without calibration, or in addition, `max_count` is a plain head-count threshold.

Four ways of counting, each reported as the alert's `method`:

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
- `density_map` (`density_every_s`): every few seconds a density-map network (CSRNet,
  `runner.inference.crowd_counter`) reads the whole frame; the map's sum over the zone, less the
  camera's empty-zone floor (`density_floor`, default 0.005 per map cell), times `density_scale`, is a
  head count that holds until the next pass. It sees heads from any viewpoint, packed or occluded,
  where the detector sees a few per cent; it cannot grade a few people (its floor is ~18 on a 640 px
  frame) and under-counts moderate crowds seen from above. The network is loaded only by rules that set
  the method, and runs at most once per `density_every_s` per camera.

The level compared with the threshold is the largest of the methods' medians over the window;
the method that produced it is reported. One alert per episode; the episode clears when the
level falls below `rearm_ratio` x the threshold.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from statistics import median
from typing import cast

import numpy as np
import supervision as sv

from runner.config.loading import expand_env
from runner.config.rules.crowd_density import CrowdDensityConfig
from runner.core.alerts import AlertCandidate
from runner.core.boxes import bounding
from runner.core.fields import CLASS_NAME
from runner.core.geometry import ground_area_m2, ground_homography, normalised_anchors, points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.cues.crowd_pixels import ForegroundModel, PersonScale, person_equivalents, person_weights, polygon_mask
from runner.inference.crowd_counter import EMPTY_FLOOR_PER_CELL, DensityCounter
from runner.inference.tiling import TileSettings, enlarged_pass, tiled_detect
from runner.rules.base import CameraView, FrameContext, Rule


class CrowdDensityRule(Rule):
    kind = "crowd_density"
    config_model = CrowdDensityConfig
    config: CrowdDensityConfig

    def __init__(self, config: CrowdDensityConfig, camera: CameraView):
        super().__init__(config, camera)
        self._polygon = camera.zone(config.zone).polygon
        self._zone_box = bounding(self._polygon)
        self._area_m2: float | None = None
        if camera.calibration is not None and config.max_per_m2 is not None:
            homography = ground_homography(camera.calibration.image, camera.calibration.world_m)
            self._area_m2 = ground_area_m2(self._polygon, homography)
        # (t_s, raw count, held count, tiled count or None, foreground estimate or None, density estimate or None)
        self._counts: deque[tuple[float, int, int, float | None, float | None, float | None]] = deque()
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
        self._density = density_counter(config)
        self._density_zone: np.ndarray | None = None  # the zone on the density map's cells
        self._density_pass: tuple[float, float] | None = None  # (t_s of the last pass, its estimate)
        # The last frame's raw measures (for `runner.tools.crowd_calibrate`): detections in the zone, the
        # foreground's person-equivalents (before the coefficient) and its cover of the zone; on a density
        # pass, the map's raw sum over the zone and the floor subtracted from it.
        self.last_measure: dict[str, float | int | None] = {}

    def state_size(self) -> int:
        """No per-track entries: the zone-level state is bounded by the window.

        Returns:
            0.
        """
        return 0

    def crop_labels(self) -> frozenset[str]:
        """The person label when a tiled pass is configured: its tiles are crops of the frame.

        Returns:
            The first of `labels`, or nothing without `tiled_every_s`.
        """
        return frozenset(self.config.labels[:1]) if self.config.tiled_every_s is not None else frozenset()

    def enlarged_passes(self) -> list[tuple[str, tuple[float, float, float, float], float, int]]:
        """The one enlarged inference of the tiled pass (`tile_pass: enlarged`), on the zone's box.

        Returns:
            (person label, zone box clipped to the frame, scale, largest input side) when the tiled pass is
            enlarged; nothing otherwise.
        """
        if self.config.tiled_every_s is None or not self._tile_settings.enlarged:
            return []
        return [(self.config.labels[0], *enlarged_pass(self._zone_box, self._tile_settings))]

    def threshold_count(self) -> float:
        """The head count that corresponds to the tightest configured threshold.

        Returns:
            The smaller of `max_count` and `max_per_m2` times the zone's ground area (when calibrated).
        """
        limits = []
        if self._area_m2 is not None and self.config.max_per_m2 is not None:
            limits.append(self.config.max_per_m2 * self._area_m2)
        if self.config.max_count is not None:
            limits.append(float(self.config.max_count))
        return min(limits)

    # -- counting methods ----------------------------------------------------------------------
    def _tiled_count(self, ctx: FrameContext, people) -> int | None:
        cfg = self.config
        redetect = ctx.redetect
        if cfg.tiled_every_s is None or redetect is None:
            return None
        if self._tiled is None or ctx.t_s - self._tiled[0] >= cfg.tiled_every_s - TIME_EPSILON_S:
            label = cfg.labels[0]
            many, enlarged = ctx.redetect_many, ctx.redetect_enlarged
            merged, _ = tiled_detect(
                lambda box: redetect(label, box, pad_frac=0.0),
                (ctx.width, ctx.height),
                self._zone_box,
                self._tile_settings,
                full_frame=cast(sv.Detections, ctx.detections[people]),  # a mask gives Detections
                detect_boxes=(lambda boxes: many(label, boxes, pad_frac=0.0)) if many is not None else None,
                detect_enlarged=(lambda box, scale, max_side_px: enlarged(label, box, scale, max_side_px=max_side_px))
                if enlarged is not None
                else None,
            )
            count = 0
            if len(merged):
                names = np.asarray(merged.data.get(CLASS_NAME, [label] * len(merged)), dtype=str)
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
        if people.any() and not ctx.predicted:
            self._scale.add_boxes(ctx.detections.xyxy[people] / np.array([ctx.width, ctx.height] * 2, dtype=float))
        small = ctx.downscaled(self._foreground.width_px)
        assert small is not None  # ctx.image is set
        mask = self._foreground.apply(small, ctx.t_s)
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

    def _density_estimate(self, ctx: FrameContext) -> float | None:
        cfg = self.config
        if self._density is None or cfg.density_every_s is None or ctx.image is None:
            return None
        if self._density_pass is None or ctx.t_s - self._density_pass[0] >= cfg.density_every_s - TIME_EPSILON_S:
            raw, zone_cells = self.density_reading(ctx.image)
            floor = self.density_floor(zone_cells)
            self._density_pass = (ctx.t_s, cfg.density_scale * max(0.0, raw - floor))
            self.last_measure.update(density_raw=raw, density_floor=floor)
        # A pass holds until the next one is due (plus a frame's slack for the processing stride).
        if ctx.t_s - self._density_pass[0] > 1.5 * cfg.density_every_s + TIME_EPSILON_S:
            return None
        return self._density_pass[1]

    def density_reading(self, image: np.ndarray) -> tuple[float, int]:
        """The density map's raw count over the zone (no floor, no scale), for one frame.

        Args:
            image: the frame, BGR.

        Returns:
            (sum of the map over the zone's cells, number of those cells).

        Raises:
            ValueError: the rule does not use the density_map method.
        """
        if self._density is None:
            raise ValueError(f"rule {self.config.id}: density_every_s is not set")
        density = self._density.density(image)
        if self._density_zone is None or self._density_zone.shape != density.shape:
            self._density_zone = polygon_mask(self._polygon, density.shape)
        return float(density[self._density_zone].sum()), int(self._density_zone.sum())

    def density_floor(self, zone_cells: int) -> float:
        """What the density map reads on this rule's zone when nobody is in it.

        Args:
            zone_cells: the density map's cells inside the zone.

        Returns:
            `density_floor` when configured, else the empty-room level per cell times the zone's cells.
        """
        if self.config.density_floor is not None:
            return self.config.density_floor
        return EMPTY_FLOOR_PER_CELL * zone_cells

    # -- rule ----------------------------------------------------------------------------------
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Counts the people in the zone by each configured method and compares the highest median over
        `sustain_s` with the threshold.

        Args:
            ctx: the processed frame.

        Returns:
            One alert when the level first exceeds the threshold (the window must be 90 % covered); nothing
            more until it falls below `rearm_ratio` times the threshold.
        """
        cfg = self.config
        people = ctx.select(cfg.labels, cfg.min_confidence)
        inside = people & ctx.in_polygon(self._polygon)
        count = int(inside.sum())
        if ctx.predicted and self._counts:
            count = self._counts[-1][1]  # predicted tracks leave out the unconfirmed: the last detected count holds
        self.last_measure = {"count": count, "person_equivalents": None, "cover": None}
        tiled = self._tiled_count(ctx, people)
        estimate = self._foreground_estimate(ctx, people)
        density = self._density_estimate(ctx)
        while self._counts and ctx.t_s - self._counts[0][0] > cfg.sustain_s + TIME_EPSILON_S:
            self._counts.popleft()
        held = max(count, self._counts[-1][1]) if self._counts else count
        self._counts.append((ctx.t_s, count, held, tiled, estimate, density))
        covered_s = ctx.t_s - self._counts[0][0]
        levels = self._levels()
        method = max(levels, key=levels.__getitem__)
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
                bbox=ctx.union_box_norm(inside) or self._zone_box,
                details=details,
            )
        ]

    def _levels(self) -> dict[str, float]:
        """Median over the window of each method that produced values (detections always)."""
        levels = {"detections": float(median(row[2] for row in self._counts))}
        for method, column in (("tiled", 3), ("foreground", 4), ("density_map", 5)):
            values = [float(v) for row in self._counts if (v := row[column]) is not None]
            if values:
                levels[method] = median(values)
        return levels


def density_counter(config: CrowdDensityConfig) -> DensityCounter | None:
    """The density-map network of a rule that uses the method (loaded, or built into the model cache, now).

    Args:
        config: the rule's config.

    Returns:
        A counter with its own inference request, or None when `density_every_s` is empty (nothing loaded).
    """
    if config.density_every_s is None:
        return None
    reference = config.density_model
    path = Path(expand_env(reference, "density_model")).expanduser() if reference else None
    return DensityCounter(path, width_px=config.density_width_px)


PERSON_ASPECT = 0.4  # width / height of a standing person's box: a person covers about 0.4 h² pixels
