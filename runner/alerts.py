"""Alert records and the gate that applies cooldown / dedup before anything is stored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from runner.rules.base import TIME_EPSILON_S, AlertCandidate

DECISIONS = ("confirmed", "rejected")
REJECT_REASONS = ("fixture", "reflection", "shadow", "wrong_class", "duplicate", "other")
FOLLOW_UPS = ("none", "field_check", "intervention", "transmitted_to_police", "other")


@dataclass(frozen=True)
class AlertRecord:
    """Everything stored about one alert, except its id, status and snapshot (added by the register)."""

    uid: str
    site: str
    camera_id: str
    rule_id: str
    kind: str
    ts_utc: str  # ISO 8601, the time the frame stands for
    t_s: float  # offset in the source, seconds
    frame_index: int
    subject: str
    track_id: int | None
    score: float
    bbox: list[float] | None
    details: dict[str, Any]
    is_test: bool
    phase: str
    mode: str  # live | replay
    source: str  # redacted
    config_revision: int
    config_sha256: str
    models: list[dict[str, str]] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


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
        expired = [k for k, last in self._last_s.items() if t_s - last >= self.cooldowns_s.get(k[0], 0.0) - TIME_EPSILON_S or t_s < last]
        for key in expired:
            del self._last_s[key]

    def reset(self) -> None:
        self._last_s.clear()
