"""Event-level scoring of alerts against labelled event windows (`events.csv` of the evaluation data).

An alert is *found* when it falls inside a positive window of its kind (with a tolerance for the
labels' ±0.5-1 s precision); each window counts once however many alerts it holds; any other
alert of that kind on that clip is a *false* alert. The totals per kind are given for each half of a
fixed split of the clips (`zones/eval_split.csv`: thresholds are chosen on the *tuning* half, the
*checking* half tells whether they carry), with 95 % Wilson intervals on recall and precision and the
time from each found event's labelled start to its first alert.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

from runner.core.errors import ConfigError, UsageError
from runner.core.stats import wilson_interval

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


# The halves of the evaluation split, and the name of the clips it does not list.
SPLIT_HALVES = ("tuning", "checking")
UNSPLIT = "unsplit"
ALL_HALVES = "all"


@dataclass
class EventScore:
    found: list[LabelledEvent] = field(default_factory=list)
    missed: list[LabelledEvent] = field(default_factory=list)
    false_alert_times_s: list[float] = field(default_factory=list)
    found_alert_times_s: list[float] = field(default_factory=list)  # the first alert of each found event, in order

    @property
    def alert_delays_s(self) -> list[float]:
        """Seconds from each found event's labelled start to its first alert (negative within the tolerance)."""
        return [t - event.start_s for event, t in zip(self.found, self.found_alert_times_s, strict=True)]


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
    first_alert_s: dict[int, float] = {}  # by positive window, the earliest alert inside it
    for t in sorted(alert_times_s):
        hit = next((i for i, e in enumerate(positives) if e.start_s - tolerance_s <= t <= e.end_s + tolerance_s), None)
        if hit is not None:
            first_alert_s.setdefault(hit, t)
        elif not any(e.start_s - tolerance_s <= t <= e.end_s + tolerance_s for e in uncertain):
            score.false_alert_times_s.append(t)
    score.found = [e for i, e in enumerate(positives) if i in first_alert_s]
    score.found_alert_times_s = [first_alert_s[i] for i in range(len(positives)) if i in first_alert_s]
    score.missed = [e for i, e in enumerate(positives) if i not in first_alert_s]
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
    half: str = ALL_HALVES  # tuning | checking | unsplit | all
    clips: int = 0
    events: int = 0
    found: int = 0
    missed: int = 0
    false_alerts: int = 0
    footage_s: float = 0.0
    alert_delays_s: list[float] = field(default_factory=list)  # labelled start to first alert, per found event

    @property
    def false_per_hour(self) -> float:
        return self.false_alerts / (self.footage_s / 3600.0) if self.footage_s else 0.0

    @property
    def recall_interval(self) -> tuple[float, float] | None:
        """The 95 % Wilson interval of found / labelled events; None without any event."""
        return wilson_bounds(self.found, self.events)

    @property
    def precision_interval(self) -> tuple[float, float] | None:
        """The 95 % Wilson interval of found events / (found events + false alerts); None without either."""
        return wilson_bounds(self.found, self.found + self.false_alerts)

    def as_dict(self) -> dict:
        """The totals, rates and intervals, for `vigie eval --json`.

        Returns:
            A JSON-ready dict (None where a rate has no denominator).
        """
        recall, precision = self.recall_interval, self.precision_interval
        return dict(
            vars(self),
            false_per_hour=self.false_per_hour,
            recall=self.found / self.events if self.events else None,
            recall_95=list(recall) if recall else None,
            precision=self.found / (self.found + self.false_alerts) if self.found + self.false_alerts else None,
            precision_95=list(precision) if precision else None,
            alert_delay_median_s=median(self.alert_delays_s) if self.alert_delays_s else None,
            alert_delay_max_s=max(self.alert_delays_s) if self.alert_delays_s else None,
        )


def wilson_bounds(successes: int, trials: int) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a proportion (runner.core.stats): honest on the few events of an
    evaluation (6/7 gives 0.487-0.974, where the normal approximation would reach past 1).

    Args:
        successes: how many trials succeeded.
        trials: how many trials there were.

    Returns:
        (low, high) within [0, 1]; None when there is no trial.
    """
    estimate = wilson_interval(successes, trials)
    return None if estimate.low is None or estimate.high is None else (estimate.low, estimate.high)


def load_split(path: str | Path) -> dict[str, str]:
    """The evaluation split: which half (tuning or checking) each clip belongs to.

    Args:
        path: a CSV with a `clip,half` header; lines starting with `#` are comments.

    Returns:
        The half of each clip, by clip file name.

    Raises:
        UsageError: the file does not exist.
        ConfigError: a row is malformed, names a half other than tuning / checking, or repeats a clip.
    """
    if not Path(path).is_file():
        raise UsageError(f"split file not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [(number, line) for number, line in enumerate(handle, 1) if line.strip() and not line.startswith("#")]
    if not rows or [c.strip() for c in rows[0][1].split(",")] != ["clip", "half"]:
        raise ConfigError(str(path), ["the first row that is not a comment must be the header 'clip,half'"])
    halves: dict[str, str] = {}
    for number, line in rows[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 2 or not cells[0]:
            raise ConfigError(str(path), [f"line {number}: expected 'clip,half', got {line.strip()[:80]!r}"])
        clip, half = cells
        if half not in SPLIT_HALVES:
            raise ConfigError(str(path), [f"line {number}: half {half[:20]!r} of {clip} is not tuning or checking"])
        if clip in halves:
            raise ConfigError(str(path), [f"line {number}: {clip} is listed twice"])
        halves[clip] = half
    return halves


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


def summarise(results: list[ClipResult], split: dict[str, str] | None = None) -> list[KindSummary]:
    """Totals per event kind: over every clip, and with a split, over each half too.

    Args:
        results: the per-clip, per-kind results.
        split: the half of each clip (`load_split`); None: the totals over every clip only.

    Returns:
        Per kind (sorted), with a split: one summary for the tuning half, the checking half, the clips the split
        does not list (only when there are some) and all of them; without one: the summary of all clips.
    """
    by_kind_and_half: dict[tuple[str, str], KindSummary] = {}
    for result in results:
        halves = [ALL_HALVES] if split is None else [split.get(result.clip, UNSPLIT), ALL_HALVES]
        for half in halves:
            summary = by_kind_and_half.setdefault((result.kind, half), KindSummary(result.kind, half))
            summary.clips += 1
            summary.events += len(result.score.found) + len(result.score.missed)
            summary.found += len(result.score.found)
            summary.missed += len(result.score.missed)
            summary.false_alerts += len(result.score.false_alert_times_s)
            summary.footage_s += result.duration_s
            summary.alert_delays_s += result.score.alert_delays_s
    if split is not None:  # both halves shown for every kind, even one that a half holds no clip of
        for kind in {kind for kind, _ in by_kind_and_half}:
            for half in SPLIT_HALVES:
                by_kind_and_half.setdefault((kind, half), KindSummary(kind, half))
    half_order = {half: rank for rank, half in enumerate((*SPLIT_HALVES, UNSPLIT, ALL_HALVES))}
    return sorted(by_kind_and_half.values(), key=lambda s: (s.kind, half_order[s.half]))


def unsplit_clips(results: list[ClipResult], split: dict[str, str]) -> list[str]:
    """The evaluated clips that the split does not list.

    Args:
        results: the per-clip, per-kind results.
        split: the half of each clip (`load_split`).

    Returns:
        Their file names, sorted, each once.
    """
    return sorted({r.clip for r in results if r.clip not in split})


def _rate_with_interval(successes: int, trials: int) -> str:
    interval = wilson_bounds(successes, trials)
    return f"{successes / trials:.2f} [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "-"


def _delays(delays_s: list[float]) -> str:
    return f"{median(delays_s):.1f} / {max(delays_s):.1f} s" if delays_s else "-"


def format_summary(summaries: list[KindSummary], unsplit: list[str] | None = None) -> str:
    """The quality table printed by `vigie eval`.

    Args:
        summaries: the per-kind (and per-half) totals.
        unsplit: the clips the split does not list, named under the table; None or empty: no such line.

    Returns:
        The table under a header, one line per kind (and half: a column only when a summary is of one half):
        recall is found / labelled events, precision found events / (found events + false alerts), each with
        its 95 % Wilson interval; "to alert" is the median and the largest time from a found event's labelled
        start to its first alert.
    """
    with_halves = any(s.half != ALL_HALVES for s in summaries)  # without a split, no half column

    def half_cell(text: str) -> str:
        return f"{text:<10}" if with_halves else ""

    header = (
        f"{'kind':<18}{half_cell('half')}{'clips':>6}{'events':>8}{'found':>7}{'missed':>8}{'false':>7}{'false/h':>9}"
        f"{'footage':>10}  {'recall [95% CI]':<19}{'precision [95% CI]':<20}{'to alert med / max':>18}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.kind:<18}{half_cell(s.half)}{s.clips:>6}{s.events:>8}{s.found:>7}{s.missed:>8}{s.false_alerts:>7}"
            f"{s.false_per_hour:>9.1f}{s.footage_s / 60:>8.1f} m  {_rate_with_interval(s.found, s.events):<19}"
            f"{_rate_with_interval(s.found, s.found + s.false_alerts):<20}{_delays(s.alert_delays_s):>18}"
        )
    if unsplit:
        lines.append(f"unsplit (absent from the split file): {', '.join(unsplit)}")
    return "\n".join(lines)


def format_details(results: list[ClipResult], split: dict[str, str] | None = None) -> str:
    """The per-clip lines of `vigie eval --details`.

    Args:
        results: the per-clip, per-kind results.
        split: the half of each clip (`load_split`), named on each line; None: no half named.

    Returns:
        One line per clip and kind: alerts, events found (each with its time to alert), missed windows,
        false alert times.
    """
    lines = []
    for r in results:
        missed = ", ".join(f"{e.start_s:g}-{e.end_s:g}s" for e in r.score.missed)
        false = ", ".join(f"{t:g}s" for t in r.score.false_alert_times_s)
        delays = ", ".join(f"{d:+.1f}s" for d in r.score.alert_delays_s)
        lines.append(
            (f"[{split.get(r.clip, UNSPLIT)}] " if split is not None else "")
            + f"{r.site}/{r.camera_id} {r.kind}: {len(r.alert_times_s)} alert(s), found "
            f"{len(r.score.found)}/{len(r.score.found) + len(r.score.missed)}"
            + (f" (to alert {delays})" if delays else "")
            + (f", missed {missed}" if missed else "")
            + (f", false at {false}" if false else "")
            + ("" if r.labelled else " (no label rows: every alert counts as false)")
        )
    return "\n".join(lines)
