"""Weapon: weapon labels from whichever configured model declares them, confirmed by k-of-n voting.

Detections of `labels` (required: some configured model must provide one of them; COCO's `knife`
by default) and of `extra_labels` (taken when a configured model provides them: a dedicated
weapon model's `pistol`, `rifle`, `weapon`...) count when they are confident enough
(`min_confidence`) and of a plausible size (`min_box_area_frac` .. `max_box_area_frac` of the image:
a weapon model that boxes the whole scene is not pointing at a weapon). They are gathered into
image regions (`runner.rules._region_voting`: same area, or same track id when the detections are
tracked) and a region alerts once it was detected on `min_hit_frames` of the last `window_frames`
frames on which its model ran. One alert per episode: the rule stays quiet until no weapon has been
detected for `clear_s`. The alert's box is the weapon's box on the alerting frame, and its details
carry the crop around it (`crop_box`, enlarged by `crop_pad_frac`) that an operator checks.

No usable weapon detector is available offline (COCO sees no knife on the shared weapon clips; the
one-class basegun-ml model fires as often without weapons): the rule is off in the example configs
and waits for a model. Adding one = a `models:` entry whose class names include a weapon label (see
docs/config.md), nothing else.
"""

from __future__ import annotations

from runner.config.rules.weapon import WeaponConfig
from runner.core.alerts import AlertCandidate
from runner.core.boxes import clamped, padded
from runner.core.geometry import points_in_polygon
from runner.rules._episode import EpisodeLatch
from runner.rules._region_voting import ModelFrames, RegionVoter, hits_of
from runner.rules.base import CameraView, FrameContext, Rule


class WeaponRule(Rule):
    kind = "weapon"
    config_model = WeaponConfig
    config: WeaponConfig

    def __init__(self, config: WeaponConfig, camera: CameraView):
        super().__init__(config, camera)
        self._zone = camera.zone(config.zone).polygon if config.zone else None
        self._labels = set(config.labels) | set(config.extra_labels)
        # Weapons move with the hand that holds them: match a new box to a region within one box size.
        self._regions = RegionVoter(config.window_frames, match_pad_frac=1.0)
        self._model_frames = ModelFrames()
        self._episode = EpisodeLatch(config.clear_s)

    def state_size(self) -> int:
        """Entries held: the image regions with recent weapon votes.

        Returns:
            The number of regions (0 once no weapon has been seen for a window).
        """
        return len(self._regions)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Votes this frame's weapon detections into their image regions (only on frames the model ran).

        Args:
            ctx: the processed frame.

        Returns:
            At most one alert, when a region reaches `min_hit_frames` of its window outside a running episode.
        """
        if not self._model_frames.ran(ctx, ctx.select(self._labels)):
            return []
        weapons = ctx.select(self._labels, self.config.min_confidence)
        if weapons.any():
            area = ctx.area_fracs
            weapons &= (area >= self.config.min_box_area_frac) & (area <= self.config.max_box_area_frac)
            if self._zone is not None:
                weapons &= points_in_polygon(ctx.centres, self._zone)
        hit_regions = self._regions.vote(hits_of(ctx, weapons), ctx.models_run)
        if hit_regions:
            self._episode.note_hit(ctx.t_s)
        if self._episode.holds(ctx.t_s):
            return []
        ready = [r for r in hit_regions if r.hit_count >= self.config.min_hit_frames]
        if not ready:
            return []
        region = max(ready, key=lambda r: (r.hit_count, r.last.confidence))
        hit = region.last
        self._episode.start()
        width, height = hit.box[2] - hit.box[0], hit.box[3] - hit.box[1]
        details = {
            "label": hit.label,
            "confidence": round(hit.confidence, 3),
            "hit_frames": f"{region.hit_count}/{len(region.votes)}",
            "max_confidence": round(region.best().confidence, 3),
            "crop_box": [round(v, 4) for v in clamped(padded(hit.box, self.config.crop_pad_frac))],
            "box_area_frac": round(width * height, 5),
            "model": hit.model,
            "regions": len([r for r in self._regions.regions.values() if r.votes[-1]]),
        }
        if self.config.zone:
            details["zone"] = self.config.zone
        return [
            self.candidate(
                subject=f"zone:{self.config.zone or 'image'}",
                score=hit.confidence,
                t_s=ctx.t_s,
                bbox=clamped(hit.box),
                track_id=hit.track_id if hit.track_id >= 0 else None,
                details=details,
            )
        ]
