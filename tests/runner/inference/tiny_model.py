"""What the inference tests share: the tiny model's input size and real frames to run it on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
IMGSZ = 320


def vtest_frames(count: int, step: int = 25) -> list[np.ndarray]:
    """`count` frames of OpenCV's 768x576 pedestrian clip, one every `step`; skips the test without it."""
    capture = cv2.VideoCapture(str(VTEST))
    frames = []
    for index in range(count * step):
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(frame)
    capture.release()
    if len(frames) < count:
        pytest.skip(f"{VTEST} not readable")
    return frames
