"""Motion gate: no detection on frames where nothing moved in the area a camera's rules watch.

Each processed frame is reduced to a small grey image (`WIDTH_PX` wide) and compared with the frame
on which the detector last ran; the fraction of pixels that changed by more than `PIXEL_DELTA`
grey levels (after a blur that removes compression noise) inside the watched area decides. Comparing
with the last *detected* frame rather than the previous one means that slow movement accumulates
until it is seen. A gated frame is still tracked and analysed with the last detections, so tracks
stay alive and dwell clocks keep running (a person lying down or a bag left behind does not move but
is still there); a detection is forced every `max_skip_s` and after every reset.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from runner.config.site import MotionGate as MotionGateConfig

WIDTH_PX = 160  # analysis width: enough to see a person's limbs move, cheap (~20 kpx per frame)
PIXEL_DELTA = 20  # grey levels: above compression noise once blurred, below a person against most backgrounds
BLUR_PX = 5  # Gaussian kernel at WIDTH_PX
ZONE_MARGIN_PX = 4  # zones are grown by this (at WIDTH_PX): a body entering a ground zone moves at its edge first

NormPolygon = Sequence[tuple[float, float]]


class MotionGate:
    """Per camera. `wants_detection(image, t_s)` says whether the detector must run on this frame;
    when it says yes, the frame becomes the reference the next frames are compared with."""

    def __init__(self, config: MotionGateConfig, watched: list[NormPolygon] | None):
        self.config = config
        self.watched = watched  # None: the whole frame
        self._reference: np.ndarray | None = None
        self._reference_t_s: float | None = None
        self._mask: np.ndarray | None = None
        self._mask_pixels = 0
        self.frames_gated = 0
        self.last_changed_frac: float | None = None  # of the last frame compared (for tuning)

    def wants_detection(self, image: np.ndarray, t_s: float, *, force: bool = False) -> bool:
        """Whether the detector must run on this frame; if so, the frame becomes the new reference.

        Args:
            image: the frame, BGR or grey, privacy masks applied.
            t_s: the frame's stream time, seconds.
            force: run the detector whatever moved (the frame still becomes the reference).

        Returns:
            True after a reset, when `max_skip_s` has passed, when stream time went back, when the frame size
            changed, or when at least `min_changed_frac` of the watched area changed; False otherwise (the frame
            is counted in `frames_gated`).
        """
        small = self._small_grey(image)
        if self._must_detect(small, t_s) or force:
            self._reference, self._reference_t_s = small, t_s
            return True
        self.frames_gated += 1
        return False

    def reset(self) -> None:
        self._reference = self._reference_t_s = None
        self.last_changed_frac = None

    # -- helpers ---------------------------------------------------------------------------------
    def _must_detect(self, small: np.ndarray, t_s: float) -> bool:
        self.last_changed_frac = None
        reference = self._reference
        if reference is None or self._reference_t_s is None or reference.shape != small.shape:
            return True
        if t_s - self._reference_t_s >= self.config.max_skip_s - 1e-6 or t_s < self._reference_t_s:
            return True
        changed = cv2.absdiff(small, reference) > PIXEL_DELTA
        mask = self._mask_for(small.shape)
        if mask is not None:
            changed &= mask
        changed_px = int(np.count_nonzero(changed))
        self.last_changed_frac = changed_px / max(1, self._mask_pixels)
        # At least one pixel: a tiny zone's fraction would otherwise round to "any noise moves it".
        return changed_px >= max(1.0, self.config.min_changed_frac * self._mask_pixels)

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        size = (WIDTH_PX, max(1, round(height * WIDTH_PX / max(1, width))))
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (BLUR_PX, BLUR_PX), 0)

    def _mask_for(self, shape: tuple[int, ...]) -> np.ndarray | None:
        height, width = shape[:2]
        if self.watched is None:
            self._mask_pixels = height * width
            return None
        if self._mask is None or self._mask.shape != (height, width):
            mask = np.zeros((height, width), np.uint8)
            scale = np.array([width, height], dtype=float)
            for polygon in self.watched:
                cv2.fillPoly(mask, [np.round(np.asarray(polygon, dtype=float) * scale).astype(np.int32)], 255)
            kernel = np.ones((2 * ZONE_MARGIN_PX + 1, 2 * ZONE_MARGIN_PX + 1), np.uint8)
            self._mask = cv2.dilate(mask, kernel) > 0
        self._mask_pixels = int(np.count_nonzero(self._mask))
        return self._mask
