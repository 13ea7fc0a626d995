"""A progress bar for `vigie replay` and `vigie eval` on a terminal: frames analysed out of the frames the
clips will give, and alerts so far.

The bar goes to stderr, and only when stderr is a terminal and the command does not print JSON: piped or
redirected output stays exactly what it was without a bar (scripts and tests read it).
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runner.config.loading import LoadedConfig, expand_env
from runner.sources.capture import DueFrames, is_stream, resolve_source

if TYPE_CHECKING:
    from tqdm import tqdm


def wants_bar(stream: TextIO, json_output: bool = False) -> bool:
    """Whether a progress bar belongs on `stream`.

    Args:
        stream: where the bar would be drawn (stderr).
        json_output: the command prints JSON (a machine reads it: no bar).

    Returns:
        True on a terminal for human-readable output, else False.
    """
    if json_output:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream is not a terminal
        return False


def due_frames(path: str, process_fps: float) -> int | None:
    """How many frames of a video file the runner will analyse at `process_fps` (its capture's own schedule).

    Args:
        path: the video file.
        process_fps: the camera's analysed frames per second.

    Returns:
        The frame count, or None when it cannot be known (a stream, an unreadable file, no frame count).
    """
    import cv2

    if is_stream(path) or not Path(path).is_file():
        return None
    capture = cv2.VideoCapture(path)
    try:
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    if not frames or frames <= 0 or not math.isfinite(frames):
        return None
    fps = fps if 1.0 <= fps <= 1000.0 else 25.0  # the file reader's fallback
    schedule = DueFrames(fps, 1.0 / process_fps)
    return sum(1 for frame_no in range(int(frames)) if schedule.is_due(frame_no))


def replay_due_frames(loaded: LoadedConfig, camera_id: str, source: str | None = None) -> int | None:
    """`due_frames` of the clip `vigie replay` runs through a camera, resolved as the runner resolves it.

    Args:
        loaded: the site config.
        camera_id: the camera whose config applies.
        source: the clip replayed instead of the camera's source (`--source`), if any.

    Returns:
        The frame count, or None when unknown (the runner itself reports an unknown camera or a bad source).
    """
    try:
        camera = next(c for c in loaded.config.cameras if c.id == camera_id)
        uri = resolve_source(expand_env(source or camera.source, f"cameras[{camera.id}].source"), loaded.base_dir)
        return due_frames(uri, camera.analysed_fps)
    except Exception:  # only a bar's total: never fail a replay for it
        return None


def eval_due_frames(sites: list[LoadedConfig], camera_ids: list[str] | None = None) -> int | None:
    """The frames `vigie eval` will analyse over every (selected) camera of its evaluation sites.

    Args:
        sites: the evaluation sites.
        camera_ids: only these cameras; None or empty: every camera.

    Returns:
        The total, or None when one clip's count is unknown (the bar then counts without a total).
    """
    from runner.tools.evaluation import site_clips

    try:
        counts = [
            due_frames(clip, camera.analysed_fps) for loaded in sites for camera, clip in site_clips(loaded, camera_ids)
        ]
    except Exception:  # the evaluation itself reports a bad source, in its turn
        return None
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


class ReplayProgress:
    """Frames analysed / total and alerts so far, drawn on a terminal while clips replay.

    Disabled (nothing drawn), it only passes `note` lines through, as the command printed them before.
    `frame_analysed` is called on the runner's analysis thread and `alert_raised` on its writer thread:
    only the analysis thread draws, the alert count is shared under a lock.
    """

    def __init__(self, enabled: bool, total_frames: int | None = None, stream: TextIO | None = None):
        """A bar (when `enabled`) over `total_frames` frames on `stream` (default stderr), drawn from `start()`
        (or entering the `with` block) to `close()`.

        Args:
            enabled: draw the bar (see `wants_bar`).
            total_frames: frames the replays will analyse; None counts without a total.
            stream: where the bar and the notes go.
        """
        self.enabled = enabled
        self.total_frames = total_frames
        self.stream = stream or sys.stderr
        self.alerts = 0
        self._lock = threading.Lock()
        self._bar: tqdm | None = None

    def start(self) -> None:
        """Draw the bar (when enabled)."""
        if self.enabled and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_frames,
                unit="frame",
                file=self.stream,
                leave=False,  # erased at the end: the command's own output follows
                dynamic_ncols=True,
                mininterval=0.2,
            )

    def note(self, text: str) -> None:
        """A line for the user (e.g. the clip starting), above the bar when there is one.

        Args:
            text: the line, without its newline.
        """
        if self._bar is None:
            print(text, file=self.stream, flush=True)
        else:
            self._bar.write(text, file=self.stream)

    def frame_analysed(self, camera_id: str, frame: object) -> None:
        """One more frame analysed (the runner's `on_frame` callback).

        Args:
            camera_id: the frame's camera.
            frame: the frame (unused: only counted).
        """
        if self._bar is None:
            return
        with self._lock:
            alerts = self.alerts
        self._bar.set_postfix_str(f"{alerts} alert(s)", refresh=False)
        self._bar.update(1)

    def alert_raised(self, raised: object = None) -> None:
        """One more alert (the runner's `on_alert` callback).

        Args:
            raised: the alert (unused: only counted).
        """
        with self._lock:
            self.alerts += 1

    def close(self) -> None:
        """Erase the bar (the command's own output follows)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ReplayProgress:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
