"""Weapon: weapon labels from whichever configured model declares them, confirmed by k-of-n voting.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.weapon`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Label, Labels
from runner.config.rules.base import RuleConfig

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
        description="Voting: a weapon must be detected on this many of the last window_frames frames on which its "
        "model ran.",
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
        """More weapon classes, used when a configured model provides them (a dedicated weapon model).

        Returns:
            `extra_labels`, less those already in `labels`.
        """
        return frozenset(self.extra_labels) - frozenset(self.labels)
