"""Privacy masks: static polygons blanked before analysis, so they can never reach a detector or a
stored image (snapshots are taken from the masked frame)."""

from __future__ import annotations

import cv2
import numpy as np

from runner.core.geometry import to_pixels


class PrivacyMasker:
    """A camera's privacy masks, drawn in black on every frame; false (as a bool) when it has none."""

    def __init__(self, polygons: list[list[tuple[float, float]]]):
        self.polygons = [list(p) for p in polygons]
        self._cache: dict[tuple[int, int], list[np.ndarray]] = {}

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def _pixel_polygons(self, width: int, height: int) -> list[np.ndarray]:
        key = (width, height)
        if key not in self._cache:
            # Resolution can change mid-stream: keep one entry per size seen (a handful at most).
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = [np.round(to_pixels(p, width, height)).astype(np.int32) for p in self.polygons]
        return self._cache[key]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Blank the masks in place (the frame belongs to the pipeline) and return the image.

        Args:
            image: the frame, BGR; modified in place.

        Returns:
            The same array, with every mask filled in black.
        """
        if self.polygons:
            height, width = image.shape[:2]
            cv2.fillPoly(image, self._pixel_polygons(width, height), (0, 0, 0))
        return image
