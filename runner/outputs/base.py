"""What every destination of the outbox is: a name, a test-alert filter, and `deliver` that returns once the
receiver acknowledged (or raises DeliveryError); plus the capped exponential backoff between failed attempts."""

from __future__ import annotations

from typing import Protocol

from runner.core.errors import VigieError
from runner.register.outbox import OutboxEntry


class DeliveryError(VigieError):
    """A destination did not acknowledge a row (down, refused, timed out): the row stays owed."""


class Destination(Protocol):
    """Where the dispatcher delivers outbox rows."""

    name: str  # its cursor's key in the register: "mqtt", "webhook:<name>"
    include_tests: bool
    max_backoff_s: float

    def deliver(self, entry: OutboxEntry) -> None:
        """Deliver one row; return only once the receiver acknowledged it.

        Args:
            entry: the outbox row.

        Raises:
            DeliveryError: not acknowledged (one line, no credential).
        """

    def close(self) -> None:
        """Release the connection (the MQTT client says "offline" first)."""


class Backoff:
    """Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to `max_s`; back to the start after a success."""

    def __init__(self, max_s: float, first_s: float = 0.5):
        """A backoff.

        Args:
            max_s: the longest wait, seconds.
            first_s: the first wait, seconds.
        """
        self.max_s, self.first_s = max_s, first_s
        self.failures = 0

    def next_wait_s(self) -> float:
        """Count one more failure.

        Returns:
            Seconds to wait before the next attempt.
        """
        wait_s = min(self.max_s, self.first_s * 2**self.failures)
        self.failures += 1
        return wait_s

    def reset(self) -> None:
        """A success: the next failure waits the shortest time again."""
        self.failures = 0
