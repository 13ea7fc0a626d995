"""One alert per episode for the voting rules (fire, weapon): quiet after an alert until nothing was hit for a while."""

from __future__ import annotations

from runner.core.timebase import TIME_EPSILON_S


class EpisodeLatch:
    """Latched after an alert; released once no hit was seen for more than `clear_s` of stream time.

    Per frame: `note_hit` when something was detected, then `holds` says whether the rule must stay
    quiet; `start` latches it when the rule alerts.
    """

    def __init__(self, clear_s: float):
        self.clear_s = clear_s
        self.active = False
        self.last_hit_s: float | None = None

    def note_hit(self, t_s: float) -> None:
        """Something the rule looks for was detected on this frame.

        Args:
            t_s: the frame's stream time.
        """
        self.last_hit_s = t_s

    def holds(self, t_s: float) -> bool:
        """Whether an episode is still running (the rule stays quiet); releases it once it has cleared.

        Args:
            t_s: the frame's stream time, after this frame's `note_hit`.

        Returns:
            True while latched and the last hit is at most `clear_s` old.
        """
        if not self.active:
            return False
        if self.last_hit_s is None or t_s - self.last_hit_s > self.clear_s + TIME_EPSILON_S:
            self.active = False
            return False
        return True

    def start(self) -> None:
        """The rule alerted: an episode begins."""
        self.active = True
