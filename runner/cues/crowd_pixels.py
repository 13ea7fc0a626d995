"""Pixel-level crowd measures for the crowd rules, on small grey frames (bounded memory).

- `PersonScale`: how tall a person is on the image as a function of the row where they stand
  (perspective), fitted from the person detections of the camera (or a configured constant).
- `ForegroundModel`: a MOG2 background model on a downscaled frame; its foreground inside a zone,
  each pixel weighted by 1 / (person area at its row), gives a *person-equivalent* area: the number
  of people that foreground would hold if they did not overlap. It needs no detection, so it keeps
  counting when people are too packed to be detected one by one.
- `FlowField`: dense optical flow (Farneback) between the last two processed frames, in pixels per
  second at the small scale; divided by the person height at each row it gives body-heights per
  second, a scale-free speed.

Everything here works on frames downscaled to `width_px` (e.g. 192-256 px), so the cost is a few
milliseconds per frame and the memory is a few small images per rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np

NormPolygon = Sequence[tuple[float, float]]


def small_frame(image: np.ndarray, width_px: int) -> np.ndarray:
    """The frame downscaled to `width_px` wide (never enlarged), with INTER_AREA.

    Args:
        image: the frame, any channels.
        width_px: the largest width wanted, pixels.

    Returns:
        A resized copy keeping the aspect ratio, or `image` itself when it is no wider than `width_px`.
    """
    height, width = image.shape[:2]
    if width <= width_px:
        return image
    size = (width_px, max(1, int(round(height * width_px / width))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def grey(image: np.ndarray) -> np.ndarray:
    """The image in grey levels.

    Args:
        image: a BGR image, or a grey one.

    Returns:
        A grey copy of a BGR image; a 2-D image itself.
    """
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def polygon_mask(polygon: NormPolygon | None, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (rows, cols) of a normalised polygon; the whole image when `polygon` is None.

    Args:
        polygon: the polygon's vertices, normalised (0-1), or None for the whole image.
        shape: (rows, cols) of the mask, pixels.

    Returns:
        A bool array, True inside the polygon (edges included).
    """
    rows, cols = shape
    if polygon is None:
        return np.ones((rows, cols), dtype=bool)
    mask = np.zeros((rows, cols), dtype=np.uint8)
    points = np.round(np.asarray(polygon, dtype=float) * np.array([cols, rows])).astype(np.int32)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


class PersonScale:
    """Person height on the image (fraction of the frame height) as a function of the row (0..1).

    Fitted by least squares, h = a + b * y, on the last `max_samples` confident person boxes (y is the
    box's bottom edge); a constant (the median) while the rows seen span less than `min_span`.
    Boxes cut by the frame's top or bottom edge are left out (their height is not a person's).
    """

    def __init__(
        self,
        fixed_frac: float | None = None,
        max_samples: int = 300,
        min_samples: int = 5,
        min_span: float = 0.15,
        min_frac: float = 0.02,
    ):
        self.fixed_frac = fixed_frac
        self.samples: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (bottom y, height), normalised
        self.min_samples = min_samples
        self.min_span = min_span
        self.min_frac = min_frac
        self._fit: tuple[float, float] | None = None
        self._dirty = False

    def add_boxes(self, boxes_norm: np.ndarray) -> None:
        """Adds confident person boxes as (bottom row, height) samples for the fit.

        Args:
            boxes_norm: (N, 4) normalised xyxy; boxes touching the frame's top or bottom edge (within 0.005)
                or with no height are left out.
        """
        for x1, y1, x2, y2 in np.asarray(boxes_norm, dtype=float).reshape(-1, 4):
            if y1 <= 0.005 or y2 >= 0.995 or y2 - y1 <= 0.0:
                continue
            self.samples.append((float(y2), float(y2 - y1)))
            self._dirty = True

    @property
    def ready(self) -> bool:
        return self.fixed_frac is not None or len(self.samples) >= self.min_samples

    def _coefficients(self) -> tuple[float, float] | None:
        if self.fixed_frac is not None:
            return (self.fixed_frac, 0.0)
        if len(self.samples) < self.min_samples:
            return None
        if self._dirty or self._fit is None:
            data = np.asarray(self.samples, dtype=float)
            ys, hs = data[:, 0], data[:, 1]
            if np.percentile(ys, 90) - np.percentile(ys, 10) < self.min_span:
                self._fit = (float(np.median(hs)), 0.0)
            else:
                slope, intercept = np.polyfit(ys, hs, 1)
                self._fit = (float(intercept), float(max(0.0, slope)))  # farther (higher) is never taller
            self._dirty = False
        return self._fit

    def height_frac(self, rows_norm: np.ndarray) -> np.ndarray | None:
        """Person height (fraction of frame height) for each normalised row, or None before any fit.

        Args:
            rows_norm: rows where a person would stand (bottom of the box), 0-1 of the frame height.

        Returns:
            The heights, an array shaped like `rows_norm`, floored at `min_frac` and at a quarter of the largest
            one; None while fewer than `min_samples` boxes were added (and no `fixed_frac` is set).
        """
        coefficients = self._coefficients()
        if coefficients is None:
            return None
        intercept, slope = coefficients
        heights = intercept + slope * np.asarray(rows_norm, dtype=float)
        floor = max(self.min_frac, 0.25 * float(np.max(heights)))  # a bad fit must not blow up far rows
        return np.maximum(heights, floor)

    def __len__(self) -> int:
        return len(self.samples)


def row_centres(rows: int) -> np.ndarray:
    """The normalised centre of each pixel row.

    Args:
        rows: the image's height, pixels.

    Returns:
        (rows,) floats, (i + 0.5) / rows.
    """
    return (np.arange(rows, dtype=float) + 0.5) / rows


class ForegroundModel:
    """What is not empty background, on a small frame: MOG2 foreground (shadows excluded) united with
    *activity*, pixels whose grey level ranged more than `activity_threshold` over the last
    `activity_s` seconds.

    MOG2 alone misses a crowd that was already there when the model started (it becomes the
    background: a surge filmed from its first second has no empty frame to learn from); activity
    alone misses people standing still. Activity also covers the area a walker swept in
    `activity_s`, so sparse scenes read larger than their people: the per-camera coefficient that
    turns person-equivalents into a head count absorbs that (see `runner.tools.crowd_calibrate`).
    `history_s` is MOG2's memory: a crowd standing still that long becomes background.
    """

    def __init__(
        self,
        width_px: int = 192,
        history_s: float = 60.0,
        process_fps: float = 5.0,
        var_threshold: float = 16.0,
        activity_s: float = 1.0,
        activity_threshold: int = 12,
    ):
        self.width_px = width_px
        history = max(10, int(round(history_s * process_fps)))
        self._model = cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=var_threshold, detectShadows=True
        )
        self._kernel = np.ones((3, 3), dtype=np.uint8)
        self.activity_s = activity_s
        self.activity_threshold = activity_threshold
        self._recent: deque[tuple[float, np.ndarray]] = deque(maxlen=max(2, int(round(activity_s * 30)) + 1))
        self.frames = 0

    def apply(self, image: np.ndarray, t_s: float) -> np.ndarray:
        """Boolean foreground mask of `image` downscaled to `width_px` (an image that small already, such as
        `FrameContext.downscaled(width_px)`, is used as it is).

        Args:
            image: the frame, BGR.
            t_s: the frame's stream time, seconds (for the activity window).

        Returns:
            (rows, cols) bool mask at the small frame's size: MOG2 foreground or recent activity, opened 3x3.
        """
        small = small_frame(image, self.width_px)
        mog = self._model.apply(small) == 255
        level = cv2.GaussianBlur(grey(small), (3, 3), 0)
        while self._recent and (
            t_s - self._recent[0][0] > self.activity_s + 1e-6 or self._recent[0][1].shape != level.shape
        ):
            self._recent.popleft()
        self._recent.append((t_s, level))
        if len(self._recent) >= 2:
            stack = np.stack([f for _, f in self._recent])
            active = (stack.max(axis=0).astype(np.int16) - stack.min(axis=0)) > self.activity_threshold
        else:
            active = np.zeros_like(mog)
        self.frames += 1
        fg = (mog | active).astype(np.uint8)
        return cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._kernel).astype(bool)


def person_weights(scale: PersonScale, shape: tuple[int, int], aspect: float) -> np.ndarray | None:
    """Per-row weight (rows, 1): 1 / (area of one person, in small-frame pixels) at that row.

    Args:
        scale: the camera's person height model.
        shape: (rows, cols) of the small frame, pixels.
        aspect: a person's width over height.

    Returns:
        (rows, 1) weights, or None while `scale` has no fit.
    """
    rows, cols = shape
    heights = scale.height_frac(row_centres(rows))
    if heights is None:
        return None
    height_px = heights * rows
    return (1.0 / (aspect * height_px * height_px)).reshape(rows, 1)


def person_equivalents(mask: np.ndarray, zone: np.ndarray, weights: np.ndarray) -> float:
    """Sum over the zone's foreground of 1 / person area: people the foreground would hold.

    Args:
        mask: (rows, cols) bool foreground.
        zone: (rows, cols) bool zone mask.
        weights: (rows, 1) per-row weights from `person_weights`.

    Returns:
        The person-equivalents (not rounded).
    """
    return float(((mask & zone) * weights).sum())


class FlowField:
    """Farneback flow between consecutive processed frames, in small-frame pixels per second."""

    def __init__(self, width_px: int = 160, max_gap_s: float = 1.0):
        self.width_px = width_px
        self.max_gap_s = max_gap_s
        self._previous: np.ndarray | None = None
        self._previous_t: float | None = None

    def update(self, image: np.ndarray, t_s: float) -> np.ndarray | None:
        """(rows, cols, 2) flow in pixels/second of the small frame, None on the first frame or after a gap
        (`image` is downscaled to `width_px` unless it is that small already).

        Args:
            image: the frame, BGR or grey.
            t_s: the frame's stream time, seconds.

        Returns:
            The flow from the previous frame to this one, or None on the first frame, after a change of size,
            when time did not advance or after more than `max_gap_s`.
        """
        current = cv2.GaussianBlur(grey(small_frame(image, self.width_px)), (3, 3), 0)
        previous, previous_t = self._previous, self._previous_t
        self._previous, self._previous_t = current, t_s
        if previous is None or previous_t is None or previous.shape != current.shape:
            return None
        dt = t_s - previous_t
        if dt <= 0.0 or dt > self.max_gap_s:
            return None
        # flow=None makes OpenCV allocate the output; its stubs list no None.
        flow = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
            previous, current, None, pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1, flags=0
        )
        return flow / dt

    def reset(self) -> None:
        self._previous, self._previous_t = None, None
