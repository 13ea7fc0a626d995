"""Event-level scoring of alerts against labelled event windows (`events.csv` of the evaluation data).

An alert is *found* when it falls inside a positive window of its kind (with a tolerance for the
labels' ±0.5-1 s precision); each window counts once however many alerts it holds; any other
alert of that kind on that clip is a *false* alert.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.config.site import Camera
    from runner.pipeline.camera import RaisedAlert
    from runner.sources.capture import Frame

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
    """The labelled event windows of an events CSV (clip, event_type, polarity, start_s, end_s, notes).

    Args:
        path: the CSV file.

    Returns:
        One event per row, its event type named after the rule kind that detects it.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            LabelledEvent(
                clip=row["clip"],
                kind=EVENT_TYPE_TO_KIND.get(row["event_type"], row["event_type"]),
                polarity=row["polarity"],
                start_s=float(row["start_s"]),
                end_s=float(row["end_s"]),
                notes=row.get("notes", ""),
            )
            for row in csv.DictReader(handle)
        ]


def merge_adjacent(events: list[LabelledEvent], gap_s: float) -> list[LabelledEvent]:
    """Windows of one clip and kind that touch (within `gap_s`) are one event: a dataset that labels
    a fall's transition and its lying phase separately still describes a single fall.

    Args:
        events: the windows of one clip and kind.
        gap_s: the largest gap between two windows that still makes them one event.

    Returns:
        The events sorted by start, touching ones merged.
    """
    merged: list[LabelledEvent] = []
    for event in sorted(events, key=lambda e: e.start_s):
        if merged and event.start_s - merged[-1].end_s <= gap_s:
            last = merged[-1]
            merged[-1] = LabelledEvent(
                last.clip,
                last.kind,
                last.polarity,
                last.start_s,
                max(last.end_s, event.end_s),
                f"{last.notes} + {event.notes}",
            )
        else:
            merged.append(event)
    return merged


def score_clip(alert_times_s: list[float], events: list[LabelledEvent], tolerance_s: float = 1.0) -> EventScore:
    """Score one clip and one kind: `events` are that clip's labelled windows of that kind.

    Positive windows that touch are merged into one event; alerts inside an *uncertain* window are
    neither found nor false.

    Args:
        alert_times_s: the clip times of that kind's alerts.
        events: the clip's labelled windows of that kind.
        tolerance_s: slack around each window.

    Returns:
        The events found and missed, and the times of the false alerts.
    """
    positives = merge_adjacent([e for e in events if e.polarity == "positive"], tolerance_s)
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


# -- replaying evaluation sites ---------------------------------------------------------------------
@dataclass
class ClipResult:
    site: str
    camera_id: str
    clip: str
    kind: str
    duration_s: float
    alert_times_s: list[float]
    score: EventScore
    labelled: bool  # the clip has label rows for this kind (else every alert is false)


@dataclass
class KindSummary:
    kind: str
    clips: int = 0
    events: int = 0
    found: int = 0
    missed: int = 0
    false_alerts: int = 0
    footage_s: float = 0.0

    @property
    def false_per_hour(self) -> float:
        return self.false_alerts / (self.footage_s / 3600.0) if self.footage_s else 0.0


def clip_duration_s(path: str) -> float:
    """A video file's duration from its frame count and rate.

    Args:
        path: the video file.

    Returns:
        Seconds, 0.0 when the file gives no frame count or rate.
    """
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return frames / fps if fps and frames > 0 else 0.0


def site_clips(loaded, camera_ids: list[str] | None = None) -> Iterator[tuple[Camera, str]]:
    """The (selected) cameras of an evaluation site, each with its clip resolved as the runner resolves it.

    Args:
        loaded: the evaluation site (`runner.config.loading.LoadedConfig`).
        camera_ids: only these cameras; None or empty: every camera.

    Yields:
        (camera, clip path) pairs in the config's order, each resolved when reached (a bad source of a later
        camera stops the evaluation there, after the earlier cameras' replays).
    """
    from runner.config.loading import expand_env
    from runner.sources.capture import resolve_source

    for camera in loaded.config.cameras:
        if camera_ids and camera.id not in camera_ids:
            continue
        yield camera, resolve_source(expand_env(camera.source, f"cameras[{camera.id}].source"), loaded.base_dir)


def evaluate_site(
    loaded,
    labels: list[LabelledEvent],
    register,
    camera_ids: list[str] | None = None,
    tolerance_s: float = 1.0,
    progress: Callable[[str], None] | None = None,
    on_frame: Callable[[str, Frame], None] | None = None,
    on_alert: Callable[[RaisedAlert], None] | None = None,
) -> list[ClipResult]:
    """Replay every (selected) camera of an evaluation site and score each rule kind on its clip.

    Args:
        loaded: the evaluation site (`runner.config.loading.LoadedConfig`).
        labels: the labelled event windows of every clip.
        register: where the replays store their (test) alerts.
        camera_ids: only these cameras; None or empty: every camera.
        tolerance_s: slack around the labelled windows.
        progress: called with "site/camera: clip" as each clip starts.
        on_frame: called (camera id, frame) after each analysed frame (a progress bar).
        on_alert: called with each alert once stored (a progress bar).

    Returns:
        One result per camera and rule kind.
    """
    from runner.core.errors import SourceError
    from runner.inference.detector import ModelPool
    from runner.service.lifecycle import Runner, RunOptions

    pool = ModelPool(loaded.config, loaded.base_dir)  # models loaded once for the whole site
    results = []
    for camera, source in site_clips(loaded, camera_ids):
        clip = Path(source).name
        if progress is not None:
            progress(f"{loaded.config.site}/{camera.id}: {clip}")
        options = RunOptions(mode="replay", camera_ids=[camera.id], on_frame=on_frame)
        summary = Runner(loaded, register, options, pool=pool, on_alert=on_alert).run()
        if summary.camera_errors:
            raise SourceError(next(iter(summary.camera_errors.values())))
        duration = clip_duration_s(source)
        for kind in sorted({r.kind for r in camera.rules if r.enabled}):
            events = [e for e in labels if e.clip == clip and e.kind == kind]
            times = [a.record.t_s for a in summary.alerts if a.record.kind == kind]
            results.append(
                ClipResult(
                    loaded.config.site,
                    camera.id,
                    clip,
                    kind,
                    duration,
                    times,
                    score_clip(times, events, tolerance_s),
                    bool(events),
                )
            )
    return results


def summarise(results: list[ClipResult]) -> list[KindSummary]:
    """Totals per event kind over every clip.

    Args:
        results: the per-clip, per-kind results.

    Returns:
        One summary per kind, sorted by kind.
    """
    by_kind: dict[str, KindSummary] = {}
    for result in results:
        summary = by_kind.setdefault(result.kind, KindSummary(result.kind))
        summary.clips += 1
        summary.events += len(result.score.found) + len(result.score.missed)
        summary.found += len(result.score.found)
        summary.missed += len(result.score.missed)
        summary.false_alerts += len(result.score.false_alert_times_s)
        summary.footage_s += result.duration_s
    return sorted(by_kind.values(), key=lambda s: s.kind)


def format_summary(summaries: list[KindSummary]) -> str:
    """The quality table printed by `vigie eval`.

    Args:
        summaries: the per-kind totals.

    Returns:
        The table, one line per kind under a header.
    """
    header = f"{'kind':<18}{'clips':>6}{'events':>8}{'found':>7}{'missed':>8}{'false':>7}{'false/h':>9}{'footage':>10}"
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.kind:<18}{s.clips:>6}{s.events:>8}{s.found:>7}{s.missed:>8}{s.false_alerts:>7}"
            f"{s.false_per_hour:>9.1f}{s.footage_s / 60:>8.1f} m"
        )
    return "\n".join(lines)


def format_details(results: list[ClipResult]) -> str:
    """The per-clip lines of `vigie eval --details`.

    Args:
        results: the per-clip, per-kind results.

    Returns:
        One line per clip and kind: alerts, events found, missed windows, false alert times.
    """
    lines = []
    for r in results:
        missed = ", ".join(f"{e.start_s:g}-{e.end_s:g}s" for e in r.score.missed)
        false = ", ".join(f"{t:g}s" for t in r.score.false_alert_times_s)
        lines.append(
            f"{r.site}/{r.camera_id} {r.kind}: {len(r.alert_times_s)} alert(s), found "
            f"{len(r.score.found)}/{len(r.score.found) + len(r.score.missed)}"
            + (f", missed {missed}" if missed else "")
            + (f", false at {false}" if false else "")
            + ("" if r.labelled else " (no label rows: every alert counts as false)")
        )
    return "\n".join(lines)
