"""Wrong-way movement: a track inside a lane / corridor zone moves against the zone's allowed direction.

The displacement of the track's anchor over `window_s` (measured in pixels, so the image aspect
ratio does not bend angles) must be long enough to be real movement, and point more than
`max_angle_deg` away from the zone's arrow. The condition must hold for `sustain_s`; once it holds,
it is only cleared when the angle drops below `max_angle_deg - hysteresis_deg`, movement stops or the
track is seen outside the zone, so box jitter around the threshold neither raises nor cancels an
alert. The alert is raised on a frame past the threshold, once the period has lasted `sustain_s`.
One alert per track.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels
from runner.core.alerts import AlertCandidate
from runner.core.geometry import angle_between_deg
from runner.core.timebase import TIME_EPSILON_S
from runner.rules.base import FrameContext, Rule, RuleConfig


class WrongWayConfig(RuleConfig):
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

    def camera_problems(self, camera) -> list[tuple[str, str]]:
        zone = camera.find_zone(self.zone)
        if zone is not None and zone.direction is None:
            return [("zone", f"zone '{self.zone}' has no allowed direction: draw its arrow (zones[].direction)")]
        return []


class WrongWayRule(Rule):
    kind = "wrong_way"
    config_model = WrongWayConfig
    config: WrongWayConfig

    def __init__(self, config: WrongWayConfig, camera):
        super().__init__(config, camera)
        zone = camera.zone(config.zone)
        self._polygon = zone.polygon
        self._direction = zone.direction
        self._against_since: dict[int, float] = {}
        self._alerted: set[int] = set()

    def state_size(self) -> int:
        return len(self._against_since) + len(self._alerted)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        for track_id in ctx.ended_track_ids:
            self._against_since.pop(track_id, None)
            self._alerted.discard(track_id)
        cfg = self.config
        tracked = ctx.select(cfg.labels, cfg.min_confidence) & (ctx.track_ids >= 0)
        in_zone = ctx.in_polygon(self._polygon)
        for i in (tracked & ~in_zone).nonzero()[0]:
            # Seen outside the zone: the wrong-way run is broken (a missed detection is not).
            self._against_since.pop(int(ctx.track_ids[i]), None)
        mask = tracked & in_zone
        allowed_px = (self._direction[0] * ctx.width, self._direction[1] * ctx.height)
        diagonal_px = math.hypot(ctx.width, ctx.height)
        alerts = []
        for i in mask.nonzero()[0]:
            track_id = int(ctx.track_ids[i])
            if track_id in self._alerted:
                continue
            motion = self._motion(ctx, track_id, diagonal_px)
            if motion is None:
                continue
            moving, dx_px, dy_px, travel_frac = motion
            angle = angle_between_deg((dx_px, dy_px), allowed_px)
            if moving and angle > cfg.max_angle_deg:
                since = self._against_since.setdefault(track_id, ctx.t_s)
            elif not moving or angle < cfg.max_angle_deg - cfg.hysteresis_deg:
                self._against_since.pop(track_id, None)
                continue
            else:
                # Inside the hysteresis band: a running wrong-way period goes on, but the alert itself is
                # only raised on a frame that is past the threshold (its details then say so).
                continue
            if ctx.t_s - since < cfg.sustain_s - TIME_EPSILON_S:
                continue
            self._alerted.add(track_id)
            self._against_since.pop(track_id, None)
            alerts.append(
                self.candidate(
                    subject=f"track:{track_id}",
                    score=float(ctx.confidences[i]),
                    t_s=ctx.t_s,
                    bbox=ctx.box_norm(i),
                    track_id=track_id,
                    details={
                        "zone": cfg.zone,
                        "label": str(ctx.class_names[i]),
                        "angle_deg": round(angle, 1),
                        "travel_frac": round(travel_frac, 4),
                        "wrong_way_for_s": round(ctx.t_s - since, 2),
                    },
                )
            )
        return alerts

    def _motion(self, ctx: FrameContext, track_id: int, diagonal_px: float):
        """(moving, dx_px, dy_px, travel_frac) over the window, or None with too little history."""
        now = ctx.tracks.last(track_id)
        then = ctx.tracks.point_before(track_id, ctx.t_s - self.config.window_s)
        if now is None or then is None:
            return None
        elapsed_s = now.t_s - then.t_s
        if elapsed_s < 0.5 * self.config.window_s - TIME_EPSILON_S:
            return None
        dx_px = (now.anchor[0] - then.anchor[0]) * ctx.width
        dy_px = (now.anchor[1] - then.anchor[1]) * ctx.height
        travel_frac = math.hypot(dx_px, dy_px) / diagonal_px
        # Scale the travel threshold when the history covers less than the whole window.
        needed = self.config.min_travel_frac * min(1.0, elapsed_s / self.config.window_s)
        return travel_frac >= needed, dx_px, dy_px, travel_frac
