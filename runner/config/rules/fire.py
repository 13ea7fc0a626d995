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
        description="A region needs a flame detection this confident among its hits (0.6 at 640 px still lets neon "
        "signs through: the flicker check is what rejects them).",
    )
    hit_confidence: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Persistence counts flame detections down to this confidence, once the region holds one at "
        "min_confidence among them (the flame model's confidence wavers on real fires, from frame to frame).",
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
        2,
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
        2.0,
        ge=0.0,
        le=60.0,
        description="A region that arrived moving must have stayed in place for this long (seconds) before it can "
        "alert, so that the flicker statistics see it there and not its arrival (a vehicle's beacon driving in and "
        "parking). A region detected in place from the start is judged at once on the frames already kept.",
    )
    min_history_s: float = Field(
        1.5,
        ge=0.0,
        le=20.0,
        description="Judge once the kept frames cover this long (seconds; after a camera starts). While they cover "
        "less than 3/4 of flicker_window_s, the flicker needed rises in proportion (fewer earlier frames to find a "
        "blinking light's repeat in).",
    )
    flicker_contrast: float = Field(
        1.2,
        ge=0.0,
        le=100.0,
        description="The region's flicker must also be this many times that of the rest of the frame (a moving or "
        "shaking camera changes every pixel irregularly). Measured on the tuning clips: flames 1.3-20 times, a "
        "night street filmed from a moving car 1.05 (flame model at 640 px).",
    )
    low_fps_interval_s: float = Field(
        1.0,
        gt=0.0,
        le=3600.0,
        description="Frames this far apart or more (the camera's actual interval: time-lapse, snapshot feeds) are "
        "too slow for flicker: a region is confirmed by growth, or by changing over the last frames kept while it "
        "was detected in place all along (a steady lamp does not change).",
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
        if self.hit_confidence > self.min_confidence:
            raise ConfigProblems([("hit_confidence", f"must be at most min_confidence ({self.min_confidence})")])
        return self

    def required_labels(self) -> frozenset[str]:
        """Fire model classes this rule needs.

        Returns:
            `labels`, and `smoke_labels` when smoke alerts are on.
        """
        return frozenset(self.labels) | (frozenset(self.smoke_labels) if self.smoke else frozenset())
