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
MIN_SPAN_FRAC = 0.75  # judge only once the ring covers this much of the window (a period must fit in it)
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

    def as_details(self) -> dict[str, float]:
        """The statistics as an alert's details.

        Returns:
            flicker, growth_ratio, brightness_std, hot_area_frac (rounded) and flicker_samples.
        """
        return {
            "flicker": round(self.irregular_flicker, 4),
            "growth_ratio": round(self.growth_ratio, 2),
            "brightness_std": round(self.brightness_std_frac, 4),
            "hot_area_frac": round(self.hot_area_frac, 3),
            "flicker_samples": self.samples,
        }


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

    def __init__(self, window_s: float, max_samples: int = MAX_SAMPLES, width_px: int = DEFAULT_WIDTH_PX):
        self.window_s = window_s
        self.width_px = width_px
        self._samples: deque[Sample] = deque(maxlen=max(3, min(MAX_SAMPLES, max_samples)))

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
        while self._samples and t_s - self._samples[0].t_s > self.window_s + 1e-6:
            self._samples.popleft()

    def region_stats(self, box: tuple[float, float, float, float], hot_only: bool = True) -> RegionStats | None:
        """Statistics of the normalised `box` over the window.

        Args:
            box: the region, normalised xyxy.
            hot_only: measure only the pixels that were flame-coloured in some sample; False: every pixel
                counts, for smoke.

        Returns:
            The statistics, or None while the ring covers less than 3/4 of the window (or holds fewer than
            4 samples), or when fewer than `MIN_AREA_PX` pixels are measured.
        """
        if len(self._samples) < 4 or self.span_s() < MIN_SPAN_FRAC * self.window_s - 1e-6:
            return None
        height, width = self._samples[-1].value.shape
        x1 = int(np.floor(max(0.0, box[0]) * width))
        y1 = int(np.floor(max(0.0, box[1]) * height))
        x2 = max(x1 + 1, int(np.ceil(min(1.0, box[2]) * width)))
        y2 = max(y1 + 1, int(np.ceil(min(1.0, box[3]) * height)))
        values = np.stack([s.value[y1:y2, x1:x2] for s in self._samples]).astype(np.float32) / 255.0
        hots = np.stack([s.hot[y1:y2, x1:x2] for s in self._samples])
        measured = hots.any(axis=0) if hot_only else np.ones(values.shape[1:], dtype=bool)
        if int(measured.sum()) < MIN_AREA_PX:
            return None
        pixels = values[:, measured]  # (T, P)
        if pixels.shape[1] > MAX_PIXELS:  # bounded work: an evenly spread subset of the region's pixels
            pixels = pixels[:, np.linspace(0, pixels.shape[1] - 1, MAX_PIXELS).astype(int)]
        n = len(pixels)
        novelty = []
        rank = int(round(CHANGED_PERCENTILE / 100.0 * (pixels.shape[1] - 1)))
        for t in range(max(2, n // 2), n):
            # Per earlier non-adjacent sample: the change that a quarter of the pixels exceed.
            change = np.partition(np.abs(pixels[: t - 1] - pixels[t]), rank, axis=1)[:, rank]
            novelty.append(float(change.min()))
        areas = hots.reshape(n, -1).sum(axis=1).astype(float)
        third = max(1, n // 3)
        first, last = float(np.median(areas[:third])), float(np.median(areas[-third:]))
        growth = last / max(first, float(MIN_AREA_PX))
        return RegionStats(
            samples=n,
            irregular_flicker=float(np.median(novelty)),
            growth_ratio=growth,
            brightness_std_frac=float(pixels.std(axis=0).mean()),
            hot_area_frac=float(hots.reshape(n, -1).mean()),
        )
