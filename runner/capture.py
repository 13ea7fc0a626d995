"""Camera capture: files and RTSP streams, frame stride to `process_fps`, reconnection with backoff.

Only the frames that will be analysed are decoded (`grab()` every frame, `retrieve()` the chosen
ones). Timestamps come from the stream: a file's frame number / fps (so a replay behaves like live,
only faster), a live stream's presentation time, kept monotonic across reconnects.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from runner.config.loading import redact
from runner.errors import SourceError

log = logging.getLogger(__name__)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
EventCallback = Callable[[str, dict], None]
_DUE_TOLERANCE_S = 1e-3  # a frame due "now" is not skipped for a rounding error in its time stamp


@dataclass(frozen=True)
class Frame:
    camera_id: str
    index: int  # frame number in the source
    t_s: float  # stream time, seconds, monotonic for the camera
    wall_time: datetime  # aware UTC time the frame stands for
    image: np.ndarray  # BGR
    # When the frame came out of the source (time.monotonic), for the alert latency: set at construction,
    # which the capture loop does right after retrieving the image.
    read_mono: float = field(default_factory=time.monotonic, compare=False, repr=False)


def is_stream(uri: str) -> bool:
    return uri.lower().startswith(STREAM_SCHEMES)


def resolve_source(uri: str, base_dir: Path) -> str:
    """A relative file path is looked up next to the config file first, then in the working directory."""
    if is_stream(uri) or Path(uri).is_absolute():
        return uri
    beside_config = base_dir / uri
    return str(beside_config) if beside_config.exists() else uri


@dataclass
class Backoff:
    """Capped exponential backoff: 1, 2, 4 ... max_s seconds."""

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.initial_s

    def next_delay(self) -> float:
        delay, self._next = self._next, min(self.max_s, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


def open_capture(uri: str, stream: bool, timeout_s: float = 10.0):
    """Open with FFmpeg; for streams, bounded open and read times so a stalled server is noticed."""
    if stream:
        timeout_ms = int(timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(uri, cv2.CAP_FFMPEG)


class VideoSource:
    """Iterates the frames to analyse for one camera. Never raises for a live stream's outages:
    it reports `camera_degraded` / `camera_recovered` through `on_event` and keeps retrying."""

    def __init__(
        self,
        camera_id: str,
        uri: str,
        process_fps: float,
        *,
        realtime: bool = False,
        loop: bool = False,
        on_event: EventCallback | None = None,
        opener: Callable[[str, bool], object] | None = None,
        backoff: Backoff | None = None,
        stall_timeout_s: float = 10.0,
        start_wall_time: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.camera_id = camera_id
        self.uri = uri
        self.safe_uri = redact(uri)
        self.stream = is_stream(uri)
        self.period_s = 1.0 / process_fps
        self.realtime = realtime
        self.loop = loop
        self.on_event = on_event or (lambda kind, details: None)
        self.opener = opener or partial(open_capture, timeout_s=stall_timeout_s)
        self.backoff = backoff or Backoff()
        self.stall_timeout_s = stall_timeout_s
        self.start_wall_time = start_wall_time
        self.monotonic = monotonic  # injectable: tests drive stream time and backoff without sleeping
        self.frames_read = 0
        self.frames_bad = 0
        self.decode_s = 0.0  # cumulative grab + retrieve time (for a stream it includes waiting for frames)
        self.restarts = 0  # loops of a file / reconnects of a stream: the pipeline resets its state
        self._degraded_since: float | None = None

    # -- opening -------------------------------------------------------------------------------
    def _open_file(self):
        path = Path(self.uri)
        if not path.exists():
            raise SourceError(f"camera {self.camera_id}: source file not found: {self.safe_uri}")
        if path.is_dir():
            raise SourceError(f"camera {self.camera_id}: source is a directory, not a video: {self.safe_uri}")
        if path.stat().st_size == 0:
            raise SourceError(f"camera {self.camera_id}: source file is empty: {self.safe_uri}")
        cap = self.opener(self.uri, False)
        if not cap.isOpened():
            raise SourceError(f"camera {self.camera_id}: cannot decode {self.safe_uri} (not a video or unsupported codec)")
        return cap

    def _mark_degraded(self, reason: str) -> None:
        if self._degraded_since is None:
            self._degraded_since = self.monotonic()
            self.on_event("camera_degraded", {"reason": reason, "source": self.safe_uri})

    def _mark_recovered(self) -> None:
        if self._degraded_since is not None:
            downtime_s = self.monotonic() - self._degraded_since
            self._degraded_since = None
            self.on_event("camera_recovered", {"downtime_s": round(downtime_s, 2)})

    def _open_stream(self, stop: threading.Event):
        while not stop.is_set():
            cap, reason = None, "cannot open stream"
            try:
                cap = self.opener(self.uri, True)
                if cap is not None and cap.isOpened():
                    return cap
            except Exception as exc:  # an opener that raises is one more failed attempt, never a crash
                reason = f"cannot open stream ({type(exc).__name__})"
            if cap is not None:
                cap.release()
            self._mark_degraded(reason)
            delay = self.backoff.next_delay()
            log.warning("camera %s: %s %s, retrying in %.2f s", self.camera_id, reason, self.safe_uri, delay)
            stop.wait(delay)
        return None

    # -- reading -------------------------------------------------------------------------------
    def _timed(self, call):
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.decode_s += time.perf_counter() - started

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        stop = stop or threading.Event()
        if self.stream:
            yield from self._stream_frames(stop)
        else:
            yield from self._file_frames(stop)

    def _file_frames(self, stop: threading.Event) -> Iterator[Frame]:
        start_wall = self.start_wall_time or datetime.now(UTC)
        start_mono = self.monotonic()
        t_offset_s, index_offset = 0.0, 0
        while not stop.is_set():
            cap = self._open_file()
            fps = cap.get(cv2.CAP_PROP_FPS)
            fps = fps if 1.0 <= fps <= 1000.0 else 25.0
            next_due_s, frame_no, last_t = t_offset_s, -1, t_offset_s
            try:
                while not stop.is_set():
                    if not self._timed(cap.grab):
                        break
                    frame_no += 1
                    self.frames_read += 1
                    t_s = t_offset_s + frame_no / fps
                    last_t = t_s
                    if t_s < next_due_s - 0.5 / fps:
                        continue
                    next_due_s = max(next_due_s + self.period_s, t_s + 0.5 / fps)
                    ok, image = self._timed(cap.retrieve)
                    if not ok or image is None or image.size == 0:
                        self.frames_bad += 1
                        continue
                    if self.realtime:
                        delay = t_s - (self.monotonic() - start_mono)
                        if delay > 0 and stop.wait(delay):
                            return
                    yield Frame(self.camera_id, index_offset + frame_no, t_s, start_wall + timedelta(seconds=t_s), image)
            finally:
                cap.release()
            if stop.is_set():
                return  # stopped by the runner: the source did not end
            if frame_no < 0 and self.frames_read == 0:
                raise SourceError(f"camera {self.camera_id}: no frame could be read from {self.safe_uri}")
            if not self.loop or frame_no < 0:
                self.on_event("source_ended", {"frames": self.frames_read, "bad_frames": self.frames_bad})
                return
            self.restarts += 1
            t_offset_s = last_t + 1.0 / fps
            index_offset += frame_no + 1

    def _stream_frames(self, stop: threading.Event) -> Iterator[Frame]:
        clock_origin = self.monotonic()
        last_t = -math.inf
        next_due_s = -math.inf
        index = -1
        while not stop.is_set():
            cap = self._open_stream(stop)
            if cap is None:
                return
            pts_offset = None
            last_frame_mono = self.monotonic()
            try:
                while not stop.is_set():
                    try:
                        grabbed = self._timed(cap.grab)
                    except Exception as exc:  # a decoder error is an outage like any other
                        grabbed, reason = False, f"read error ({type(exc).__name__})"
                    else:
                        reason = "stream ended or stalled"
                    if not grabbed:
                        break
                    now = self.monotonic()
                    if now - last_frame_mono > self.stall_timeout_s:
                        # FFmpeg's read timeout fired inside grab(), which may still hand back a frame its
                        # decoder held; the connection is dead by then: reconnect now rather than after
                        # two or three more timeouts.
                        reason = f"stream stalled ({now - last_frame_mono:.1f} s without frames)"
                        break
                    self._mark_recovered()
                    self.backoff.reset()
                    index += 1
                    self.frames_read += 1
                    pts_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    arrival_s = now - clock_origin
                    if pts_offset is None or not math.isfinite(pts_s) or pts_s <= 0:
                        pts_offset = arrival_s - (pts_s if math.isfinite(pts_s) and pts_s > 0 else 0.0)
                    t_s = pts_s + pts_offset if math.isfinite(pts_s) and pts_s > 0 else arrival_s
                    if t_s <= last_t:  # a server restarting its clock: keep stream time monotonic
                        pts_offset += last_t - t_s + 1e-3
                        t_s = last_t + 1e-3
                    last_t = t_s
                    last_frame_mono = now
                    if t_s < next_due_s - _DUE_TOLERANCE_S:
                        continue
                    # Keep the average rate; after a gap (first frame, outage) restart the schedule here.
                    late = t_s - next_due_s > self.period_s
                    next_due_s = t_s + self.period_s if late else next_due_s + self.period_s
                    ok, image = self._timed(cap.retrieve)
                    if not ok or image is None or image.size == 0:
                        self.frames_bad += 1
                        continue
                    yield Frame(self.camera_id, index, t_s, datetime.now(UTC), image)
                else:
                    return
            finally:
                cap.release()
            self.restarts += 1
            self._mark_degraded(reason)
            delay = self.backoff.next_delay()
            log.warning("camera %s: %s, reconnecting in %.2f s", self.camera_id, reason, delay)
            stop.wait(delay)
