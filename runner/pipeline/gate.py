"""The gate that applies cooldown / dedup to a camera's alert candidates before anything is stored."""

from __future__ import annotations

from runner.core.alerts import AlertCandidate
from runner.core.timebase import TIME_EPSILON_S


class AlertGate:
    """Cooldown per (rule, subject): a candidate within `cooldown_s` of the last one is dropped.

    Bounded: entries older than their cooldown are swept on every call.
    """

    def __init__(self, cooldowns_s: dict[str, float]):
        self.cooldowns_s = cooldowns_s
        self._last_s: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._last_s)

    def admit(self, candidates: list[AlertCandidate], t_s: float) -> list[AlertCandidate]:
        """Drops candidates inside their rule's cooldown for the same subject.

        Args:
            candidates: what the camera's rules reported on this frame.
            t_s: the frame's stream time, seconds.

        Returns:
            The candidates to store, in order (each admitted one restarts its cooldown).
        """
        self._sweep(t_s)
        admitted = []
        for candidate in candidates:
            key = (candidate.rule_id, candidate.subject)
            last = self._last_s.get(key)
            if last is not None and t_s - last < self.cooldowns_s.get(candidate.rule_id, 0.0) - TIME_EPSILON_S:
                continue
            self._last_s[key] = t_s
            admitted.append(candidate)
        return admitted

    def _sweep(self, t_s: float) -> None:
        expired = [
            k
            for k, last in self._last_s.items()
            if t_s - last >= self.cooldowns_s.get(k[0], 0.0) - TIME_EPSILON_S or t_s < last
        ]
        for key in expired:
            del self._last_s[key]

    def reset(self) -> None:
        self._last_s.clear()
