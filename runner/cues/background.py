"""Detector-free static-object cue: a dual (long-term / short-term) background on a small grey image.

A pixel is *static foreground* when the frame differs from the long-term background (something is
there that was not before) but matches the short-term one (it has stopped moving). Connected regions
of such pixels are candidate left objects, whatever their class: this is what finds a small dark bag
that no detector labels.

Everything runs on a downscaled, blurred grey copy of the frame (`width_px` wide, 320 by default:
about 0.3 MB per float image), so memory is fixed whatever the camera's resolution: the two
backgrounds, the age of each static pixel, the last time a person covered each pixel, and two masks
("known" pixels, exclusion zones) - about 1.2 MB for a 4:3 camera at 320 px.

What keeps it from raising static regions that are not objects:
- *Global gain*: the frame is scaled so that its median matches the long-term background's before
  differencing (camera auto-exposure, a cloud); a change covering more than `max_change_frac` of the
  image is a scene change (lights switched, camera moved), and the long-term model is rebuilt; more
  than `unstable_change_frac` (a moving camera, a bus filling the view) reports nothing meanwhile.
- *People*: the long-term model is not updated under the (padded) person boxes it is given, so a
  person standing still for minutes never becomes background, and leaves no ghost when they go;
  pixels never seen free of people since start-up are "unknown" and report nothing.
- *Ghosts* (an object that stood long enough to be learnt, then left; a person present at start-up):
  a real object adds edges at its contour, a ghost removes them (edge-energy test of Tian, Lu and
  Hampapur, "Robust and efficient foreground analysis for real-time video surveillance", CVPR 2005).
  A region whose contour has less gradient energy in the frame than in the background is healed.
- *Illumination* (a shadow, a patch of sun, a reflection): the texture under the region is the
  background's, only brighter or darker; a high normalised correlation between frame and background
  inside the region heals it too.
- *Old static regions* are absorbed after `absorb_s` (the long-term model is frozen under static
  pixels until then, so that a low-contrast object is not learnt before its owner's time is up).

Each region also says how long ago a person's box last covered it or its immediate surroundings
(`person_gap_s`): a bag is put down by someone whose box contains it, a ghost or a light is not.
A dark bag on a dark floor looks, in grey levels, much like a shadow, so the lighting test is kept
strict (correlation >= 0.9): the measured ABODA bag correlates 0.81 with the floor it hides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # normalised xyxy


@dataclass(frozen=True)
class BackgroundSettings:
    width_px: int = 320
    long_s: float = 120.0  # time constant of the long-term model
    short_s: float = 2.0  # time constant of the short-term model
    diff_threshold: float = 25.0  # grey levels (0-255) after blur
    min_area_frac: float = 0.0005  # of the image area
    max_area_frac: float = 0.05
    absorb_s: float = 600.0  # static pixels older than this are learnt into the long-term model
    max_change_frac: float = 0.35  # more of the image differs than this: scene change, rebuild
    unstable_change_frac: float = 0.12  # more than this: report nothing on this frame (moving camera, bus)
    person_pad_frac: float = 0.15  # person boxes grown by this fraction of their size on each side
    settle_s: float = 3.0  # a region is judged (ghost, lighting) once its pixels have been static this long
    ghost_edge_ratio: float = 1.0  # contour edge energy frame / background below this: a ghost
    illumination_ncc: float = 0.9  # frame/background correlation above this: lighting, not an object
    min_texture_std: float = 6.0  # the correlation test needs this much background texture (grey levels)


@dataclass(frozen=True)
class StaticRegion:
    box: Box  # normalised xyxy
    area_frac: float  # region pixels / image pixels
    contrast: float  # mean |frame - long-term background| inside the region, grey levels
    edge_ratio: float  # contour gradient energy, frame / background (> 1: something was added)
    stand_out: float  # |region - surroundings| in the frame minus the same in the background, grey levels
    person_gap_s: float  # time since a (padded) person box last covered the region or its surroundings; inf if never


class DualBackground:
    """Long/short running-average backgrounds; `update()` returns this frame's static-object regions."""

    def __init__(self, settings: BackgroundSettings | None = None):
        self.settings = settings or BackgroundSettings()
        self.reset()

    def reset(self) -> None:
        self._long: np.ndarray | None = None
        self._short: np.ndarray | None = None
        self._known: np.ndarray | None = None  # pixels seen at least once without a person on them
        self._static_since: np.ndarray | None = None  # t_s a pixel became static, NaN when it is not
        self._person_s: np.ndarray | None = None  # t_s a person last covered each pixel, NaN if never
        self._last_t: float | None = None
        self._exclude: np.ndarray | None = None
        self._exclude_key: tuple | None = None
        self.rebuilds = 0
        self.unstable_frames = 0
        self.changed_frac = 0.0  # share of the image that differs from the long-term model (last frame)

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self._long is None else self._long.shape

    def memory_bytes(self) -> int:
        """What the models hold now.

        Returns:
            Bytes of the arrays allocated (0 before the first frame).
        """
        arrays = (self._long, self._short, self._known, self._static_since, self._person_s, self._exclude)
        return sum(a.nbytes for a in arrays if a is not None)

    # -- per frame -----------------------------------------------------------------------------
    def update(
        self,
        image: np.ndarray,
        t_s: float,
        person_boxes: Sequence[Box] = (),
        exclude_polygons: Sequence[Sequence[tuple[float, float]]] = (),
    ) -> list[StaticRegion]:
        """Updates the backgrounds with a frame and finds its static-object regions.

        Args:
            image: the frame, BGR or grey (privacy masks applied).
            t_s: the frame's stream time, seconds; a time before the last frame's restarts the models.
            person_boxes: people on this frame, normalised xyxy: the long-term model is not updated under them
                (padded by `person_pad_frac`).
            exclude_polygons: normalised polygons where nothing is reported (and no change counted).

        Returns:
            The static regions, in label order; none on the first frame, after a restart, on a scene change
            (`max_change_frac`: the models are rebuilt) or on an unstable frame (`unstable_change_frac`).
        """
        s = self.settings
        grey = self._small_grey(image)
        h, w = grey.shape
        people = self._box_mask((h, w), person_boxes, s.person_pad_frac)
        if self._long is None or self._long.shape != grey.shape or self._last_t is None or t_s < self._last_t:
            self._start(grey, people)
            self._person_s = np.full(grey.shape, np.nan, dtype=np.float32)
            self._person_s[people] = t_s
            self._last_t = t_s
            return []
        # Allocated with the long-term model by the first frame (`_start` and the branch above).
        assert self._short is not None and self._known is not None
        assert self._static_since is not None and self._person_s is not None
        self._person_s[people] = t_s
        dt = max(0.0, t_s - self._last_t)
        self._last_t = t_s
        exclude = self._exclusion(exclude_polygons, (h, w))
        free = ~people
        # Global gain (auto-exposure, clouds): match the frame's median to the background's.
        sample = free & self._known
        if sample.sum() > 0.2 * sample.size:
            gain = float(np.median(self._long[sample])) / max(1.0, float(np.median(grey[sample])))
            grey = grey * float(np.clip(gain, 0.5, 2.0))
        # Pixels seen for the first time without anyone on them become known, with this frame as background.
        newly = free & ~self._known
        if newly.any():
            self._long[newly] = grey[newly]
            self._known |= newly
        d_long = np.abs(grey - self._long)
        d_short = np.abs(grey - self._short)
        static = (d_long > s.diff_threshold) & (d_short <= s.diff_threshold) & self._known & ~exclude
        changed = (d_long > s.diff_threshold) & self._known & ~people & ~exclude
        self.changed_frac = float(changed.mean())
        if self.changed_frac > s.max_change_frac:
            # Lights switched, camera moved or shaken: nothing here is a left object. Start again.
            self.rebuilds += 1
            self._start(grey, people)
            return []
        since = self._static_since
        since[~static] = np.nan
        since[static & np.isnan(since)] = t_s
        too_old = static & (t_s - since >= s.absorb_s)
        # Update: the short-term model everywhere; the long-term one except under people and young static pixels.
        a_short = 1.0 - np.exp(-dt / s.short_s) if s.short_s > 0 else 1.0
        a_long = 1.0 - np.exp(-dt / s.long_s)
        self._short += a_short * (grey - self._short)
        learn = free & ~(static & ~too_old)
        self._long[learn] += a_long * (grey[learn] - self._long[learn])
        if too_old.any():
            self._heal(too_old, grey)
        if self.changed_frac > s.unstable_change_frac:
            # Much of the scene differs (the camera moves, a bus or a crowd fills the view): the
            # background is not trustworthy now; report nothing until it settles.
            self.unstable_frames += 1
            return []
        return self._regions(static & ~too_old, grey, np.where(exclude, 0.0, d_long), people, t_s)

    # -- internals -----------------------------------------------------------------------------
    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = image.shape[:2]
        w = min(self.settings.width_px, width)
        h = max(1, int(round(height * w / width)))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)

    def _start(self, grey: np.ndarray, people: np.ndarray) -> None:
        self._long = grey.copy()
        self._short = grey.copy()
        self._known = ~people
        self._static_since = np.full(grey.shape, np.nan, dtype=np.float32)

    def _heal(self, mask: np.ndarray, grey: np.ndarray) -> None:
        """Make these pixels background now (a ghost, a lighting change, a region too old)."""
        assert self._long is not None and self._static_since is not None  # called only once the models exist
        self._long[mask] = grey[mask]
        self._static_since[mask] = np.nan

    @staticmethod
    def _box_mask(shape: tuple[int, int], boxes: Sequence[Box], pad_frac: float) -> np.ndarray:
        h, w = shape
        mask = np.zeros(shape, dtype=bool)
        for x1, y1, x2, y2 in boxes:
            px, py = (x2 - x1) * pad_frac, (y2 - y1) * pad_frac
            c1, r1 = max(0, int(np.floor((x1 - px) * w))), max(0, int(np.floor((y1 - py) * h)))
            c2, r2 = min(w, int(np.ceil((x2 + px) * w))), min(h, int(np.ceil((y2 + py) * h)))
            mask[r1:r2, c1:c2] = True
        return mask

    def _exclusion(self, polygons: Sequence[Sequence[tuple[float, float]]], shape: tuple[int, int]) -> np.ndarray:
        key = (shape, tuple(tuple(map(tuple, p)) for p in polygons))
        if self._exclude is None or key != self._exclude_key:
            mask = np.zeros(shape, dtype=np.uint8)
            scale = np.array([shape[1], shape[0]], dtype=float)
            for polygon in polygons:
                pts = np.round(np.asarray(polygon, dtype=float) * scale).astype(np.int32)
                cv2.fillPoly(mask, [pts], 1)
            self._exclude, self._exclude_key = mask.astype(bool), key
        return self._exclude

    def _regions(
        self, static: np.ndarray, grey: np.ndarray, d_long: np.ndarray, people: np.ndarray, t_s: float
    ) -> list[StaticRegion]:
        s = self.settings
        assert self._long is not None and self._static_since is not None and self._person_s is not None
        h, w = static.shape
        mask: np.ndarray = static.astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count <= 1:
            return []
        total = float(h * w)
        # A static part of a larger foreground (half of a bus that has stopped, a slab of light
        # settling unevenly) is judged by the size of the whole foreground it belongs to.
        foreground = ((d_long > s.diff_threshold) | static).astype(np.uint8)
        _, fg_labels, fg_stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
        regions = []
        for label in range(1, count):
            x, y, bw, bh, area = (int(v) for v in stats[label])
            if not (s.min_area_frac <= area / total <= s.max_area_frac):
                continue
            ys, xs = np.nonzero(labels[y : y + bh, x : x + bw] == label)
            owner = fg_labels[y + ys[0], x + xs[0]] if len(ys) else 0
            if owner and fg_stats[owner, cv2.CC_STAT_AREA] / total > s.max_area_frac:
                continue
            r1, r2, c1, c2 = max(0, y - 4), min(h, y + bh + 4), max(0, x - 4), min(w, x + bw + 4)
            region = labels[r1:r2, c1:c2] == label
            frame_patch, long_patch = grey[r1:r2, c1:c2], self._long[r1:r2, c1:c2]
            edge_ratio = _contour_edge_ratio(region, frame_patch, long_patch)
            stand_out = _stand_out(region, frame_patch, long_patch)
            # Judge ghosts and lighting only on settled regions away from people: while someone is
            # still putting an object down, the half-formed region says nothing reliable.
            ages = t_s - self._static_since[r1:r2, c1:c2][region]
            settled = float(np.nanmedian(ages)) >= s.settle_s if np.isfinite(ages).any() else False
            if (
                settled
                and not people[r1:r2, c1:c2][region].any()
                and (
                    (stand_out < 0.0 and edge_ratio < s.ghost_edge_ratio)
                    or _is_illumination(region, frame_patch, long_patch, s)
                )
            ):
                self._heal_patch(region, r1, c1, grey)
                continue
            contrast = float(d_long[r1:r2, c1:c2][region].mean())
            # Who brought it: a person's (padded) box on the region itself, or just beside it. A bag
            # being carried or put down lies inside its carrier's box; a ghost or a light usually not.
            m = max(1, int(round(0.25 * max(bw, bh))))
            around = self._person_s[max(0, y - m) : min(h, y + bh + m), max(0, x - m) : min(w, x + bw + m)]
            last_person = float(np.nanmax(around)) if np.isfinite(around).any() else None
            regions.append(
                StaticRegion(
                    box=(x / w, y / h, (x + bw) / w, (y + bh) / h),
                    area_frac=area / total,
                    contrast=contrast,
                    edge_ratio=edge_ratio,
                    stand_out=stand_out,
                    person_gap_s=float("inf") if last_person is None else max(0.0, t_s - last_person),
                )
            )
        return regions

    def _heal_patch(self, region: np.ndarray, r1: int, c1: int, grey: np.ndarray) -> None:
        full = np.zeros(grey.shape, dtype=bool)
        full[r1 : r1 + region.shape[0], c1 : c1 + region.shape[1]] = region
        self._heal(full, grey)


def _gradient(patch: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def _contour_edge_ratio(region: np.ndarray, frame_patch: np.ndarray, long_patch: np.ndarray) -> float:
    """Gradient energy on the region's contour band, frame over background (> 1: an object was added)."""
    mask = region.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    band = (cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)).astype(bool)
    if not band.any():
        return 1.0
    frame_energy = float(_gradient(frame_patch)[band].sum())
    long_energy = float(_gradient(long_patch)[band].sum())
    return frame_energy / max(long_energy, 1e-3)


def _stand_out(region: np.ndarray, frame_patch: np.ndarray, long_patch: np.ndarray) -> float:
    """How much more the region differs from its surroundings in the frame than in the background.

    An object left on the floor stands out from the floor around it (> 0); a ghost (the background
    revealed where an object stood) blends into it now, and it was the background that stood out (< 0).
    """
    mask = region.astype(np.uint8)
    ring = (cv2.dilate(mask, np.ones((7, 7), np.uint8)) - mask).astype(bool)
    if not ring.any():
        return 0.0
    frame_gap = abs(float(frame_patch[region].mean()) - float(frame_patch[ring].mean()))
    long_gap = abs(float(long_patch[region].mean()) - float(long_patch[ring].mean()))
    return frame_gap - long_gap


def _is_illumination(
    region: np.ndarray, frame_patch: np.ndarray, long_patch: np.ndarray, s: BackgroundSettings
) -> bool:
    """Same texture as the background, only brighter or darker: a shadow, a patch of light, a reflection.

    Measured inside the region (its blurred rim mixes both sides and would lower the correlation)."""
    inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() >= 9:
        region = inner
    a = frame_patch[region].astype(np.float64)
    b = long_patch[region].astype(np.float64)
    if a.size < 9 or b.std() < s.min_texture_std or a.std() < 1e-6:
        return False
    ncc = float(np.mean((a - a.mean()) * (b - b.mean())) / (a.std() * b.std()))
    return ncc >= s.illumination_ncc
