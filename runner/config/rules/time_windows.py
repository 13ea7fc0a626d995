"""Daily active-hours windows ("22:00"-"06:00" wraps past midnight), evaluated in the site's time zone."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

from pydantic import BeforeValidator, Field

from runner.config.base import Frozen


# Keep the name: pydantic may put `function-after[_parse_hhmm(), time]` in an error's location, and
# `runner.config.loading._format_loc` leaves that part out of the field path it prints.
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
        """Whether the local time of day `moment` falls in the window.

        Args:
            moment: a time of day, in the site's time zone.

        Returns:
            True from `start` (included) to `end` (excluded), across midnight when `end` is before `start`.
        """
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def is_active(windows: tuple[TimeWindow, ...] | list[TimeWindow], local_time: datetime) -> bool:
    """Whether a rule with these active hours runs at `local_time`.

    Args:
        windows: the rule's daily windows; none means always active.
        local_time: the frame's wall time in the site's time zone.

    Returns:
        True when there are no windows or one of them contains the time of day.
    """
    if not windows:
        return True
    moment = local_time.time()
    return any(w.contains(moment) for w in windows)
