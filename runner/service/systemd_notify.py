"""systemd's notification protocol (sd_notify) without a dependency: one datagram per message on the unix
socket named by `$NOTIFY_SOCKET`, for a node run as a `Type=notify` unit with `WatchdogSec=`.

The runner says READY=1 once its cameras are started, STOPPING=1 when it is asked to stop, STATUS= a
short line, and WATCHDOG=1 from a health thread of its own, but only while the analysis loop is making
progress: a hung inference blocks the loop, the pings stop, and systemd restarts the node (whose leases
meanwhile expire, so another node takes its cameras). Outside systemd (no `$NOTIFY_SOCKET`) all of it is a
no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
STATUS_MAX_CHARS = 200  # `systemctl status` shows one line: keep it short


def notify_address(value: str | None) -> str | None:
    """The unix socket address of a `$NOTIFY_SOCKET` value: a path, or `@name` for the abstract namespace.

    Args:
        value: the variable's value (None or empty: not run by systemd).

    Returns:
        The address to send to (a leading NUL byte for an abstract socket), or None when there is none or it
        is not a unix socket (`vsock:` and the like are not supported: logged once, notifications off).
    """
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("%s=%r is not a unix socket path: systemd notifications are off", SOCKET_ENV, value)
    return None


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog interval systemd asks this process for (`WatchdogSec=`), as sd_watchdog_enabled reads it.

    Args:
        environ: the process environment.
        pid: this process's id (`$WATCHDOG_PID`, when set, must name it: the interval is not for a child).

    Returns:
        Seconds within which systemd expects WATCHDOG=1, or None when the watchdog is off for this process.
    """
    usec = environ.get(WATCHDOG_USEC_ENV, "")
    owner = environ.get(WATCHDOG_PID_ENV, "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 1_000_000


class SystemdNotifier:
    """Sends sd_notify messages to `$NOTIFY_SOCKET`; does nothing when the process was not started by systemd."""

    def __init__(self, address: str | None, watchdog_s: float | None = None):
        """A notifier for one socket address.

        Args:
            address: the socket to send to (see `notify_address`); None: every send is a no-op.
            watchdog_s: the watchdog interval systemd expects pings within; None: no watchdog.
        """
        self.address = address
        self.watchdog_s = watchdog_s if address else None
        self._socket: socket.socket | None = None
        self._failed = False  # the first failure is logged, the next ones are not (the socket went away)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """The notifier systemd's environment asks for (`$NOTIFY_SOCKET`, `$WATCHDOG_USEC`, `$WATCHDOG_PID`).

        Args:
            environ: the environment to read (default: this process's).

        Returns:
            A notifier; disabled when the variables are absent.
        """
        env = os.environ if environ is None else environ
        return cls(notify_address(env.get(SOCKET_ENV)), watchdog_interval_s(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send one message made of `KEY=value` lines (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1).

        Args:
            assignments: the lines, in order.

        Returns:
            True if the datagram was sent; False when disabled or the socket refused it (never raises: a
            notification must not stop the service).
        """
        if self.address is None or not assignments:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(assignments).encode("utf-8"), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notification failed (%s): %s", self.address.lstrip("\0"), exc)
            self._failed = True
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later `send` opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def status_line(text: str) -> str:
    """A STATUS= assignment of one short line.

    Args:
        text: what to show in `systemctl status`.

    Returns:
        `STATUS=` and the text on one line, cut to `STATUS_MAX_CHARS`.
    """
    return "STATUS=" + " ".join(text.split())[:STATUS_MAX_CHARS]


class ServiceNotifier:
    """The runner's side of the protocol: READY, STOPPING, and a health thread that pings the watchdog only
    while `beat()` is called (by the analysis loop, on every pass).

    The health thread wakes every third of the watchdog interval. The loop counts as stalled when it has not
    beaten for half the interval (`stall_after_s`): no WATCHDOG=1 then, and the STATUS line says so, so
    that systemd kills and restarts the node at most one and a half intervals after the loop stopped.
    """

    def __init__(
        self,
        notifier: SystemdNotifier | None = None,
        *,
        status: Callable[[], str] | None = None,
        stall_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """A service notifier (nothing is sent before `ready`).

        Args:
            notifier: the socket side (default: from this process's environment).
            status: a short line describing the service now, sent with each ping.
            stall_after_s: seconds without a beat after which the loop counts as stalled (default: half the
                watchdog interval).
            clock: monotonic seconds (tests).
        """
        self.notifier = notifier or SystemdNotifier.from_env()
        self.status = status
        interval = self.notifier.watchdog_s
        self.stall_after_s = stall_after_s if stall_after_s is not None else (interval / 2 if interval else None)
        self.clock = clock
        self._last_beat = clock()
        self._stalled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping_sent = False

    def beat(self) -> None:
        """The analysis loop made progress (called on every pass: it only stores a time)."""
        self._last_beat = self.clock()

    def silent_s(self) -> float:
        """Seconds since the analysis loop last made progress (a hung inference makes it grow).

        Returns:
            The seconds since the last `beat` (or since this notifier was made).
        """
        return self.clock() - self._last_beat

    def ready(self, status: str) -> None:
        """The cameras are started: READY=1 with a status line, then the watchdog pings begin.

        Args:
            status: the status line (e.g. the cameras analysed).
        """
        if not self.notifier.enabled:
            return
        self.beat()
        self.notifier.send("READY=1", status_line(status))
        if self.notifier.watchdog_s and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="systemd-watchdog", daemon=True)
            self._thread.start()

    def stopping(self, status: str = "stopping") -> None:
        """The service was asked to stop (SIGTERM): STOPPING=1 once; the watchdog pings end.

        Args:
            status: the status line.
        """
        self._stop.set()
        if self._stopping_sent or not self.notifier.enabled:
            return
        self._stopping_sent = True
        self.notifier.send("STOPPING=1", status_line(status))

    def reloading(self, status: str = "reloading") -> None:
        """The node re-executes itself on a new site file (same PID): RELOADING=1, with the MONOTONIC_USEC that
        `Type=notify-reload` asks for; the watchdog pings end, and the new process's READY=1 ends the reload.
        Not STOPPING=1: systemd would then wait for the process to exit. A SIGTERM meanwhile still says STOPPING.

        Args:
            status: the status line.
        """
        self._stop.set()
        if self._stopping_sent or not self.notifier.enabled:
            return
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", status_line(status))

    def close(self) -> None:
        """End the health thread and close the socket."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self.notifier.close()

    def ping_if_alive(self) -> bool:
        """One health check: WATCHDOG=1 if the loop beat recently, else a STATUS line saying it is stalled.

        Returns:
            Whether a WATCHDOG=1 was sent.
        """
        if self._stop.is_set():
            return False
        silent_s = self.silent_s()
        if self.stall_after_s is not None and silent_s > self.stall_after_s:
            if not self._stalled:
                self._stalled = True
                log.error("the analysis loop made no progress for %.0f s: systemd's watchdog pings stop", silent_s)
                self.notifier.send(status_line(f"stalled: the analysis loop made no progress for {silent_s:.0f} s"))
            return False
        self._stalled = False
        lines = ["WATCHDOG=1"]
        if self.status is not None:
            lines.append(status_line(self.status()))
        return self.notifier.send(*lines)

    def _watch(self) -> None:
        assert self.notifier.watchdog_s is not None, "the health thread runs only with a watchdog"
        period_s = self.notifier.watchdog_s / 3
        while not self._stop.wait(period_s):
            try:
                self.ping_if_alive()
            except Exception:  # a status callback failing must not end the pings of a healthy loop
                log.exception("systemd watchdog check failed")
                self.notifier.send("WATCHDOG=1")
