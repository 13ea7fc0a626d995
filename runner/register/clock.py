"""The register's wall clock, in one place: tests replace `clock.utc_now` to make records old.

Modules of the register call `clock.utc_now()` through this module (never a copy imported by name),
so that one replacement reaches every time stamp they write.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC.

    Returns:
        `datetime.now(UTC)` (tests replace this function to move the register's clock).
    """
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """The time as the register stores it: UTC, to the millisecond.

    Args:
        moment: a timezone-aware time.

    Returns:
        e.g. `2025-01-01T12:00:00.000+00:00`.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
