"""The multi-camera runner: capture threads, one analysis loop, pause control, authorisation window,
retention schedule. Used by `vigie run` (live service) and `vigie replay` (a clip, as fast as possible).

The analysis loop works in rounds: it takes the next frame of every camera that has one and hands the
round to the detector thread, which plans each camera's detection (privacy masks, motion gate) and runs
each model once on the images of all the cameras that need it (one batched inference instead of one per
camera). The analysis thread then tracks and runs the rules camera by camera, up to `ROUNDS_AHEAD` rounds
behind the detector. Alert snapshots and register rows are written by a writer thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import supervision as sv

from runner.config.loading import LoadedConfig, expand_env, redact
from runner.config.site import Camera
from runner.core.errors import AuthorizationError, ConfigError, SourceError, StoreError, UsageError, VigieError
from runner.inference.detector import ModelPool
from runner.pipeline.camera import STAGES, CameraPipeline, DetectionPlan, FrameDetections, PlannedModel, RaisedAlert
from runner.register.retention import start_retention
from runner.register.store import Register, iso, utc_now
from runner.sources.capture import Frame, VideoSource, resolve_source

log = logging.getLogger(__name__)
ACTOR = "runner"
LIVE_SUMMARY_ALERTS = 1000  # alerts (and latencies) a live run's summary keeps in memory, newest first to go
# Rounds the detector thread may run ahead of the rules. With one, the two threads go in lockstep and
# each round costs the longer of its detection and the previous round's rules; a second round queued
# keeps the detector busy through a round whose rules run long (a density pass, alerts), and the rules
# busy through a round whose detection runs long. Each round ahead holds one frame per camera.
ROUNDS_AHEAD = 2


@dataclass
class RunOptions:
    mode: str = "live"  # live: the service; replay: recorded clips, alerts always tests
    camera_ids: list[str] | None = None
    source_override: str | None = None  # replay one clip through one camera's config
    realtime: bool | None = None  # pace file sources at their frame rate (default: live yes, replay no)
    control_poll_s: float = 0.5
    retention: bool | None = None  # run the purge schedule (default: live only)
    # Called on the analysis thread after each analysed frame (camera id, frame): progress bars.
    on_frame: Callable[[str, Frame], None] | None = None


@dataclass
class RunSummary:
    frames: dict[str, int] = field(default_factory=dict)
    alerts: list[RaisedAlert] = field(default_factory=list)
    camera_errors: dict[str, str] = field(default_factory=dict)
    stop_reason: str = "finished"
    wall_s: float = 0.0
    # Cumulative seconds per stage, all cameras: decode (capture threads' grab + retrieve), detect (masks,
    # motion gate, inference), track, rules, store (snapshot + register row, on the writer thread).
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("decode", *STAGES), 0.0))
    rule_s: dict[str, float] = field(default_factory=dict)  # the "rules" stage split by rule kind
    # For each alert, seconds from its frame leaving the source to its register row committed.
    alert_latency_s: list[float] = field(default_factory=list)
    alerts_total: int = 0  # every alert stored (a live run keeps only the newest in `alerts`)
    frames_gated: dict[str, int] = field(default_factory=dict)  # frames whose detection the motion gate skipped
    rule_errors: dict[str, int] = field(default_factory=dict)  # "camera/rule" -> frames on which the rule raised


class AlertWriter:
    """Stores alerts (snapshot JPEG + register row) on its own thread, in the order they were raised.

    The queue is bounded; when it is full the analysis waits for room (alerts are evidence: never
    dropped) and a warning says the register is slow. An alert the register refuses (disk full, read
    only) is kept and retried every `retry_s` (at most `max_retained`: each holds its frame; beyond
    that the oldest is given up, counted in `given_up`). `close()` stores everything it can."""

    def __init__(
        self,
        on_error: Callable[[str, Exception], None],
        capacity: int = 64,
        warn_after_s: float = 5.0,
        *,
        retry_s: float = 2.0,
        max_retained: int = 32,
    ):
        self.on_error = on_error
        self.warn_after_s = warn_after_s
        self.retry_s = retry_s
        self.waits = 0  # times the analysis found the queue full
        self.given_up = 0  # alerts dropped after the register refused them and the retry buffer overflowed
        self._retained: deque[tuple[str, Callable[[], object]]] = deque()
        self._max_retained = max_retained
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._work, name="alert-writer", daemon=True)
        self._thread.start()

    @property
    def retained(self) -> int:
        return len(self._retained)

    def submit(self, camera_id: str, job: Callable[[], object]) -> None:
        try:
            self._queue.put_nowait((camera_id, job))
            return
        except queue.Full:
            self.waits += 1
        while True:
            try:
                self._queue.put((camera_id, job), timeout=self.warn_after_s)
                return
            except queue.Full:
                log.warning("alert writer: queue full for %.0f s (register slow?): analysis waits", self.warn_after_s)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_s if self._retained else None)
            except queue.Empty:
                self._retry()
                continue
            if item is None:
                self._retry()  # a last attempt; what the register still refuses was reported
                return
            if self._retained:
                self._retry()
            self._store(*item)

    def _store(self, camera_id: str, job: Callable[[], object]) -> bool:
        try:
            job()
            return True
        except StoreError as exc:  # the register refuses writes for now: keep the alert for a retry
            self._retain(camera_id, job)
            self.on_error(camera_id, exc)
        except Exception as exc:  # a failed write is reported; the writer goes on with the next alert
            self.on_error(camera_id, exc)
        return False

    def _retain(self, camera_id: str, job: Callable[[], object]) -> None:
        self._retained.append((camera_id, job))
        if len(self._retained) > self._max_retained:
            lost_camera, _ = self._retained.popleft()
            self.given_up += 1
            log.error("alert writer: register unwritable, %d alert(s) given up (camera %s)", self.given_up, lost_camera)

    def _retry(self) -> None:
        """In order; stops at the first alert still refused (the others would be refused too)."""
        for _ in range(len(self._retained)):
            camera_id, job = self._retained.popleft()
            try:
                job()
            except StoreError:
                self._retained.appendleft((camera_id, job))
                return
            except Exception as exc:
                self.on_error(camera_id, exc)


@dataclass
class _Job:
    """One camera's frame in an analysis round (image, plan, outputs: filled on the detector thread)."""

    pipeline: CameraPipeline
    frame: Frame
    image: np.ndarray | None = None
    plan: DetectionPlan | None = None
    outputs: dict[str, sv.Detections] = field(default_factory=dict)
    detected: FrameDetections | None = None
    error: Exception | None = None


@dataclass
class _Inference:
    """One model's inference over a round's images, started; `collect()` waits for its detections."""

    name: str
    members: list[tuple[_Job, PlannedModel]]
    labels: frozenset[str]
    collect: Callable[[], list[sv.Detections]]
    start_s: float  # time spent starting it (letterbox, queueing), counted with the frames' detection


@dataclass(eq=False)
class _Round:
    """A round handed to the detector thread: its jobs are the analysis thread's again once `detection` is set."""

    jobs: list[_Job]
    detection: Future = field(default_factory=Future)
    inferences: list[_Inference] = field(default_factory=list)  # detector thread: started, not collected yet
    failure: BaseException | None = None  # detector thread: starting the round failed as a whole
    collect_asked: bool = False  # analysis thread: asked the detector thread to collect it without a next round


def _raiser(exc: Exception) -> Callable[[], list[sv.Detections]]:
    def collect() -> list[sv.Detections]:
        raise exc

    return collect


class _FrameSlot:
    """Frames handed from a capture thread to the analysis loop.

    Live: keep only the newest frames (a slow analysis must not lag behind the stream).
    Replay: a small bounded queue that blocks the reader, so no frame of the clip is lost.
    """

    def __init__(self, live: bool, wakeup: threading.Event):
        self.live = live
        self.frames: deque[Frame] = deque()
        self.capacity = 2 if live else 8
        self.cond = threading.Condition()
        self.wakeup = wakeup
        self.dropped = 0
        self.finished = False
        self.error: str | None = None

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self.cond:
            if self.live:
                if frame is _RESTART:
                    # Frames from before a reconnect / loop are stale; the reset marker itself must
                    # never be pushed out by newer frames, or tracks would span two streams.
                    self.dropped += self._real_count()
                    self.frames.clear()
                elif self._real_count() >= self.capacity:
                    del self.frames[1 if self.frames[0] is _RESTART else 0]
                    self.dropped += 1
                self.frames.append(frame)
            else:
                while len(self.frames) >= self.capacity and not stop.is_set():
                    self.cond.wait(0.1)
                self.frames.append(frame)
        self.wakeup.set()

    def take(self) -> Frame | None:
        with self.cond:
            frame = self.frames.popleft() if self.frames else None
            self.cond.notify_all()
            return frame

    def _real_count(self) -> int:
        return sum(1 for f in self.frames if f is not _RESTART)

    def drain(self) -> int:
        with self.cond:
            count = self._real_count()
            self.frames.clear()
            self.cond.notify_all()
            return count

    def finish(self, error: str | None = None) -> None:
        with self.cond:
            self.finished, self.error = True, error
        self.wakeup.set()


class Runner:
    def __init__(
        self,
        loaded: LoadedConfig,
        register: Register,
        options: RunOptions | None = None,
        *,
        pool: ModelPool | None = None,
        on_alert: Callable[[RaisedAlert], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.loaded = loaded
        self.config = loaded.config
        self.register = register
        self.options = options or RunOptions()
        self.live = self.options.mode == "live"
        self.pool = pool or ModelPool(self.config, loaded.base_dir)
        self.on_alert = on_alert
        self.clock = clock
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._paused: dict[str, bool] = {}
        self._errors: dict[str, int] = {}
        self._errors_lock = threading.Lock()  # the writer thread reports failures too
        # Rounds are planned and detected here, in order, while the analysis thread tracks and rules earlier ones.
        self._detect_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect")
        self._rounds: deque[_Round] = deque()  # handed to the detector, waiting for tracking and rules, oldest first
        self._last_handed: _Round | None = None
        self._started: _Round | None = None  # detector thread: the round whose inference runs, not collected yet

    # -- checks ----------------------------------------------------------------------------------
    def cameras(self) -> list[Camera]:
        wanted = self.options.camera_ids
        if wanted:
            known = {c.id for c in self.config.cameras}
            unknown = [c for c in wanted if c not in known]
            if unknown:
                raise UsageError(f"unknown camera {', '.join(unknown)} (cameras: {', '.join(sorted(known))})")
            return [self.config.camera(c) for c in wanted]
        return [c for c in self.config.cameras if c.enabled]

    def check_authorization(self, cameras: list[Camera] | None = None) -> None:
        """Operational live analysis only inside the prefectoral authorisation window, and only of
        the cameras it covers. A refusal is logged in the audit log before it is raised."""
        if not self.live or self.config.phase != "operational":
            return
        auth = self.config.authorization
        now = self.clock()
        message = None
        if auth is None or not auth.covers(now):
            window = f"{auth.valid_from.isoformat()} to {auth.valid_to.isoformat()}" if auth else "none"
            message = (
                f"operational phase: authorisation {auth.order_ref if auth else '(missing)'} is valid from {window}; "
                f"now is {iso(now)}: refusing to analyse"
            )
        elif auth.cameras:
            uncovered = [c.id for c in (cameras if cameras is not None else self.cameras()) if c.id not in auth.cameras]
            if uncovered:
                message = (
                    f"operational phase: authorisation {auth.order_ref} does not cover camera(s) "
                    f"{', '.join(uncovered)}: refusing to analyse"
                )
        if message:
            self.register.audit(
                "authorization_refused",
                ACTOR,
                None,
                {
                    "order_ref": auth.order_ref if auth else None,
                    "now": iso(now),
                    "reason": message,
                },
            )
            raise AuthorizationError(message)

    # -- main ------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> RunSummary:
        started = time.monotonic()
        cameras = self.cameras()
        self.check_authorization(cameras)
        self.register.audit(
            "config_loaded",
            ACTOR,
            None,
            {
                "site": self.config.site,
                "revision": self.config.revision,
                "sha256": self.loaded.sha256,
                "path": str(self.loaded.path),
                "phase": self.config.phase,
                "mode": self.options.mode,
                "cameras": [c.id for c in cameras],
            },
        )
        pipelines, sources = self._build(cameras)
        if not pipelines:
            self.register.audit("runner_stopped", ACTOR, None, {"reason": "no camera could start"})
            raise SourceError("no camera could start: " + "; ".join(self.summary.camera_errors.values()))
        scheduler = None
        if self.options.retention if self.options.retention is not None else self.live:
            scheduler = start_retention(self.register, self.config.retention)
        wakeup = threading.Event()
        slots = {cid: _FrameSlot(self.live, wakeup) for cid in pipelines}
        threads = [
            threading.Thread(target=self._capture, args=(sources[cid], slots[cid]), name=f"capture-{cid}", daemon=True)
            for cid in pipelines
        ]
        self.register.audit("runner_started", ACTOR, None, {"cameras": list(pipelines), "mode": self.options.mode})
        for cid in pipelines:  # before the capture threads start, so that their own reports win
            self.register.set_health(cid, "ok", "running")
        writer = AlertWriter(self._store_failed)
        for pipeline in pipelines.values():
            pipeline.writer = writer
        for thread in threads:
            thread.start()
        try:
            self._loop(pipelines, slots, sources, wakeup)
        finally:
            self._stop.set()
            self._detect_thread.shutdown(wait=True)
            writer.close()  # every alert raised is stored before the runner says it stopped
            for thread in threads:
                thread.join(timeout=5.0)
            if scheduler is not None:
                # A purge in progress ends before the runner returns: its caller closes the register next.
                scheduler.shutdown(wait=True)
            self._summarise(pipelines, sources)
            self.summary.wall_s = time.monotonic() - started
            self.register.audit(
                "runner_stopped",
                ACTOR,
                None,
                {
                    "reason": self.summary.stop_reason,
                    "frames": self.summary.frames,
                    "alerts": self.summary.alerts_total,
                    "dropped_frames": {c: s.dropped for c, s in slots.items()},
                    # Raised but never stored: the register refused them (disk full, read only) to the end.
                    "alerts_unstored": writer.given_up + writer.retained,
                },
            )
        return self.summary

    def _build(self, cameras: list[Camera]) -> tuple[dict[str, CameraPipeline], dict[str, VideoSource]]:
        pipelines, sources = {}, {}
        realtime = self.options.realtime if self.options.realtime is not None else self.live
        index_of = {c.id: i for i, c in enumerate(self.config.cameras)}
        for camera in cameras:
            raw_source = self.options.source_override or camera.source
            try:
                uri = expand_env(raw_source, f"cameras[{index_of[camera.id]}].source")
                uri = resolve_source(uri, self.loaded.base_dir)
                pipeline = CameraPipeline(
                    self.loaded,
                    camera,
                    self.pool,
                    self.register,
                    mode=self.options.mode,
                    source_label=raw_source,
                    on_alert=self._record_alert,
                )
            except (ConfigError, SourceError) as exc:
                self._camera_failed(camera.id, str(exc))
                continue
            sources[camera.id] = VideoSource(
                camera.id,
                uri,
                camera.process_fps,
                realtime=realtime,
                loop=camera.loop and self.live,
                on_event=self._event_callback(camera.id),
            )
            pipelines[camera.id] = pipeline
        return pipelines, sources

    def _summarise(self, pipelines: dict[str, CameraPipeline], sources: dict[str, VideoSource]) -> None:
        self.summary.frames = {cid: p.frames_processed for cid, p in pipelines.items()}
        self.summary.frames_gated = {cid: p.frames_gated for cid, p in pipelines.items()}
        self.summary.rule_errors = {
            f"{cid}/{rule_id}": count for cid, p in pipelines.items() for rule_id, count in p.rule_errors.items()
        }
        stage_s = dict.fromkeys(("decode", *STAGES), 0.0)
        stage_s["decode"] = sum(s.decode_s for s in sources.values())
        for pipeline in pipelines.values():
            for stage in STAGES:
                stage_s[stage] += pipeline.stage_s[stage]
            for kind, seconds in pipeline.rule_s.items():
                self.summary.rule_s[kind] = self.summary.rule_s.get(kind, 0.0) + seconds
        self.summary.stage_s = stage_s

    def _record_alert(self, raised: RaisedAlert) -> None:
        # On the writer thread, once the row is committed.
        if self.on_alert is not None:
            self.on_alert(raised)
        summary = self.summary
        summary.alerts_total += 1
        # The image is in the media folder: the summary keeps the record only, and a live service only the
        # newest ones, so that twelve days of alerts do not accumulate in memory.
        summary.alerts.append(replace(raised, snapshot_jpeg=None))
        if raised.latency_s is not None:
            summary.alert_latency_s.append(raised.latency_s)
        if self.live and len(summary.alerts) > 2 * LIVE_SUMMARY_ALERTS:
            del summary.alerts[:-LIVE_SUMMARY_ALERTS]
            del summary.alert_latency_s[:-LIVE_SUMMARY_ALERTS]

    def _camera_failed(self, camera_id: str, message: str) -> None:
        message = redact(message)  # before the log and the summary too: `vigie replay` prints the summary's errors
        log.error("%s", message)
        self.summary.camera_errors[camera_id] = message
        self.register.audit("camera_error", ACTOR, camera_id, {"error": message[:500]})
        self.register.set_health(camera_id, "error", message[:500])

    def _event_callback(self, camera_id: str):
        def on_event(kind: str, details: dict) -> None:
            # Called from capture threads; the register is thread-safe.
            try:
                self.register.audit(kind, ACTOR, camera_id, details)
                status = {"camera_degraded": "degraded", "camera_recovered": "ok", "source_ended": "ended"}.get(kind)
                if status:
                    self.register.set_health(camera_id, status, details.get("reason", ""))
            except VigieError as exc:
                log.error("camera %s: cannot log %s: %s", camera_id, kind, exc)

        return on_event

    def _capture(self, source: VideoSource, slot: _FrameSlot) -> None:
        restarts = 0
        try:
            for frame in source.frames(self._stop):
                if source.restarts != restarts:  # reconnect or loop: tell the pipeline to reset
                    restarts = source.restarts
                    slot.put(_RESTART, self._stop)
                slot.put(frame, self._stop)
            slot.finish()
        except SourceError as exc:
            self._camera_failed(source.camera_id, str(exc))
            slot.finish(str(exc))
        except Exception as exc:  # a decoder crash in one camera must not stop the others
            log.exception("camera %s: capture crashed", source.camera_id)
            self._camera_failed(
                source.camera_id, f"camera {source.camera_id}: capture failed: {type(exc).__name__}: {exc}"
            )
            slot.finish(str(exc))

    def _loop(self, pipelines, slots, sources, wakeup: threading.Event) -> None:
        next_poll = 0.0
        self.register.set_meta("runner_heartbeat_utc", iso(utc_now()))
        while not self._stop.is_set():
            now_mono = time.monotonic()
            if now_mono >= next_poll:
                next_poll = now_mono + self.options.control_poll_s
                if self._authorization_ended():
                    return
                self._apply_control(pipelines, slots)
            ready, worked = self._collect(pipelines, slots)
            if ready:
                self._analyse_round(ready)
            elif self._rounds:  # nothing new: the oldest round's rules run now rather than with the next frames
                self._finish_oldest()
                continue
            if not worked:
                if all(s.finished and not s.frames for s in slots.values()):
                    self.summary.stop_reason = "sources ended"
                    return
                wakeup.wait(0.05)
                wakeup.clear()
        self.summary.stop_reason = "stopped"
        self._finish_detected()  # a stop ends the analysis after the frames already detected (not on expiry)

    def _collect(self, pipelines, slots) -> tuple[list[tuple[CameraPipeline, Frame]], bool]:
        """The next frame of every camera that has one (at most one each, in order: nothing is skipped in
        replay); restart markers reset their camera on the way, a paused camera's frames are dropped unseen."""
        ready, worked = [], False
        for cid, pipeline in pipelines.items():
            while (frame := slots[cid].take()) is not None:
                worked = True
                if frame is _RESTART:
                    self._finish_detected({cid})  # the old stream's last frame first, then a clean state
                    pipeline.reset()
                elif not self._paused.get(cid):
                    ready.append((pipeline, frame))
                    break
        return ready, worked

    def _analyse_round(self, ready: list[tuple[CameraPipeline, Frame]]) -> None:
        """Hand this round to the detector thread, then run the rules of the rounds it is too far ahead of.

        Detection (masks, motion gate, inference) runs on the detector thread (OpenVINO and PyTorch release
        the GIL), so the analysis thread's tracking and rules of round k overlap the detection of rounds
        k+1 and k+2: on 2 cores neither waits for the other. The detector thread takes rounds in order, and
        starts a round's inference before it collects the previous round's (`_detect_step`): the requests
        of round k+1 take the cores as soon as round k's last requests end, instead of one core idling
        while the last request of each round runs alone. A camera's plan never needs its previous frame's
        outputs or rules, so the order of each camera's frames is unchanged.
        """
        handed = _Round([_Job(pipeline, frame) for pipeline, frame in ready])
        self._rounds.append(handed)
        self._last_handed = handed
        self._detect_thread.submit(self._detect_step, handed)
        while len(self._rounds) > ROUNDS_AHEAD:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        """Wait for the oldest round's detection, then track and run its rules."""
        oldest = self._rounds.popleft()
        self._wait_detection(oldest)
        self._analyse_jobs(oldest.jobs)

    def _finish_detected(self, cameras: set[str] | None = None) -> None:
        """Track and run the rules on every round handed to the detector, once detected (only `cameras`'
        frames when given; the others keep waiting for their turn)."""
        waiting, self._rounds = self._rounds, deque()
        for pending in waiting:  # round by round: a later round's detection may wait for an earlier one's rules
            self._wait_detection(pending)
            chosen = [cameras is None or job.pipeline.camera.id in cameras for job in pending.jobs]
            self._analyse_jobs([job for job, mine in zip(pending.jobs, chosen) if mine])
            pending.jobs = [job for job, mine in zip(pending.jobs, chosen) if not mine]
            if pending.jobs:
                self._rounds.append(pending)

    def _drop_detected(self, camera_id: str) -> None:
        """Forget a camera's frames handed to the detector (the camera was paused: nothing more is analysed).
        Their detection is waited for first: the camera is reset next, and its plan must not run beside."""
        for pending in self._rounds:
            self._wait_detection(pending)
            pending.jobs = [job for job in pending.jobs if job.pipeline.camera.id != camera_id]

    def _wait_detection(self, pending: _Round) -> None:
        if pending is self._last_handed and not pending.collect_asked:
            # No round follows it: the detector thread collects it now rather than after a next round's start.
            pending.collect_asked = True
            self._detect_thread.submit(self._collect_started)
        try:
            pending.detection.result()
        except Exception as exc:  # the detector thread keeps errors with their frames; anything else, with all of them
            for job in pending.jobs:
                job.error = job.error or exc

    def _analyse_jobs(self, jobs: list[_Job]) -> None:
        for job in jobs:
            try:  # one camera's bad frame never stops the others
                if job.error is not None:
                    raise job.error
                job.pipeline.analyse(job.frame, job.image, job.detected)
                if self.options.on_frame is not None:
                    self.options.on_frame(job.pipeline.camera.id, job.frame)
            except Exception as exc:
                self._analysis_failed(job.pipeline.camera.id, job.frame, exc)

    # -- on the detector thread ------------------------------------------------------------------
    def _detect_step(self, handed: _Round) -> None:
        """Start this round's inference, then collect the previous round's (its requests ran meanwhile)."""
        try:
            self._start_detection(handed)
        finally:
            previous, self._started = self._started, handed
            if previous is not None:
                self._collect_detection(previous)

    def _collect_started(self) -> None:
        if self._started is not None:
            started, self._started = self._started, None
            self._collect_detection(started)

    def _start_detection(self, handed: _Round) -> None:
        """Each camera's masks and plan, then one inference started per model over the images of every
        camera that runs it this round, asked for the union of their labels. An error stays with its
        camera's frame, reported when its rules' turn comes."""
        try:
            for job in handed.jobs:
                if job.pipeline.warm_shape != job.frame.image.shape[:2]:  # a camera's first frame, or a new size
                    self._warm_up(job.pipeline, *job.frame.image.shape[:2])
                try:
                    started = time.perf_counter()
                    job.image = job.pipeline.prepare(job.frame)
                    job.plan = job.pipeline.plan(job.image, job.frame.t_s)
                    job.pipeline.stage_s["detect"] += time.perf_counter() - started
                except Exception as exc:
                    job.error = exc
            by_model: dict[str, list[tuple[_Job, PlannedModel]]] = {}
            for job in handed.jobs:
                for model in job.plan.run if job.error is None else ():
                    by_model.setdefault(model.name, []).append((job, model))
            for name, members in by_model.items():
                handed.inferences.append(self._start_inference(name, members))
        except Exception as exc:  # not a camera's fault: every frame of the round carries it
            handed.failure = exc

    @staticmethod
    def _start_inference(name: str, members: list[tuple[_Job, PlannedModel]]) -> _Inference:
        labels = frozenset().union(*(model.labels for _, model in members))
        started = time.perf_counter()
        try:
            collect = members[0][1].detector.start_detect([job.image for job, _ in members], labels)
        except Exception as exc:
            collect = _raiser(exc)
        return _Inference(name, members, labels, collect, time.perf_counter() - started)

    def _collect_detection(self, started: _Round) -> None:
        """Wait for the round's inferences and combine each camera's detections; the round is then the
        analysis thread's."""
        try:
            if started.failure is not None:
                raise started.failure
            for inference in started.inferences:
                self._collect_inference(inference)
            for job in started.jobs:
                if job.error is None:
                    try:
                        job.detected = job.pipeline.combine(job.outputs, job.frame.t_s, job.plan)
                    except Exception as exc:
                        job.error = exc
            started.detection.set_result(None)
        except BaseException as exc:
            started.detection.set_exception(exc)

    def _collect_inference(self, inference: _Inference) -> None:
        """Each camera keeps only its own labels; when the batch fails, one call per camera finds whose
        frame the model refuses, and the error stays with it."""
        members = inference.members
        started = time.perf_counter()
        try:
            outputs = inference.collect()
            if len(outputs) != len(members):
                raise RuntimeError(f"model {inference.name} returned {len(outputs)} results for {len(members)} images")
        except Exception as exc:
            if len(members) == 1:
                members[0][0].error = exc
                outputs = [None]
            else:
                outputs = [self._detect_alone(job, model) for job, model in members]
        share_s = (inference.start_s + time.perf_counter() - started) / len(members)
        for (job, model), output in zip(members, outputs):
            job.pipeline.stage_s["detect"] += share_s
            if output is not None:
                job.outputs[inference.name] = (
                    output if model.labels == inference.labels else only_labels(output, model.labels)
                )

    @staticmethod
    def _warm_up(pipeline: CameraPipeline, height: int, width: int) -> None:
        try:
            pipeline.warm_up(height, width)
        except Exception as exc:  # the frames still run: each shape is then compiled when first needed
            log.warning("camera %s: warming up the models for %dx%d failed: %s", pipeline.camera.id, width, height, exc)

    @staticmethod
    def _detect_alone(job: _Job, model: PlannedModel) -> sv.Detections | None:
        try:
            return model.detector.detect([job.image], model.labels)[0]
        except Exception as exc:
            job.error = exc
            return None

    def _store_failed(self, camera_id: str, exc: Exception) -> None:
        """A snapshot or register write failed on the writer thread (the frame is long gone)."""
        self._report_error(camera_id, exc, "storing an alert failed")

    def _analysis_failed(self, camera_id: str, frame: Frame, exc: Exception) -> None:
        self._report_error(camera_id, exc, f"analysis failed on frame {frame.index}")

    def _report_error(self, camera_id: str, exc: Exception, what: str) -> None:
        """Logged on the first failure and then every 1000th, so a broken camera cannot flood the audit log."""
        with self._errors_lock:
            count = self._errors[camera_id] = self._errors.get(camera_id, 0) + 1
        text = str(exc) if isinstance(exc, VigieError) else f"{type(exc).__name__}: {exc}"
        if count == 1 or count % 1000 == 0:
            if isinstance(exc, VigieError):
                log.error("camera %s: %s", camera_id, exc)
            else:
                log.error("camera %s: %s", camera_id, what, exc_info=exc)
            try:
                self.register.audit("camera_error", ACTOR, camera_id, {"error": redact(text)[:500], "count": count})
            except VigieError as store_exc:
                log.error("camera %s: cannot log the error: %s", camera_id, store_exc)

    def _authorization_ended(self) -> bool:
        if not self.live or self.config.phase != "operational" or self.config.authorization is None:
            return False
        if self.clock() < self.config.authorization.valid_to:
            return False
        self.summary.stop_reason = "authorization expired"
        self.register.audit(
            "authorization_expired",
            ACTOR,
            None,
            {
                "order_ref": self.config.authorization.order_ref,
                "valid_to": self.config.authorization.valid_to.isoformat(),
            },
        )
        log.warning("authorisation %s expired: stopping", self.config.authorization.order_ref)
        return True

    def _apply_control(self, pipelines, slots) -> None:
        if not self.live:
            return
        state = self.register.control_state()
        self.register.set_meta("runner_heartbeat_utc", iso(utc_now()))
        for cid in pipelines:
            paused = self.register.is_paused(cid, state)
            if paused != self._paused.get(cid, False):
                self._paused[cid] = paused
                dropped = slots[cid].drain()
                # Latency against the wall clock the request was stamped with (not the injectable clock).
                now = utc_now()
                requested = max((state[s]["changed_utc"] for s in ("*", cid) if s in state), default=iso(now))
                latency_s = max(0.0, (now - datetime.fromisoformat(requested)).total_seconds())
                self.register.audit(
                    "pause_applied" if paused else "resume_applied",
                    ACTOR,
                    cid,
                    {"latency_s": round(latency_s, 3), "frames_dropped": dropped},
                )
                if paused:
                    self._drop_detected(cid)
                    pipelines[cid].reset()
                log.info("camera %s %s", cid, "paused" if paused else "resumed")


_RESTART = Frame("", -1, -1.0, datetime.min, None)  # type: ignore[arg-type]


def only_labels(detections: sv.Detections, labels: frozenset[str]) -> sv.Detections:
    """The detections whose class is one of `labels` (a batched call asked for several cameras' labels)."""
    names = detections.data.get("class_name") if detections.data else None
    if names is None or len(detections) == 0:
        return detections
    return detections[np.array([str(n) in labels for n in names], dtype=bool)]
