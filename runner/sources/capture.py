"""Camera capture: files and RTSP streams, frame stride to `process_fps`, reconnection with backoff.

Only the frames that will be analysed are converted to BGR (`grab()` every frame, `retrieve()` the
chosen ones); in H.264/HEVC files the frames that are neither analysed nor referenced by others are not
even decoded (`_SkippingFileReader`). Timestamps come from the stream: a file's frame number / fps (so a
replay behaves like live, only faster), a live stream's presentation time, kept monotonic across reconnects.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runner.config.loading import redact
from runner.core.errors import SourceError

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
    """Whether a source is a network stream rather than a file.

    Args:
        uri: the camera's source, ${ENV} already expanded.

    Returns:
        True when it starts with one of STREAM_SCHEMES (any case).
    """
    return uri.lower().startswith(STREAM_SCHEMES)


def resolve_source(uri: str, base_dir: Path) -> str:
    """A relative file path is looked up next to the config file first, then in the working directory.

    Args:
        uri: the camera's source: a stream URL or a file path.
        base_dir: the config file's folder.

    Returns:
        A stream or an absolute path unchanged; a relative path joined to `base_dir` when that file exists, else
        as given (relative to the working directory).
    """
    if is_stream(uri) or Path(uri).is_absolute():
        return uri
    beside_config = base_dir / uri
    return str(beside_config) if beside_config.exists() else uri


@dataclass
class Backoff:
    """Capped exponential backoff: 0.5, 1, 2, 4 ... max_s seconds.

    The cap bounds how late a stream is picked up once it is back: at most `max_s` plus one open (a
    camera that is away costs nothing while it waits, and nothing to the other cameras either: each has
    its own thread and its own timeouts)."""

    initial_s: float = 0.5
    max_s: float = 4.0
    factor: float = 2.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.initial_s

    def next_delay(self) -> float:
        """The wait before the next attempt, and the one after it grows by `factor` up to `max_s`.

        Returns:
            The delay, seconds.
        """
        delay, self._next = self._next, min(self.max_s, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


def open_capture(uri: str, stream: bool, timeout_s: float = 10.0) -> Any:
    """Open a file with OpenCV's FFmpeg, a stream with PyAV (`StreamCapture`), both read the same way.

    Streams do not go through OpenCV: its FFmpeg backend opens every capture of the process under one lock,
    so a camera that accepts the connection and never answers held every other camera's open and reconnect
    for its whole timeout. PyAV opens and reads each stream on its caller's thread, nothing shared.

    Args:
        uri: a file path or a stream URL.
        stream: whether `uri` is a stream (read through PyAV, with bounded open and read times).
        timeout_s: the open and read timeout for a stream, seconds.

    Returns:
        The capture, possibly not opened (callers check `isOpened()`; a stream's `error` then says why).
    """
    if stream:
        return StreamCapture.open(uri, timeout_s)
    return cv2.VideoCapture(uri, cv2.CAP_FFMPEG)


# RTSP answers FFmpeg maps to PyAV errors, with what the operator should look at.
_RTSP_ANSWERS = {
    "HTTPBadRequestError": "RTSP 400 Bad Request: check the stream URL",
    "HTTPUnauthorizedError": "RTSP 401 Unauthorized: check the credentials",
    "HTTPForbiddenError": "RTSP 403 Forbidden: this account may not view the stream",
    "HTTPNotFoundError": "RTSP 404 Not Found: check the stream path",
    "HTTPTooManyRequestsError": "RTSP 429 Too Many Requests: the camera refuses more viewers",
    "HTTPOtherClientError": "RTSP 4xx client error: the camera refused the request",
    "HTTPServerError": "RTSP 5xx server error: the camera's server failed",
}


def describe_open_error(exc: BaseException, elapsed_s: float, timeout_s: float) -> str:
    """One line for the health and the audit log saying why a stream did not open, never its URL.

    Args:
        exc: what PyAV (FFmpeg) raised.
        elapsed_s: how long the attempt took, seconds.
        timeout_s: the open timeout, seconds (an attempt that lasted it got no answer in time).

    Returns:
        e.g. "RTSP 401 Unauthorized: check the credentials", "no answer within 10 s", "connection refused".
    """
    for kind in type(exc).__mro__:
        if kind.__name__ in _RTSP_ANSWERS:
            return _RTSP_ANSWERS[kind.__name__]
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the camera (or its RTSP port) up?"
    if elapsed_s >= 0.9 * timeout_s:
        return f"no answer within {timeout_s:g} s"
    detail = getattr(exc, "strerror", None) or type(exc).__name__  # FFmpeg's text, without the URL PyAV adds
    return f"cannot open stream ({redact(str(detail))[:200]})"


class StreamCapture:
    """A live stream read through PyAV, with the part of OpenCV's capture interface the source uses
    (`isOpened`, `grab`, `retrieve`, `get(CAP_PROP_POS_MSEC)`, `release`). Each instance blocks only its
    own thread: PyAV lets go of the GIL in FFmpeg's open, read and decode calls."""

    def __init__(self, container: Any = None, error: str = ""):
        """A capture on an opened container, or an unopened one that says why.

        Args:
            container: the opened `av` input container; None when the open failed.
            error: why the open failed (one line, no URL).
        """
        self.error = error
        self._container = container
        self._frames: deque[Any] = deque()
        self._frame: Any = None
        if container is not None:
            self._stream = container.streams.video[0]
            self._packets = container.demux(self._stream)

    @classmethod
    def open(cls, uri: str, timeout_s: float) -> StreamCapture:
        """Open a stream (RTSP over TCP, as OpenCV did), giving up after `timeout_s` without an answer.

        Args:
            uri: the stream URL.
            timeout_s: the open and read timeout, seconds.

        Returns:
            The capture; unopened, with `error` set, when FFmpeg refused the stream or nothing answered.
        """
        import av

        started = time.monotonic()
        options = {"rtsp_transport": "tcp"} if uri.lower().startswith(("rtsp://", "rtsps://")) else {}
        try:
            # Half the read timeout: FFmpeg's RTSP demuxer gives up on a stalled server after about twice it
            # (measured on the loopback GStreamer server: 4.0 s for 2 s), so a stall is noticed after `timeout_s`.
            container = av.open(uri, timeout=(timeout_s, timeout_s / 2), options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            return cls(error=describe_open_error(exc, time.monotonic() - started, timeout_s))
        if not container.streams.video:
            container.close()
            return cls(error="the stream has no video")
        return cls(container)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name: the source reads files and streams alike
        """Whether the stream opened (and was not released since).

        Returns:
            True while frames can be grabbed.
        """
        return self._container is not None

    def grab(self) -> bool:
        """Decode the next frame.

        Returns:
            False when the stream ended, timed out or broke (as OpenCV's `grab`; `error` then says which).
        """
        import av

        while not self._frames:
            try:
                packet = next(self._packets, None)
            except (av.FFmpegError, OSError) as exc:
                self.error = "read timeout" if isinstance(exc, av.ExitError) else f"read error ({type(exc).__name__})"
                return False
            if packet is None:
                self.error = "stream ended"
                return False
            try:
                self._frames.extend(self._stream.codec_context.decode(packet))
            except av.InvalidDataError:
                continue  # a damaged packet (lost RTP packets): its frame is skipped, the stream goes on
        self._frame = self._frames.popleft()
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        """The grabbed frame as a BGR image.

        Returns:
            (True, image), or (False, None) before the first grab.
        """
        if self._frame is None:
            return False, None
        return True, self._frame.to_ndarray(format="bgr24")

    def get(self, prop: int) -> float:
        """A property of the grabbed frame: only `cv2.CAP_PROP_POS_MSEC` (its presentation time) is known.

        Args:
            prop: an OpenCV capture property id.

        Returns:
            The frame's presentation time in milliseconds; NaN when unknown or for another property.
        """
        if prop != cv2.CAP_PROP_POS_MSEC or self._frame is None or self._frame.time is None:
            return math.nan
        return float(self._frame.time) * 1000.0

    def release(self) -> None:
        """Close the stream (idempotent)."""
        container, self._container = self._container, None
        if container is not None:
            container.close()


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
        opener: Callable[[str, bool], Any] | None = None,
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
        # An injected opener (tests, other backends) is used for files too; only the default may take PyAV.
        self._default_opener = opener is None
        self.backoff = backoff or Backoff()
        self.stall_timeout_s = stall_timeout_s
        self.start_wall_time = start_wall_time
        self.monotonic = monotonic  # injectable: tests drive stream time and backoff without sleeping
        self.frames_read = 0
        self.frames_decoded = 0  # a file's frames decoded (the others were neither analysed nor referenced)
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
            raise SourceError(
                f"camera {self.camera_id}: cannot decode {self.safe_uri} (not a video or unsupported codec)"
            )
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
                reason = redact(getattr(cap, "error", "") or reason)
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
        """The frames to analyse, one per `process_fps` period of stream time.

        Args:
            stop: set by the runner to end the iteration; None iterates until the source ends.

        Yields:
            Frames with a monotonic stream time; a live stream's outages never end the iteration (it reconnects).

        Raises:
            SourceError: for a file that is missing, empty, a directory, undecodable or yields no frame.
        """
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
            reader = self._open_file_reader()
            schedule = DueFrames(reader.fps, self.period_s, t_offset_s)
            analysed = 0
            try:
                for frame_no, image in reader.frames(schedule, stop):
                    if image is None or image.size == 0:
                        self.frames_bad += 1
                        continue
                    analysed += 1
                    t_s = schedule.t_s(frame_no)
                    if self.realtime:
                        delay = t_s - (self.monotonic() - start_mono)
                        if delay > 0 and stop.wait(delay):
                            return
                    yield Frame(
                        self.camera_id, index_offset + frame_no, t_s, start_wall + timedelta(seconds=t_s), image
                    )
            finally:
                reader.close()
            if stop.is_set():
                return  # stopped by the runner: the source did not end
            frame_no = reader.last_frame_no
            if frame_no < 0 and self.frames_read == 0:
                raise SourceError(f"camera {self.camera_id}: no frame could be read from {self.safe_uri}")
            self._check_complete(reader, analysed)
            if not self.loop or frame_no < 0:
                self.on_event("source_ended", {"frames": self.frames_read, "bad_frames": self.frames_bad})
                return
            self.restarts += 1
            t_offset_s = schedule.t_s(frame_no) + 1.0 / reader.fps
            index_offset += frame_no + 1

    def _check_complete(self, reader, analysed: int) -> None:
        """A file that decodes far fewer frames than its header declares (a damaged header or index, a cut)
        is analysed only in part: said through `source_damaged`, so that the run does not look complete."""
        declared = max(reader.declared_frames, reader.last_frame_no + 1)
        schedule = DueFrames(reader.fps, self.period_s)
        due = sum(1 for frame_no in range(declared) if schedule.is_due(frame_no))
        if analysed >= due - max(1, due // 10):  # a frame or two lost at the end is not damage
            return
        message = (
            f"decoded {analysed} of the {due} frames due in the {declared} frames {Path(self.safe_uri).name} "
            f"declares: damaged or truncated file, the analysis is partial"
        )
        log.warning("camera %s: %s", self.camera_id, message)
        self.on_event("source_damaged", {"reason": message, "analysed": analysed, "due": due, "declared": declared})

    def _open_file_reader(self):
        """PyAV for H.264/HEVC in MP4/MOV/MKV (frames that are neither analysed nor referenced are not
        decoded at all), OpenCV's FFmpeg for the rest (and for an injected opener)."""
        if self._default_opener:
            reader = _SkippingFileReader.open(self.uri, self)
            if reader is not None:
                return reader
        return _OpenCvFileReader(self._open_file(), self)

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


class DueFrames:
    """Which frame numbers of a file are analysed: the first frame at or after each `period_s` step (within
    half a frame). Asked in any order (a decoder meets frames in decode order), it answers as if the frames
    had been met one by one in display order, so every reader analyses the same frames."""

    KEPT = 256  # due frame numbers remembered (a decoder asks at most a few dozen frames back)

    def __init__(self, fps: float, period_s: float, t_offset_s: float = 0.0):
        self.fps, self.period_s, self.t_offset_s = fps, period_s, t_offset_s
        self._next_due_s = t_offset_s
        self._simulated = -1
        self._due: set[int] = set()

    def t_s(self, frame_no: int) -> float:
        """A frame's stream time.

        Args:
            frame_no: the frame's number in the file (from 0).

        Returns:
            Its time in seconds, `t_offset_s` included.
        """
        return self.t_offset_s + frame_no / self.fps

    def is_due(self, frame_no: int) -> bool:
        """Whether a frame is one to analyse.

        Args:
            frame_no: the frame's number in the file; any order, but at most KEPT frames behind the highest asked.

        Returns:
            True for the first frame at or after each `period_s` step (within half a frame).
        """
        while self._simulated < frame_no:
            self._simulated += 1
            t_s = self.t_s(self._simulated)
            if t_s >= self._next_due_s - 0.5 / self.fps:
                self._due.add(self._simulated)
                self._next_due_s = max(self._next_due_s + self.period_s, t_s + 0.5 / self.fps)
        if len(self._due) > self.KEPT:
            self._due = {n for n in self._due if n > self._simulated - self.KEPT}
        return frame_no in self._due


_COUNTING_CONTAINERS = frozenset({".avi", ".mp4", ".mov", ".m4v"})


class _OpenCvFileReader:
    """Every frame grabbed (decoded), only the due ones retrieved (converted to BGR)."""

    def __init__(self, cap, source: VideoSource):
        self.cap, self.source = cap, source
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 1000.0 else 25.0
        self.last_frame_no = -1
        # Trusted only from containers whose header counts frames (elsewhere FFmpeg guesses from the bit rate).
        counted = Path(source.uri).suffix.lower() in _COUNTING_CONTAINERS
        self.declared_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)) if counted else 0

    def frames(self, schedule: DueFrames, stop: threading.Event) -> Iterator[tuple[int, np.ndarray | None]]:
        while not stop.is_set():
            if not self.source._timed(self.cap.grab):
                return
            self.last_frame_no += 1
            self.source.frames_read += 1
            self.source.frames_decoded += 1
            if schedule.is_due(self.last_frame_no):
                ok, image = self.source._timed(self.cap.retrieve)
                yield self.last_frame_no, image if ok else None

    def close(self) -> None:
        self.cap.release()


class _SkippingFileReader:
    """H.264/HEVC through PyAV, told before each packet whether its frame is due: a frame that is neither
    analysed nor a reference for others (most B-frames) is not decoded at all (`skip_frame` NONREF), which
    spares a third to a half of the decoding at 5 analysed frames per second of a 25-60 fps file.

    A frame's number is its rank in presentation order (how many frames of the file show before it), as
    OpenCV's reader counts them: exact when the decoder hands the frame out (frames come out in that
    order), and, for a packet, among the packets read so far, which is exact for a frame nothing refers
    to (it is decoded just before it shows). So the frames analysed are OpenCV's, pixel for pixel
    (tests/runner/sources/test_capture.py compares them on the real clips)."""

    CODECS = frozenset({"h264", "hevc"})
    CONTAINERS = ("mov", "mp4", "matroska")  # a time stamp on every packet (not AVI)

    def __init__(self, container, stream, source: VideoSource):
        self.container, self.stream, self.source = container, stream, source
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate and 1.0 <= float(rate) <= 1000.0 else 25.0
        self.last_frame_no = -1
        self.declared_frames = max(0, int(stream.frames or 0))  # the sample table's count (0 when unknown)
        self._shown = 0  # frames handed out by the decoder, or skipped before them
        self._pending: list[int] = []  # sorted time stamps of the packets read whose frames are not out yet

    @classmethod
    def open(cls, uri: str, source: VideoSource) -> _SkippingFileReader | None:
        """The reader, or None when the file is not one it handles (OpenCV's reader then opens it, and
        reports what is wrong with it)."""
        import av

        try:
            container = av.open(uri)
        except (av.FFmpegError, OSError, ValueError):
            return None
        streams = container.streams.video
        context = streams[0].codec_context if streams else None  # None: a codec FFmpeg does not know
        usable = getattr(context, "name", None) in cls.CODECS and any(
            name in container.format.name for name in cls.CONTAINERS
        )
        if not usable:
            container.close()
            return None
        return cls(container, streams[0], source)

    def _rank(self, pts: int) -> int:
        return self._shown + bisect.bisect_left(self._pending, pts)

    def _shown_up_to(self, pts: int) -> None:
        """The decoder handed out the frame at `pts`: it and every frame before it are done."""
        done = bisect.bisect_right(self._pending, pts)
        self._shown += done
        del self._pending[:done]

    def frames(self, schedule: DueFrames, stop: threading.Event) -> Iterator[tuple[int, np.ndarray | None]]:
        import av

        context = self.stream.codec_context
        packets = self.container.demux(self.stream)
        while not stop.is_set():
            try:
                packet = self.source._timed(lambda: next(packets, None))
            except av.FFmpegError:
                self.source.frames_bad += 1
                return  # a broken container: the file ends here, as OpenCV's reader would
            if packet is None:
                return
            if packet.pts is not None and packet.size:
                self.source.frames_read += 1
                bisect.insort(self._pending, packet.pts)
                frame_no = self._rank(packet.pts)
                self.last_frame_no = max(self.last_frame_no, self._shown + len(self._pending) - 1)
                context.skip_frame = "DEFAULT" if schedule.is_due(frame_no) else "NONREF"
            else:  # the flush at the end: every frame still held comes out
                context.skip_frame = "DEFAULT"
            try:
                decoded = self.source._timed(lambda: context.decode(packet))
            except av.FFmpegError:
                self.source.frames_bad += 1
                continue
            for frame in decoded:
                self.source.frames_decoded += 1
                if frame.pts is None:
                    continue
                frame_no = self._rank(frame.pts)
                self._shown_up_to(frame.pts)
                if schedule.is_due(frame_no):
                    yield frame_no, self.source._timed(lambda: frame.to_ndarray(format="bgr24"))

    def close(self) -> None:
        self.container.close()
