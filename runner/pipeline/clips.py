"""The short clip stored with each alert: a few seconds before and after it, from the masked frames.

A `ClipRecorder` keeps the last seconds of a camera's masked frames (downscaled) in memory; once an
alert is stored, it follows it until `after_s` seconds of stream time have passed, then hands back
the frames, which `encode_clip` turns into an H.264 MP4 (PyAV's libx264: every browser plays it, no
plug-in, no CDN). The frames are those the detectors and the snapshot saw: privacy masks are already
applied, so a clip shows nothing a snapshot would not.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

CLIP_BEFORE_S = 3.0
CLIP_AFTER_S = 3.0
CLIP_MAX_WIDTH_PX = 640
# Frames kept beyond before_s, for an alert the writer stores late: memory per camera is about
# (before_s + this) x fps x the downscaled frame, i.e. 5 s x 5 fps x 640x360x3 B = 17 MB.
WRITER_LAG_MARGIN_S = 2.0
CLIP_CRF = 28  # H.264 quality (lower is better and bigger); 28 keeps a 6 s, 5 fps clip around 100 kB
CLIP_EXTENSION = "mp4"
CLIP_MEDIA_TYPE = "video/mp4"
_TIME_BASE = Fraction(1, 1000)  # frame times in milliseconds: the stream's own timing, gaps included


@dataclass(frozen=True)
class TimedFrame:
    t_s: float
    image: np.ndarray  # BGR, already masked and downscaled


@dataclass(frozen=True)
class FinishedClip:
    alert_id: int
    frames: list[TimedFrame]


@dataclass(frozen=True)
class EncodedClip:
    data: bytes
    frames: int
    duration_s: float
    encode_s: float
    extension: str = CLIP_EXTENSION
    media_type: str = CLIP_MEDIA_TYPE


class ClipRecorder:
    """One camera's recent frames, and the alerts whose clip is still being filled. Thread-safe: `follow`
    may be called from the writer's thread while the analysis thread calls `observe`."""

    def __init__(
        self, before_s: float = CLIP_BEFORE_S, after_s: float = CLIP_AFTER_S, max_width_px: int = CLIP_MAX_WIDTH_PX
    ):
        """An empty recorder.

        Args:
            before_s: seconds of stream before an alert that its clip starts with.
            after_s: seconds of stream after it that its clip ends with.
            max_width_px: frames are downscaled to this width (aspect kept, even sizes for H.264).
        """
        if before_s < 0 or after_s < 0 or max_width_px < 16:
            raise ValueError(
                f"clip: before_s and after_s >= 0, max_width_px >= 16, not {before_s}, {after_s}, {max_width_px}"
            )
        self.before_s, self.after_s, self.max_width_px = before_s, after_s, max_width_px
        self._recent: deque[TimedFrame] = deque()
        self._following: dict[int, tuple[float, list[TimedFrame]]] = {}  # alert id -> (alert t_s, frames)
        self._lock = threading.Lock()

    def observe(self, t_s: float, image: np.ndarray) -> list[FinishedClip]:
        """Keep a frame, and hand back the clips it completes.

        Args:
            t_s: the frame's stream time.
            image: its masked BGR image (copied, downscaled).

        Returns:
            The clips whose `after_s` have now passed, oldest alert first.
        """
        frame = TimedFrame(t_s, self._downscale(image))
        with self._lock:
            self._recent.append(frame)
            # Kept: before_s, plus a margin for alerts stored late (the writer may lag behind the analysis).
            while self._recent and self._recent[0].t_s < t_s - self.before_s - WRITER_LAG_MARGIN_S:
                self._recent.popleft()
            finished = []
            for alert_id, (alert_t_s, frames) in list(self._following.items()):
                frames.append(frame)
                if t_s >= alert_t_s + self.after_s:
                    finished.append(FinishedClip(alert_id, frames))
                    del self._following[alert_id]
        return finished

    def follow(self, alert_id: int, alert_t_s: float) -> None:
        """Start an alert's clip from the frames already kept since `alert_t_s - before_s`.

        Args:
            alert_id: the stored alert.
            alert_t_s: its stream time.
        """
        with self._lock:
            kept = [f for f in self._recent if f.t_s >= alert_t_s - self.before_s]
            self._following[alert_id] = (alert_t_s, kept)

    def flush(self) -> list[FinishedClip]:
        """The clips still being filled, as they are (the stream ended or restarted), and forget the frames.

        Returns:
            The unfinished clips that hold at least one frame.
        """
        with self._lock:
            finished = [FinishedClip(i, frames) for i, (_, frames) in self._following.items() if frames]
            self._following.clear()
            self._recent.clear()
        return finished

    def _downscale(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_width_px / width)
        size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        if size == (width, height):
            return image.copy()
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_clip(frames: Sequence[TimedFrame], crf: int = CLIP_CRF) -> EncodedClip:
    """H.264 MP4 (yuv420p, fragmented so that a browser starts playing at once) of timed frames.

    Args:
        frames: the clip's frames, in time order, all of one size with even sides.
        crf: libx264's constant rate factor.

    Returns:
        The encoded clip, with its frame count, duration and encoding time.

    Raises:
        ValueError: no frames, or frames of different sizes.
    """
    import av  # imported here: only a pipeline that stores clips pays for it

    if not frames:
        raise ValueError("clip: no frames to encode")
    height, width = frames[0].image.shape[:2]
    if any(f.image.shape[:2] != (height, width) for f in frames):
        raise ValueError("clip: frames of different sizes (the stream changed resolution)")
    started = time.perf_counter()
    buffer = io.BytesIO()
    # Fragmented (moov first, then fragments): playable as it loads, and written in one pass to memory.
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    with av.open(buffer, mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=max(1, round(_mean_fps(frames))))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = _TIME_BASE
        stream.options = {"crf": str(crf), "preset": "veryfast", "profile": "baseline"}
        last_pts = -1
        for frame in frames:
            pts = max(last_pts + 1, round((frame.t_s - frames[0].t_s) / _TIME_BASE))
            video_frame = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
            video_frame.pts, video_frame.time_base, last_pts = pts, _TIME_BASE, pts
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    duration_s = frames[-1].t_s - frames[0].t_s + 1.0 / max(1.0, _mean_fps(frames))
    return EncodedClip(buffer.getvalue(), len(frames), round(duration_s, 3), time.perf_counter() - started)


def decode_clip(data: bytes) -> list[np.ndarray]:
    """The frames of an encoded clip (tests, checks), BGR.

    Args:
        data: an encoded clip.

    Returns:
        Its frames, in order.
    """
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def _mean_fps(frames: Sequence[TimedFrame]) -> float:
    span_s = frames[-1].t_s - frames[0].t_s
    return (len(frames) - 1) / span_s if len(frames) > 1 and span_s > 0 else 5.0
