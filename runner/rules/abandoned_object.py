"""Abandoned object: a bag that stays still with nobody attending it for `abandon_s`.

Two sources of candidate objects, fused by position:

- *Detector*: boxes of the bag labels (COCO `suitcase`, `handbag`, `backpack` by default).
- *Static-object stage* (`static_stage`, on by default): class-agnostic regions that differ from a
  long-term background model but are stable in the short-term one (`runner.cues.background`), so that a
  bag no detector labels (a small dark bag on a dark floor) can raise the alert by itself.

Objects are the rule's own, identified by where they stand, not by tracker ids: a candidate is the
same object as one seen less than `memory_s` ago when it lies within `still_tolerance_sizes` of it
(a bag whose track id changes while it stands still stays one bag, with its clock). An object that
moves farther than that from where it settled starts again.

Attendance: a person attends an object when their anchor (feet) is within `owner_radius_heights`
of the object's anchor, measured in that person's own box heights (about 1.7 m each, so the radius
scales with the perspective), or when their boxes overlap, and they are not walking past (anchor
speed below `walk_speed_heights_per_s`; a person just appeared counts as not walking). The clock
runs from the last frame the object was attended (or from when it settled): the owner walking away
starts it, the owner (or anyone) coming back and staying by it cancels it, passers-by do not. The
alert fires once the object has been still and unattended for `abandon_s`, seen on this frame and in
at least `min_seen_ratio` of the frames since it was left. One alert per object (re-armed if someone
attends it again).

What it does against the false alerts of the 2024 experiments (furniture, reflections, people
sleeping): static regions under a detected person are people, not objects (and the long-term model
is never updated under people, so a person standing for minutes leaves no ghost); a person detected
next to an object, even intermittently, keeps resetting its clock; regions over detected furniture
or vehicles (`static_ignore_labels`) are ignored; a region found only by the static stage must have
been brought: a person's box covered it at most `static_owner_s` before it appeared (a ghost, a
reflection or a light that switched on has no owner); the background stage heals ghosts and pure
lighting changes, reports nothing while much of the view changes (a moving camera, a bus) and
rebuilds itself on a scene change; fixtures go in `exclude_zones`.

Thresholds in the code rather than the config: an object's box follows the detector's for 1 s after
its last detection before a static region may replace it; a person's walking speed is measured over
the last second of their track; at most 64 objects are remembered per camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from runner.config.rules.abandoned_object import AbandonedObjectConfig
from runner.core.alerts import AlertCandidate
from runner.core.boxes import NormBox, area, bottom_centre, centre, covered_share, longest_side, padded
from runner.core.geometry import points_in_polygon
from runner.core.timebase import TIME_EPSILON_S
from runner.cues.background import BackgroundSettings, DualBackground
from runner.rules.base import CameraView, FrameContext, Rule

MAX_OBJECTS = 64  # hard cap on remembered objects per camera (oldest-seen dropped first)
SPEED_WINDOW_S = 1.0  # a person's walking speed is measured over this much track history


@dataclass
class _Candidate:
    box: NormBox
    source: str  # "detector" | "static"
    label: str
    score: float
    track_id: int | None = None
    area_frac: float | None = None
    person_gap_s: float = 0.0  # static regions: time since a person was last seen on or beside it


@dataclass
class _Object:
    oid: int
    box: NormBox
    ref_centre: tuple[float, float]  # normalised, where it settled
    ref_size: float  # normalised, max(w, h) when it settled
    label: str
    score: float
    settled_s: float
    last_seen_s: float
    sources: set[str] = field(default_factory=set)
    track_id: int | None = None
    frames: int = 0  # processed frames since it settled or was last attended
    seen: int = 0  # of which it was seen
    attended_s: float | None = None  # last frame someone attended it
    alerted: bool = False
    detector_box_s: float | None = None  # last time a detector box (preferred over a static region) was seen
    brought: bool = False  # the detector labelled it, or a person was seen by it before it appeared
    seen_by: set[str] = field(default_factory=set)  # sources that saw it on the latest frame it was seen


class AbandonedObjectRule(Rule):
    kind = "abandoned_object"
    config_model = AbandonedObjectConfig
    config: AbandonedObjectConfig

    def __init__(self, config: AbandonedObjectConfig, camera: CameraView):
        super().__init__(config, camera)
        self._zone = camera.zone(config.zone).polygon if config.zone else None
        self._excluded = [camera.zone(z).polygon for z in config.exclude_zones]
        self._objects: dict[int, _Object] = {}
        self._next_oid = 1
        self._background = (
            DualBackground(
                BackgroundSettings(
                    width_px=config.static_width_px,
                    long_s=config.static_long_s,
                    short_s=config.static_short_s,
                    diff_threshold=config.static_diff_threshold,
                    min_area_frac=config.static_min_area_frac,
                    max_area_frac=config.static_max_area_frac,
                    absorb_s=config.static_absorb_s,
                )
            )
            if config.static_stage
            else None
        )

    def state_size(self) -> int:
        """Entries held: the objects being watched.

        Returns:
            The number of objects (at most `MAX_OBJECTS`; 0 once none has been seen for `memory_s`).
        """
        return len(self._objects)

    # -- per frame -----------------------------------------------------------------------------
    def update(self, ctx: FrameContext) -> list[AlertCandidate]:
        """Matches this frame's detector boxes and static regions to the watched objects and marks those a
        person attends.

        Args:
            ctx: the processed frame.

        Returns:
            One alert per object seen on this frame that has been left alone for `abandon_s` (once until
            it is attended or moved again).
        """
        cfg, t = self.config, ctx.t_s
        people = ctx.select(cfg.person_labels, cfg.person_min_confidence)
        person_boxes = [ctx.box_norm(i) for i in people.nonzero()[0]]
        candidates = self._detector_candidates(ctx)
        if self._background is not None and ctx.image is not None:
            candidates += self._static_candidates(ctx, person_boxes)
        seen = self._match(candidates, t)
        for obj in self._objects.values():
            obj.frames += 1
            if obj.oid in seen:
                obj.seen += 1
        self._attend(ctx, people)
        alerts = [self._alert(obj, ctx) for obj in self._objects.values() if obj.oid in seen and self._due(obj, t)]
        self._forget(t)
        return alerts

    # -- candidates ----------------------------------------------------------------------------
    def _watched(self, anchors: np.ndarray) -> np.ndarray:
        keep = np.ones(len(anchors), dtype=bool)
        if len(anchors) == 0:
            return keep
        if self._zone is not None:
            keep &= points_in_polygon(anchors, self._zone)
        for polygon in self._excluded:
            keep &= ~points_in_polygon(anchors, polygon)
        return keep

    def _detector_candidates(self, ctx: FrameContext) -> list[_Candidate]:
        mask = ctx.select(self.config.labels, self.config.min_confidence)
        if not mask.any():
            return []
        mask &= self._watched(ctx.anchors)
        return [
            _Candidate(
                box=ctx.box_norm(i),
                source="detector",
                label=str(ctx.class_names[i]),
                score=float(ctx.confidences[i]),
                track_id=int(ctx.track_ids[i]) if ctx.track_ids[i] >= 0 else None,
            )
            for i in np.argsort(-ctx.confidences)
            if mask[i]
        ]

    def _static_candidates(self, ctx: FrameContext, person_boxes: list[NormBox]) -> list[_Candidate]:
        cfg = self.config
        assert self._background is not None and ctx.image is not None  # checked by `update`
        regions = self._background.update(ctx.image, ctx.t_s, person_boxes, self._excluded)
        if not regions:
            return []
        anchors = np.array([bottom_centre(r.box) for r in regions])
        watched = self._watched(anchors)
        ignore = (
            ctx.select(frozenset(cfg.static_ignore_labels), cfg.person_min_confidence)
            if cfg.static_ignore_labels
            else None
        )
        ignore_boxes = [ctx.box_norm(i) for i in ignore.nonzero()[0]] if ignore is not None else []
        out = []
        for region, keep in zip(regions, watched):
            if not keep:
                continue
            # A static region under a person is the person (standing, sitting, lying), not an object.
            if any(covered_share(region.box, padded(p, 0.1)) >= 0.5 for p in person_boxes):
                continue
            if any(covered_share(region.box, b) >= 0.3 for b in ignore_boxes):
                continue
            score = min(1.0, region.contrast / (4.0 * cfg.static_diff_threshold))
            out.append(
                _Candidate(
                    box=region.box,
                    source="static",
                    label="static object",
                    score=score,
                    area_frac=region.area_frac,
                    person_gap_s=region.person_gap_s,
                )
            )
        return out

    # -- objects -------------------------------------------------------------------------------
    def _match(self, candidates: list[_Candidate], t: float) -> set[int]:
        """Attach each candidate to the nearest object within tolerance, or start a new object."""
        tol = self.config.still_tolerance_sizes
        seen: set[int] = set()
        claimed: dict[int, str] = {}  # oid -> source that already updated it this frame
        for cand in sorted(candidates, key=lambda c: (c.source != "detector", -c.score)):
            centre_point, size = centre(cand.box), longest_side(cand.box)
            best: tuple[float, _Object] | None = None
            for obj in self._objects.values():
                if claimed.get(obj.oid) == cand.source and cand.source == "detector":
                    continue  # two bags side by side are two objects
                reach = max(obj.ref_size, size)
                distance = math.dist(centre_point, obj.ref_centre) / max(reach, 1e-6)
                overlapping = (covered_share(cand.box, obj.box) >= 0.5 or covered_share(obj.box, cand.box) >= 0.5) and (
                    0.2 <= area(cand.box) / max(area(obj.box), 1e-12) <= 5.0
                )  # a fragment is not the object
                if (distance <= 2.0 * tol or overlapping) and (best is None or distance < best[0]):
                    best = (distance, obj)
            if best is None:
                if len(self._objects) >= MAX_OBJECTS:
                    del self._objects[min(self._objects.values(), key=lambda o: o.last_seen_s).oid]
                owner_s = self.config.static_owner_s
                obj = _Object(
                    oid=self._next_oid,
                    box=cand.box,
                    ref_centre=centre_point,
                    ref_size=size,
                    label=cand.label,
                    score=cand.score,
                    settled_s=t,
                    last_seen_s=t,
                    brought=owner_s is None or cand.person_gap_s <= owner_s + TIME_EPSILON_S,
                )
                self._next_oid += 1
                self._objects[obj.oid] = obj
            else:
                distance, obj = best
                if cand.source == "static" and obj.oid in claimed:
                    obj.sources.add("static")  # the detector already placed it this frame
                    obj.seen_by.add("static")
                    seen.add(obj.oid)
                    continue
                if distance > tol and not (cand.source == "static" and "detector" in obj.sources):
                    # It moved: it is the same thing, but carried or pushed, so its clock starts again.
                    obj.ref_centre, obj.ref_size, obj.settled_s = centre_point, size, t
                    obj.frames, obj.seen, obj.alerted = 0, 0, False
            if cand.source == "detector" or obj.detector_box_s is None or t - obj.detector_box_s > 1.0 + TIME_EPSILON_S:
                obj.box = cand.box
            if cand.source == "detector":
                obj.detector_box_s = t
                obj.label, obj.track_id, obj.brought = cand.label, cand.track_id, True
            elif obj.detector_box_s is None:
                obj.label = cand.label
            obj.score = max(cand.score, obj.score if obj.oid in seen else 0.0)
            obj.sources.add(cand.source)
            if obj.oid not in seen:
                obj.seen_by = set()
            obj.seen_by.add(cand.source)
            obj.last_seen_s = t
            claimed[obj.oid] = cand.source
            seen.add(obj.oid)
        return seen

    def _attend(self, ctx: FrameContext, people: np.ndarray) -> None:
        """Mark objects attended on this frame: a person close by who is not walking past."""
        if not self._objects or not people.any():
            return
        cfg = self.config
        w, h = ctx.width, ctx.height
        for i in people.nonzero()[0]:
            x1, y1, x2, y2 = ctx.box_norm(i)
            height_px = max(1.0, (y2 - y1) * h)
            if self._walking(ctx, i, height_px):
                continue
            feet_x, feet_y = bottom_centre((x1, y1, x2, y2))
            feet = (feet_x * w, feet_y * h)
            for obj in self._objects.values():
                anchor_x, anchor_y = bottom_centre(obj.box)
                anchor = (anchor_x * w, anchor_y * h)
                near = math.dist(feet, anchor) <= cfg.owner_radius_heights * height_px
                if near or covered_share(obj.box, (x1, y1, x2, y2)) > 0.0:
                    # Attended: the clock, the alert and the seen-ratio count start again from here.
                    obj.attended_s = ctx.t_s
                    obj.alerted = False
                    obj.frames = obj.seen = 0

    def _walking(self, ctx: FrameContext, i: int | np.integer, height_px: float) -> bool:
        track_id = int(ctx.track_ids[i])
        if track_id < 0:
            return False
        now = ctx.tracks.last(track_id)
        before = ctx.tracks.point_before(track_id, ctx.t_s - SPEED_WINDOW_S)
        if now is None or before is None or now.t_s - before.t_s < 0.4 * SPEED_WINDOW_S:
            return False  # just appeared: count as standing (fewer false alerts)
        dx = (now.anchor[0] - before.anchor[0]) * ctx.width
        dy = (now.anchor[1] - before.anchor[1]) * ctx.height
        speed = math.hypot(dx, dy) / height_px / (now.t_s - before.t_s)
        return speed > self.config.walk_speed_heights_per_s

    def _due(self, obj: _Object, t: float) -> bool:
        if obj.alerted or obj.frames == 0 or not obj.brought:
            return False
        alone_from = max(obj.settled_s, obj.attended_s) if obj.attended_s is not None else obj.settled_s
        if t - alone_from < self.config.abandon_s - TIME_EPSILON_S:
            return False
        return obj.seen / obj.frames >= self.config.min_seen_ratio - TIME_EPSILON_S

    def _alert(self, obj: _Object, ctx: FrameContext) -> AlertCandidate:
        obj.alerted = True
        alone_from = max(obj.settled_s, obj.attended_s) if obj.attended_s is not None else obj.settled_s
        details = {
            "label": obj.label,
            "sources": sorted(obj.sources),  # every source that ever saw it
            "seen_by": sorted(obj.seen_by),  # the sources that see it on this frame
            "detector_last_s": None if obj.detector_box_s is None else round(obj.detector_box_s, 2),
            "alone_s": round(ctx.t_s - alone_from, 2),
            "still_s": round(ctx.t_s - obj.settled_s, 2),
            "seen_ratio": round(obj.seen / max(1, obj.frames), 2),
            "owner_left_s": None if obj.attended_s is None else round(obj.attended_s, 2),
        }
        if obj.label == "static object" and self._background is not None:
            details["rebuilds"] = self._background.rebuilds
        return self.candidate(
            subject=f"object:{obj.oid}",
            score=float(obj.score),
            t_s=ctx.t_s,
            bbox=obj.box,
            track_id=obj.track_id,
            details=details,
        )

    def _forget(self, t: float) -> None:
        limit = self.config.memory_s + TIME_EPSILON_S
        for oid in [o.oid for o in self._objects.values() if t - o.last_seen_s > limit]:
            del self._objects[oid]
