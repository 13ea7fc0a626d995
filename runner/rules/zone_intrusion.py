"""Forbidden-zone intrusion: an object of the given labels stays inside a polygon, or crosses a tripwire.

Zone mode raises one alert per *intrusion episode*: the episode starts when a tracked object's
anchor (bottom-centre) has stayed inside for `min_dwell_s`, and ends once the zone has been empty
for `clear_s`. A track-id switch or a second person during an episode therefore does not re-alert
(operators see one alert per intrusion, with the head count in its details). A track-id switch
*before* the alert does not restart the dwell either: a track born inside the zone next to where
another track was lost less than `clear_s` earlier takes over that track's dwell.

Line mode raises one alert per crossing of the tripwire in the forbidden direction, with a small
distance margin so that an anchor jittering on the line does not count as crossings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from runner.config.rules.time_windows import is_active
from runner.config.rules.zone_intrusion import ZoneIntrusionConfig
from runner.core.alerts import AlertCandidate
from runner.core.geometry import Point, segments_intersect, side_of_line
from runner.core.timebase import TIME_EPSILON_S
from runner.rules.base import CameraView, FrameContext, Rule


@dataclass
class _Presence:
    first_inside_s: float
    last_inside_s: float
    anchor: tuple[float, float]  # normalised, where it was last seen inside


@dataclass
class _LineSide:
    side: int  # -1 left, +1 right
    point: tuple[float, float]


class ZoneIntrusionRule(Rule):
    kind = "zone_intrusion"
    config_model = ZoneIntrusionConfig
    config: ZoneIntrusionConfig

    def __init__(self, config: ZoneIntrusionConfig, camera: CameraView):
        super().__init__(config, camera)
        self._presence: dict[int, _Presence] = {}
        self._episode_active = False
        self._last_occupied_s: float | None = None
        self._sides: dict[int, _LineSide] = {}
        if config.zone:
            self._polygon = camera.zone(config.zone).polygon
        else:
            # The config holds exactly one of zone and line (a missing line id raises KeyError here, as before).
            line = camera.line(cast(str, config.line))
            self._line: tuple[Point, Point] = (line.start, line.end)  # pydantic made them tuples

    def state_size(self) -> int:
        """Entries held: tracks seen inside the zone plus tracks whose side of the line is known.

        Returns:
            The number of per-track entries (0 once their tracks end).
        """
        return len(self._presence) + len(self._sides)

    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Advances the dwell timers (zone mode) or line sides (line mode) by one frame.

        Args:
            ctx: the processed frame.

        Returns:
            Zone mode: at most one alert, when an intrusion episode starts. Line mode: one alert per forbidden
            crossing on this frame. Nothing outside the rule's active hours.
        """
        for track_id in ctx.ended_track_ids:
            self._presence.pop(track_id, None)
            self._sides.pop(track_id, None)
        if not is_active(self.config.active_hours, ctx.wall_time):
            self._presence.clear()
            self._sides.clear()
            self._episode_active = False
            return []
        mask = ctx.select(self.config.labels, self.config.min_confidence) & (ctx.track_ids >= 0)
        if self.config.zone:
            return self._update_zone(ctx, mask)
        return self._update_line(ctx, mask)

    def _update_zone(self, ctx: FrameContext, mask) -> list[AlertCandidate]:
        inside = mask & ctx.in_polygon(self._polygon)
        t = ctx.t_s
        seen_ids = {int(v) for v in ctx.track_ids if v >= 0}
        for i in inside.nonzero()[0]:
            track_id = int(ctx.track_ids[i])
            anchor = (float(ctx.anchors[i, 0]), float(ctx.anchors[i, 1]))
            presence = self._presence.get(track_id)
            if presence is None:
                first_s = self._take_over(ctx, track_id, anchor, seen_ids)
                self._presence[track_id] = _Presence(
                    first_inside_s=t if first_s is None else first_s, last_inside_s=t, anchor=anchor
                )
            else:
                presence.last_inside_s = t
                presence.anchor = anchor
        # A track that left (or was missed) for longer than clear_s starts its dwell again.
        clear_s = self.config.clear_s + TIME_EPSILON_S
        for track_id in [k for k, p in self._presence.items() if t - p.last_inside_s > clear_s]:
            del self._presence[track_id]
        if inside.any():
            self._last_occupied_s = t
        elif self._episode_active and self._last_occupied_s is not None and t - self._last_occupied_s > clear_s:
            self._episode_active = False
        if self._episode_active:
            return []
        dwellers = [
            i
            for i in inside.nonzero()[0]
            if t - self._presence[int(ctx.track_ids[i])].first_inside_s >= self.config.min_dwell_s - TIME_EPSILON_S
        ]
        if not dwellers:
            return []
        self._episode_active = True
        best = max(dwellers, key=lambda i: ctx.confidences[i])
        track_id = int(ctx.track_ids[best])
        return [
            self.candidate(
                subject=f"zone:{self.config.zone}",
                score=float(ctx.confidences[best]),
                t_s=t,
                bbox=ctx.box_norm(best),
                track_id=track_id,
                details={
                    "zone": self.config.zone,
                    "label": str(ctx.class_names[best]),
                    "dwell_s": round(t - self._presence[track_id].first_inside_s, 2),
                    "count_inside": int(inside.sum()),
                },
            )
        ]

    def _take_over(
        self, ctx: FrameContext, track_id: int, anchor: tuple[float, float], seen_ids: set[int]
    ) -> float | None:
        """When `track_id` is a new track that replaces one lost nearby inside the zone, remove the lost
        track's presence and return its entry time (the dwell continues across the id switch)."""
        radius = self.config.handover_radius_frac
        if radius <= 0.0:
            return None
        points = ctx.tracks.points(track_id)
        born_s = points[0].t_s if points else ctx.t_s
        diagonal = math.hypot(ctx.width, ctx.height)
        best: tuple[float, int] | None = None
        for other_id, presence in self._presence.items():
            if other_id in seen_ids or ctx.t_s - presence.last_inside_s > self.config.clear_s + TIME_EPSILON_S:
                continue  # still tracked, or lost too long ago
            if born_s <= presence.last_inside_s + TIME_EPSILON_S:
                continue  # the new track already existed while the other was seen: two people
            distance = (
                math.hypot((anchor[0] - presence.anchor[0]) * ctx.width, (anchor[1] - presence.anchor[1]) * ctx.height)
                / diagonal
            )
            if distance <= radius and (best is None or distance < best[0]):
                best = (distance, other_id)
        if best is None:
            return None
        return self._presence.pop(best[1]).first_inside_s

    def _update_line(self, ctx: FrameContext, mask) -> list[AlertCandidate]:
        start, end = self._line
        length = max(1e-9, ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5)
        alerts = []
        for i in mask.nonzero()[0]:
            track_id = int(ctx.track_ids[i])
            point = (float(ctx.anchors[i, 0]), float(ctx.anchors[i, 1]))
            distance = side_of_line(point, start, end) / length
            if abs(distance) <= self.config.crossing_margin_frac:
                continue
            side = 1 if distance > 0 else -1
            previous = self._sides.get(track_id)
            self._sides[track_id] = _LineSide(side=side, point=point)
            if previous is None or previous.side == side:
                continue
            if not segments_intersect(previous.point, point, start, end):
                continue  # changed side beyond the tripwire's ends
            direction = "left_to_right" if previous.side < 0 else "right_to_left"
            if self.config.crossing not in ("any", direction):
                continue
            alerts.append(
                self.candidate(
                    subject=f"track:{track_id}",
                    score=float(ctx.confidences[i]),
                    t_s=ctx.t_s,
                    bbox=ctx.box_norm(i),
                    track_id=track_id,
                    details={"line": self.config.line, "direction": direction, "label": str(ctx.class_names[i])},
                )
            )
        return alerts
