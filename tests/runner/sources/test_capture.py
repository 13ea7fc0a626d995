"""Capture: stride to process_fps, stream time stamps, errors, looping, reconnection with backoff."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from runner.core.errors import SourceError
from runner.sources.capture import Backoff, VideoSource, is_stream, resolve_source
from tests.helpers import make_video


class World:
    """A fake monotonic clock; waiting on the stop event advances it instead of sleeping."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now


class Stop(threading.Event):
    def __init__(self, world: World):
        super().__init__()
        self.world = world

    def wait(self, timeout=None):
        self.world.waits.append(timeout)
        self.world.now += timeout or 0.0
        return self.is_set()


def collect(source: VideoSource, n: int | None = None, stop: threading.Event | None = None) -> list:
    stop = stop or threading.Event()
    frames = []
    for frame in source.frames(stop):
        frames.append(frame)
        if n is not None and len(frames) >= n:
            stop.set()
    return frames


# -- files ---------------------------------------------------------------------------------------------
STRIDE = [
    # (source fps, frames in clip, process_fps, expected frame numbers)
    (10, 10, 5, [0, 2, 4, 6, 8]),
    (10, 10, 10, list(range(10))),
    (10, 10, 30, list(range(10))),  # more than the source has: every frame
    (10, 11, 2.5, [0, 4, 8]),
    (10, 10, 3, [0, 3, 7]),
    (25, 50, 5, list(range(0, 50, 5))),
]


@pytest.mark.parametrize(("fps", "n_frames", "process_fps", "expected"), STRIDE)
def test_file_stride(tmp_path, fps, n_frames, process_fps, expected):
    clip = make_video(tmp_path / "clip.avi", n_frames, fps=fps, size=(64, 48))
    start = datetime(2025, 5, 13, 8, 0, tzinfo=UTC)
    events = []
    source = VideoSource(
        "cam-01", str(clip), process_fps, start_wall_time=start, on_event=lambda k, d: events.append((k, d))
    )
    frames = collect(source)
    assert [f.index for f in frames] == expected
    assert [f.t_s for f in frames] == pytest.approx([i / fps for i in expected])
    assert [f.wall_time for f in frames] == [start + timedelta(seconds=f.t_s) for f in frames]
    assert all(f.camera_id == "cam-01" and f.image.shape == (48, 64, 3) for f in frames)
    assert source.frames_read == n_frames
    assert events == [("source_ended", {"frames": n_frames, "bad_frames": 0})]


def make_h264(path, n_frames: int, fps: int = 25, size=(160, 96), bframes: int = 3, faststart: bool = False):
    """An MP4 with B-frames, as cameras and phones record (x264 through PyAV); each frame shows its number.
    `faststart`: the index before the frames (as streamed files have it)."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps, options={"bf": str(bframes), "g": "12", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n_frames):
            image = np.full((size[1], size[0], 3), 40, np.uint8)
            cv2.putText(image, str(i), (10, size[1] - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
            image[:, (i * 7) % size[0]] = (0, 0, 255)  # motion, so that frames differ
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def opencv_reader(camera_id: str, uri: str, process_fps: float, **options) -> VideoSource:
    """A source reading with OpenCV: an injected opener is used for files too (PyAV only for the default)."""
    from runner.sources.capture import open_capture

    return VideoSource(camera_id, uri, process_fps, opener=lambda uri, stream: open_capture(uri, stream), **options)


@pytest.mark.parametrize(("fps", "process_fps"), [(25, 5), (30, 7), (25, 25), (60, 5)])
def test_h264_files_skip_unreferenced_frames_and_analyse_what_opencv_analyses(tmp_path, fps, process_fps):
    clip = make_h264(tmp_path / "clip.mp4", 80, fps=fps)
    skipping = VideoSource("cam-01", str(clip), process_fps)
    reference = opencv_reader("cam-01", str(clip), process_fps)
    got, expected = collect(skipping), collect(reference)
    assert [(f.index, f.t_s) for f in got] == [(f.index, f.t_s) for f in expected] and len(got) > 1
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got, expected))  # the same pixels
    assert skipping.frames_read == reference.frames_read == 80
    if process_fps < fps:  # B-frames between the analysed frames are never decoded
        assert skipping.frames_decoded < 0.8 * reference.frames_decoded
    else:
        assert skipping.frames_decoded == 80


def test_an_h264_file_loops_with_the_frame_numbers_and_times_opencv_gives(tmp_path):
    clip = make_h264(tmp_path / "clip.mp4", 23, fps=10)
    got = collect(VideoSource("cam-01", str(clip), 5, loop=True), n=30)
    expected = collect(opencv_reader("cam-01", str(clip), 5, loop=True), n=30)
    assert [(f.index, round(f.t_s, 6)) for f in got] == [(f.index, round(f.t_s, 6)) for f in expected]
    assert got[12].index == 23 and got[12].t_s == pytest.approx(2.3)  # second loop: numbers and times go on


def test_a_truncated_h264_file_gives_the_frames_before_the_cut(tmp_path):
    clip = make_h264(tmp_path / "clip.mp4", 100, fps=25, size=(320, 192), faststart=True)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # a recording cut short: the index says 100 frames
    events = []
    source = VideoSource("cam-01", str(cut), 5, on_event=lambda k, d: events.append(k))
    frames = collect(source)
    assert events == ["source_damaged", "source_ended"] and 5 <= len(frames) < 20  # the cut is said
    assert [f.index for f in frames] == list(range(0, 5 * len(frames), 5))
    reference = collect(opencv_reader("cam-01", str(cut), 5))
    assert [f.index for f in frames] == [f.index for f in reference][: len(frames)]


@pytest.mark.parametrize(("realtime", "expected_waits"), [(False, []), (True, [0.2] * 4)])
def test_realtime_paces_file_frames_and_replay_does_not(tmp_path, realtime, expected_waits):
    clip = make_video(tmp_path / "clip.avi", 10, fps=10, size=(64, 48))
    world = World()
    source = VideoSource("cam-01", str(clip), 5, realtime=realtime, monotonic=world.monotonic)
    frames = collect(source, stop=Stop(world))
    assert len(frames) == 5
    assert world.waits == pytest.approx(expected_waits)


def test_stopping_a_file_is_not_its_end(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 10, fps=10, size=(64, 48))
    events = []
    source = VideoSource("cam-01", str(clip), 10, on_event=lambda k, d: events.append(k))
    assert len(collect(source, n=3)) == 3
    assert events == []


def test_loop_restarts_with_increasing_time(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 6, fps=10, size=(64, 48))
    events = []
    source = VideoSource("cam-01", str(clip), 10, loop=True, on_event=lambda k, d: events.append(k))
    frames = collect(source, n=15)
    assert [f.index for f in frames] == list(range(15))
    assert [f.t_s for f in frames] == pytest.approx([i / 10 for i in range(15)])
    assert source.restarts == 2
    assert events == []


def _bad_sources(tmp_path):
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "notes.avi").write_text("this is not a video\n" * 50)
    (tmp_path / "folder.avi").mkdir()
    return {
        "missing": (str(tmp_path / "absent.avi"), "source file not found"),
        "empty": (str(tmp_path / "empty.avi"), "source file is empty"),
        "not a video": (str(tmp_path / "notes.avi"), "not a video"),
        "directory": (str(tmp_path / "folder.avi"), "is a directory"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "not a video", "directory"])
def test_bad_file_source(tmp_path, case):
    uri, message = _bad_sources(tmp_path)[case]
    source = VideoSource("cam-07", uri, 5)
    with pytest.raises(SourceError) as error:
        collect(source)
    text = str(error.value)
    assert text.startswith("camera cam-07: ") and message in text and "\n" not in text


def test_source_helpers(tmp_path):
    assert is_stream("rtsp://cam/1") and is_stream("HTTPS://x") and not is_stream("/videos/a.mp4")
    (tmp_path / "clip.avi").write_bytes(b"x")
    assert resolve_source("clip.avi", tmp_path) == str(tmp_path / "clip.avi")
    assert resolve_source("other.avi", tmp_path) == "other.avi"
    assert resolve_source("rtsp://cam/1", tmp_path) == "rtsp://cam/1"


def test_backoff_is_capped_exponential():
    backoff = Backoff(initial_s=1, max_s=30)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.next_delay() == 1


# -- streams (fake opener) -----------------------------------------------------------------------------
class FakeCap:
    """A stream that delivers frames with the given presentation times (ms), then drops."""

    def __init__(self, world: World, pts_ms: list[float], value: int, frame_interval_s: float = 0.2):
        self.world, self.pending, self.value, self.interval = world, list(pts_ms), value, frame_interval_s
        self.current = 0.0
        self.released = False

    def isOpened(self):
        return True

    def grab(self):
        if not self.pending:
            return False
        self.world.now += self.interval
        self.current = self.pending.pop(0)
        return True

    def retrieve(self):
        return True, np.full((12, 16, 3), self.value, dtype=np.uint8)

    def get(self, prop):
        assert prop == cv2.CAP_PROP_POS_MSEC
        return self.current

    def release(self):
        self.released = True


class Closed(FakeCap):
    def __init__(self, world):
        super().__init__(world, [], 0)

    def isOpened(self):
        return False


class Opener:
    def __init__(self, world: World, script: list):
        self.world, self.script, self.calls = world, list(script), []

    def __call__(self, uri: str, stream: bool):
        self.calls.append((uri, stream))
        step = self.script.pop(0) if self.script else "fail"
        if step == "fail":
            return Closed(self.world)
        if step == "raise":
            raise RuntimeError(f"cannot reach {uri}")
        return step


SECRET_URI = "rtsp://admin:s3cret@10.0.0.7:554/live?token=t0k3n"


def stream_source(world, script, events, process_fps=30.0, **kw):
    opener = Opener(world, script)
    source = VideoSource(
        "cam-09",
        SECRET_URI,
        process_fps,
        on_event=lambda k, d: events.append((k, d)),
        opener=opener,
        backoff=Backoff(initial_s=0.01, max_s=0.04),
        monotonic=world.monotonic,
        **kw,
    )
    return source, opener


def test_stream_reconnects_with_capped_backoff(caplog):
    caplog.set_level(logging.DEBUG)
    world, events = World(), []
    first = FakeCap(world, [1000, 1200, 1400, 1600, 1800], value=1)
    second = FakeCap(world, [40, 240, 440, 640, 840], value=2)  # the server restarted its clock
    source, opener = stream_source(world, ["fail", "fail", "raise", "fail", first, "fail", second], events)
    frames = collect(source, n=10, stop=Stop(world))

    assert [int(f.image[0, 0, 0]) for f in frames] == [1] * 5 + [2] * 5
    # four failed opens (1, 2, 4, capped at 4 hundredths), a drop (reset: 1), one failed reopen (2)
    assert world.waits == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.01, 0.02])
    assert [k for k, _ in events] == ["camera_degraded", "camera_recovered", "camera_degraded", "camera_recovered"]
    assert events[0][1]["reason"] == "cannot open stream"
    assert events[2][1]["reason"] == "stream ended or stalled"
    assert events[1][1]["downtime_s"] == pytest.approx(0.11 + 0.2, abs=0.01)
    t = [f.t_s for f in frames]
    assert all(b > a for a, b in zip(t, t[1:]))
    assert [f.index for f in frames] == list(range(10))
    assert source.restarts == 1
    assert first.released and second.released
    assert all(uri == SECRET_URI and stream for uri, stream in opener.calls)
    # credentials never leave the source: not in events, not in logs
    text = json.dumps(events) + caplog.text
    assert "s3cret" not in text and "t0k3n" not in text
    assert events[0][1]["source"] == "rtsp://admin:***@10.0.0.7:554/live?token=***"


@pytest.mark.parametrize(
    ("source_fps", "process_fps", "step"), [(10, 5, 2), (30, 5, 6), (5, 5, 1), (7, 7, 1), (25, 2.5, 10)]
)
def test_stream_stride_uses_stream_time(source_fps, process_fps, step):
    world, events = World(), []
    interval = 1.0 / source_fps
    cap = FakeCap(world, [1234.5 + i * 1000.0 * interval for i in range(10 * step)], value=1, frame_interval_s=interval)
    source, _ = stream_source(world, [cap], events, process_fps=process_fps)
    frames = collect(source, n=10, stop=Stop(world))
    assert [f.index for f in frames] == list(range(0, 10 * step, step))
    assert np.diff([f.t_s for f in frames]) == pytest.approx([step * interval] * 9)
    assert events == []


def test_stream_time_stays_monotonic_when_pts_jump_back():
    world, events = World(), []
    cap = FakeCap(world, [5000, 5200, 5400, 100, 300, 500, 700], value=1)
    source, _ = stream_source(world, [cap], events, process_fps=30)
    frames = collect(source, n=6, stop=Stop(world))
    t = [f.t_s for f in frames]
    assert len(t) == 6 and all(b > a for a, b in zip(t, t[1:]))


def test_stream_stops_while_retrying():
    world, events = World(), []
    source, opener = stream_source(world, [], events)  # never opens

    class StopAfter(Stop):
        def wait(self, timeout=None):
            if len(self.world.waits) >= 5:
                self.set()
            return super().wait(timeout)

    assert collect(source, stop=StopAfter(world)) == []
    assert world.waits == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04, 0.04])
    assert [k for k, _ in events] == ["camera_degraded"]  # one event per outage, not per attempt


class StallingCap(FakeCap):
    """Delivers frames, then one grab that returns only after `stall_s` (FFmpeg's read timeout fired,
    yet its decoder still hands back a buffered frame)."""

    def __init__(self, world, pts_ms, value, stall_after: int, stall_s: float):
        super().__init__(world, pts_ms, value)
        self.stall_after, self.stall_s, self.grabs = stall_after, stall_s, 0

    def grab(self):
        self.grabs += 1
        if self.grabs == self.stall_after + 1:
            self.world.now += self.stall_s - self.interval
        return super().grab()


def test_a_grab_slower_than_the_stall_timeout_is_an_outage():
    world, events = World(), []
    stalled = StallingCap(world, [0, 200, 400, 600, 800, 1000], value=1, stall_after=3, stall_s=12.0)
    fresh = FakeCap(world, [0, 200, 400], value=2)
    source, opener = stream_source(world, [stalled, fresh], events, stall_timeout_s=10.0)
    frames = collect(source, n=6, stop=Stop(world))
    # the late frame and what followed on the dead connection are dropped; the reconnect delivers
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 1, 1, 2, 2, 2]
    assert [k for k, _ in events] == ["camera_degraded", "camera_recovered"]
    assert events[0][1]["reason"] == "stream stalled (12.0 s without frames)"
    assert len(opener.calls) == 2 and stalled.released and source.restarts == 1
