"""What an alert is, from a rule's candidate to the stored record, and the register's decision vocabulary."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

DECISIONS = ("confirmed", "rejected")
REJECT_REASONS = ("fixture", "reflection", "shadow", "wrong_class", "duplicate", "other")
FOLLOW_UPS = ("none", "field_check", "intervention", "transmitted_to_police", "other")

# The eight kinds as operators read them: on snapshots (drawn by the runner) and in the apps (workbench.i18n).
KIND_NAMES: dict[str, dict[str, str]] = {
    "fr": {
        "abandoned_object": "Objet abandonné",
        "weapon": "Arme",
        "wrong_way": "Contresens",
        "zone_intrusion": "Intrusion en zone interdite",
        "person_down": "Personne au sol",
        "crowd_movement": "Mouvement de foule",
        "crowd_density": "Densité excessive",
        "fire": "Départ de feu",
    },
    "en": {
        "abandoned_object": "Abandoned object",
        "weapon": "Weapon",
        "wrong_way": "Wrong way",
        "zone_intrusion": "Forbidden zone",
        "person_down": "Person on the ground",
        "crowd_movement": "Crowd movement",
        "crowd_density": "Excessive density",
        "fire": "Fire start",
    },
}


def interface_language(environ: Mapping[str, str] | None = None) -> str:
    """The language people read Vigie in: $VIGIE_LANG (fr | en), French by default or when unknown.

    Args:
        environ: the environment to read (default: os.environ).

    Returns:
        "fr" or "en".
    """
    wanted = (os.environ if environ is None else environ).get("VIGIE_LANG", "fr").strip().lower()[:2]
    return wanted if wanted in KIND_NAMES else "fr"


def kind_name(kind: str, language: str | None = None) -> str:
    """An event kind in words, e.g. "Départ de feu" for `fire`.

    Args:
        kind: the rule kind (its identifier in configs and the register).
        language: "fr" or "en"; default: interface_language().

    Returns:
        The name; the identifier itself for a kind without one.
    """
    return KIND_NAMES[language or interface_language()].get(kind, kind)


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
        """The record as a plain dict.

        Returns:
            One key per field, nested values copied (dataclasses.asdict).
        """
        return asdict(self)


def canonical_json(value: Any) -> str:
    """One stable JSON text for a value: what the register stores and hashes.

    Args:
        value: any JSON-like value; what JSON cannot hold (a datetime, a Path) is written as its str().

    Returns:
        Compact JSON with sorted keys and non-ASCII characters kept as they are.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_digest(fields: dict[str, Any]) -> str:
    """The SHA-256 of the fields' canonical JSON, the register's tamper evidence.

    Args:
        fields: the values covered by the digest, by column name.

    Returns:
        The digest, 64 lowercase hex digits.
    """
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """What a rule reports; the pipeline adds camera, times, snapshot and provenance."""

    rule_id: str
    kind: str
    subject: str  # "track:12" or "zone:lawn": the unit of cooldown and dedup
    score: float
    t_s: float
    bbox: tuple[float, float, float, float] | None = None  # normalised xyxy
    track_id: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
