"""Weapon: weapon labels from whichever configured model declares them, confirmed by k-of-n voting.

Detections of `labels` (required: some configured model must provide one of them; COCO's `knife`
by default) and of `extra_labels` (taken when a configured model provides them: a dedicated
weapon model's `pistol`, `rifle`, `weapon`...) count when they are confident enough
(`min_confidence`) and of a plausible size (`min_box_area_frac` .. `max_box_area_frac` of the image:
a weapon model that boxes the whole scene is not pointing at a weapon). They are gathered into
image regions (`runner.rules._fire_regions`: same area, or same track id when the detections are
tracked) and a region alerts once it was detected on `min_hit_frames` of the last `window_frames`
frames on which its model ran. One alert per episode: the rule stays quiet until no weapon has been
detected for `clear_s`. The alert's box is the weapon's box on the alerting frame, and its details
carry the crop around it (`crop_box`, enlarged by `crop_pad_frac`) that an operator checks.

No usable weapon detector is available offline (COCO sees no knife on the shared weapon clips; the
one-class basegun-ml model fires as often without weapons): the rule is off in the example configs
and waits for a model. Adding one = a `models:` entry whose class names include a weapon label (see
README), nothing else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Label, Labels
from runner.core.alerts import AlertCandidate
from runner.core.geometry import points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.rules._fire_regions import (
    ModelFrames,
    RegionVoter,
    box_area_fracs,
    box_centres,
    clip_box,
    expand,
    hits_of,
)
from runner.rules.base import FrameContext, Rule, RuleConfig

DEFAULT_EXTRA_LABELS = [
    "pistol",
    "handgun",
    "gun",
    "revolver",
    "rifle",
    "shotgun",
    "firearm",
    "weapon",
    "machine_gun",
    "submachine_gun",
    "Gun",
    "Pistol",
    "Rifle",
    "Weapon",
    "Knife",
]


class WeaponConfig(RuleConfig):
    kind: Literal["weapon"]
    zone: str | None = Field(
        None, description="Only weapons whose box centre lies in this zone count; none = the whole image."
    )
    labels: Labels = Field(
        ["knife"],
        description="Weapon classes, at least one of which a configured model must provide (COCO: knife).",
    )
    extra_labels: list[Label] = Field(
        DEFAULT_EXTRA_LABELS,
        max_length=64,
        description="More weapon classes, used when a configured model provides them (a dedicated weapon model).",
    )
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Weapon detections below this confidence are ignored."
    )
    min_box_area_frac: float = Field(
        0.0002, ge=0.0, le=1.0, description="Weapon boxes smaller than this fraction of the image area are ignored."
    )
    max_box_area_frac: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="Weapon boxes larger than this fraction of the image area are ignored: a weapon held by someone "
        "a street camera sees covers well under 5 % of the image; larger boxes are whole-person or whole-scene boxes.",
    )
    min_hit_frames: int = Field(
        3,
        ge=1,
        le=100,
        description="Voting: a weapon must be detected on this many of the last window_frames frames on which its model ran.",
    )
    window_frames: int = Field(5, ge=1, le=100, description="Voting window, in frames on which the weapon model ran.")
    crop_pad_frac: float = Field(
        0.5,
        ge=0.0,
        le=5.0,
        description="The crop kept with the alert extends the weapon's box by this fraction of its size on each side.",
    )
    clear_s: float = Field(
        10.0,
        ge=0.0,
        le=3600.0,
        description="After an alert, no weapon may be detected for this long (seconds) before the rule alerts again.",
    )

    @model_validator(mode="after")
    def _k_of_n(self) -> WeaponConfig:
        problems = []
        if self.min_hit_frames > self.window_frames:
            problems.append(("min_hit_frames", f"must be at most window_frames ({self.window_frames})"))
        if self.min_box_area_frac >= self.max_box_area_frac:
            problems.append(("max_box_area_frac", "must be larger than min_box_area_frac"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def optional_labels(self) -> frozenset[str]:
        return frozenset(self.extra_labels) - frozenset(self.labels)


class WeaponRule(Rule):
    kind = "weapon"
    config_model = WeaponConfig
    config: WeaponConfig

    def __init__(self, config: WeaponConfig, camera):
        super().__init__(config, camera)
        self._zone = camera.zone(config.zone).polygon if config.zone else None
        self._labels = set(config.labels) | set(config.extra_labels)
        # Weapons move with the hand that holds them: match a new box to a region within one box size.
        self._regions = RegionVoter(config.window_frames, match_pad_frac=1.0)
        self._model_frames = ModelFrames()
        self._episode = False
        self._last_hit_s: float | None = None

    def state_size(self) -> int:
        return len(self._regions)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        if not self._model_frames.ran(ctx, ctx.select(self._labels)):
            return []
        weapons = ctx.select(self._labels, self.config.min_confidence)
        if weapons.any():
            area = box_area_fracs(ctx)
            weapons &= (area >= self.config.min_box_area_frac) & (area <= self.config.max_box_area_frac)
            if self._zone is not None:
                weapons &= points_in_polygon(box_centres(ctx), self._zone)
        hit_regions = self._regions.vote(hits_of(ctx, weapons), ctx.models_run)
        if hit_regions:
            self._last_hit_s = ctx.t_s
        if self._episode:
            if self._last_hit_s is None or ctx.t_s - self._last_hit_s > self.config.clear_s + TIME_EPSILON_S:
                self._episode = False
            else:
                return []
        ready = [r for r in hit_regions if r.hit_count >= self.config.min_hit_frames]
        if not ready:
            return []
        region = max(ready, key=lambda r: (r.hit_count, r.last.confidence))
        hit = region.last
        self._episode = True
        width, height = hit.box[2] - hit.box[0], hit.box[3] - hit.box[1]
        details = {
            "label": hit.label,
            "confidence": round(hit.confidence, 3),
            "hit_frames": f"{region.hit_count}/{len(region.votes)}",
            "max_confidence": round(region.best().confidence, 3),
            "crop_box": [round(v, 4) for v in clip_box(expand(hit.box, self.config.crop_pad_frac))],
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
                bbox=clip_box(hit.box),
                track_id=hit.track_id if hit.track_id >= 0 else None,
                details=details,
            )
        ]
