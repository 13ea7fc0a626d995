"""Forbidden-zone intrusion: an object of the given labels stays inside a polygon, or crosses a tripwire.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.zone_intrusion`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels
from runner.config.rules.base import RuleConfig
from runner.config.rules.time_windows import TimeWindow


class ZoneIntrusionConfig(RuleConfig):
    NEEDED_FPS: ClassVar[float | None] = 5.0
    READS_PREDICTED_TRACKS: ClassVar[bool] = True

    kind: Literal["zone_intrusion"]
    zone: str | None = Field(None, description="Forbidden zone (polygon id). Give either a zone or a line.")
    line: str | None = Field(None, description="Tripwire (line id). Give either a zone or a line.")
    labels: Labels = Field(["person"], description="Detector classes that count as intruders (e.g. person, car).")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Detections below this confidence are ignored.")
    min_dwell_s: float = Field(
        1.0, ge=0.0, le=3600.0, description="How long an object must stay inside the zone before the alert (seconds)."
    )
    clear_s: float = Field(
        2.0,
        ge=0.0,
        le=600.0,
        description="The zone must stay empty this long (seconds) before a new intrusion can alert; bridges missed "
        "detections.",
    )
    handover_radius_frac: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A track appearing inside the zone this close (fraction of the image diagonal) to where another "
        "track was lost less than clear_s earlier continues its dwell (tracker id switch); 0 disables.",
    )
    crossing: Literal["any", "left_to_right", "right_to_left"] = Field(
        "any", description="Forbidden crossing direction of the line, as seen walking from its start to its end."
    )
    crossing_margin_frac: float = Field(
        0.01,
        ge=0.0,
        le=0.2,
        description="An anchor closer than this to the line (fraction of the image) keeps its previous side "
        "(anti-jitter).",
    )
    active_hours: list[TimeWindow] = Field(
        [], max_length=24, description="Daily windows (site local time) when the rule is active; empty = always."
    )

    @model_validator(mode="after")
    def _zone_xor_line(self) -> ZoneIntrusionConfig:
        # An empty id is no id: `zone: ""` would pass the site's reference check and fail in the rule.
        if bool(self.zone) == bool(self.line):
            raise ConfigProblems([("zone" if not self.zone else "line", "give exactly one of 'zone' or 'line'")])
        return self
