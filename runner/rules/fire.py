"""Fire start: fire (and optionally smoke) regions from a fire model, confirmed over time.

A fire model alone takes illuminated signs and police beacons for flames (the official evaluation of
the 2024 experiments; on the shared clips the flame model calls a night neon sign "fire" with a
confidence of 0.6 or more on 55 % of its frames at 640 px). So a region must pass two checks before
it alerts, once it has stayed in place for `min_duration_s`:

1. **Persistence**: detected (above `min_confidence`, big enough, inside `zone`, outside every
   `exclude_zones` polygon) on at least `min_hit_frames` of the last `window_frames` frames *on which
   the fire model ran*. The fire model usually runs at its own rate (`max_fps` on an untracked model,
   `track: false`), so frames it skipped do not count as misses.
2. **Flicker or growth** (`confirm_by_flicker`): over the last `flicker_window_s`, the region's
   flame-coloured pixels must change irregularly (the *aperiodic* flicker of
   `runner.rules._fire_flicker`: a static sign never changes, a beacon or a chasing/blinking sign
   repeats itself, flames never do) by at least `min_flicker_frac`, or their area must have grown by
   `min_growth_ratio`. The statistics need frames at least twice as fast as the lights they must
   recognise as periodic: a beacon turning close to a multiple of the processing rate aliases to a
   slow apparent period (at 6 processed fps only rates within ~0.1 Hz of 6 Hz do, at 3 fps
   2.65-3.35 Hz and 5.65-5.9 Hz did), hence 6 fps for the fire cameras of the evaluation site.

"In place": a region whose base moves faster than 0.75 box sizes per second (a light on a vehicle
driving in) restarts its `min_duration_s` clock, so that the flicker window holds the parked light,
which repeats itself, and not its arrival, which does not. A light arriving more slowly than that
is not recognised as moving and can be confirmed on its arrival.

One alert per fire episode: after an alert the rule stays quiet until no region has been detected
for `clear_s`. Smoke is off by default (`smoke: false`): the available model's smoke class fires on
clouds, haze and grey walls. Regions bypass the tracker; the rule associates them over frames itself
(`runner.rules._fire_regions`). The rule keeps a ring of downscaled frames covering
`flicker_window_s` (bounded: at most 64 frames of 256 px width) so that a region detected for the
first time can be judged at once.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels, Slug
from runner.core.alerts import AlertCandidate
from runner.core.geometry import points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.rules._fire_flicker import FrameRing, RegionStats
from runner.rules._fire_regions import (
    ModelFrames,
    Region,
    RegionVoter,
    box_area_fracs,
    box_centres,
    clip_box,
    expand,
    hits_of,
)
from runner.rules.base import FrameContext, Rule, RuleConfig

log = logging.getLogger(__name__)
ENVELOPE_PAD_FRAC = 0.1  # the flicker statistics look a little beyond the detected boxes


class FireConfig(RuleConfig):
    kind: Literal["fire"]
    zone: str | None = Field(
        None, description="Only regions whose box centre lies in this zone count; none = the whole image."
    )
    exclude_zones: list[Slug] = Field(
        [],
        max_length=32,
        description="Zones covering known light sources (signs, lamps, beacons): regions centred in them are ignored.",
    )
    labels: Labels = Field(["fire"], description="Fire model classes that mean flames.")
    min_confidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Flame detections below this confidence are ignored (0.6 at 640 px still lets neon signs through: "
        "the flicker check is what rejects them).",
    )
    smoke: bool = Field(
        False, description="Also alert on smoke regions (unreliable with the available model: off by default)."
    )
    smoke_labels: Labels = Field(
        ["smoke"], description="Fire model classes that mean smoke (used only when smoke is on)."
    )
    smoke_min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Smoke detections below this confidence are ignored."
    )
    min_box_area_frac: float = Field(
        0.0002, ge=0.0, le=1.0, description="Regions smaller than this fraction of the image area are ignored."
    )
    min_hit_frames: int = Field(
        3,
        ge=1,
        le=100,
        description="Persistence: a region must be detected on this many of the last window_frames "
        "frames on which the fire model ran.",
    )
    window_frames: int = Field(
        5, ge=1, le=100, description="Persistence window, in frames on which the fire model ran."
    )
    confirm_by_flicker: bool = Field(
        True,
        description="Also require irregular flicker or growth of the region (rejects static signs and periodic "
        "lights such as beacons); needs the frames (always available in the runner).",
    )
    min_flicker_frac: float = Field(
        0.04,
        ge=0.0,
        le=1.0,
        description="Irregular flicker needed: median brightness change of the region's flame-coloured pixels to their "
        "most similar earlier (non-adjacent) frame, as a fraction of full brightness. Measured: a night neon sign "
        "with blinking and chasing lights 0.00-0.024, flames 0.054-0.24.",
    )
    min_growth_ratio: float | None = Field(
        3.0,
        ge=1.0,
        le=1000.0,
        description="Or: the flame-coloured area of the region grew by this factor over flicker_window_s while it was "
        "detected all along (a fire spreading); none = flicker only.",
    )
    flicker_window_s: float = Field(
        4.0,
        ge=1.0,
        le=20.0,
        description="Window of the flicker and growth statistics (seconds): longer than a "
        "beacon's or blinking sign's period.",
    )
    min_duration_s: float = Field(
        3.0,
        ge=0.0,
        le=60.0,
        description="A region must have been detected in place for this long (seconds) before it can alert, so that "
        "the flicker statistics see it there and not its arrival (a vehicle's beacon driving in and parking).",
    )
    clear_s: float = Field(
        30.0,
        ge=0.0,
        le=3600.0,
        description="After an alert, the fire must have gone undetected this long (seconds) "
        "before the rule alerts again.",
    )

    @model_validator(mode="after")
    def _k_of_n(self) -> FireConfig:
        if self.min_hit_frames > self.window_frames:
            raise ConfigProblems([("min_hit_frames", f"must be at most window_frames ({self.window_frames})")])
        return self

    def required_labels(self) -> frozenset[str]:
        return frozenset(self.labels) | (frozenset(self.smoke_labels) if self.smoke else frozenset())


class FireRule(Rule):
    kind = "fire"
    config_model = FireConfig
    config: FireConfig

    def __init__(self, config: FireConfig, camera):
        super().__init__(config, camera)
        self._zone = camera.zone(config.zone).polygon if config.zone else None
        self._excluded = [camera.zone(z).polygon for z in config.exclude_zones]
        self._fire_labels = list(config.labels)
        self._smoke_labels = list(config.smoke_labels) if config.smoke else []
        self._fire = RegionVoter(config.window_frames)
        self._smoke = RegionVoter(config.window_frames)
        self._model_frames = ModelFrames()
        expected = math.ceil(config.flicker_window_s * camera.process_fps) + 1
        self._ring = FrameRing(config.flicker_window_s, max_samples=expected) if config.confirm_by_flicker else None
        self._episode = False
        self._last_hit_s: float | None = None

    def state_size(self) -> int:
        return len(self._fire) + len(self._smoke)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        if self._ring is not None and ctx.image is not None:
            self._ring.add(ctx.image, ctx.t_s)
        of_fire = ctx.select(set(self._fire_labels))
        of_smoke = ctx.select(set(self._smoke_labels)) if self._smoke_labels else np.zeros(len(of_fire), dtype=bool)
        if not self._model_frames.ran(ctx, of_fire | of_smoke):
            return []
        where = self._placed(ctx)
        fire = where & ctx.select(set(self._fire_labels), self.config.min_confidence)
        smoke = where & of_smoke & (ctx.confidences >= self.config.smoke_min_confidence)
        self._fire.vote(hits_of(ctx, fire), ctx.models_run)
        self._smoke.vote(hits_of(ctx, smoke), ctx.models_run)
        if fire.any() or smoke.any():
            self._last_hit_s = ctx.t_s
        if self._episode:
            if self._last_hit_s is None or ctx.t_s - self._last_hit_s > self.config.clear_s + TIME_EPSILON_S:
                self._episode = False
            else:
                return []
        for voter, hot_only in ((self._fire, True), (self._smoke, False)):
            for region in sorted(voter.regions.values(), key=lambda r: -r.best().confidence if r.hits else 0.0):
                alert = self._judge(ctx, region, hot_only)
                if alert is not None:
                    self._episode = True
                    return [alert]
        return []

    def _placed(self, ctx: FrameContext) -> np.ndarray:
        """Detections big enough, in the zone, and outside the exclusion zones."""
        keep = box_area_fracs(ctx) >= self.config.min_box_area_frac
        if not keep.any():
            return keep
        centres = box_centres(ctx)
        if self._zone is not None:
            keep &= points_in_polygon(centres, self._zone)
        for polygon in self._excluded:
            keep &= ~points_in_polygon(centres, polygon)
        return keep

    def _judge(self, ctx: FrameContext, region: Region, hot_only: bool) -> AlertCandidate | None:
        if region.hit_count < self.config.min_hit_frames or not region.votes[-1]:
            return None
        if ctx.t_s - region.settled_s < self.config.min_duration_s - TIME_EPSILON_S:
            return None
        envelope = clip_box(region.envelope())
        stats: RegionStats | None = None
        reason = "persistence"
        if self._ring is not None:
            stats = self._ring.region_stats(clip_box(expand(envelope, ENVELOPE_PAD_FRAC)), hot_only=hot_only)
            if stats is None:
                return None
            if stats.irregular_flicker >= self.config.min_flicker_frac:
                reason = "flicker"
            elif (
                self.config.min_growth_ratio is not None
                and stats.growth_ratio >= self.config.min_growth_ratio
                and ctx.t_s - region.settled_s >= self.config.flicker_window_s - TIME_EPSILON_S
            ):
                # Growth counts only while the region was detected over the whole window: a light that
                # is switched on or drives in "grows" from nothing the moment it appears.
                reason = "growth"
            else:
                log.debug(
                    "camera %s rule %s: region %d persistent, not confirmed at %.2f s (flicker %.4f, growth %.2f)",
                    ctx.camera_id,
                    self.config.id,
                    region.id,
                    ctx.t_s,
                    stats.irregular_flicker,
                    stats.growth_ratio,
                )
                return None
        best = region.best()
        details = {
            "label": best.label,
            "smoke": not hot_only,
            "confirmed_by": reason,
            "hit_frames": f"{region.hit_count}/{len(region.votes)}",
            "detected_for_s": round(ctx.t_s - region.first_hit_s, 2),
            "in_place_for_s": round(ctx.t_s - region.settled_s, 2),
            "max_confidence": round(best.confidence, 3),
            "model": best.model,
        }
        if self.config.zone:
            details["zone"] = self.config.zone
        if stats is not None:
            details.update(stats.as_details())
        return self.candidate(
            subject=f"zone:{self.config.zone or 'image'}",
            score=best.confidence,
            t_s=ctx.t_s,
            bbox=envelope,
            details=details,
        )
