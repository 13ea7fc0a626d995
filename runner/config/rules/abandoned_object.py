"""Abandoned object: a bag that stays still with nobody attending it for `abandon_s`.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.abandoned_object`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Label, Labels, Slug
from runner.config.rules.base import RuleConfig


class AbandonedObjectConfig(RuleConfig):
    NEEDED_FPS: ClassVar[float | None] = 1.0

    kind: Literal["abandoned_object"]
    zone: str | None = Field(None, description="Watched area (zone id); empty = the whole image.")
    exclude_zones: list[Slug] = Field(
        [],
        max_length=32,
        description="Zones where nothing is reported: fixtures, bins, lit signs, where trains or buses stop (zone "
        "ids).",
    )
    labels: Labels = Field(
        ["suitcase", "handbag", "backpack"],
        description="Detector classes that count as left objects (bags, suitcases).",
    )
    min_confidence: float = Field(
        0.35, ge=0.0, le=1.0, description="Object detections below this confidence are ignored."
    )
    person_labels: Labels = Field(["person"], description="Detector classes of people (owners, passers-by).")
    person_min_confidence: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="People detected above this confidence attend objects and mask the static stage (low = fewer false "
        "alerts).",
    )
    abandon_s: float = Field(
        60.0,
        ge=1.0,
        le=3600.0,
        description="How long an object must stay still with nobody by it before the alert (seconds).",
    )
    owner_radius_heights: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="A person whose feet are this close to the object, in heights of that person (1 ≈ 1.7 m), attends "
        "it.",
    )
    walk_speed_heights_per_s: float = Field(
        0.3,
        gt=0.0,
        le=10.0,
        description="A person near the object moving faster than this (person heights per second) is passing by and "
        "does not attend it.",
    )
    still_tolerance_sizes: float = Field(
        0.5,
        gt=0.0,
        le=5.0,
        description="An object may shift this much (fraction of its own size) and still be the same, still object "
        "(box jitter, tracker id switch); farther, it has moved and its clock restarts.",
    )
    memory_s: float = Field(
        10.0,
        ge=0.0,
        le=600.0,
        description="An object unseen for this long (occluded, missed) is forgotten (seconds).",
    )
    min_seen_ratio: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="The object must have been seen in at least this share of the frames since it was left "
        "(settled, or last attended).",
    )
    static_stage: bool = Field(
        True,
        description="Also find objects without the detector: regions that differ from a long-term background "
        "model but are stable in the short-term one (catches bags the detector misses).",
    )
    static_width_px: int = Field(
        320,
        ge=64,
        le=1280,
        description="Width of the grey image the static stage works on (pixels; bounds its memory).",
    )
    static_long_s: float = Field(
        120.0,
        ge=10.0,
        le=3600.0,
        description="Time constant of the long-term background model (seconds): slow lighting drift.",
    )
    static_short_s: float = Field(
        2.0,
        ge=0.2,
        le=60.0,
        description="Time constant of the short-term background model (seconds): what has stopped moving.",
    )
    static_diff_threshold: float = Field(
        25.0,
        ge=3.0,
        le=128.0,
        description="Grey-level difference (0-255) from the long-term model that counts as foreground.",
    )
    static_min_area_frac: float = Field(
        0.0005, gt=0.0, le=0.5, description="Smallest static region reported, as a fraction of the image area."
    )
    static_max_area_frac: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="Largest static region reported, as a fraction of the image area (a stopped train or bus is "
        "larger).",
    )
    static_absorb_s: float = Field(
        600.0,
        ge=10.0,
        le=86400.0,
        description="A static region older than this becomes background (seconds); must exceed abandon_s.",
    )
    static_owner_s: float | None = Field(
        60.0,
        ge=0.0,
        le=3600.0,
        description="A region found only by the static stage is a left object only if a person was seen on or beside "
        "it "
        "at most this long before (seconds): objects are brought by someone, ghosts and lighting changes are not. "
        "Empty = no such check.",
    )
    static_ignore_labels: list[Label] = Field(
        [
            "car",
            "truck",
            "bus",
            "train",
            "motorcycle",
            "bicycle",
            "bench",
            "chair",
            "couch",
            "potted plant",
            "dining table",
        ],
        max_length=64,
        description="Static regions over detections of these classes (vehicles, furniture) are not left objects; "
        "used when a configured model provides them.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AbandonedObjectConfig:
        problems = []
        if self.static_stage and self.static_absorb_s <= self.abandon_s:
            problems.append(
                ("static_absorb_s", "must be longer than abandon_s (the region would be learnt before the alert)")
            )
        if self.static_min_area_frac >= self.static_max_area_frac:
            problems.append(("static_min_area_frac", "must be smaller than static_max_area_frac"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def required_labels(self) -> frozenset[str]:
        """Detector classes this rule needs: the object classes and the people classes.

        Returns:
            `labels` and `person_labels`.
        """
        return frozenset(self.labels) | frozenset(self.person_labels)

    def optional_labels(self) -> frozenset[str]:
        """Classes that veto a static region (vehicles, furniture), used when a configured model provides them.

        Returns:
            `static_ignore_labels` when the static stage is on; else none.
        """
        return frozenset(self.static_ignore_labels) if self.static_stage else frozenset()
