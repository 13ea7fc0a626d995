"""Daily active-hours windows ("22:00"-"06:00" wraps past midnight), evaluated in the site's time zone."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

from pydantic import BeforeValidator, Field

from runner.config.base import Frozen


def _parse_hhmm(value: object) -> object:
    # YAML 1.1 reads an unquoted 22:00 as the sexagesimal integer 1320 (minutes): accept it.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a time of day HH:MM") from None
    return value


TimeOfDay = Annotated[time, BeforeValidator(_parse_hhmm)]


class TimeWindow(Frozen):
    start: TimeOfDay = Field(description="Start of the daily window, HH:MM local time.")
    end: TimeOfDay = Field(
        description="End of the daily window, HH:MM local time (before start = wraps past midnight)."
    )

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def is_active(windows: tuple[TimeWindow, ...] | list[TimeWindow], local_time: datetime) -> bool:
    """No windows means always active."""
    if not windows:
        return True
    moment = local_time.time()
    return any(w.contains(moment) for w in windows)
