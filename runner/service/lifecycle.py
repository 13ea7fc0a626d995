"""The multi-camera runner's lifecycle: check the authorisation window, build one pipeline and one source
per camera, start the capture threads, the writer and the retention schedule, run the analysis loop (with
pause / resume control) until the sources end, a stop or the window's end, then summarise. Used by `vigie run`
(live service) and `vigie replay` (a clip, as fast as possible).

The parts it owns: `slots.FrameSlot` (capture thread -> analysis loop), `scheduler.DetectionScheduler`
(rounds detected on the detector thread, tracked and ruled here), `writer.AlertWriter` (snapshots and register
rows off the analysis thread).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from runner.config.loading import LoadedConfig, expand_env, redact
from runner.config.site import Camera
from runner.core.errors import AuthorizationError, ConfigError, SourceError, StoreError, UsageError, VigieError
from runner.inference.detector import ModelPool
from runner.outputs.dispatcher import Dispatcher, start_dispatcher
from runner.pipeline.camera import STAGES, AlertSink, CameraPipeline, RaisedAlert
from runner.register import Register, iso, utc_now
from runner.register.leases import OUTBOX_DUTY, PURGE_DUTY, Lease, LeaseLost
from runner.register.retention import SitePolicy, start_retention
from runner.service.cluster import NodeCluster
from runner.service.config_watch import CONFIG_CHANGED, ConfigWatch
from runner.service.scheduler import DetectionScheduler
from runner.service.slots import RESTART, FrameSlot
from runner.service.systemd_notify import ServiceNotifier, SystemdNotifier
from runner.service.writer import AlertWriter
from runner.sources.capture import Frame, VideoSource, resolve_source

log = logging.getLogger(__name__)
ACTOR = "runner"
OUTPUTS_DRAIN_S = 5.0  # at a stop, the outbox's backlog gets this long to go out; the rest goes at the next start
LIVE_SUMMARY_ALERTS = 1000  # alerts (and latencies) a live run's summary keeps in memory, newest first to go


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
    frames_predicted: dict[str, int] = field(default_factory=dict)  # frames whose tracks the tracker predicted
    rule_errors: dict[str, int] = field(default_factory=dict)  # "camera/rule" -> frames on which the rule raised
    # Frames a live stream's slot dropped because the analysis was behind (a file never drops: it waits).
    frames_dropped: dict[str, int] = field(default_factory=dict)
    # Cameras whose file decoded far fewer frames than it declares (damaged or truncated): camera -> why.
    source_warnings: dict[str, str] = field(default_factory=dict)


class Runner:
    """The multi-camera runner: one capture thread per camera, one analysis loop, the detector thread of its
    `scheduler`, an alert writer, and (live) the retention schedule."""

    def __init__(
        self,
        loaded: LoadedConfig,
        register: Register,
        options: RunOptions | None = None,
        *,
        pool: ModelPool | None = None,
        on_alert: Callable[[RaisedAlert], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
        cluster: NodeCluster | None = None,
    ):
        """A runner for the cameras of a loaded config; `run()` starts it.

        Args:
            loaded: the site config, with its path and hash (recorded with every alert).
            register: where alerts, audit events, health and control live.
            options: mode, cameras, pacing, retention and progress callback (defaults: the live service).
            pool: the detectors (default: built from the config's models).
            on_alert: called on the writer thread with each alert once its register row is committed.
            clock: the time the authorisation window is checked against.
            cluster: a node among several (`vigie run --node`): the cameras run are those whose lease it holds,
                started and stopped as leases come and go; None: every camera, from start to stop.
        """
        self.loaded = loaded
        self.config = loaded.config
        self.register = register
        self.options = options or RunOptions()
        self.live = self.options.mode == "live"
        self.pool = pool or ModelPool(self.config, loaded.base_dir)
        self.on_alert = on_alert
        self.clock = clock
        self.cluster = cluster
        # A node's cameras come and go with its leases (see `_follow_leases`).
        self._leases_run: dict[str, Lease] = {}  # camera -> the lease its pipeline stores alerts under
        self._camera_stops: dict[str, threading.Event] = {}
        self._retired_frames: dict[str, int] = {}  # frames analysed by the pipelines of cameras given up
        self._duty_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duties")  # off the lease thread
        self._purges = None  # a node's purge schedule, while it holds the purge duty
        self._capture_threads: list[threading.Thread] = []  # those of the cameras a node started
        self._start_retry_at: dict[str, float] = {}  # camera -> when to try again to start it (monotonic)
        self.summary = RunSummary()
        self._config_watch: ConfigWatch | None = None  # a node's watch on its site file (made by `run`)
        self._stop = threading.Event()
        self._paused: dict[str, bool] = {}
        self._errors: dict[str, int] = {}
        self._errors_lock = threading.Lock()  # the writer thread reports failures too
        self.scheduler = DetectionScheduler(self._analysis_failed, self.options.on_frame)
        # Under systemd (Type=notify, WatchdogSec=): READY, STOPPING, and watchdog pings while the loop progresses.
        self.notifier = ServiceNotifier(
            SystemdNotifier.from_env() if self.live else SystemdNotifier(None), status=self._status_line
        )

    # -- checks ----------------------------------------------------------------------------------
    def cameras(self) -> list[Camera]:
        """The cameras to run: those named in the options (an unknown one is a `UsageError`), else the enabled ones.

        Returns:
            The named cameras in the options' order (disabled ones included), else the enabled cameras in
            config order.

        Raises:
            UsageError: an option names a camera the site does not have.
        """
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
        the cameras it covers. A refusal is logged in the audit log before it is raised.

        Args:
            cameras: the cameras about to run (default: `cameras()`).

        Raises:
            AuthorizationError: an operational live run outside the window, or of a camera it does not cover.
        """
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
        """Ask the analysis loop to stop (from any thread); `run()` returns once the frames detected are analysed."""
        self._stop.set()
        self.notifier.stopping()

    def _status_line(self) -> str:
        """The line `systemctl status` shows while the service runs (sent with each watchdog ping)."""
        paused = sum(self._paused.values())
        stored = f"running: {self.summary.alerts_total} alert(s) stored"
        if self.cluster is not None:
            stored += f", {len(self._leases_run)} camera(s) leased"
        return f"{stored}, {paused} camera(s) paused" if paused else stored

    def run(self) -> RunSummary:
        """Run until the sources end, `stop()` or the end of the authorisation window.

        Returns:
            The run's summary: frames, alerts, errors, stage times, why it stopped.
        """
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
        if self.cluster is not None and self.live:  # a new revision of the site file reaches the node (re-executed)
            self._config_watch = ConfigWatch(self.loaded, self.register, self.cluster.node, ACTOR)
        # The pipelines hand their alerts to the writer; it stores nothing until the loop analyses frames.
        writer = AlertWriter(self._store_failed)
        try:
            # A node starts with no camera: the lease loop hands it its share once the analysis loop runs.
            pipelines, sources = self._build([] if self.cluster else cameras, writer)
        except BaseException:
            writer.close()
            raise
        if not pipelines and self.cluster is None:
            writer.close()
            self.register.audit("runner_stopped", ACTOR, None, {"reason": "no camera could start"})
            raise SourceError("no camera could start: " + "; ".join(self.summary.camera_errors.values()))
        purges = None
        if self.cluster is None and (self.options.retention if self.options.retention is not None else self.live):
            purges = start_retention(self.register, SitePolicy.of(self.config))  # this site's records only
        wakeup = threading.Event()
        # Only a live stream keeps just its newest frames: a file is not live, none of its frames is dropped
        # (with `--fast` too: the reader waits for the analysis instead).
        slots = {cid: FrameSlot(self.live and sources[cid].stream, wakeup) for cid in pipelines}
        threads = [
            threading.Thread(target=self._capture, args=(sources[cid], slots[cid]), name=f"capture-{cid}", daemon=True)
            for cid in pipelines
        ]
        self.register.audit("runner_started", ACTOR, None, {"cameras": list(pipelines), "mode": self.options.mode})
        marker = self._mark_running(list(pipelines)) if self.live else None
        for cid in pipelines:  # before the capture threads start, so that their own reports win
            self.register.set_health(cid, "ok", "running")
        for thread in threads:
            thread.start()
        self.notifier.ready(
            f"node {self.cluster.node}: cameras follow the leases"
            if self.cluster is not None
            else f"analysing {len(pipelines)} camera(s): {', '.join(pipelines)}"
        )
        dispatcher: Dispatcher | None = None
        self._writer, self._wakeup = writer, wakeup
        try:
            if self.cluster is not None:
                self.cluster.on_duty = self._duty_changed
                self.cluster.loop_silent_s = self.notifier.silent_s  # a hung loop stops renewing its leases
                self.cluster.start()
                # One node of the site pushes its outbox out: the one holding the outbox duty.
                dispatcher = start_dispatcher(
                    self.register, self.config, node=self.cluster.node, should_run=self.cluster.should_run(OUTBOX_DUTY)
                )
            else:
                dispatcher = start_dispatcher(self.register, self.config)  # alerts pushed out (MQTT, webhooks)
            self._loop(pipelines, slots, sources, wakeup)
        finally:
            self._stop.set()
            for camera_stop in self._camera_stops.values():
                camera_stop.set()
            if self.summary.stop_reason == CONFIG_CHANGED:  # `vigie run` re-executes the node: same PID, no stop
                self.notifier.reloading(f"reloading: {self.summary.stop_reason}")
            else:
                self.notifier.stopping(f"stopping: {self.summary.stop_reason}")
            self.scheduler.shutdown()
            for pipeline in pipelines.values():
                pipeline.finish_clips()  # a clip still filling ends with the run, shorter after its alert
            writer.close()  # every alert raised is stored before the runner says it stopped
            if dispatcher is not None:
                dispatcher.stop(drain_s=OUTPUTS_DRAIN_S)
            if self.cluster is not None:
                self.cluster.close()  # after the writer: the alerts above were stored under leases still held
                self._duty_thread.shutdown(wait=True)
                purges = self._purges
            for thread in threads + self._capture_threads:
                thread.join(timeout=5.0)
            if purges is not None:
                # A purge in progress ends before the runner returns: its caller closes the register next.
                purges.shutdown(wait=True)
            self._summarise(pipelines, sources)
            for cid, frames in self._retired_frames.items():
                self.summary.frames[cid] = self.summary.frames.get(cid, 0) + frames
            self.summary.frames_dropped = {c: s.dropped for c, s in slots.items()}
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
            if marker is not None:
                _clear_marker(self.register, marker)  # a clean stop: the next start finds no crash
            self.notifier.close()
        return self.summary

    # -- crash detection -------------------------------------------------------------------------
    def _mark_running(self, camera_ids: list[str]) -> str:
        """Report the runs of this register that died without stopping (`runner_crashed`), then leave this
        run's own marker: the next start, or `vigie status`, finds it if this process dies (kill -9, power cut).

        Args:
            camera_ids: the cameras this run analyses.

        Returns:
            The marker's meta key, to clear at a clean stop.
        """
        for key, run in crashed_runs(self.register):
            self.register.audit("runner_crashed", ACTOR, None, run)
            for camera_id in run.get("cameras", []):
                self.register.set_health(camera_id, "crashed", f"runner pid {run.get('pid')} died without stopping")
            self.register.set_meta("runner_last_crash", json.dumps({**run, "detected_utc": iso(utc_now())}))
            _clear_marker(self.register, key)
            log.warning("the runner started %s (pid %s) died without stopping", run.get("started_utc"), run.get("pid"))
        # One key per run: two runners of one process on one register keep a marker each.
        key = f"{RUN_MARKER_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        marker = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_start": _process_start_ticks(os.getpid()),
            "started_utc": iso(utc_now()),
            "cameras": camera_ids,
        }
        self.register.set_meta(key, json.dumps(marker))
        return key

    def _build(
        self, cameras: list[Camera], writer: AlertSink | None = None, register: Register | None = None
    ) -> tuple[dict[str, CameraPipeline], dict[str, VideoSource]]:
        """One pipeline and one source per camera that can start (the others are reported and skipped).

        Args:
            cameras: the cameras to run.
            writer: where the pipelines hand the storing of their alerts (None: stored in line).
            register: where the pipelines store (default: the runner's; a node's view under its lease).

        Returns:
            The pipelines and the sources, by camera id.
        """
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
                    register or self.register,
                    mode=self.options.mode,
                    source_label=raw_source,
                    on_alert=self._record_alert,
                    writer=writer,
                )
            except (ConfigError, SourceError) as exc:
                self._camera_failed(camera.id, str(exc))
                continue
            sources[camera.id] = VideoSource(
                camera.id,
                uri,
                camera.analysed_fps,
                realtime=realtime,
                loop=camera.loop and self.live,
                on_event=self._event_callback(camera.id),
            )
            pipelines[camera.id] = pipeline
        return pipelines, sources

    # -- a node among several: cameras follow the leases ------------------------------------------
    def _poll_control(self, pipelines, slots) -> None:
        """Pause / resume from the register. A node outlives a register out of reach (its leases stop its
        cameras in time, its writer keeps their alerts): the next poll tries again. A single runner stops."""
        try:
            self._apply_control(pipelines, slots)
        except StoreError as exc:
            if self.cluster is None:
                raise
            log.warning("control not read (register out of reach): %s", exc)

    def _follow_leases(self, pipelines, slots, sources) -> None:
        """Start the cameras whose lease the node just took; stop those it lost or gives back (every round:
        a lease past its local deadline stops its camera within one round, before it can expire for others)."""
        assert self.cluster is not None
        wanted = self.cluster.wanted()
        for cid, lease in list(self._leases_run.items()):
            if cid not in wanted or wanted[cid].token != lease.token:
                self.stop_camera(cid, pipelines, slots, sources)
        now = time.monotonic()
        for cid, lease in wanted.items():
            if cid not in self._leases_run and now >= self._start_retry_at.get(cid, 0.0):
                try:
                    self.start_camera(self.config.camera(cid), lease, pipelines, slots, sources)
                except StoreError as exc:  # nothing started: tried again in a second
                    self._start_retry_at[cid] = now + 1.0
                    log.warning("camera %s not started (register out of reach): %s", cid, exc)

    def start_camera(self, camera: Camera, lease: Lease, pipelines, slots, sources) -> bool:
        """Start analysing one camera under a node's lease: its pipeline (storing under the lease), its source
        and its capture thread. A camera that cannot start is reported and keeps its lease (the other nodes
        would fail on it too); it is not retried under that lease.

        Args:
            camera: the camera.
            lease: the node's lease on it.
            pipelines: the running pipelines by camera (the new one is added).
            slots: their frame slots (likewise).
            sources: their sources (likewise).

        Returns:
            Whether the camera started.
        """
        assert self.cluster is not None
        if not self.cluster.claim(camera.id, lease.token):  # lost or given back since `wanted()`
            return False
        try:
            paused = self.register.is_paused(camera.id)  # a pause set before this node took it
            built, built_sources = self._build([camera], self._writer, self.register.owned_by(lease))
        except StoreError:  # nothing started: the lease thread may release it; tried again once the register answers
            self.cluster.camera_stopped(camera.id, lease.token)
            raise
        self._leases_run[camera.id] = lease
        if camera.id not in built:
            return False
        source = built_sources[camera.id]
        pipelines[camera.id], sources[camera.id] = built[camera.id], source
        slots[camera.id] = FrameSlot(self.live and source.stream, self._wakeup)
        self._camera_stops[camera.id] = stop = threading.Event()
        self._paused[camera.id] = paused
        thread = threading.Thread(
            target=self._capture, args=(source, slots[camera.id], stop), name=f"capture-{camera.id}", daemon=True
        )
        self._capture_threads.append(thread)
        thread.start()
        try:
            self.register.set_health(camera.id, "ok", f"running on node {lease.node} (lease {lease.token})")
        except StoreError as exc:
            log.warning("camera %s: health not recorded: %s", camera.id, exc)
        log.info("camera %s started on node %s (lease %d)", camera.id, lease.node, lease.token)
        return True

    def stop_camera(self, camera_id: str, pipelines, slots, sources) -> None:
        """Stop analysing one camera (lease lost or given back), writing nothing to the register: it may be
        out of reach, and the camera's next owner writes its health. The lease is released by the lease thread
        once told (`NodeCluster.camera_stopped`); alerts already raised are still stored under it if it stands.

        Args:
            camera_id: the camera.
            pipelines: the running pipelines by camera (its own is removed).
            slots: their frame slots (likewise).
            sources: their sources (likewise).
        """
        assert self.cluster is not None
        lease = self._leases_run.pop(camera_id)
        if camera_id in pipelines:
            self._camera_stops.pop(camera_id).set()
            self.scheduler.drop_detected(camera_id)  # its frames detected but not analysed are not analysed
            pipeline = pipelines.pop(camera_id)
            pipeline.finish_clips()
            self._retired_frames[camera_id] = self._retired_frames.get(camera_id, 0) + pipeline.frames_processed
            slots.pop(camera_id).drain()
            sources.pop(camera_id)
            self._paused.pop(camera_id, None)
        self.cluster.camera_stopped(camera_id, lease.token)
        log.warning("camera %s stopped on node %s (lease %d)", camera_id, lease.node, lease.token)

    def _duty_changed(self, duty: str, held: bool) -> None:
        """On the lease thread: the node gained or lost a site-wide duty. The purge schedule starts or stops
        on its own thread (a purge takes longer than a lease's renewal period)."""
        if duty == PURGE_DUTY and (self.options.retention if self.options.retention is not None else self.live):
            self._duty_thread.submit(self._start_purges if held else self._stop_purges)

    def _start_purges(self) -> None:
        if self._purges is None and not self._stop.is_set():
            self._purges = start_retention(self.register, SitePolicy.of(self.config))

    def _stop_purges(self) -> None:
        if self._purges is not None:
            purges, self._purges = self._purges, None
            purges.shutdown(wait=True)  # on the duty thread: a purge in progress ends first

    def _summarise(self, pipelines: dict[str, CameraPipeline], sources: dict[str, VideoSource]) -> None:
        self.summary.frames = {cid: p.frames_processed for cid, p in pipelines.items()}
        self.summary.frames_gated = {cid: p.frames_gated for cid, p in pipelines.items()}
        self.summary.frames_predicted = {cid: p.frames_predicted for cid, p in pipelines.items()}
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
                status = {
                    "camera_degraded": "degraded",
                    "camera_recovered": "ok",
                    "source_ended": "ended",
                    "source_damaged": "damaged",
                }.get(kind)
                if kind == "source_damaged":
                    self.summary.source_warnings[camera_id] = details["reason"]
                if status == "ended" and camera_id in self.summary.source_warnings:
                    return  # a damaged file's end: its health keeps saying so
                if status:
                    self.register.set_health(camera_id, status, details.get("reason", ""))
            except VigieError as exc:
                log.error("camera %s: cannot log %s: %s", camera_id, kind, exc)

        return on_event

    def _capture(self, source: VideoSource, slot: FrameSlot, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop  # a node's camera has its own: it may stop before the run does
        restarts = 0
        try:
            for frame in source.frames(stop):
                if source.restarts != restarts:  # reconnect or loop: tell the pipeline to reset
                    restarts = source.restarts
                    slot.put(RESTART, stop)
                slot.put(frame, stop)
            slot.finish()
        except SourceError as exc:
            self._camera_failed(source.camera_id, str(exc))
            slot.finish(str(exc))
        except Exception as exc:  # a decoder crash in one camera must not stop the others
            # The traceback redacted too: FFmpeg's errors quote the source URL, credentials and all.
            trace = redact("".join(traceback.format_exception(exc)))
            log.error("camera %s: capture crashed\n%s", source.camera_id, trace)
            self._camera_failed(
                source.camera_id, f"camera {source.camera_id}: capture failed: {type(exc).__name__}: {exc}"
            )
            slot.finish(str(exc))

    def _loop(self, pipelines, slots, sources, wakeup: threading.Event) -> None:
        next_poll = 0.0
        self.register.set_meta("runner_heartbeat_utc", iso(utc_now()))
        while not self._stop.is_set():
            self.notifier.beat()  # a loop blocked on a hung inference stops beating: the watchdog pings stop
            now_mono = time.monotonic()
            if now_mono >= next_poll:
                next_poll = now_mono + self.options.control_poll_s
                if self._authorization_ended():
                    return
                if self._config_changed():
                    self.scheduler.finish_detected()  # as a stop: the frames already detected are analysed
                    return
                self._poll_control(pipelines, slots)
            if self.cluster is not None:
                self._follow_leases(pipelines, slots, sources)
            ready, worked = self._collect(pipelines, slots)
            if ready:
                self.scheduler.hand(ready)
            elif self.scheduler.pending:
                # Nothing new: the oldest round's rules run now rather than with the next frames.
                self.scheduler.finish_oldest()
                continue
            if not worked:
                if self.cluster is None and all(s.finished and not s.frames for s in slots.values()):
                    self.summary.stop_reason = "sources ended"
                    return
                wakeup.wait(0.05)
                wakeup.clear()
        self.summary.stop_reason = "stopped"
        self.scheduler.finish_detected()  # a stop ends the analysis after the frames already detected (not on expiry)

    def _collect(self, pipelines, slots) -> tuple[list[tuple[CameraPipeline, Frame]], bool]:
        """The next frame of every camera that has one (at most one each, in order: nothing is skipped in
        replay); restart markers reset their camera on the way, a paused camera's frames are dropped unseen."""
        ready, worked = [], False
        for cid, pipeline in pipelines.items():
            while (frame := slots[cid].take()) is not None:
                worked = True
                if frame is RESTART:
                    self.scheduler.finish_detected({cid})  # the old stream's last frame first, then a clean state
                    pipeline.reset()
                elif not self._paused.get(cid):
                    ready.append((pipeline, frame))
                    break
        return ready, worked

    def _store_failed(self, camera_id: str, exc: Exception) -> None:
        """A snapshot or register write failed on the writer thread (the frame is long gone)."""
        if isinstance(exc, LeaseLost):  # a node's camera taken over: already logged and audited (alert_fenced)
            return
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

    def _config_changed(self) -> bool:
        """A node's site file holds a new valid revision (audited by the watch): the run stops, and `vigie run`
        re-executes the node on it. A file refused, or none watched (a single runner, replay): False."""
        if self._config_watch is None or self._config_watch.poll() is None:
            return False
        self.summary.stop_reason = CONFIG_CHANGED
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
                    self.scheduler.drop_detected(cid)
                    pipelines[cid].reset()
                log.info("camera %s %s", cid, "paused" if paused else "resumed")


RUN_MARKER_PREFIX = "runner_run:"  # meta key of a live run's marker (host, pid, run), deleted when it stops cleanly


def _process_start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot, /proc/PID/stat), to tell it from a later one with its pid."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115 - one read
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _clear_marker(register: Register, key: str) -> None:
    with register.database.transaction() as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))


def crashed_runs(register: Register) -> list[tuple[str, dict]]:
    """The live runs of this register that died without stopping: their marker is left and, on this host,
    their process is gone (or its pid now belongs to a later process). A marker of another host is trusted
    to be alive (its process cannot be checked from here).

    Args:
        register: the register the runs wrote to.

    Returns:
        (meta key, marker) for each: pid, host, process_start, started_utc, cameras.
    """
    rows = register.database.query(
        "SELECT key, value FROM meta WHERE key LIKE ? AND value != ''", (RUN_MARKER_PREFIX + "%",)
    )
    crashed = []
    for key, value in rows:
        try:
            run = json.loads(value)
        except ValueError:
            run = {}
        if run.get("host") != socket.gethostname():
            continue
        started = run.get("process_start")
        if started is None or _process_start_ticks(int(run.get("pid", -1))) != started:
            crashed.append((key, run))
    return crashed
