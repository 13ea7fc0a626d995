"""Crowd movement: a sudden rise of the share of people moving fast in a zone (panic, dispersal, surge).

**Tracks.** Each tracked person in the zone gets a speed from the track history: the displacement of
their anchor over `speed_window_s` divided by their box height, in *body-heights per second*, so
the threshold does not depend on the distance to the camera (walking is about 0.5-1 body-height/s
on an oblique view, running 2-4). Each frame's *fast share* is the fraction of those people faster
than `fast_speed_bh_per_s`, counted only when at least `min_people` have a speed. The level is the
median of the share over `sustain_s`; it is compared with its own rolling baseline, the median of
the shares of the previous `baseline_s` (the window's last `sustain_s` left out, so a surge does not
lift its own baseline), and the alert fires when the level exceeds the baseline by `min_rise` and by
`rise_mads` robust deviations (MAD). A calm crowd walking keeps a steady share, however fast its
walkers look on this camera, and does not alert. Until `min_baseline_s` of baseline exist (the
camera just started, or the zone was empty), and in any case, a level of `absolute_fast_share` or
more alerts: most of a crowd running is abnormal whatever came before.

**Optical flow.** When people are too packed to be tracked, the detector sees a few of them and the
tracks say nothing. The flow path measures dense optical flow (Farneback, on a small grey frame)
inside the zone, divided by the person height at each row (fitted on the detections, or
`person_height_frac`): the *flow share* is the fraction of the zone (each pixel weighted by 1 /
person area, so that each person counts once) moving faster than `flow_fast_speed_bh_per_s`. The
default, 0.25 body-height/s (~0.4 m/s), is what the pedestrian fundamental diagram allows a crowd
of 3+ persons/m² (Weidmann: ≤ 0.35 m/s), so a packed zone moving faster than that is being pushed.
It uses the same baseline logic with its own thresholds. `flow: on` engages it all the time (a
choke point that is packed whenever people are there); `auto` engages it while the zone is packed:
fewer tracks than `packed_track_ratio` x the people its foreground holds (person-equivalents times
`foreground_coef`, the camera's coefficient fitted by `runner.tools.crowd_calibrate` where counting works:
without it, walkers sweeping their area, rain or a drifting camera make sparse scenes look packed);
`off` (default) never computes it. In both modes the zone must hold `flow_min_people` people.

One alert per episode; the episode ends once the level falls back to the baseline (plus half the
required rise) and below `rearm_ratio` x the absolute threshold, or when nothing could be measured
for `min_baseline_s`; the baseline does not learn from frames inside an episode.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median

import numpy as np

from runner.config.rules.crowd_movement import CrowdMovementConfig
from runner.core.alerts import AlertCandidate
from runner.core.boxes import NormBox, bounding
from runner.core.timebase import TIME_EPSILON_S
from runner.cues.crowd_pixels import (
    FlowField,
    ForegroundModel,
    PersonScale,
    person_equivalents,
    person_weights,
    polygon_mask,
    row_centres,
)
from runner.rules.base import CameraView, FrameContext, Rule

PERSON_ASPECT = 0.4  # a standing person's box is about 0.4 times as wide as tall
MAD_TO_SIGMA = 1.4826


@dataclass
class _Series:
    """One share per processed frame (None when not measurable), with its baseline logic."""

    samples: deque[tuple[float, float, bool]] = field(default_factory=deque)  # (t_s, share, inside an episode)

    def add(self, t_s: float, share: float, in_episode: bool, keep_s: float) -> None:
        self.samples.append((t_s, share, in_episode))
        while self.samples and t_s - self.samples[0][0] > keep_s + TIME_EPSILON_S:
            self.samples.popleft()

    def level(self, t_s: float, sustain_s: float) -> tuple[float, float] | None:
        """(median share, seconds covered) over the last `sustain_s`."""
        recent = [(t, s) for t, s, _ in self.samples if t_s - t <= sustain_s + TIME_EPSILON_S]
        if not recent:
            return None
        return float(median(s for _, s in recent)), t_s - recent[0][0]

    def baseline(self, t_s: float, sustain_s: float) -> tuple[float, float, float] | None:
        """(median, MAD, seconds covered) of the shares before the level's window, outside episodes."""
        older = [(t, s) for t, s, episode in self.samples if t_s - t > sustain_s + TIME_EPSILON_S and not episode]
        if not older:
            return None
        values = [s for _, s in older]
        centre = float(median(values))
        mad = float(median(abs(v - centre) for v in values))
        return centre, mad, older[-1][0] - older[0][0]


class CrowdMovementRule(Rule):
    kind = "crowd_movement"
    config_model = CrowdMovementConfig
    config: CrowdMovementConfig

    def __init__(self, config: CrowdMovementConfig, camera: CameraView):
        super().__init__(config, camera)
        self._polygon = camera.zone(config.zone).polygon if config.zone else None
        self._subject = f"zone:{config.zone}" if config.zone else "zone:image"
        self._tracks = _Series()
        self._flow_series = _Series()
        self._alerting = False
        self._last_measured_s = float("-inf")
        self._scale = PersonScale(fixed_frac=config.person_height_frac)
        self._flow = FlowField() if config.flow != "off" else None
        self._foreground = ForegroundModel(process_fps=camera.process_fps) if config.flow != "off" else None
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def state_size(self) -> int:
        """No per-track entries: speeds come from the pipeline's track history each frame.

        Returns:
            0.
        """
        return 0

    # -- measures ------------------------------------------------------------------------------
    def _track_speeds(self, ctx: FrameContext, people: np.ndarray) -> list[float]:
        """Speeds (body-heights/s) of the tracked people in the zone with enough history."""
        window = self.config.speed_window_s
        speeds = []
        for i in people.nonzero()[0]:
            track_id = int(ctx.track_ids[i])
            if track_id < 0:
                continue
            start = ctx.tracks.point_before(track_id, ctx.t_s - window)
            last = ctx.tracks.last(track_id)
            if start is None or last is None or last.t_s - start.t_s < 0.6 * window - TIME_EPSILON_S:
                continue
            heights = [p.height for p in ctx.tracks.points(track_id) if p.t_s >= start.t_s - TIME_EPSILON_S]
            height_px = median(heights) * ctx.height
            if height_px <= 1.0:
                continue
            dx = (last.anchor[0] - start.anchor[0]) * ctx.width
            dy = (last.anchor[1] - start.anchor[1]) * ctx.height
            speeds.append(math.hypot(dx, dy) / (last.t_s - start.t_s) / height_px)
        return speeds

    def _flow_measure(self, ctx: FrameContext, people: np.ndarray, tracked_inside: int) -> dict | None:
        """Flow share of the zone, its person-equivalents and whether it counts as packed."""
        if self._flow is None or self._foreground is None or ctx.image is None:
            return None
        if people.any() and not ctx.predicted:  # the perspective fit reads detected boxes only
            self._scale.add_boxes(ctx.detections.xyxy[people] / np.array([ctx.width, ctx.height] * 2, dtype=float))
        small_foreground = ctx.downscaled(self._foreground.width_px)
        small_flow = ctx.downscaled(self._flow.width_px)
        assert small_foreground is not None and small_flow is not None  # ctx.image is set
        foreground = self._foreground.apply(small_foreground, ctx.t_s)
        flow = self._flow.update(small_flow, ctx.t_s)
        if flow is None or not self._scale.ready:
            return None
        rows, cols = flow.shape[:2]
        heights_px = self._scale.height_frac(row_centres(rows)) * rows
        speed = np.hypot(flow[..., 0], flow[..., 1]) / heights_px.reshape(rows, 1)
        zone = self._mask((rows, cols))
        weights = (1.0 / (PERSON_ASPECT * heights_px * heights_px)).reshape(rows, 1) * np.ones((1, cols))
        total = float(weights[zone].sum())
        if total <= 0.0:
            return None
        share = float(weights[zone & (speed > self.config.flow_fast_speed_bh_per_s)].sum() / total)
        fg_weights = person_weights(self._scale, foreground.shape, PERSON_ASPECT)
        people_eq = (
            person_equivalents(foreground, self._mask(foreground.shape), fg_weights) if fg_weights is not None else 0.0
        )
        people_eq *= self.config.foreground_coef
        packed = self.config.flow == "on" or tracked_inside < self.config.packed_track_ratio * people_eq
        return {"share": share, "people_eq": people_eq, "packed": packed}

    def _mask(self, shape: tuple[int, int]) -> np.ndarray:
        if shape not in self._masks:
            self._masks = {shape: polygon_mask(self._polygon, shape)}
        return self._masks[shape]

    # -- rule ----------------------------------------------------------------------------------
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Measures the share of fast-moving people in the zone (tracks, and optical flow where the crowd is
        packed) and compares its recent median with its baseline.

        Args:
            ctx: the processed frame.

        Returns:
            One alert when either path triggers (a rise over the baseline, or an absolute share); nothing
            more until the measures are calm again.
        """
        cfg = self.config
        people = ctx.select(cfg.labels, cfg.min_confidence)
        inside = people & (ctx.in_polygon(self._polygon) if self._polygon is not None else True)
        keep_s = cfg.baseline_s + cfg.sustain_s

        speeds = self._track_speeds(ctx, inside)
        if len(speeds) >= cfg.min_people:
            share = sum(s > cfg.fast_speed_bh_per_s for s in speeds) / len(speeds)
            self._tracks.add(ctx.t_s, share, self._alerting, keep_s)
        flow = self._flow_measure(ctx, people, int((inside & (ctx.track_ids >= 0)).sum()))
        if flow is not None:
            self._flow_series.add(ctx.t_s, flow["share"], self._alerting, keep_s)

        tracks_state = self._evaluate(self._tracks, ctx.t_s, cfg.min_rise, cfg.absolute_fast_share)
        flow_state = None
        if flow is not None and flow["packed"] and flow["people_eq"] >= cfg.flow_min_people:
            flow_state = self._evaluate(self._flow_series, ctx.t_s, cfg.flow_min_rise, cfg.flow_absolute_share)

        measured = [s for s in (tracks_state, flow_state) if s is not None]
        if measured:
            self._last_measured_s = ctx.t_s
        if self._alerting:
            # The episode ends on a calm measure, or once nothing could be measured (too few people)
            # for min_baseline_s: a frame without a measure is not a calm one.
            if (measured and all(s["calm"] for s in measured)) or (
                not measured and ctx.t_s - self._last_measured_s >= cfg.min_baseline_s - TIME_EPSILON_S
            ):
                self._alerting = False
            return []
        for path, state in (("tracks", tracks_state), ("flow", flow_state)):
            if state is None or not state["trigger"]:
                continue
            self._alerting = True
            details = {
                "zone": cfg.zone or "image",
                "path": path,
                "fast_share": round(state["level"], 3),
                "baseline_share": None if state["baseline"] is None else round(state["baseline"], 3),
                "reason": state["reason"],
            }
            if path == "tracks":
                details.update(
                    people=len(speeds),
                    median_speed_bh_per_s=round(float(median(speeds)), 2) if speeds else None,
                    fast_speed_bh_per_s=cfg.fast_speed_bh_per_s,
                )
            else:
                assert flow is not None  # the flow path is evaluated only on a flow measure
                details.update(
                    people_equivalent=round(flow["people_eq"], 1),
                    detected=int(inside.sum()),
                    fast_speed_bh_per_s=cfg.flow_fast_speed_bh_per_s,
                )
            return [
                self.candidate(
                    subject=self._subject,
                    score=float(min(1.0, state["level"])),
                    t_s=ctx.t_s,
                    bbox=self._bbox(ctx, inside),
                    details=details,
                )
            ]
        return []

    def _evaluate(self, series: _Series, t_s: float, min_rise: float, absolute: float | None) -> dict | None:
        """Trigger / calm state of one path on this frame; None when it has no recent measure."""
        cfg = self.config
        level_cov = series.level(t_s, cfg.sustain_s)
        if level_cov is None or series.samples[-1][0] < t_s - TIME_EPSILON_S:
            return None  # not measured on this frame (too few people, no flow yet)
        level, covered_s = level_cov
        base = series.baseline(t_s, cfg.sustain_s)
        baseline = None
        # With a baseline: the level that triggers a rise, and the level that is calm again.
        rise_level: float | None = None
        calm_level: float | None = None
        if base is not None and base[2] >= cfg.min_baseline_s - TIME_EPSILON_S:
            baseline = base[0]
            required = max(min_rise, cfg.rise_mads * MAD_TO_SIGMA * base[1])
            rise_level, calm_level = baseline + required, baseline + 0.5 * required
        full = covered_s >= 0.9 * cfg.sustain_s - TIME_EPSILON_S
        reason = None
        if full and rise_level is not None and level >= rise_level - 1e-9:
            reason = "rise"
        elif full and absolute is not None and level >= absolute - 1e-9:
            reason = "absolute"
        calm = (calm_level is None or level <= calm_level) and (absolute is None or level < cfg.rearm_ratio * absolute)
        return {"level": level, "baseline": baseline, "trigger": reason is not None, "reason": reason, "calm": calm}

    def _bbox(self, ctx: FrameContext, inside: np.ndarray) -> NormBox:
        """The people in the zone, else the zone's bounding box (the whole image without a zone)."""
        people = ctx.union_box_norm(inside)
        if people is not None:
            return people
        if self._polygon is None:
            return (0.0, 0.0, 1.0, 1.0)
        return bounding(self._polygon)
