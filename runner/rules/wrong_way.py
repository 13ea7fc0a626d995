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

from runner.config.rules.wrong_way import WrongWayConfig
from runner.core.alerts import AlertCandidate
from runner.core.geometry import angle_between_deg
from runner.core.timebase import TIME_EPSILON_S
from runner.rules.base import CameraView, FrameContext, Rule


class WrongWayRule(Rule):
    kind = "wrong_way"
    config_model = WrongWayConfig
    config: WrongWayConfig

    def __init__(self, config: WrongWayConfig, camera: CameraView):
        super().__init__(config, camera)
        zone = camera.zone(config.zone)
        self._polygon = zone.polygon
        self._direction = zone.direction
        self._against_since: dict[int, float] = {}
        self._alerted: set[int] = set()

    def state_size(self) -> int:
        """Entries held: tracks currently moving against the direction plus tracks already alerted.

        Returns:
            The number of per-track entries (0 once their tracks end).
        """
        return len(self._against_since) + len(self._alerted)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Measures each tracked object's motion in the zone against the allowed direction.

        Args:
            ctx: the processed frame.

        Returns:
            One alert per track that has moved against the direction for `sustain_s` (once per track).
        """
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
        assert self._direction is not None  # the config checked that the zone has its arrow
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

    def _motion(self, ctx: FrameContext, track_id: int, diagonal_px: float) -> tuple[bool, float, float, float] | None:
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
