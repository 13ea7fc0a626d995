"""Crowd movement: a sudden rise of the share of people moving fast in a zone (panic, dispersal, surge).

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.crowd_movement`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from runner.config.base import Labels
from runner.config.rules.base import RuleConfig


class CrowdMovementConfig(RuleConfig):
    NEEDED_FPS: ClassVar[float | None] = 10.0

    kind: Literal["crowd_movement"]
    zone: str | None = Field(None, description="Zone watched; empty = the whole image.")
    labels: Labels = Field(["person"], description="Detector classes that are people.")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Detections below this confidence are ignored.")
    speed_window_s: float = Field(
        1.0,
        ge=0.2,
        le=10.0,
        description="A person's speed is their displacement over this many seconds (body-heights/s).",
    )
    fast_speed_bh_per_s: float = Field(
        1.5,
        gt=0.0,
        le=20.0,
        description="A person faster than this many body-heights per second is 'fast' (walking ~0.5-1, running 2-4).",
    )
    min_people: int = Field(
        4,
        ge=1,
        le=10000,
        description="Fewest tracked people with a speed in the zone for a frame's fast share to count.",
    )
    sustain_s: float = Field(
        1.0, ge=0.0, le=60.0, description="The level is the median of the share over this window (seconds)."
    )
    baseline_s: float = Field(
        60.0,
        ge=5.0,
        le=3600.0,
        description="The baseline is the median share over this many seconds before the level's window.",
    )
    min_baseline_s: float = Field(
        10.0, ge=1.0, le=3600.0, description="Seconds of baseline needed before a rise over it can alert."
    )
    min_rise: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="The fast share must exceed its baseline by at least this much (0.3 = 30 points).",
    )
    rise_mads: float = Field(
        3.0, ge=0.0, le=20.0, description="... and by at least this many robust deviations (MAD) of the baseline."
    )
    absolute_fast_share: float | None = Field(
        0.6, gt=0.0, le=1.0, description="A fast share at or above this alerts whatever the baseline (empty = never)."
    )
    rearm_ratio: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="After an alert, the share must fall below this fraction of the absolute threshold to re-arm.",
    )
    flow: Literal["off", "auto", "on"] = Field(
        "off",
        description="Dense optical flow for packed crowds: off; auto = when the zone holds many more people than "
        "tracks; "
        "on = always (a choke point packed whenever people are there).",
    )
    flow_fast_speed_bh_per_s: float = Field(
        0.25,
        gt=0.0,
        le=20.0,
        description="Flow faster than this (body-heights/s) is 'fast' in a packed zone (packed crowds cannot walk "
        "faster than ~0.2).",
    )
    flow_absolute_share: float | None = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="A flow share (fraction of the zone moving fast) at or above this alerts (empty = never).",
    )
    flow_min_rise: float = Field(
        0.2, gt=0.0, le=1.0, description="The flow share must exceed its baseline by at least this much to alert."
    )
    flow_min_people: float = Field(
        6.0,
        ge=0.0,
        le=10000.0,
        description="Fewest people in the zone (person-sized areas of foreground) for the flow path to alert.",
    )
    packed_track_ratio: float = Field(
        0.35,
        gt=0.0,
        le=1.0,
        description="flow auto: the zone is packed while its tracks are fewer than this fraction of its foreground "
        "people.",
    )
    foreground_coef: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="Persons per person-sized area of foreground on this camera (as for crowd_density; fit it with "
        "`python -m runner.tools.crowd_calibrate`): turns the foreground into the people that flow_min_people and the "
        "packed test compare with.",
    )
    person_height_frac: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Height of a person in the zone as a fraction of the image height (flow path); empty = fitted from "
        "the detections.",
    )
