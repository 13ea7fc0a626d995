"""Fire start: fire (and optionally smoke) regions from a fire model, confirmed over time.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.fire`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels, Slug
from runner.config.rules.base import RuleConfig


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
        """Fire model classes this rule needs.

        Returns:
            `labels`, and `smoke_labels` when smoke alerts are on.
        """
        return frozenset(self.labels) | (frozenset(self.smoke_labels) if self.smoke else frozenset())
