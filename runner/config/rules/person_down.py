"""Person on the ground: someone who fell (upright, then down fast) and lies still for `down_s`.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.person_down`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Label, Labels, Slug
from runner.config.rules.base import RuleConfig


class PersonDownConfig(RuleConfig):
    NEEDED_FPS: ClassVar[float | None] = 5.0

    kind: Literal["person_down"]
    zone: str | None = Field(None, description="Only people whose feet are in this zone; empty = the whole image.")
    exclude_zones: list[Slug] = Field(
        [],
        max_length=32,
        description="Zones where lying down is normal (benches, a beach, beds): nobody there raises an alert.",
    )
    labels: Labels = Field(["person"], description="Classes of the pose model (17 COCO keypoints) that are people.")
    min_confidence: float = Field(
        0.3, ge=0.0, le=1.0, description="Person detections below this confidence are ignored."
    )
    down_s: float = Field(
        2.0, ge=0.0, le=600.0, description="How long (seconds) someone must stay down before the alert."
    )
    min_down_frames: int = Field(
        3, ge=1, le=1000, description="At least this many processed frames must say 'down' before the alert."
    )
    min_down_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of the frames in which the person was seen (since they went down) that must say 'down'.",
    )
    hold_s: float = Field(
        3.0,
        ge=0.2,
        le=600.0,
        description="A possible fall without any new 'down' evidence for this long (seconds) is forgotten; also how "
        "long a person who vanished while down (lost by the detector) is still considered down.",
    )
    require_fall: bool = Field(
        True,
        description="Alert only after a fall: the person was seen upright, then went down fast (see fall_window_s, "
        "fall_min_drop) and lies still. false: anyone lying still for down_s alerts (someone already on the "
        "ground when first seen, or who lay down slowly), for places where nobody lies down on purpose.",
    )
    fall_window_s: float = Field(
        3.0,
        ge=0.4,
        le=10.0,
        description="A fall goes from the last upright sighting to down within this many seconds.",
    )
    fall_min_drop: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A fall: within fall_window_s of the last upright sighting, the hips come down at least this far, "
        "in standing heights (a seated person lying back, or doing sit-ups, keeps the hips where they are)...",
    )
    fall_head_speed: float = Field(
        0.8,
        ge=0.0,
        le=10.0,
        description="...or the head comes down at least 0.3 standing heights at this speed or faster (standing heights "
        "per second, averaged from the last upright sighting; a sit-up lowers the head at ~0.4). Without hip or head "
        "keypoints, the box must turn from upright to spot_wide_aspect wide in the window instead.",
    )
    still_max_rise: float = Field(
        0.2,
        ge=0.01,
        le=2.0,
        description="Lying still: once down, the head (else the hips, else the box top) must not rise again by more "
        "than this many standing heights (sit-ups, push-ups, sitting up). A rise cancels the fall: no alert until "
        "the person falls again.",
    )
    lying_angle_deg: float = Field(
        60.0,
        ge=30.0,
        le=90.0,
        description="Body axis (torso, else legs) at least this far from vertical (degrees) to be lying.",
    )
    lying_min_aspect: float = Field(
        1.0,
        ge=0.3,
        le=5.0,
        description="Box width / height at least this to be lying (a seated or crouching person stays taller).",
    )
    upright_angle_deg: float = Field(
        30.0,
        ge=0.0,
        le=60.0,
        description="Body axis within this angle of vertical (degrees), in a tall box, is upright.",
    )
    spot_wide_aspect: float = Field(
        1.5,
        ge=1.0,
        le=10.0,
        description="Where someone was already seen falling, a person box this many times wider than tall counts as "
        "'down' even when its keypoints are unclear (unless they say upright).",
    )
    tilt_angle_deg: float = Field(
        35.0,
        ge=10.0,
        le=90.0,
        description="A tracked person seen upright who vanishes just after tilting beyond this angle (degrees) is "
        "searched for on the ground.",
    )
    upright_memory_s: float = Field(
        3.0,
        ge=0.1,
        le=60.0,
        description="The vanished person must have been seen upright at most this long (seconds) before vanishing.",
    )
    keypoint_min_confidence: float = Field(
        0.3, ge=0.0, le=1.0, description="Keypoints below this confidence are not used."
    )
    search_radius_heights: float = Field(
        1.0,
        ge=0.25,
        le=3.0,
        description="Half-width of the area searched around a vanished person, in their standing heights.",
    )
    redetect_max_per_s: float = Field(
        3.0,
        ge=0.0,
        le=30.0,
        description="At most this many re-detections per second on a crop rotated by 90 degrees around a vanished "
        "person (each costs one pose inference); 0 disables.",
    )
    fall_labels: list[Label] = Field(
        ["Fall"],
        max_length=8,
        description="Classes of an optional fall model used as a second cue around a vanished person (loaded only "
        "when a configured model provides them; best with `on_demand: true`); empty disables.",
    )
    fall_min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Fall-model boxes below this confidence are ignored."
    )
    fall_max_per_s: float = Field(
        5.0,
        ge=0.0,
        le=30.0,
        description="At most this many on-demand fall-model runs per second, only while a vanished person is searched "
        "for.",
    )

    @model_validator(mode="after")
    def _ordered_angles(self) -> PersonDownConfig:
        problems = []
        if self.upright_angle_deg >= self.lying_angle_deg:
            problems.append(("upright_angle_deg", "must be below lying_angle_deg"))
        if not self.upright_angle_deg < self.tilt_angle_deg <= self.lying_angle_deg:
            problems.append(("tilt_angle_deg", "must lie between upright_angle_deg and lying_angle_deg"))
        if set(self.fall_labels) & set(self.labels):
            problems.append(("fall_labels", "must not repeat the person labels"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def optional_labels(self) -> frozenset[str]:
        """A fall model's classes, a second cue used only when a configured model provides them.

        Returns:
            `fall_labels` (empty when the cue is disabled).
        """
        return frozenset(self.fall_labels)
