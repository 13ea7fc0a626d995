"""Event-level scoring of alerts against labelled event windows (`events.csv` of the evaluation data).

An alert is *found* when it falls inside a positive window of its kind (with a tolerance for the
labels' ±0.5-1 s precision); each window counts once however many alerts it holds; any other
alert of that kind on that clip is a *false* alert.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

# events.csv names event types after the scene; rules are named after what they detect.
EVENT_TYPE_TO_KIND = {
    "intrusion": "zone_intrusion",
    "fall_lying": "person_down",
    "abandoned_object": "abandoned_object",
    "fire": "fire",
    "weapon": "weapon",
    "crowd_density": "crowd_density",
    "crowd_movement": "crowd_movement",
    "wrong_way": "wrong_way",
}


@dataclass(frozen=True)
class LabelledEvent:
    clip: str
    kind: str
    polarity: str  # positive | negative | uncertain
    start_s: float
    end_s: float
    notes: str = ""


@dataclass
class EventScore:
    found: list[LabelledEvent] = field(default_factory=list)
    missed: list[LabelledEvent] = field(default_factory=list)
    false_alert_times_s: list[float] = field(default_factory=list)


def load_labels(path: str | Path) -> list[LabelledEvent]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            LabelledEvent(
                clip=row["clip"], kind=EVENT_TYPE_TO_KIND.get(row["event_type"], row["event_type"]),
                polarity=row["polarity"], start_s=float(row["start_s"]), end_s=float(row["end_s"]),
                notes=row.get("notes", ""),
            )
            for row in csv.DictReader(handle)
        ]


def score_clip(alert_times_s: list[float], events: list[LabelledEvent], tolerance_s: float = 1.0) -> EventScore:
    """Score one clip and one kind: `events` are that clip's labelled windows of that kind.

    Alerts inside an *uncertain* window are neither found nor false.
    """
    positives = [e for e in events if e.polarity == "positive"]
    uncertain = [e for e in events if e.polarity == "uncertain"]
    score = EventScore()
    matched: set[int] = set()
    for t in sorted(alert_times_s):
        hit = next((i for i, e in enumerate(positives) if e.start_s - tolerance_s <= t <= e.end_s + tolerance_s), None)
        if hit is not None:
            matched.add(hit)
        elif not any(e.start_s - tolerance_s <= t <= e.end_s + tolerance_s for e in uncertain):
            score.false_alert_times_s.append(t)
    score.found = [e for i, e in enumerate(positives) if i in matched]
    score.missed = [e for i, e in enumerate(positives) if i not in matched]
    return score
