"""Stream time: every rule and gate reads frame timestamps, never the wall clock."""

TIME_EPSILON_S = 1e-6
"""Durations compared against thresholds get this slack: frame times are i / fps in floating point, and
1.8 + 1.0 = 2.8 must count as a dwell of 1.0 s, not 0.9999999999999998 s (one frame late); timestamps
closer than this are the same instant."""


class Cadence:
    """A schedule on stream time: due at most `fps` times a second, kept to its grid (0, 0.5, 1.0 ... at 2 fps)
    rather than to the last run, which would drift to a lower rate whenever frames do not fall exactly on it;
    it restarts after a gap. Without `fps` every frame is due.

    Used by the models with `max_fps` and by the rules that need fewer frames than their camera analyses.
    """

    def __init__(self, fps: float | None, tolerance_s: float = TIME_EPSILON_S):
        """A fresh schedule: the first frame is due.

        Args:
            fps: runs per second of stream time; None: every frame.
            tolerance_s: a frame this much before the due time is due (half a frame period, for a rule on a
                camera whose frames fall near, not on, its grid).
        """
        self.period_s = None if fps is None else 1.0 / fps
        self.tolerance_s = tolerance_s
        self.next_due_s: float | None = None

    def is_due(self, t_s: float) -> bool:
        """Whether a frame falls on the schedule.

        Args:
            t_s: the frame's stream time, seconds.

        Returns:
            True with no schedule yet (first frame, no `fps`) or at or past the due time (less the tolerance).
        """
        return self.next_due_s is None or t_s >= self.next_due_s - self.tolerance_s

    def mark(self, t_s: float) -> None:
        """Schedules the next run after one at `t_s`.

        Args:
            t_s: the stream time of the frame it ran on, seconds.
        """
        if self.period_s is None:
            return
        due = (self.next_due_s if self.next_due_s is not None else t_s) + self.period_s
        self.next_due_s = due if due > t_s else t_s + self.period_s

    def reset(self) -> None:
        """The stream restarted: the next frame is due."""
        self.next_due_s = None
