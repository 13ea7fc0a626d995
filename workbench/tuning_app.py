"""App 2, tuning by replay: a recorded clip through the production pipeline (runner.service.lifecycle.Runner
in replay mode), the alert timeline over the clip, found / missed / false against expected events,
thresholds changed in a generated form and rerun, two runs (two revisions) compared side by side.

`ReplayJob` runs one replay in a background thread with progress and cancel; `TuningSession` keeps
the runs of a session; `timeline_svg` and `comparison_html` draw them. `TuningApp` is the thin
ipywidgets layer.
"""

from __future__ import annotations

import html
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import ipywidgets as widgets
from pydantic import ValidationError

from runner.config.loading import dump_config, load_config, validation_problems
from runner.config.site import SiteConfig
from runner.core.access import role_from_env
from runner.core.errors import SourceError, VigieError
from runner.inference.detector import ModelPool
from runner.pipeline.camera import RaisedAlert
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.sources.capture import Frame
from runner.tools.evaluation import EventScore, LabelledEvent, load_labels, score_clip
from workbench import _setup_paths as paths
from workbench.config_text import describe_change, kind_title
from workbench.export import ConfigExporter, ExportConflict, ExportError, ExportResult, SiteFolder, field_diff
from workbench.forms import (
    ModelForm,
    ModelFormView,
    actor_field,
    field_problems,
    on_user_change,
    open_first_site,
    replace_options,
    rule_models,
)
from workbench.i18n import add_messages, t
from workbench.setup_app import export_principal

PoolFactory = Callable[[SiteConfig, Path], Any]  # (config, folder its relative paths start from) -> ModelPool
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".ts")
LABEL_TOLERANCE_S = 1.0  # the labels' own precision is ±0.5-1 s (runner.tools.evaluation)
_UPDATE_EVERY_S = 0.2  # progress callbacks to the UI at most this often
TIMELINE_WIDTH = 620  # pixels, the width of the app's right column

add_messages(
    {
        "fr": {
            "tuning.save_title": "Enregistrer ces seuils comme nouvelle révision du site",
            "tuning.save": "Enregistrer la révision",
            "tuning.saved": "seuils de {rule} enregistrés : révision {revision} du site {site} ({path})",
            "tuning.scored_until": "annulé à {seconds} s : seuls les événements rejoués jusque-là sont comptés",
        },
        "en": {
            "tuning.save_title": "Save these thresholds as a new revision of the site",
            "tuning.save": "Save the revision",
            "tuning.saved": "thresholds of {rule} saved: revision {revision} of site {site} ({path})",
            "tuning.scored_until": "cancelled at {seconds} s: only the events replayed until then count",
        },
    }
)


# -- clips ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipInfo:
    path: Path
    frames: int
    fps: float
    duration_s: float


def clip_info(path: Path) -> ClipInfo:
    """Frame count, frame rate and duration of a recorded clip, as OpenCV reads its header.

    Args:
        path: the video file.

    Returns:
        Its info; an implausible frame rate (outside 1..1000) is taken as 25 fps, like the capture does,
        and a clip whose frame count is unknown lasts 0 s.

    Raises:
        SourceError: the file does not exist or OpenCV cannot open it.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(t("tuning.clip_missing", path=path))
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(t("tuning.clip_unreadable", path=path))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    fps = fps if 1.0 <= fps <= 1000.0 else 25.0  # the same fallback as runner.sources.capture
    return ClipInfo(path, frames, fps, frames / fps if frames > 0 else 0.0)


def list_clips(folder: Path) -> list[Path]:
    """The video files of a folder (by suffix, `VIDEO_SUFFIXES`), not its subfolders.

    Args:
        folder: the clips folder.

    Returns:
        Their paths, sorted; empty when the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


# -- one replay -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertPoint:
    t_s: float
    kind: str
    rule_id: str
    score: float
    subject: str


@dataclass(frozen=True)
class ReplayRequest:
    config: SiteConfig
    camera_id: str
    clip: Path
    rule_id: str | None = None  # None: every enabled rule of the camera
    label: str = ""
    base_dir: Path = Path(".")  # the site folder: relative model paths are resolved from there


@dataclass
class ReplayResult:
    number: int
    request: ReplayRequest
    clip: ClipInfo
    state: str = "pending"  # pending | running | done | cancelled | failed
    alerts: list[AlertPoint] = field(default_factory=list)
    frames: int = 0
    expected_frames: int = 0
    replayed_s: float = 0.0  # clip time of the last frame the pipeline processed
    stop_reason: str = ""
    error: str | None = None
    wall_s: float = 0.0
    events: list[LabelledEvent] = field(default_factory=list)  # expected events of this clip
    scores: dict[str, EventScore] = field(default_factory=dict)  # by rule kind, when events are given

    @property
    def label(self) -> str:
        return f"#{self.number} {self.request.label}".strip()

    @property
    def progress(self) -> float:
        if self.state in ("done", "cancelled", "failed"):
            return 1.0 if self.state == "done" else min(1.0, self.frames / max(1, self.expected_frames))
        return min(0.99, self.frames / max(1, self.expected_frames))

    def kinds(self) -> list[str]:
        """Rule kinds this run evaluated: the chosen rule's, or those of every enabled rule.

        Returns:
            The kinds, sorted, each once.
        """
        camera = self.request.config.camera(self.request.camera_id)
        rule_id = self.request.rule_id
        return sorted({r.kind for r in camera.rules if (r.id == rule_id if rule_id else r.enabled)})


def focus_on_rule(config: SiteConfig, camera_id: str, rule_id: str | None) -> SiteConfig:
    """The config with only `rule_id` enabled on that camera (every rule when None).

    Args:
        config: the site config replayed.
        camera_id: the camera replayed.
        rule_id: the rule to keep enabled; None keeps the config as it is.

    Returns:
        A copy with the camera's other rules disabled (the config itself when `rule_id` is None).

    Raises:
        KeyError: no such camera, or the camera has no such rule.
    """
    if rule_id is None:
        return config
    camera = config.camera(camera_id)
    if rule_id not in [r.id for r in camera.rules]:
        raise KeyError(t("tuning.unknown_rule", rule=rule_id, camera=camera_id))
    rules = [r.model_copy(update={"enabled": r.id == rule_id}) for r in camera.rules]
    cameras = [c.model_copy(update={"rules": rules}) if c.id == camera_id else c for c in config.cameras]
    return config.model_copy(update={"cameras": cameras})


def expected_processed_frames(clip: ClipInfo, process_fps: float) -> int:
    """About how many frames the capture will hand to the pipeline (one every 1/process_fps s).

    Args:
        clip: the clip's info.
        process_fps: the camera's processing rate, frames per second.

    Returns:
        At least 1 (1 when the clip's frame count is unknown), at most the clip's frame count.
    """
    if clip.frames <= 0:
        return 1
    return max(1, min(clip.frames, math.ceil(clip.duration_s * min(process_fps, clip.fps))))


class ReplayJob:
    """One replay in a background thread; `cancel()` stops the Runner within a frame or two."""

    def __init__(
        self,
        result: ReplayResult,
        register: Register,
        work_dir: Path,
        pool: Any,
        on_update: Callable[[ReplayResult], None] | None = None,
        on_finished: Callable[[ReplayResult], None] | None = None,
    ):
        self.result = result
        self.register = register
        self.work_dir = Path(work_dir)
        self.pool = pool
        self.on_update = on_update or (lambda result: None)
        self.on_finished = on_finished or (lambda result: None)
        self._lock = threading.Lock()
        self._runner: Runner | None = None
        self._cancelled = False
        self._last_update = 0.0
        self._thread = threading.Thread(target=self._run, name=f"replay-{result.number}", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> ReplayJob:
        """Start the replay's thread (once).

        Returns:
            The job itself.
        """
        self.result.state = "running"
        self._thread.start()
        return self

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._runner is not None:
                self._runner.stop()

    def wait(self, timeout_s: float | None = None) -> ReplayResult:
        """Wait for the replay to end.

        Args:
            timeout_s: the longest wait, seconds; None waits for the end.

        Returns:
            The result, final or (after a timeout) as far as the replay got.
        """
        self._thread.join(timeout_s)
        return self.result

    def _run(self) -> None:
        started = time.monotonic()
        try:
            summary = self._make_runner().run()
            self.result.stop_reason = summary.stop_reason
            error = summary.camera_errors.get(self.result.request.camera_id)
            self.result.state = "failed" if error else "cancelled" if self._cancelled else "done"
            self.result.error = error
        except VigieError as exc:
            self.result.state, self.result.error = "failed", str(exc)
        except Exception as exc:  # shown in the app rather than lost in the thread
            self.result.state, self.result.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.result.wall_s = time.monotonic() - started
            self.result.scores = score_result(self.result)
            self.on_update(self.result)
            self.on_finished(self.result)

    def _make_runner(self) -> Runner:
        request = self.result.request
        config = focus_on_rule(request.config, request.camera_id, request.rule_id)
        # The replayed config is written and read back like any config, so that its sha256 in the
        # register is the hash of real bytes (and a draft that the runner rejects fails here).
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"{config.site}-run{self.result.number:03d}.yaml"
        path.write_text(dump_config(config), encoding="utf-8")
        options = RunOptions(
            mode="replay",
            camera_ids=[request.camera_id],
            source_override=str(Path(request.clip).resolve()),
            retention=False,
            on_frame=self._frame_done,
        )
        runner = Runner(load_config(path), self.register, options, pool=self.pool, on_alert=self._alert)
        with self._lock:
            self._runner = runner
            if self._cancelled:
                runner.stop()
        return runner

    def _frame_done(self, camera_id: str, frame: Frame) -> None:
        self.result.frames += 1
        self.result.replayed_s = max(self.result.replayed_s, frame.t_s)
        now = time.monotonic()
        if now - self._last_update >= _UPDATE_EVERY_S:
            self._last_update = now
            self.on_update(self.result)

    def _alert(self, raised: RaisedAlert) -> None:
        record = raised.record
        self.result.alerts.append(AlertPoint(record.t_s, record.kind, record.rule_id, record.score, record.subject))


def score_result(result: ReplayResult, tolerance_s: float = LABEL_TOLERANCE_S) -> dict[str, EventScore]:
    """found / missed / false per rule kind of the run, when the clip has expected events.

    Args:
        result: the run, with the clip's expected events.
        tolerance_s: slack around each expected event, seconds.

    Returns:
        A score per rule kind the run evaluated; empty when the clip has no expected event. A cancelled
        run is scored on what it replayed: events it never reached are left out, and one it stopped in
        the middle of counts as found if an alert caught it, never as missed.
    """
    if not result.events:
        return {}
    cancelled = result.state == "cancelled"
    scores = {}
    for kind in result.kinds():
        events = [e for e in result.events if e.kind == kind]
        if cancelled:
            events = [e for e in events if e.start_s - tolerance_s <= result.replayed_s]
        times = [a.t_s for a in result.alerts if a.kind == kind]
        score = score_clip(times, events, tolerance_s)
        if cancelled:
            score.missed = [e for e in score.missed if e.end_s + tolerance_s <= result.replayed_s]
        scores[kind] = score
    return scores


# -- a session of runs ------------------------------------------------------------------------------
def default_pool_factory(config: SiteConfig, base_dir: Path) -> ModelPool:
    """The runner's own model pool, what a replay uses unless a test gives another.

    Args:
        config: the config whose `models:` section is loaded.
        base_dir: the folder relative model paths are taken from.

    Returns:
        The pool.
    """
    return ModelPool(config, base_dir)


class TuningSession:
    """The runs of one tuning session; models are loaded once per distinct `models:` section."""

    def __init__(self, register: Register, work_dir: Path, pool_factory: PoolFactory = default_pool_factory):
        self.register = register
        self.work_dir = Path(work_dir)
        self.pool_factory = pool_factory
        self.results: list[ReplayResult] = []
        self._pools: dict[tuple[str, str], Any] = {}
        self._job: ReplayJob | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None and self._job.running

    def start(
        self,
        request: ReplayRequest,
        events: list[LabelledEvent] | None = None,
        on_update: Callable[[ReplayResult], None] | None = None,
        on_finished: Callable[[ReplayResult], None] | None = None,
    ) -> ReplayJob:
        """Start a replay of the request (one at a time) in the background.

        Args:
            request: config, camera, clip and rule to replay.
            events: expected events of any clip; those of the request's clip are kept for the scores.
            on_update: called from the replay thread with the result as it progresses (at most every
                0.2 s, and once at the end).
            on_finished: called from the replay thread once the replay ended, whatever the outcome.

        Returns:
            The started job; its result is also appended to `results`.

        Raises:
            RuntimeError: a replay is already running.
            KeyError: the config has no such camera.
            SourceError: the clip does not exist or cannot be opened.
        """
        if self.busy:
            raise RuntimeError(t("tuning.busy"))
        request.config.camera(request.camera_id)  # KeyError on an unknown camera, before any thread
        info = clip_info(request.clip)
        process_fps = request.config.camera(request.camera_id).analysed_fps
        clip_events = [e for e in events or [] if e.clip == Path(request.clip).name]
        result = ReplayResult(
            len(self.results) + 1,
            request,
            info,
            events=clip_events,
            expected_frames=expected_processed_frames(info, process_fps),
        )
        self.results.append(result)
        self._job = ReplayJob(result, self.register, self.work_dir, self._pool(request), on_update, on_finished)
        return self._job.start()

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def _pool(self, request: ReplayRequest) -> Any:
        key = (repr(sorted(request.config.model_dump(mode="json")["models"].items())), str(request.base_dir))
        if key not in self._pools:
            self._pools[key] = self.pool_factory(request.config, Path(request.base_dir))
        return self._pools[key]

    def result(self, number: int) -> ReplayResult:
        """One run of the session.

        Args:
            number: the run's number (from 1, in start order).

        Returns:
            Its result.

        Raises:
            StopIteration: no run has that number.
        """
        return next(r for r in self.results if r.number == number)


def read_labels(path: Path | None) -> list[LabelledEvent]:
    """Expected events from a CSV (clip,event_type,polarity,start_s,end_s); a clear error when unreadable.

    Args:
        path: the CSV file; None or blank means no labels.

    Returns:
        The events of every clip; empty without a path.

    Raises:
        SourceError: the file does not exist or a row cannot be read.
    """
    if path is None or not str(path).strip():
        return []
    path = Path(path)
    if not path.is_file():
        raise SourceError(t("tuning.labels_missing", path=path))
    try:
        return load_labels(path)
    except (KeyError, ValueError) as exc:
        raise SourceError(t("tuning.labels_bad", path=path, error=exc)) from None


# -- drawing ----------------------------------------------------------------------------------------
_ROW_H, _LEFT, _PAD = 26, 120, 8
_EVENT_COLORS = {"positive": "#a5d6a7", "negative": "#e0e0e0", "uncertain": "#fff59d"}


def alert_verdict(alert: AlertPoint, events: list[LabelledEvent], tolerance_s: float = LABEL_TOLERANCE_S) -> str:
    """found | false | uncertain for an alert against the events of its kind; 'unlabelled' without any.

    Args:
        alert: the alert.
        events: the clip's expected events, of every kind.
        tolerance_s: slack around each event, seconds.

    Returns:
        'found' near a positive event of its kind, else 'uncertain' near an uncertain one, else 'false';
        'unlabelled' when `events` is empty.
    """
    mine = [e for e in events if e.kind == alert.kind]
    if not events:
        return "unlabelled"

    def near(e: LabelledEvent) -> bool:
        return e.start_s - tolerance_s <= alert.t_s <= e.end_s + tolerance_s

    if any(near(e) for e in mine if e.polarity == "positive"):
        return "found"
    if any(near(e) for e in mine if e.polarity == "uncertain"):
        return "uncertain"
    return "false"


_VERDICT_COLORS = {"found": "#2e7d32", "false": "#c62828", "uncertain": "#f9a825", "unlabelled": "#1565c0"}


def timeline_svg(results: list[ReplayResult], width: int = 760) -> str:
    """One row of expected events (when any), then one row of alert ticks per run, over the clip.

    Args:
        results: the runs to draw; the expected events are those of the first one.
        width: the drawing's width, pixels.

    Returns:
        An SVG element; '' without any run.
    """
    if not results:
        return ""
    duration = max(
        [r.clip.duration_s for r in results]
        + [max((a.t_s for r in results for a in r.alerts), default=0)]
        + [e.end_s for r in results for e in r.events]
        + [1.0]
    )
    span = width - _LEFT - _PAD

    def x(t_s: float) -> float:
        return _LEFT + span * min(max(t_s, 0.0), duration) / duration

    kinds = {kind for r in results for kind in r.kinds()}
    events = [e for e in results[0].events if e.kind in kinds]
    rows = 1 + len(results) if events else len(results)
    height = rows * _ROW_H + 24
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='vigie-timeline' width='{width}' height='{height}' "
        f"font-family='sans-serif' font-size='11'>"
    ]
    row = 0
    if events:
        parts.append(_row_label(row, t("tuning.expected")))
        parts += [_event_rect(event, x(event.start_s), x(event.end_s), row * _ROW_H) for event in events]
        row += 1
    for result in results:
        parts.append(_row_label(row, result.label))
        y = row * _ROW_H
        middle = y + _ROW_H / 2
        parts.append(f"<line x1='{_LEFT}' x2='{width - _PAD}' y1='{middle}' y2='{middle}' stroke='#ccc'/>")
        parts += [_alert_tick(alert, alert_verdict(alert, result.events), x(alert.t_s), y) for alert in result.alerts]
        row += 1
    axis_y = rows * _ROW_H + 4
    step = _nice_step(duration)
    tick = 0.0
    while tick <= duration + 1e-9:
        parts.append(
            f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{axis_y - 4}' y2='{axis_y}' stroke='#666'/>"
            f"<text x='{x(tick):.1f}' y='{axis_y + 12}' text-anchor='middle' fill='#444'>{tick:g} s</text>"
        )
        tick += step
    parts.append("</svg>")
    return "".join(parts)


def _event_rect(event: LabelledEvent, x0: float, x1: float, top: float) -> str:
    tip = html.escape(f"{event.kind} {event.polarity} {event.start_s:g}–{event.end_s:g} s")
    return (
        f"<rect class='event {event.polarity}' x='{x0:.1f}' y='{top + 4}' width='{max(2.0, x1 - x0):.1f}' "
        f"height='{_ROW_H - 8}' fill='{_EVENT_COLORS.get(event.polarity, '#eee')}'><title>{tip}</title></rect>"
    )


def _alert_tick(alert: AlertPoint, verdict: str, x: float, top: float) -> str:
    tip = html.escape(
        f"{alert.t_s:.1f} s · {alert.rule_id} · {kind_title(alert.kind)} · {alert.score:.2f} · "
        f"{t(f'tuning.verdict.{verdict}')}"
    )
    return (
        f"<rect class='alert {verdict}' data-t='{alert.t_s:.2f}' x='{x - 1.5:.1f}' y='{top + 3}' width='3' "
        f"height='{_ROW_H - 6}' fill='{_VERDICT_COLORS[verdict]}'><title>{tip}</title></rect>"
    )


def _row_label(row: int, text: str) -> str:
    return (
        f"<text x='4' y='{row * _ROW_H + _ROW_H / 2 + 4}' fill='#222'>"
        f"{html.escape(text if len(text) <= 18 else text[:17] + '…')}</text>"
    )


def _nice_step(duration: float) -> float:
    raw = duration / 8
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def scores_html(result: ReplayResult) -> str:
    """A run's state and counts, with its found / missed / false table when the clip has labels.

    Args:
        result: the run.

    Returns:
        An HTML fragment.
    """
    head = (
        f"<b>{html.escape(result.label)}</b> — {t(f'tuning.state.{result.state}')}, "
        f"{t('tuning.summary', alerts=len(result.alerts), frames=result.frames, seconds=f'{result.wall_s:.1f}')}"
    )
    if result.error:
        head += f"<div style='color:#c62828'>⚠ {html.escape(result.error)}</div>"
    if result.state == "cancelled" and result.events:
        head += f"<div class='vigie-scored-until'>{t('tuning.scored_until', seconds=f'{result.replayed_s:.1f}')}</div>"
    if not result.scores:
        note = t("tuning.no_labels") if not result.events else ""
        return f"<div>{head}<div><small>{note}</small></div></div>"
    rows = "".join(
        f"<tr><td>{html.escape(kind_title(kind))}</td><td>{len(s.found)}</td><td>{len(s.missed)}</td><td>{len(s.false_alert_times_s)}</td></tr>"
        for kind, s in result.scores.items()
    )
    return (
        f"<div>{head}<table class='vigie-scores' style='border-collapse:collapse' border='1' cellpadding='3'>"
        f"<tr><th>{t('tuning.kind')}</th><th>{t('tuning.found')}</th><th>{t('tuning.missed')}</th>"
        f"<th>{t('tuning.false')}</th></tr>{rows}</table></div>"
    )


def camera_changes(a: ReplayResult, b: ReplayResult) -> list[str]:
    """What differs between the two runs' configs of the camera (thresholds, zones...).

    Args:
        a: the first run.
        b: the second run.

    Returns:
        One line per change (`FieldChange.describe`), the revision's first when it differs.
    """
    camera_a = a.request.config.camera(a.request.camera_id).model_dump(mode="json")
    camera_b = b.request.config.camera(b.request.camera_id).model_dump(mode="json")
    changes = [c.describe() for c in field_diff(camera_a, camera_b)]
    if a.request.config.revision != b.request.config.revision:
        changes.insert(0, f"~ revision: {a.request.config.revision} -> {b.request.config.revision}")
    return changes


def comparison_html(a: ReplayResult, b: ReplayResult, width: int = 760) -> str:
    """Alerts of run A and run B on one timeline, their counts side by side ("A → B"), and what differs.

    Args:
        a: run A.
        b: run B.
        width: the timeline's width, pixels.

    Returns:
        An HTML fragment, with a warning first when the runs replayed different clips.
    """
    warning = (
        ""
        if Path(a.request.clip).name == Path(b.request.clip).name
        else f"<div style='color:#c62828'>⚠ {t('tuning.different_clips')}</div>"
    )
    changes = camera_changes(a, b)
    change_text = html.escape("\n".join(changes) if changes else t("tuning.same_config"))
    return (
        f"<div class='vigie-comparison'>{warning}{timeline_svg([a, b], width)}{_side_by_side(a, b)}"
        f"<b>{t('tuning.config_changes')}</b><pre>{change_text}</pre></div>"
    )


def _side_by_side(a: ReplayResult, b: ReplayResult) -> str:
    def counts(result: ReplayResult, kind: str) -> list[str]:
        alerts = str(sum(1 for alert in result.alerts if alert.kind == kind))
        score = result.scores.get(kind)
        if score is None:
            return [alerts, "–", "–", "–"]
        return [alerts, str(len(score.found)), str(len(score.missed)), str(len(score.false_alert_times_s))]

    header = "".join(
        f"<th>{t(k)}</th>" for k in ("tuning.kind", "tuning.alerts", "tuning.found", "tuning.missed", "tuning.false")
    )
    rows = ""
    for kind in sorted(set(a.kinds()) | set(b.kinds())):
        cells = "".join(f"<td>{x} → {y}</td>" for x, y in zip(counts(a, kind), counts(b, kind), strict=True))
        rows += f"<tr><td>{html.escape(kind_title(kind))}</td>{cells}</tr>"
    return (
        f"<p><b>A</b> = {html.escape(a.label)} · <b>B</b> = {html.escape(b.label)}</p>"
        f"<table class='vigie-compare-table' style='border-collapse:collapse' border='1' cellpadding='3'>"
        f"<tr>{header}</tr>{rows}</table>"
    )


# -- the app ----------------------------------------------------------------------------------------
class TuningApp:
    """ipywidgets over TuningSession: the notebook does `TuningApp.from_env().display()`."""

    def __init__(
        self,
        zones_dir: Path,
        register_path: Path,
        clips_dir: Path,
        labels_path: Path | None,
        work_dir: Path,
        pool_factory: PoolFactory = default_pool_factory,
        site: str | None = None,
        audit_register_path: Path | str | None = None,
    ):
        self.zones_dir = Path(zones_dir)
        self.clips_dir = Path(clips_dir)
        self.session = TuningSession(Register(register_path), work_dir, pool_factory)
        # Saved thresholds are a config export like the setup app's: same exporter, checks and audit
        # log (the operators' register, not the tuning one).
        audit_path = audit_register_path or paths.register_path()
        self.exporter = ConfigExporter(self.zones_dir, lambda: Register(audit_path))
        self._clip_by_camera: dict[tuple[str, str], str] = {}  # the clip chosen for each (site, camera)
        self._clip_key: tuple[str, str] | None = None
        self.config: SiteConfig | None = None  # the revision chosen as the starting point
        self.base_dir = self.zones_dir
        self.rule_form: ModelForm | None = None
        self.rule_view: ModelFormView | None = None
        self._build_widgets(labels_path)
        open_first_site(self, self.zones_dir, site)

    @classmethod
    def from_env(cls) -> TuningApp:
        """The app over the folders the environment names (`_setup_paths`), opening $VIGIE_SITE if set.

        Replays go to the tuning register, their configs to a `tuning/` folder beside it.

        Returns:
            The app, its first (or chosen) site open.
        """
        labels = paths.labels_csv()
        return cls(
            paths.zones_dir(),
            paths.tuning_register_path(),
            paths.clips_dir(),
            labels if labels.is_file() else None,
            paths.tuning_register_path().parent / "tuning",
            site=os.environ.get("VIGIE_SITE") or None,
            audit_register_path=paths.register_path(),
        )

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()

    # -- layout ----------------------------------------------------------------------------------
    def _build_widgets(self, labels_path: Path | None) -> None:
        wide = widgets.Layout(width="580px")
        self.site_picker = widgets.Dropdown(description=t("setup.site"))
        self.site_picker.add_class("vigie-site")
        self.revision_picker = widgets.Dropdown(description=t("tuning.revision"))
        self.camera_picker = widgets.Dropdown(description=t("setup.camera"))
        self.rule_picker = widgets.Dropdown(description=t("tuning.rule"))
        self.clip_picker = widgets.Combobox(
            description=t("tuning.clip"),
            ensure_option=False,
            layout=wide,
            placeholder=t("tuning.clip_placeholder"),
            style={"description_width": "110px"},
        )
        self.clip_picker.add_class("vigie-clip")
        self.labels_path = widgets.Text(
            value=str(labels_path or ""),
            description=t("tuning.labels"),
            layout=wide,
            style={"description_width": "110px"},
        )
        self.labels_path.add_class("vigie-labels")
        self.run_button = widgets.Button(description=t("tuning.run"), icon="play", button_style="primary")
        self.run_button.add_class("vigie-run")
        self.cancel_button = widgets.Button(description=t("tuning.cancel"), icon="stop", disabled=True)
        self.cancel_button.add_class("vigie-cancel")
        self.progress = widgets.FloatProgress(min=0.0, max=1.0, value=0.0, layout=widgets.Layout(width="300px"))
        self.status = widgets.HTML()
        # The thresholds scroll in their own box, so that the run controls and results stay in view.
        # (`overflow`, not `overflow_y`: ipywidgets 8 ignores the latter, and the box then cut the fields off.)
        self.form_box = widgets.VBox(layout=widgets.Layout(max_height="430px", overflow="hidden auto", width="600px"))
        self.form_box.add_class("vigie-thresholds")
        self.actor = actor_field("vigie-save-actor")
        self.save_button = widgets.Button(description=t("tuning.save"), icon="save")
        self.save_button.add_class("vigie-save-revision")
        self.save_output = widgets.HTML()
        self.save_output.add_class("vigie-save-output")
        self.timeline = widgets.HTML()
        self.timeline.add_class("vigie-timeline-box")
        self.scores = widgets.HTML()
        self.scores.add_class("vigie-scores-box")
        self.run_a = widgets.Dropdown(description="A")
        self.run_b = widgets.Dropdown(description="B")
        self.compare_button = widgets.Button(description=t("tuning.compare"), icon="columns")
        self.compare_button.add_class("vigie-compare")
        self.comparison = widgets.HTML()
        on_user_change(self.site_picker, self._open_site)
        on_user_change(self.revision_picker, self._open_revision)
        on_user_change(self.camera_picker, self._open_camera)
        on_user_change(self.rule_picker, self._open_rule)
        self.run_button.on_click(lambda _: self._run())
        self.cancel_button.on_click(lambda _: self.session.cancel())
        self.compare_button.on_click(lambda _: self._compare())
        self.save_button.on_click(lambda _: self._save_revision())
        narrow = widgets.Layout(width="290px")
        for picker in (self.site_picker, self.revision_picker, self.camera_picker, self.rule_picker):
            picker.layout = narrow
        left = widgets.VBox(
            [
                widgets.HBox([self.site_picker, self.revision_picker]),
                widgets.HBox([self.camera_picker, self.rule_picker]),
                self.clip_picker,
                self.labels_path,
                widgets.HTML(f"<b>{t('tuning.thresholds')}</b>"),
                self.form_box,
                widgets.HTML(f"<b>{t('tuning.save_title')}</b>"),
                widgets.HBox([self.actor, self.save_button]),
                self.save_output,
            ],
            layout=widgets.Layout(width="610px"),
        )
        right = widgets.VBox(
            [
                widgets.HBox([self.run_button, self.cancel_button, self.progress]),
                self.status,
                self.timeline,
                self.scores,
                widgets.HTML(f"<h3>{t('tuning.comparison')}</h3>"),
                widgets.HBox([self.run_a, self.run_b, self.compare_button]),
                self.comparison,
            ],
            layout=widgets.Layout(width="640px", margin="0 0 0 16px"),
        )
        for picker in (self.run_a, self.run_b):
            picker.layout = widgets.Layout(width="240px")
        self.widget = widgets.VBox([widgets.HTML(f"<h2>{t('tuning.title')}</h2>"), widgets.HBox([left, right])])
        self.widget.add_class("vigie-tuning")

    def _status(self, message: str, error: bool = False) -> None:
        color = "#c62828" if error else "#2e7d32"
        self.status.value = f"<span style='color:{color}'>{html.escape(message)}</span>" if message else ""

    # -- choices ---------------------------------------------------------------------------------
    def _open_site(self, site: str | None) -> None:
        if not site:
            return
        folder = SiteFolder(self.zones_dir, site)
        self.base_dir = folder.dir
        options = [(t("tuning.current", revision="?"), folder.current_path)]
        try:
            current = folder.current()
            assert current is not None  # the site picker lists only the folders holding a site.yaml
            options = [(t("tuning.current", revision=current.config.revision), folder.current_path)]
        except VigieError as exc:
            self._status(str(exc), error=True)
        options += [(r.path.name, r.path) for r in reversed(folder.revisions())]
        replace_options(self.revision_picker, options, folder.current_path)
        self._open_revision(folder.current_path)

    def _open_revision(self, path: Path | None) -> None:
        if path is None:
            return
        try:
            self.config = load_config(path).config
        except VigieError as exc:
            self._status(str(exc), error=True)
            return
        cameras = [c.id for c in self.config.cameras]
        keep = self.camera_picker.value if self.camera_picker.value in cameras else cameras[0]
        replace_options(self.camera_picker, cameras, keep)
        self._open_camera(keep)

    def _open_camera(self, camera_id: str | None) -> None:
        if not camera_id or self.config is None:
            return
        camera = self.config.camera(camera_id)
        rules = [(t("tuning.all_rules"), None)] + [(f"{r.id} ({kind_title(r.kind)})", r.id) for r in camera.rules]
        keep = (
            self.rule_picker.value
            if self.rule_picker.value in [r.id for r in camera.rules]
            else (camera.rules[0].id if camera.rules else None)
        )
        replace_options(self.rule_picker, rules, keep)
        self._clip_follows(camera.id, camera.source)
        self._open_rule(keep)

    def _clip_follows(self, camera_id: str, source: str) -> None:
        """Offer the camera's own file and the clips folder; keep the clip chosen for this very camera only.

        Another camera's (or site's) clip would replay footage this camera never filmed.
        """
        if self._clip_key is not None and self.clip_picker.value.strip():
            self._clip_by_camera[self._clip_key] = self.clip_picker.value.strip()
        self._clip_key = (self.config.site if self.config else "", camera_id)
        clips = [str(p) for p in list_clips(self.clips_dir)]
        own = self.base_dir / source
        if "${" not in source and own.is_file():
            clips.insert(0, str(own))
        self.clip_picker.options = clips
        own_clip = str(own) if clips and clips[0] == str(own) else ""
        self.clip_picker.value = self._clip_by_camera.get(self._clip_key, own_clip)

    def _open_rule(self, rule_id: str | None) -> None:
        if self.config is None or self.camera_picker.value is None:
            return
        camera = self.config.camera(self.camera_picker.value)
        rule = next((r for r in camera.rules if r.id == rule_id), None)
        if rule is None:
            self.rule_form, self.rule_view = None, None
            self.form_box.children = [widgets.HTML(f"<small>{t('tuning.pick_rule')}</small>")]
            return
        self.rule_form = ModelForm(rule_models()[rule.kind], rule.model_dump(mode="json"))
        shapes = {"zone": [z.id for z in camera.zones], "line": [ln.id for ln in camera.lines]}
        self.rule_view = ModelFormView(self.rule_form, self._form_changed, lambda kind: shapes.get(kind, []))
        # Its natural height inside the scrolling box: shrunk to the box, it would cut the fields off.
        self.rule_view.widget.layout.flex = "0 0 auto"
        self.form_box.children = [self.rule_view.widget]
        self._form_changed()

    # -- runs ------------------------------------------------------------------------------------
    def draft(self) -> tuple[SiteConfig | None, list[tuple[str, str]]]:
        """The chosen revision with the rule form's values; (None, problems) when invalid.

        Returns:
            (the config to replay, []) when valid, else (None, its (field path, message) problems).
        """
        if self.config is None:
            return None, [("", t("tuning.no_config"))]
        if self.rule_form is None:
            return self.config, []
        data = self.config.model_dump(mode="json")
        camera_index, rule_index = self._rule_position()
        data["cameras"][camera_index]["rules"][rule_index] = dict(self.rule_form.values)
        problems = [(f"{self._rule_prefix()}.{name}", m) for name, m in self.rule_form.input_errors.items()]
        try:
            config = SiteConfig.model_validate(data)
        except ValidationError as exc:
            return None, problems + validation_problems(exc)
        return (None if problems else config), problems

    def _rule_position(self) -> tuple[int, int]:
        assert self.config is not None  # a rule form exists only once a revision is open
        camera_index = [c.id for c in self.config.cameras].index(self.camera_picker.value)
        rule_ids = [r.id for r in self.config.cameras[camera_index].rules]
        return camera_index, rule_ids.index(self.rule_picker.value)

    def _rule_prefix(self) -> str:
        camera_index, rule_index = self._rule_position()
        return f"cameras[{camera_index}].rules[{rule_index}]"

    def _form_changed(self) -> None:
        config, problems = self.draft()
        if self.rule_view is not None:
            self.rule_view.show_problems(*field_problems(problems, self._rule_prefix()))
        self.run_button.disabled = config is None or self.session.busy

    def _run(self) -> None:
        config, problems = self.draft()
        if config is None:
            self._status(problems[0][1] if problems else t("tuning.no_config"), error=True)
            return
        try:
            events = read_labels(Path(self.labels_path.value) if self.labels_path.value.strip() else None)
            edited = config != self.config
            label = f"r{config.revision}{'*' if edited else ''} {self.rule_picker.value or t('tuning.all_rules')}"
            request = ReplayRequest(
                config,
                self.camera_picker.value,
                Path(self.clip_picker.value.strip()),
                self.rule_picker.value,
                label,
                self.base_dir,
            )
            self.session.start(request, events, on_update=self._update, on_finished=self._finished)
        except (VigieError, KeyError, RuntimeError, ValueError) as exc:
            self._status(str(exc).strip("'\""), error=True)
            return
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.progress.value = 0.0
        self._status(t("tuning.running", clip=Path(self.clip_picker.value).name))

    def _update(self, result: ReplayResult) -> None:  # called from the replay thread
        self.progress.value = result.progress
        self.status.value = html.escape(
            t("tuning.progress", frames=result.frames, expected=result.expected_frames, alerts=len(result.alerts))
        )

    def _finished(self, result: ReplayResult) -> None:  # called from the replay thread
        self.run_button.disabled, self.cancel_button.disabled = False, True
        self._status(
            t(f"tuning.state.{result.state}") + (f": {result.error}" if result.error else ""),
            error=result.state == "failed",
        )
        self.timeline.value = timeline_svg([result], width=TIMELINE_WIDTH)
        self.scores.value = scores_html(result)
        options = [(r.label, r.number) for r in self.session.results if r.state in ("done", "cancelled")]
        values = [number for _, number in options]
        for picker, fallback in ((self.run_a, values[-2:-1]), (self.run_b, values[-1:])):
            # The newest two runs by default: the usual question is "did my last change help?"
            replace_options(picker, options, fallback[0] if fallback else None)

    def save_revision(self, actor: str) -> ExportResult:
        """Export the chosen revision with the rule form's thresholds as the site's next revision.

        Args:
            actor: the agent's identity, as in the setup app's export.

        Returns:
            What was written.

        Raises:
            ExportConflict: the site moved on since the chosen revision (another export, or an older
                revision chosen as the starting point); nothing written.
            ExportError: invalid thresholds, no change, no identity.
            PermissionDenied: the server's role may not export configs.
        """
        config, problems = self.draft()
        if config is None:
            raise ExportError(problems[0][1] if problems else t("tuning.no_config"), problems)
        assert self.config is not None  # a valid draft exists only once a revision is open
        return self.exporter.export(config, export_principal(actor, role_from_env()), self.config.revision)

    def _save_revision(self) -> None:
        try:
            result = self.save_revision(self.actor.value)
        except ExportConflict as exc:
            theirs = "\n".join(describe_change(change, exc.current) for change in exc.theirs)
            self.save_output.value = (
                f"<div class='vigie-conflict' style='color:#b26a00'>⚠ {html.escape(str(exc))}"
                f"<pre style='max-height:200px;overflow:auto'>{html.escape(theirs)}</pre></div>"
            )
            return
        except (ExportError, VigieError) as exc:
            self.save_output.value = f"<span style='color:#c62828'>⚠ {html.escape(str(exc))}</span>"
            return
        rule = self.rule_picker.value or t("tuning.all_rules")
        done = t("tuning.saved", rule=rule, revision=result.revision, site=result.site, path=result.revision_path)
        self.save_output.value = f"<span style='color:#2e7d32'>✔ {html.escape(done)}</span>"
        self._open_site(result.site)  # the new revision is the starting point now (same camera, rule, clip)

    def _compare(self) -> None:
        if self.run_a.value is None or self.run_b.value is None:
            self.comparison.value = f"<small>{t('tuning.pick_two')}</small>"
            return
        self.comparison.value = comparison_html(
            self.session.result(self.run_a.value), self.session.result(self.run_b.value), TIMELINE_WIDTH
        )
