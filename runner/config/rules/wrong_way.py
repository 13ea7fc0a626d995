"""Wrong-way movement: a track inside a lane / corridor zone moves against the zone's allowed direction.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.wrong_way`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels
from runner.config.rules.base import RuleConfig

if TYPE_CHECKING:
    from runner.config.site import Camera


class WrongWayConfig(RuleConfig):
    NEEDED_FPS: ClassVar[float | None] = 5.0
    READS_PREDICTED_TRACKS: ClassVar[bool] = True

    kind: Literal["wrong_way"]
    zone: str = Field(description="Lane or corridor zone; it must have an allowed `direction` arrow.")
    labels: Labels = Field(["person"], description="Detector classes to check (e.g. person, car, bicycle).")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Detections below this confidence are ignored.")
    min_travel_frac: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="Minimum displacement over window_s, as a fraction of the image diagonal, to count as moving.",
    )
    max_angle_deg: float = Field(
        120.0,
        ge=10.0,
        le=180.0,
        description="Movement more than this angle away from the allowed direction is wrong-way (degrees).",
    )
    hysteresis_deg: float = Field(
        15.0,
        ge=0.0,
        le=90.0,
        description="Once wrong-way, the angle must fall this far below max_angle_deg to clear (degrees).",
    )
    window_s: float = Field(2.0, ge=0.2, le=60.0, description="Time over which the displacement is measured (seconds).")
    sustain_s: float = Field(
        1.0, ge=0.0, le=60.0, description="How long the wrong-way movement must last before the alert (seconds)."
    )

    @model_validator(mode="after")
    def _hysteresis_below_threshold(self) -> WrongWayConfig:
        if self.hysteresis_deg >= self.max_angle_deg:
            raise ConfigProblems([("hysteresis_deg", "must be smaller than max_angle_deg")])
        return self

    def camera_problems(self, camera: Camera) -> list[tuple[str, str]]:
        """The watched zone must carry an allowed direction.

        Args:
            camera: the camera this rule is configured on (the zone reference is already checked).

        Returns:
            One (field, message) pair when the zone has no direction; else none.
        """
        zone = camera.find_zone(self.zone)
        if zone is not None and zone.direction is None:
            return [("zone", f"zone '{self.zone}' has no allowed direction: draw its arrow (zones[].direction)")]
        return []
