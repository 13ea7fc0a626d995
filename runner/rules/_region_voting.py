"""k-of-n voting on image regions, for detections that are not tracked (fire) or tracked badly (weapons).

A *region* gathers the detections that overlap the same area of the image over time. It gets one
vote per frame on which the model that provides its labels ran: a hit when some detection fell in
it, a miss otherwise. Frames where the model did not run (a model with `max_fps`) do not vote, so
a model at 3 fps on a 6 fps camera is judged on its own frames only.

A region is forgotten once its last `n_frames` votes are all misses (bounded state, back to zero
when nothing is detected any more); at most `max_regions` live at once (the stalest goes first).

The pipeline says which *models* ran on a frame (`ctx.models_run`); a rule asks for *labels*. The
model that provides a rule's labels is learnt from the detections themselves (`data[MODEL]`):
a frame counts as a vote when one of those models ran on it, or when a detection of the rule's
labels is present (the model obviously ran). Before the first detection nothing is learnt, and
nothing needs to be: there is no region to vote for yet. Detections without a `model` column
(scripted tests) fall back to "some model ran on this frame".

Shared by the fire and weapon rules (neither owns it); boxes are normalised xyxy (`runner.core.boxes`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from runner.core.boxes import NormBox, covered_share, padded, union
from runner.core.fields import MODEL
from runner.rules.base import FrameContext

MOVING_SIZES_PER_S = 0.75  # a region whose box translates faster than this many box sizes per second is moving
MOVING_OVER_S = 1.0  # ... measured over about this long


@dataclass(frozen=True, slots=True)
class Hit:
    t_s: float
    box: NormBox
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

    def envelope(self) -> NormBox:
        """Union of the boxes of the hits still in the voting window.

        Returns:
            The normalised box (raises TypeError when the region holds no hit).
        """
        return reduce(union, (h.box for h in self.hits))

    def best(self) -> Hit:
        """The most confident hit still in the voting window.

        Returns:
            That hit (raises ValueError when the region holds no hit).
        """
        return max(self.hits, key=lambda h: h.confidence)


def shared_shift(edge_a: float, edge_b: float) -> float:
    """The shift two opposite edges of a box share: the smaller one when both moved the same way, else none.

    Args:
        edge_a: how far one edge moved (signed, normalised).
        edge_b: how far the opposite edge moved, along the same axis.

    Returns:
        The translation along that axis (signed); 0.0 when the edges moved apart, towards each other or not at all.
    """
    if edge_a * edge_b <= 0.0:
        return 0.0
    return edge_a if abs(edge_a) < abs(edge_b) else edge_b


def moving(hits: deque[Hit], after: Hit) -> bool:
    """Whether a region's box translated faster than MOVING_SIZES_PER_S box sizes per second over about the last
    MOVING_OVER_S (from the latest earlier hit at least that old, else the oldest kept): a light on a vehicle
    driving in. Along each axis the translation is the shift both opposite edges share (`shared_shift`): a box that
    only grows or shrinks has not moved, whether about a fixed edge or its centre. Flames rise from a base that
    stays put, a fire spreads from where it started, and the model boxes now their tips, now the whole fire down to
    its base; a light carried by a vehicle shifts all its edges. (Measured over a second, flame jitter cancels out,
    and a spreading fire drifts far slower.)

    Args:
        hits: the region's hits, oldest first (not empty).
        after: the newest hit, the one judged.

    Returns:
        True when the box translated faster than that; False over less than a microsecond.
    """
    before = next((h for h in reversed(hits) if h.t_s <= after.t_s - MOVING_OVER_S + 1e-6), hits[0])
    dt = after.t_s - before.t_s
    if dt <= 1e-6:
        return False
    old, new = before.box, after.box
    width = max(old[2] - old[0], new[2] - new[0], 1e-6)
    height = max(old[3] - old[1], new[3] - new[1], 1e-6)
    dx = abs(shared_shift(new[0] - old[0], new[2] - old[2])) / width
    dy = abs(shared_shift(new[1] - old[1], new[3] - old[3])) / height
    return max(dx, dy) / dt > MOVING_SIZES_PER_S


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
        at different rates) gets no vote.

        Args:
            hits: this frame's hits (any order; the most confident is placed first).
            models_run: the models that ran on this frame; None: every region votes.

        Returns:
            The regions that got a hit on this frame.
        """
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
            overlap = covered_share(hit.box, padded(region.envelope(), self.match_pad_frac))
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
        """Whether a model of the rule's labels looked at this frame (and learn those models).

        Args:
            ctx: the processed frame.
            of_labels: boolean mask of the frame's detections that carry one of the rule's labels
                (whatever their confidence).

        Returns:
            True when such a detection is present, or a model known to provide the labels ran, or (labels
            seen without a model name) any model ran.
        """
        if of_labels.any():
            names = ctx.detections.data.get(MODEL) if ctx.detections.data else None
            if names is None:
                self.unnamed = True
            else:
                self.models.update(str(n) for n in np.asarray(names, dtype=object)[of_labels])
            return True
        if self.models & ctx.models_run:
            return True
        return self.unnamed and bool(ctx.models_run)


def hits_of(ctx: FrameContext, mask: np.ndarray) -> list[Hit]:
    """One `Hit` per selected detection (normalised boxes).

    Args:
        ctx: the processed frame.
        mask: boolean mask over its detections.

    Returns:
        The hits, in detection order, at the frame's stream time.
    """
    models = ctx.detections.data.get(MODEL) if ctx.detections.data else None
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
