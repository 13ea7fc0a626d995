"""Pixel statistics that tell real flames from lights that a fire model mistakes for them.

A fire model says "fire" on many bright orange things: neon signs, rotating beacons, lamps. What
those do not do is *change shape irregularly*: a static sign does not change at all, a blinking or
chasing sign and a rotating beacon repeat the same few states. Flames never repeat. So, over a short
window of downscaled frames (the same image area in every frame, so the statistics are aligned):

- **flicker** (`irregular_flicker`): for each recent sample, its brightness change (fraction of full
  scale) to the *most similar earlier sample that is not its neighbour*, where the change of two
  samples is the one that a quarter of the area's flame-coloured pixels exceed (75th percentile of
  the per-pixel absolute differences: a beacon sampled slightly out of phase differs only on thin
  slivers at the edge of its beam, flames over much of their area); the median over the second half
  of the window. Static light: ~0 (every earlier sample is identical). Periodic light (beacon,
  chasing bulbs, a blinking star): ~0 once the window holds a period (an earlier sample in the same
  phase exists). Flames: every sample is new, so it stays at the frame-to-frame change level.
- **growth** (`growth_ratio`): flame-coloured area of the region in the last third of the window over
  that of the first third (medians): a fire starting and spreading.
- **brightness variance** (`brightness_std_frac`): plain temporal standard deviation of brightness,
  for the alert's details (a beacon has plenty of it, so it is not used to decide).
- **background flicker** (`background_flicker`): the flicker statistic of the rest of the frame (every
  pixel outside the region, not only flame-coloured ones): near 0 on a fixed camera, as high as the
  region's own when the whole picture changes (a camera moving or shaking, a scene cut), where the
  region's flicker says nothing about flames.

The ring holds the frames of the last `window_s`, but never fewer than `min_samples` (the newest):
on a camera at 1 frame per second or less (a time-lapse, a snapshot feed) the window then spans
those samples, however long ago they were taken, so that growth and change can still be measured.

Memory is bounded: a ring of at most `max_samples` frames downscaled to `width_px` (brightness and a
flame-colour mask, 2 bytes per pixel).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_WIDTH_PX = 256
MAX_SAMPLES = 64

# Flame-coloured ("hot") pixel, on OpenCV's HSV scale (hue 0-180): bright and red-orange-yellow, or
# nearly white (flame cores saturate the sensor).
HOT_MIN_VALUE = 150
HOT_MAX_HUE = 30  # 60 degrees: yellow
HOT_MIN_HUE_WRAP = 170  # 340 degrees: red wrapping around 0
HOT_MIN_SATURATION = 60
HOT_WHITE_VALUE = 230
MIN_SAMPLES = 6  # the ring keeps at least this many samples, however old (low frame rates)
MAX_PIXELS = 1024  # pixels compared per sample (a subset of large regions)
CHANGED_PERCENTILE = 75.0
MIN_AREA_PX = 4  # fewer flame-coloured pixels than this: nothing to measure


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float
    value: np.ndarray  # uint8 (h, w): HSV value (brightness)
    hot: np.ndarray  # bool (h, w): flame-coloured


@dataclass(frozen=True, slots=True)
class RegionStats:
    samples: int
    irregular_flicker: float  # fraction of full brightness
    growth_ratio: float
    brightness_std_frac: float
    hot_area_frac: float  # mean share of flame-coloured pixels in the region
    background_flicker: float  # the same statistic on every pixel outside the region
    first_t_s: float  # stream time of the oldest sample measured
    span_s: float  # stream time from the oldest to the newest sample measured

    def as_details(self) -> dict[str, float]:
        """The statistics as an alert's details.

        Returns:
            flicker, growth_ratio, brightness_std, hot_area_frac, background_flicker (rounded), flicker_samples and
            flicker_span_s.
        """
        return {
            "flicker": round(self.irregular_flicker, 4),
            "growth_ratio": round(self.growth_ratio, 2),
            "brightness_std": round(self.brightness_std_frac, 4),
            "hot_area_frac": round(self.hot_area_frac, 3),
            "background_flicker": round(self.background_flicker, 4),
            "flicker_samples": self.samples,
            "flicker_span_s": round(self.span_s, 2),
        }


def irregular_change(pixels: np.ndarray) -> float:
    """The flicker statistic of some pixels over the samples (see the module docstring).

    Args:
        pixels: float (T, P) brightness, oldest sample first, at most `MAX_PIXELS` columns.

    Returns:
        The median, over the second half of the samples, of each sample's change to its most similar
        earlier non-adjacent sample (the change that a quarter of the pixels exceed); 0.0 with fewer than
        3 samples or no pixel.
    """
    n, count = pixels.shape
    if n < 3 or count == 0:
        return 0.0
    rank = int(round(CHANGED_PERCENTILE / 100.0 * (count - 1)))
    novelty = []
    for t in range(max(2, n // 2), n):
        change = np.partition(np.abs(pixels[: t - 1] - pixels[t]), rank, axis=1)[:, rank]
        novelty.append(float(change.min()))
    return float(np.median(novelty))


def _spread(pixels: np.ndarray) -> np.ndarray:
    """At most `MAX_PIXELS` columns of (T, P) pixels, evenly spread (bounded work on large areas)."""
    if pixels.shape[1] <= MAX_PIXELS:
        return pixels
    return pixels[:, np.linspace(0, pixels.shape[1] - 1, MAX_PIXELS).astype(int)]


def hot_mask(hsv: np.ndarray) -> np.ndarray:
    """Which pixels are flame-coloured.

    Args:
        hsv: an image in OpenCV's HSV (hue 0-180, saturation and value 0-255), shape (h, w, 3).

    Returns:
        Bool (h, w): bright and red-orange-yellow, or nearly white.
    """
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    coloured = ((hue <= HOT_MAX_HUE) | (hue >= HOT_MIN_HUE_WRAP)) & (sat >= HOT_MIN_SATURATION)
    return (val >= HOT_MIN_VALUE) & (coloured | (val >= HOT_WHITE_VALUE))


class FrameRing:
    """The last frames of a camera, downscaled, for the window the flicker statistics need."""

    def __init__(
        self,
        window_s: float,
        max_samples: int = MAX_SAMPLES,
        width_px: int = DEFAULT_WIDTH_PX,
        min_samples: int = MIN_SAMPLES,
    ):
        self.window_s = window_s
        self.width_px = width_px
        self._samples: deque[Sample] = deque(maxlen=max(3, min_samples, min(MAX_SAMPLES, max_samples)))
        self.min_samples = min_samples

    def __len__(self) -> int:
        return len(self._samples)

    def span_s(self) -> float:
        """Stream time between the oldest and the newest sample.

        Returns:
            Seconds; 0.0 when the ring is empty.
        """
        return self._samples[-1].t_s - self._samples[0].t_s if self._samples else 0.0

    def clear(self) -> None:
        self._samples.clear()

    def frame_interval_s(self) -> float | None:
        """The camera's actual frame interval: the median time between consecutive samples.

        Returns:
            Seconds; None with fewer than 2 samples.
        """
        if len(self._samples) < 2:
            return None
        times = np.array([s.t_s for s in self._samples])
        return float(np.median(np.diff(times)))

    def add(self, image: np.ndarray, t_s: float) -> None:
        """Adds a frame, downscaled, and drops samples older than the window.

        The ring restarts when time goes backwards (the stream restarted) or the resolution changes.

        Args:
            image: the BGR frame.
            t_s: its stream time, seconds.
        """
        height, width = image.shape[:2]
        if width > self.width_px:
            size = (self.width_px, max(1, round(height * self.width_px / width)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            small = image
        if self._samples and (t_s < self._samples[-1].t_s or self._samples[-1].value.shape != small.shape[:2]):
            self._samples.clear()  # time went backwards (stream restarted) or the resolution changed
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        self._samples.append(Sample(t_s, hsv[..., 2].copy(), hot_mask(hsv)))
        while len(self._samples) > self.min_samples and t_s - self._samples[0].t_s > self.window_s + 1e-6:
            self._samples.popleft()

    def region_stats(
        self,
        box: tuple[float, float, float, float],
        hot_only: bool = True,
        min_span_s: float | None = None,
    ) -> RegionStats | None:
        """Statistics of the normalised `box` over the ring.

        Args:
            box: the region, normalised xyxy.
            hot_only: measure only the pixels that were flame-coloured in some sample; False: every pixel
                counts, for smoke.
            min_span_s: judge only once the ring covers this long (a light's period must fit in it); None:
                3/4 of the window; 0: as soon as it holds `min_samples` samples (low frame rates).

        Returns:
            The statistics, or None while the ring covers less than `min_span_s` (or holds fewer than 4
            samples), or when fewer than `MIN_AREA_PX` pixels are measured.
        """
        needed_s = 0.75 * self.window_s if min_span_s is None else min_span_s
        samples = list(self._samples)
        if len(samples) < (max(4, self.min_samples) if needed_s <= 0 else 4):
            return None
        span_s = samples[-1].t_s - samples[0].t_s
        if span_s < needed_s - 1e-6:
            return None
        height, width = samples[-1].value.shape
        x1 = int(np.floor(max(0.0, box[0]) * width))
        y1 = int(np.floor(max(0.0, box[1]) * height))
        x2 = max(x1 + 1, int(np.ceil(min(1.0, box[2]) * width)))
        y2 = max(y1 + 1, int(np.ceil(min(1.0, box[3]) * height)))
        values = np.stack([s.value[y1:y2, x1:x2] for s in samples]).astype(np.float32) / 255.0
        hots = np.stack([s.hot[y1:y2, x1:x2] for s in samples])
        measured = hots.any(axis=0) if hot_only else np.ones(values.shape[1:], dtype=bool)
        if int(measured.sum()) < MIN_AREA_PX:
            return None
        pixels = _spread(values[:, measured])  # (T, P)
        outside = np.ones((height, width), dtype=bool)  # the rest of the frame, for background_flicker
        outside[y1:y2, x1:x2] = False
        spots = np.flatnonzero(outside)
        if len(spots) > MAX_PIXELS:
            spots = spots[np.linspace(0, len(spots) - 1, MAX_PIXELS).astype(int)]
        background = np.stack([s.value.ravel()[spots] for s in samples]).astype(np.float32) / 255.0
        n = len(pixels)
        areas = hots.reshape(n, -1).sum(axis=1).astype(float)
        third = max(1, n // 3)
        first, last = float(np.median(areas[:third])), float(np.median(areas[-third:]))
        growth = last / max(first, float(MIN_AREA_PX))
        return RegionStats(
            samples=n,
            irregular_flicker=irregular_change(pixels),
            growth_ratio=growth,
            brightness_std_frac=float(pixels.std(axis=0).mean()),
            hot_area_frac=float(hots.reshape(n, -1).mean()),
            background_flicker=irregular_change(background),
            first_t_s=samples[0].t_s,
            span_s=span_s,
        )
