"""The alert writer: the thread that stores alerts (snapshot JPEG + register row) off the analysis thread."""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable

from runner.core.errors import StoreError

log = logging.getLogger(__name__)


class AlertWriter:
    """Stores alerts (snapshot JPEG + register row) on its own thread, in the order they were raised.

    The queue is bounded; when it is full the analysis waits for room (alerts are evidence: never
    dropped) and a warning says the register is slow. An alert the register refuses (disk full, read
    only) is kept and retried every `retry_s` (at most `max_retained`: each holds its frame; beyond
    that the oldest is given up, counted in `given_up`). `close()` stores everything it can."""

    def __init__(
        self,
        on_error: Callable[[str, Exception], None],
        capacity: int = 64,
        warn_after_s: float = 5.0,
        *,
        retry_s: float = 2.0,
        max_retained: int = 32,
    ):
        """Start the writer thread.

        Args:
            on_error: called (camera id, exception) on the writer thread for every failed write.
            capacity: alerts the queue holds before `submit` waits for room.
            warn_after_s: seconds `submit` waits for room between two warnings.
            retry_s: seconds between two retries of the alerts the register refused.
            max_retained: refused alerts kept for a retry; beyond that the oldest is given up.
        """
        self.on_error = on_error
        self.warn_after_s = warn_after_s
        self.retry_s = retry_s
        self.waits = 0  # times the analysis found the queue full
        self.given_up = 0  # alerts dropped after the register refused them and the retry buffer overflowed
        self._retained: deque[tuple[str, Callable[[], object]]] = deque()
        self._max_retained = max_retained
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._work, name="alert-writer", daemon=True)
        self._thread.start()

    @property
    def retained(self) -> int:
        """Alerts the register refused, kept for a retry."""
        return len(self._retained)

    def submit(self, camera_id: str, job: Callable[[], object]) -> None:
        """Queue the storing of one alert; waits for room when the queue is full (an alert is never dropped).

        Args:
            camera_id: the camera that raised the alert (named in error reports).
            job: stores the alert when called (snapshot and register row).
        """
        try:
            self._queue.put_nowait((camera_id, job))
            return
        except queue.Full:
            self.waits += 1
        while True:
            try:
                self._queue.put((camera_id, job), timeout=self.warn_after_s)
                return
            except queue.Full:
                log.warning("alert writer: queue full for %.0f s (register slow?): analysis waits", self.warn_after_s)

    def close(self) -> None:
        """Store every queued alert (one last retry of the refused ones), then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_s if self._retained else None)
            except queue.Empty:
                self._retry()
                continue
            if item is None:
                self._retry()  # a last attempt; what the register still refuses was reported
                return
            if self._retained:
                self._retry()
            self._store(*item)

    def _store(self, camera_id: str, job: Callable[[], object]) -> bool:
        try:
            job()
            return True
        except StoreError as exc:  # the register refuses writes for now: keep the alert for a retry
            self._retain(camera_id, job)
            self.on_error(camera_id, exc)
        except Exception as exc:  # a failed write is reported; the writer goes on with the next alert
            self.on_error(camera_id, exc)
        return False

    def _retain(self, camera_id: str, job: Callable[[], object]) -> None:
        self._retained.append((camera_id, job))
        if len(self._retained) > self._max_retained:
            lost_camera, _ = self._retained.popleft()
            self.given_up += 1
            log.error("alert writer: register unwritable, %d alert(s) given up (camera %s)", self.given_up, lost_camera)

    def _retry(self) -> None:
        """In order; stops at the first alert still refused (the others would be refused too)."""
        for _ in range(len(self._retained)):
            camera_id, job = self._retained.popleft()
            try:
                job()
            except StoreError:
                self._retained.appendleft((camera_id, job))
                return
            except Exception as exc:
                self.on_error(camera_id, exc)
