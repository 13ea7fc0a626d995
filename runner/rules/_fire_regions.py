"""k-of-n voting on image regions, for detections that are not tracked (fire) or tracked badly (weapons).

A *region* gathers the detections that overlap the same area of the image over time. It gets one
vote per frame on which the model that provides its labels ran: a hit when some detection fell in
it, a miss otherwise. Frames where the model did not run (a model with `max_fps`) do not vote, so
a model at 3 fps on a 6 fps camera is judged on its own frames only.

A region is forgotten once its last `n_frames` votes are all misses (bounded state, back to zero
when nothing is detected any more); at most `max_regions` live at once (the stalest goes first).

The pipeline says which *models* ran on a frame (`ctx.models_run`); a rule asks for *labels*. The
model that provides a rule's labels is learnt from the detections themselves (`data["model"]`):
a frame counts as a vote when one of those models ran on it, or when a detection of the rule's
labels is present (the model obviously ran). Before the first detection nothing is learnt, and
nothing needs to be: there is no region to vote for yet. Detections without a `model` column
(scripted tests) fall back to "some model ran on this frame".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from runner.rules.base import FrameContext

Box = tuple[float, float, float, float]  # normalised xyxy
MOVING_SIZES_PER_S = 0.75  # a region whose base moves faster than this many box sizes per second is moving
MOVING_BASE_S = 1.0  # ... measured over about this long


@dataclass(frozen=True, slots=True)
class Hit:
    t_s: float
    box: Box
    confidence: float
    label: str
    track_id: int = -1
    model: str = ""


@dataclass
class Region:
    id: int
    n_frames: int
    votes: deque[bool] = field(init=False)
    hits: deque[Hit] = field(init=False)
    first_hit_s: float = 0.0
    # Since when the region has stayed in place (its last hit that was moving, see `moving`).
    settled_s: float = 0.0
    models: set[str] = field(default_factory=set)  # the models whose detections made it

    def __post_init__(self) -> None:
        self.votes = deque(maxlen=self.n_frames)
        self.hits = deque(maxlen=self.n_frames)

    @property
    def hit_count(self) -> int:
        return sum(self.votes)

    @property
    def last(self) -> Hit:
        return self.hits[-1]

    @property
    def stale(self) -> bool:
        return len(self.votes) == self.votes.maxlen and not any(self.votes)

    def envelope(self) -> Box:
        """Union of the boxes of the hits still in the voting window."""
        boxes = [h.box for h in self.hits]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def best(self) -> Hit:
        return max(self.hits, key=lambda h: h.confidence)


def expand(box: Box, pad_frac: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    return (box[0] - pad_frac * w, box[1] - pad_frac * h, box[2] + pad_frac * w, box[3] + pad_frac * h)


def overlap_of(box: Box, other: Box) -> float:
    """Intersection area over the area of `box` (0..1)."""
    ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    area = max(1e-12, (box[2] - box[0]) * (box[3] - box[1]))
    return ix * iy / area


def moving(hits: deque[Hit], after: Hit) -> bool:
    """Whether the base (bottom-centre) of a region moved faster than MOVING_SIZES_PER_S box sizes per
    second over about the last MOVING_BASE_S (from the latest earlier hit at least that old, else the
    oldest kept): a light on a vehicle driving in. Flames flare up and down from a base that stays
    put (measured over a second, their jitter cancels out) and a spreading fire drifts far slower."""
    before = next((h for h in reversed(hits) if h.t_s <= after.t_s - MOVING_BASE_S + 1e-6), hits[0])
    dt = after.t_s - before.t_s
    if dt <= 1e-6:
        return False
    width = max(before.box[2] - before.box[0], after.box[2] - after.box[0], 1e-6)
    height = max(before.box[3] - before.box[1], after.box[3] - after.box[1], 1e-6)
    dx = abs((after.box[0] + after.box[2]) - (before.box[0] + before.box[2])) / 2 / width
    dy = abs(after.box[3] - before.box[3]) / height
    return max(dx, dy) / dt > MOVING_SIZES_PER_S


def clip_box(box: Box) -> Box:
    return (max(0.0, box[0]), max(0.0, box[1]), min(1.0, box[2]), min(1.0, box[3]))


class RegionVoter:
    def __init__(self, n_frames: int, match_pad_frac: float = 0.25, max_regions: int = 16):
        self.n_frames = n_frames
        self.match_pad_frac = match_pad_frac
        self.max_regions = max_regions
        self.regions: dict[int, Region] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self.regions)

    def clear(self) -> None:
        self.regions.clear()

    def vote(self, hits: Iterable[Hit], models_run: frozenset[str] | None = None) -> list[Region]:
        """One frame on which a model of the rule's labels ran: assign each hit to the region it
        overlaps most (new region if none), give every region its hit/miss vote, forget stale
        regions. A region found by a model that did not run on this frame (`models_run`: two models
        at different rates) gets no vote. Returns the regions that got a hit on this frame."""
        touched: dict[int, Region] = {}
        for hit in sorted(hits, key=lambda h: -h.confidence):
            region = self._match(hit)
            if region is None:
                region = self._new_region()
                region.first_hit_s = hit.t_s
            if region.id in touched:
                # Already voted on this frame: keep its best box, one vote per frame.
                if hit.confidence > region.hits[-1].confidence:
                    region.hits[-1] = hit
                continue
            region.hits.append(hit)
            if hit.model:
                region.models.add(hit.model)
            if len(region.hits) == 1 or moving(region.hits, hit):
                region.settled_s = hit.t_s
            touched[region.id] = region
        for region in self.regions.values():
            if region.id in touched:
                region.votes.append(True)
            elif models_run is None or not region.models or region.models & models_run:
                region.votes.append(False)
        for region_id in [i for i, r in self.regions.items() if r.stale]:
            del self.regions[region_id]
        return list(touched.values())

    def _match(self, hit: Hit) -> Region | None:
        best, best_overlap = None, 0.0
        for region in self.regions.values():
            if not region.hits:
                continue
            overlap = overlap_of(hit.box, expand(region.envelope(), self.match_pad_frac))
            if hit.track_id >= 0 and any(h.track_id == hit.track_id for h in region.hits):
                overlap = max(overlap, 1.0)  # same tracked object
            if overlap > best_overlap:
                best, best_overlap = region, overlap
        return best

    def _new_region(self) -> Region:
        if len(self.regions) >= self.max_regions:
            stalest = min(self.regions.values(), key=lambda r: (r.hit_count, r.last.t_s if r.hits else -1.0))
            del self.regions[stalest.id]
        region = Region(self._next_id, self.n_frames)
        self._next_id += 1
        self.regions[region.id] = region
        return region


class ModelFrames:
    """Learns which models provide some labels, and says whether one of them ran on a frame."""

    def __init__(self) -> None:
        self.models: set[str] = set()
        self.unnamed = False  # detections of the labels came without a model name

    def ran(self, ctx: FrameContext, of_labels: np.ndarray) -> bool:
        """`of_labels`: boolean mask of the frame's detections that carry one of the rule's labels
        (whatever their confidence)."""
        if of_labels.any():
            names = ctx.detections.data.get("model") if ctx.detections.data else None
            if names is None:
                self.unnamed = True
            else:
                self.models.update(str(n) for n in np.asarray(names, dtype=object)[of_labels])
            return True
        if self.models & ctx.models_run:
            return True
        return self.unnamed and bool(ctx.models_run)


def hits_of(ctx: FrameContext, mask: np.ndarray) -> list[Hit]:
    """One `Hit` per selected detection (normalised boxes)."""
    models = ctx.detections.data.get("model") if ctx.detections.data else None
    return [
        Hit(
            t_s=ctx.t_s,
            box=ctx.box_norm(int(i)),
            confidence=float(ctx.confidences[i]),
            label=str(ctx.class_names[i]),
            track_id=int(ctx.track_ids[i]),
            model=str(models[i]) if models is not None else "",
        )
        for i in np.flatnonzero(mask)
    ]


def box_centres(ctx: FrameContext) -> np.ndarray:
    """Normalised centres of every detection, (N, 2)."""
    if len(ctx.detections) == 0:
        return np.empty((0, 2))
    xyxy = np.asarray(ctx.detections.xyxy, dtype=float)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / (2 * ctx.width), (xyxy[:, 1] + xyxy[:, 3]) / (2 * ctx.height)], axis=1)


def box_area_fracs(ctx: FrameContext) -> np.ndarray:
    if len(ctx.detections) == 0:
        return np.empty(0)
    xyxy = np.asarray(ctx.detections.xyxy, dtype=float)
    return (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / float(ctx.width * ctx.height)
