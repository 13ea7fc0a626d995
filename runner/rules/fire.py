"""Fire start: fire (and optionally smoke) regions from a fire model, confirmed over time.

A fire model alone takes illuminated signs and police beacons for flames (the official evaluation of
the 2024 experiments; on the shared clips the flame model calls a night neon sign "fire" with a
confidence of 0.6 or more on 55 % of its frames at 640 px). So a region must pass two checks before
it alerts:

1. **Persistence**: detected (big enough, inside `zone`, outside every `exclude_zones` polygon) on at
   least `min_hit_frames` of the last `window_frames` frames *on which the fire model ran*, the newest
   included. Detections down to `hit_confidence` count as hits, provided one of the hits in the window
   reaches `min_confidence` (the model's confidence on real flames wavers from frame to frame). The
   fire model usually runs at its own rate (`max_fps` on an untracked model, `track: false`), so frames
   it skipped do not count as misses. Overlapping boxes of one frame count as one hit, their union.
2. **Flicker or growth** (`confirm_by_flicker`): the region's flame-coloured pixels over the frames
   kept must change irregularly (the *aperiodic* flicker of `runner.rules._fire_flicker`: a static sign
   never changes, a beacon or a chasing/blinking sign repeats itself, flames never do) by at least
   `min_flicker_frac`, and at least `flicker_contrast` times as much as the rest of the frame (a moving
   camera changes everything); or their area must have grown by `min_growth_ratio` while the region was
   in place over all of them. The statistics need frames at least twice as fast as the lights they must
   recognise as periodic: a beacon turning close to a multiple of the processing rate aliases to a
   slow apparent period (at 6 processed fps only rates within ~0.1 Hz of 6 Hz do, at 3 fps
   2.65-3.35 Hz and 5.65-5.9 Hz did), hence 6 fps for the fire cameras of the evaluation site.

**When.** The rule keeps a ring of downscaled frames covering `flicker_window_s` (bounded: at most 64
frames of 256 px width), from before the first detection, so a region that appears in place is judged
at once, on its second hit: flames visible in a running camera alert within about a second of the
model's second detection. Right after a camera starts the ring must cover `min_history_s`, and while
it covers less than 3/4 of the window the flicker needed rises in proportion (fewer earlier frames in
which to find a blinking light's repeat).

**Arriving lights.** A region whose box translates faster than 0.75 box sizes per second (a light on a
vehicle driving in, or headlights coming down the image towards the camera) must then stay in place for
`min_duration_s` before it can alert, so that the flicker statistics see the parked light, which repeats
itself, and not its arrival, which does not. Only the shift that opposite edges of the box share counts
(`runner.rules._region_voting.moving`): a box that grows or shrinks in place (flames rising from their
base, a fire spreading, the model boxing now the tips, now the whole fire) has not moved. A light arriving
more slowly than that is not recognised as moving and can be confirmed on its arrival; nor is one coming
straight at a camera mounted at its own height, which only grows (its approach is new on every frame, so it
passes the flicker check: exclude such a lane with `exclude_zones`).

**Low frame rates.** Whatever `process_fps` says, the camera's actual frame interval (the median over
the ring) decides: from `low_fps_interval_s` (1 s) up (a time-lapse, a snapshot feed) flicker cannot
be measured (a beacon sampled once a second looks as irregular as flames), the ring keeps its last 6
frames however old, and a region detected in place over all of them is confirmed by growth, or by
persistence while its flame-coloured pixels change between frames (a steady lamp's do not).

One alert per fire episode: after an alert the rule stays quiet until no region has been detected
for `clear_s`. Smoke is off by default (`smoke: false`): the available model's smoke class fires on
clouds, haze and grey walls. Regions bypass the tracker; the rule associates them over frames itself
(`runner.rules._region_voting`).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from runner.config.rules.fire import FireConfig
from runner.core.alerts import AlertCandidate
from runner.core.boxes import clamped, covered_share, padded, union
from runner.core.geometry import points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.rules._episode import EpisodeLatch
from runner.rules._fire_flicker import FrameRing, RegionStats
from runner.rules._region_voting import Hit, ModelFrames, Region, RegionVoter, hits_of
from runner.rules.base import CameraView, FrameContext, Rule

log = logging.getLogger(__name__)
ENVELOPE_PAD_FRAC = 0.1  # the flicker statistics look a little beyond the detected boxes
# Kept frames covering this share of flicker_window_s give the flicker full weight (a period fits in it);
# over less, the flicker needed rises in proportion.
FULL_HISTORY_FRAC = 0.75


def merged(hits: list[Hit]) -> list[Hit]:
    """One hit per group of overlapping boxes of a frame: their union, with the most confident one's confidence
    and label. A fire often comes as several overlapping boxes whose confidences swap from frame to frame; the
    region's box would jump between them and look like a light driving in.

    Args:
        hits: one frame's hits.

    Returns:
        Hits whose boxes do not overlap, most confident first.
    """
    groups: list[Hit] = []
    for hit in sorted(hits, key=lambda h: -h.confidence):
        for k, group in enumerate(groups):
            if covered_share(hit.box, group.box) > 0.0:
                groups[k] = dataclasses.replace(group, box=union(group.box, hit.box))
                break
        else:
            groups.append(hit)
    return groups


class FireRule(Rule):
    kind = "fire"
    config_model = FireConfig
    config: FireConfig

    def __init__(self, config: FireConfig, camera: CameraView):
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
        self._episode = EpisodeLatch(config.clear_s)

    def state_size(self) -> int:
        """Entries held: the fire and smoke image regions with recent votes.

        Returns:
            The number of regions (0 once nothing has been seen for a window).
        """
        return len(self._fire) + len(self._smoke)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Adds the frame to the flicker ring and votes fire and smoke detections into their regions.

        Args:
            ctx: the processed frame (only frames the fire model ran on are voted).

        Returns:
            At most one alert, for the most confident region that is persistent, in place long enough and
            confirmed (by flicker or growth when `confirm_by_flicker`), outside a running episode.
        """
        if self._ring is not None and ctx.image is not None:
            self._ring.add(ctx.image, ctx.t_s)
        of_fire = ctx.select(set(self._fire_labels))
        of_smoke = ctx.select(set(self._smoke_labels)) if self._smoke_labels else np.zeros(len(of_fire), dtype=bool)
        if not self._model_frames.ran(ctx, of_fire | of_smoke):
            return []
        where = self._placed(ctx)
        fire = where & ctx.select(set(self._fire_labels), self.config.hit_confidence)
        smoke = where & of_smoke & (ctx.confidences >= self.config.smoke_min_confidence)
        self._fire.vote(merged(hits_of(ctx, fire)), ctx.models_run)
        self._smoke.vote(merged(hits_of(ctx, smoke)), ctx.models_run)
        if fire.any() or smoke.any():
            self._episode.note_hit(ctx.t_s)
        if self._episode.holds(ctx.t_s):
            return []
        for voter, hot_only in ((self._fire, True), (self._smoke, False)):
            for region in sorted(voter.regions.values(), key=lambda r: -r.best().confidence if r.hits else 0.0):
                alert = self._judge(ctx, region, hot_only)
                if alert is not None:
                    self._episode.start()
                    return [alert]
        return []

    def _placed(self, ctx: FrameContext) -> np.ndarray:
        """Detections big enough, in the zone, and outside the exclusion zones."""
        keep = ctx.area_fracs >= self.config.min_box_area_frac
        if not keep.any():
            return keep
        centres = ctx.centres
        if self._zone is not None:
            keep &= points_in_polygon(centres, self._zone)
        for polygon in self._excluded:
            keep &= ~points_in_polygon(centres, polygon)
        return keep

    def _confirmation(self, region: Region, stats: RegionStats, low_fps: bool) -> str | None:
        """What confirms a persistent region, if anything: "flicker", "growth" or, at a low frame rate, "persistence".

        Flicker must exceed `min_flicker_frac` (scaled up in proportion while the ring covers less than 3/4 of
        flicker_window_s: fewer earlier samples to find a light's repeat in) and `flicker_contrast` times the
        flicker of the rest of the frame (a moving camera changes everything). Growth and low-fps persistence
        count only for a region in place since the oldest sample measured: a light switched on or driven in
        "grows" from nothing the moment it appears. Below 1 frame per `low_fps_interval_s` flicker cannot be
        measured (a beacon sampled once a second looks as irregular as flames), so the region's change between
        samples only supports its persistence over all of them.
        """
        config = self.config
        needed = config.min_flicker_frac
        if not low_fps:
            needed *= max(1.0, FULL_HISTORY_FRAC * config.flicker_window_s / max(stats.span_s, TIME_EPSILON_S))
        changing = (
            stats.irregular_flicker >= needed
            and stats.irregular_flicker >= config.flicker_contrast * stats.background_flicker
        )
        in_place_all_along = region.settled_s <= stats.first_t_s + TIME_EPSILON_S
        if changing and not low_fps:
            return "flicker"
        if config.min_growth_ratio is not None and stats.growth_ratio >= config.min_growth_ratio and in_place_all_along:
            return "growth"
        if changing and in_place_all_along:
            return "persistence"
        return None

    def _judge(self, ctx: FrameContext, region: Region, hot_only: bool) -> AlertCandidate | None:
        if region.hit_count < self.config.min_hit_frames or not region.votes[-1]:
            return None
        if region.best().confidence < (self.config.min_confidence if hot_only else self.config.smoke_min_confidence):
            return None  # hits down to hit_confidence keep a region alive; one of them must be confident
        arrived_moving = region.settled_s > region.first_hit_s + TIME_EPSILON_S
        if arrived_moving and ctx.t_s - region.settled_s < self.config.min_duration_s - TIME_EPSILON_S:
            return None  # the flicker window must hold the parked light, not its arrival
        # Clamped to the frame: region boxes come from detections inside it, so only padding pokes out.
        envelope = clamped(region.envelope())
        stats: RegionStats | None = None
        reason: str | None = "persistence"
        if self._ring is not None:
            interval_s = self._ring.frame_interval_s()
            low_fps = interval_s is not None and interval_s >= self.config.low_fps_interval_s - TIME_EPSILON_S
            history_s = 0.0 if low_fps else self.config.min_history_s
            stats = self._ring.region_stats(clamped(padded(envelope, ENVELOPE_PAD_FRAC)), hot_only, history_s)
            if stats is None:
                return None
            reason = self._confirmation(region, stats, low_fps)
            if reason is None:
                log.debug(
                    "camera %s rule %s: region %d persistent, not confirmed at %.2f s (flicker %.4f, background %.4f, "
                    "growth %.2f, low fps %s)",
                    ctx.camera_id,
                    self.config.id,
                    region.id,
                    ctx.t_s,
                    stats.irregular_flicker,
                    stats.background_flicker,
                    stats.growth_ratio,
                    low_fps,
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
