"""The per-camera frame slot: frames handed from a capture thread to the analysis loop."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime

from runner.sources.capture import Frame

# Put in a slot when the stream restarted (reconnect or looped file): the analysis resets the camera there.
RESTART = Frame("", -1, -1.0, datetime.min, None)  # type: ignore[arg-type]


class FrameSlot:
    """Frames handed from a capture thread to the analysis loop.

    Live: keep only the newest frames (a slow analysis must not lag behind the stream).
    Replay: a small bounded queue that blocks the reader, so no frame of the clip is lost.
    """

    def __init__(self, live: bool, wakeup: threading.Event):
        """An empty slot.

        Args:
            live: keep only the newest frames (True) or block the reader when full (False, replay).
            wakeup: set whenever a frame arrives or the source ends (the analysis loop waits on it).
        """
        self.live = live
        self.frames: deque[Frame] = deque()
        self.capacity = 2 if live else 8
        self.cond = threading.Condition()
        self.wakeup = wakeup
        self.dropped = 0
        self.finished = False
        self.error: str | None = None

    def put(self, frame: Frame, stop: threading.Event) -> None:
        """Hand over a frame (or `RESTART`), on the capture thread.

        Args:
            frame: the next frame, or the `RESTART` marker.
            stop: set when the run stops (a replay's reader then stops waiting for room).
        """
        with self.cond:
            if self.live:
                if frame is RESTART:
                    # Frames from before a reconnect / loop are stale; the reset marker itself must
                    # never be pushed out by newer frames, or tracks would span two streams.
                    self.dropped += self._real_count()
                    self.frames.clear()
                elif self._real_count() >= self.capacity:
                    del self.frames[1 if self.frames[0] is RESTART else 0]
                    self.dropped += 1
                self.frames.append(frame)
            else:
                while len(self.frames) >= self.capacity and not stop.is_set():
                    self.cond.wait(0.1)
                self.frames.append(frame)
        self.wakeup.set()

    def take(self) -> Frame | None:
        """Takes the oldest waiting frame off the slot (a replay's reader waiting for room may go on).

        Returns:
            That frame (or the `RESTART` marker), None when none is waiting.
        """
        with self.cond:
            frame = self.frames.popleft() if self.frames else None
            self.cond.notify_all()
            return frame

    def _real_count(self) -> int:
        return sum(1 for f in self.frames if f is not RESTART)

    def drain(self) -> int:
        """Drop every waiting frame (the camera was paused or resumed).

        Returns:
            How many real frames were dropped (a `RESTART` marker does not count).
        """
        with self.cond:
            count = self._real_count()
            self.frames.clear()
            self.cond.notify_all()
            return count

    def finish(self, error: str | None = None) -> None:
        """The source ended (with `error` when it failed); no frame follows.

        Args:
            error: why the capture failed, None when the source simply ended.
        """
        with self.cond:
            self.finished, self.error = True, error
        self.wakeup.set()
