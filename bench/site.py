"""A 17-camera site live on one node (`make bench-site`): which cameras it keeps in real time, at what cost.

    .venv/bin/python bench/site.py [--quick] [--duration-s 120] [--cameras ID ...] [--no-ratio] [--no-capacity]

The site (`SITE_CAMERAS`) is a mix like Cannes, built from the evaluation clips and the rules their evaluation
sites give them (zones, calibration and tracking merged by `bench.sites.merged_camera`): a station forecourt
(abandoned objects, density, a fall), a boulevard (wrong way, intrusion, crowded pavements), the Palais steps
(crowd movement and density), a car park (fire) and quiet night views. Each camera's `process_fps` is the highest
its evaluation cameras ask for, and it analyses the frames its rules need (`Camera.analysed_fps`:
abandoned objects and density 1 a second, intrusion and wrong way 5...); the models are those a new user's
config names: the COCO INT8 OpenVINO detector for persons, bags and vehicles, the pose model only for the
keypoints of `person_down` (the person cascade), the flame model for `fire`.

1. Live run: every camera at once through the real runner (`runner.service.lifecycle.Runner`, live mode as
   bench/perf.py's latency run: each file paced at its own frame rate, looped when shorter than the run), in
   this process, for `--duration-s`. Per camera:
   - backlog: for each analysed frame, when its analysis ended minus when the camera showed it (the source's
     start, taken as the smallest read-time minus stream-time of its frames, plus the frame's stream time). A
     file never drops frames, so a camera the node cannot keep up with falls further and further behind;
     the backlog at the stop also counts the stream time not analysed yet (less one frame period);
   - alert latency beyond the dwell: the alert's register row committed minus when the camera showed the frame
     that raised it (the rule's own dwell, its `min_duration_s` and the like, lies before that frame).
   Kept in real time: backlog p95 over the second half of the run, backlog at the stop and alert latency p95
   each at most 1 s.
2. Plain replay: the same cameras one at a time, as fast as possible, one pass of each clip. Its alerts are
   the events; each must be found again live (same camera and kind, same pass of the clip, within 1 s) in
   every pass the live run analysed past it, else it is "lost", unless the rule's cooldown held it back (the
   cooldown runs on stream time, which goes on across a loop: a clip shorter than it cannot alert again at once).
3. Site capacity (`--site-capacity-s`, 30 s): the same cameras at once, looped, as fast as the node goes (no
   pacing, no frame dropped): processed fps over what one site asks for is how many sites of this mix the node
   carries, printed as `sites_per_node: N` (`bench/gpu_capacity.sh` runs it on a GPU).
4. The ratio and capacity runs of `bench/perf.py --quick` (its workers, one process each).

The last three lines are machine-readable: `site_cameras_realtime: N/17`, `ratio_vs_naive: X` and
`camera_capacity_5fps: N` (`n/a` with `--no-ratio` / `--no-capacity`).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("VIGIE_VAR_DIR", str(ROOT / "var"))
import runner.core.env  # noqa: E402,F401  Ultralytics offline, private settings (before any ultralytics import)

os.environ.setdefault("VIGIE_SHARED_DATA", str(ROOT.parent / "shared" / "data"))

from bench.perf import check_data, percentile  # noqa: E402
from bench.sites import BenchModel, BenchSite, bench_models, catalogue, merged_camera  # noqa: E402

DEFAULT_DURATION_S = 120.0
QUICK_DURATION_S = 45.0
DEFAULT_SITE_CAPACITY_S = 30.0
REALTIME_LIMIT_S = 1.0  # backlog and alert latency beyond the dwell a real-time camera stays within
MATCH_TOLERANCE_S = 1.0  # a live alert within this of a plain replay's alert (same camera, kind, pass) is the same
EVAL_SITE_FILES = {site.parent.name: site for site in sorted((ROOT / "zones").glob("eval*/site.yaml"))}


@dataclass(frozen=True)
class SiteCamera:
    """One camera of the benchmark site: an evaluation clip and the kinds of its evaluation rules it carries."""

    id: str
    place: str
    clip: str
    kinds: tuple[str, ...]


PETS = "opencv_vtest_pets_pedestrians.avi"
SITE_CAMERAS: tuple[SiteCamera, ...] = (
    SiteCamera("forecourt-junction", "station forecourt", PETS, ("abandoned_object", "crowd_density")),
    SiteCamera(
        "forecourt-concourse",
        "station forecourt",
        "luggage_projetE4_airport_concourse_attended.mp4",
        ("abandoned_object", "person_down"),
    ),
    SiteCamera(
        "forecourt-platform",
        "station forecourt",
        "abandoned_ilids_avss2007_platform_suitcase_trim26s.mp4",
        ("abandoned_object",),
    ),
    SiteCamera(
        "forecourt-suitcases",
        "station forecourt",
        "luggage_projetE4_airport_suitcases_attended.mp4",
        ("abandoned_object",),
    ),
    SiteCamera("forecourt-hall", "station forecourt", "aboda_video4.avi", ("abandoned_object",)),
    SiteCamera(
        "forecourt-queue",
        "station forecourt",
        "crowd_density_utpal_queue_head_height_shutterstock.mp4",
        ("crowd_density",),
    ),
    SiteCamera("boulevard-traffic", "boulevard", "traffic_bgslibrary_video02_highway_cctv.avi", ("wrong_way",)),
    SiteCamera(
        "boulevard-crossing",
        "boulevard",
        "zone_intrusion_roxa_campus_junction_pedestrians_on_road_far.mp4",
        ("zone_intrusion",),
    ),
    SiteCamera(
        "boulevard-pavement",
        "boulevard",
        "street_sentryvision_cctv2_rain_pedestrians.mp4",
        ("crowd_density", "crowd_movement"),
    ),
    SiteCamera(
        "boulevard-shops", "boulevard", "ped_pc_example01_shopping_street.mp4", ("crowd_density", "crowd_movement")
    ),
    SiteCamera("palais-steps", "Palais steps", "crowd_drishti_stampede_cctv.mp4", ("crowd_density", "crowd_movement")),
    SiteCamera(
        "palais-crossing",
        "Palais steps",
        "crowd_pc_example07_scramble_crossing_topdown.mp4",
        ("crowd_density", "crowd_movement"),
    ),
    SiteCamera(
        "palais-buildup",
        "Palais steps",
        "crowd_pc_example03_crossing_buildup_istock.mp4",
        ("crowd_density", "crowd_movement"),
    ),
    SiteCamera(
        "palais-plaza", "Palais steps", "ped_pc_example02_plaza_topdown.mp4", ("crowd_density", "crowd_movement")
    ),
    SiteCamera("carpark-pumps", "car park", "fire_l0kxh_petrol_station_nvr_motorbike_fire_start.mp4", ("fire",)),
    SiteCamera("carpark-night", "night view", "NEG_fire_manasvith_night_street_ambulance_beacons.mp4", ("fire",)),
    SiteCamera(
        "night-fence", "night view", "zone_intrusion_babulamani_night_ir_fence_climb_far.mp4", ("zone_intrusion",)
    ),
)


# -- arguments ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command line of `bench/site.py`.

    Returns:
        The parser (values are checked by `check_args`).
    """
    parser = argparse.ArgumentParser(prog="bench/site.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_DURATION_S:g} s live run")
    parser.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help=f"length of the live run (default {DEFAULT_DURATION_S:g}, {QUICK_DURATION_S:g} with --quick)",
    )
    parser.add_argument(
        "--cameras", nargs="+", default=None, metavar="ID", help="only these cameras of the site (default all 17)"
    )
    parser.add_argument(
        "--device", default=os.environ.get("VIGIE_DEVICE", "cpu"), help="cpu or cuda:0 (sets VIGIE_DEVICE)"
    )
    parser.add_argument(
        "--site-capacity-s",
        type=float,
        default=DEFAULT_SITE_CAPACITY_S,
        help=f"length of the site capacity run (default {DEFAULT_SITE_CAPACITY_S:g})",
    )
    parser.add_argument(
        "--no-site-capacity", action="store_true", help="skip the site capacity run (no sites_per_node line)"
    )
    parser.add_argument("--no-ratio", action="store_true", help="skip the ratio run (ratio_vs_naive: n/a)")
    parser.add_argument("--no-capacity", action="store_true", help="skip the capacity run (camera_capacity_5fps: n/a)")
    return parser


def duration_of(args: argparse.Namespace) -> float:
    """The live run's length.

    Args:
        args: the parsed command line.

    Returns:
        Seconds: `--duration-s`, else the default of the mode.
    """
    if args.duration_s is not None:
        return args.duration_s
    return QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S


def check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line's values, in one line.

    Args:
        args: the parsed command line.

    Returns:
        The problem, or None when the values are usable.
    """
    duration_s = duration_of(args)
    if not duration_s > 0 or duration_s == float("inf"):
        return f"--duration-s must be a positive number of seconds, not {duration_s:g}"
    if not args.site_capacity_s > 0 or args.site_capacity_s == float("inf"):
        return f"--site-capacity-s must be a positive number of seconds, not {args.site_capacity_s:g}"
    known = [c.id for c in SITE_CAMERAS]
    unknown = [c for c in args.cameras or () if c not in known]
    if unknown:
        return f"unknown camera {', '.join(unknown)} (cameras: {', '.join(known)})"
    return None


def selected_cameras(ids: list[str] | None) -> tuple[SiteCamera, ...]:
    """The site's cameras named on the command line, in the site's order.

    Args:
        ids: camera ids; None or empty for all of them.

    Returns:
        The cameras.
    """
    return tuple(c for c in SITE_CAMERAS if not ids or c.id in ids)


# -- the site ---------------------------------------------------------------------------------------------
def eval_model_spec(site: str, name: str) -> dict:
    """A model entry exactly as an evaluation site writes it (placeholders and all).

    Args:
        site: the evaluation site's folder name under zones/.
        name: the model's name under its `models:`.

    Returns:
        The entry, ready to dump as YAML.
    """
    return dict(yaml.safe_load(EVAL_SITE_FILES[site].read_text())["models"][name])


def site_models(kinds: set[str]) -> dict[str, dict]:
    """The `models:` of a site whose rules are of these kinds, in routing order (the detector first: it serves
    persons, bags and vehicles; the pose model only gives keypoints to `person_down`).

    Args:
        kinds: the rule kinds of the site's cameras.

    Returns:
        Model name -> entry.
    """
    known = bench_models()
    models = {known["coco"].name: dict(known["coco"].spec)}
    if "person_down" in kinds:
        models[known["pose"].name] = dict(known["pose"].spec)
        models["fall"] = eval_model_spec("eval-fall", "fall")  # on demand, around a person who vanished
    if "fire" in kinds:
        models["fire"] = eval_model_spec("eval-fire", "fire")
    return models


def serving_model(models: dict[str, dict]) -> BenchModel:
    """Every model of the site as one `BenchModel`, for `merged_camera`'s check that a rule can be served.

    Args:
        models: the site's `models:`.

    Returns:
        The union of their labels, with keypoints when a pose model is among them.
    """
    labels = frozenset(label for spec in models.values() for label in spec.get("classes", ()))
    keypoints = any("pose" in str(spec["weights"]) for spec in models.values())
    return BenchModel("site", "site", {"weights": "site", "imgsz": 0}, labels, keypoints)


def build_cannes_site(cameras: tuple[SiteCamera, ...] = SITE_CAMERAS, *, loop: bool) -> BenchSite:
    """The benchmark site: each camera with its evaluation rules of the kinds it carries.

    Args:
        cameras: the cameras to build.
        loop: replay the clips in a loop (the live run) or once (the plain replay).

    Returns:
        The site, with the notes of what was left out.

    Raises:
        ValueError: a clip is in no evaluation site, or none of its evaluation cameras has a kind asked for.
    """
    known = catalogue()
    models = site_models({kind for camera in cameras for kind in camera.kinds})
    model = serving_model(models)
    notes: list[str] = []
    built, clips = [], {}
    for camera in cameras:
        entries = [
            (site, entry.model_copy(update={"rules": [r for r in entry.rules if r.kind in camera.kinds]}))
            for site, entry in known.get(camera.clip, [])
        ]
        entries = [(site, entry) for site, entry in entries if entry.rules]
        missing = set(camera.kinds) - {rule.kind for _, entry in entries for rule in entry.rules}
        if missing:
            raise ValueError(f"camera {camera.id}: no evaluation rule {', '.join(sorted(missing))} on {camera.clip}")
        process_fps = max(entry.process_fps for _, entry in entries)
        merged = merged_camera(camera.clip, entries, model, camera.id, process_fps, loop, notes)
        if merged is not None:
            merged["name"] = f"{camera.place}: {merged['name']}"[:200]
            built.append(merged)
            clips[camera.id] = camera.clip
    data = {
        "schema_version": 1,
        "site": "bench-cannes",
        "revision": 1,
        "phase": "design",
        "timezone": "Europe/Paris",
        "models": models,
        "cameras": built,
    }
    return BenchSite(data, clips, notes)


# -- measuring ------------------------------------------------------------------------------------------
@dataclass
class LiveTrace:
    """What the live run's callbacks saw: per camera (stream time, frame index, read time, analysed time) of
    each analysed frame, and (camera, kind, stream time, frame index, committed time) of each alert."""

    frames: dict[str, list[tuple[float, int, float, float]]] = field(default_factory=dict)
    alerts: list[tuple[str, str, float, int, float]] = field(default_factory=list)
    stop_mono: float = 0.0

    def on_frame(self, camera_id: str, frame) -> None:
        """Runner callback after each analysed frame (analysis thread).

        Args:
            camera_id: the camera.
            frame: the frame (`runner.sources.capture.Frame`).
        """
        self.frames.setdefault(camera_id, []).append((frame.t_s, frame.index, frame.read_mono, time.monotonic()))

    def on_alert(self, raised) -> None:
        """Runner callback once an alert's row is committed (writer thread).

        Args:
            raised: the alert (`runner.pipeline.camera.RaisedAlert`).
        """
        record = raised.record
        self.alerts.append((record.camera_id, record.kind, record.t_s, record.frame_index, time.monotonic()))


def warm_up(loaded, pool) -> None:
    """Compile every camera's models at its frame size before the clock starts (as bench/perf.py's workers).

    Args:
        loaded: the site config.
        pool: its models.
    """
    from bench.perf import frame_shape
    from runner.config.loading import expand_env
    from runner.pipeline.camera import CameraPipeline
    from runner.sources.capture import resolve_source

    for camera in loaded.config.cameras:
        height, width = frame_shape(resolve_source(expand_env(camera.source, "source"), loaded.base_dir))
        CameraPipeline(loaded, camera, pool, None, mode="replay").warm_up(height, width)


def site_demand_fps(cameras) -> float:
    """The frames per second a site's cameras ask for: each at the rate its rules need.

    Args:
        cameras: the site's validated cameras.

    Returns:
        The sum of their `analysed_fps`.
    """
    return sum(camera.analysed_fps for camera in cameras)


def cpu_s_now() -> float:
    """This process's CPU time so far (user + system, every thread).

    Returns:
        Seconds.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_live(loaded, pool, scratch: Path, duration_s: float, device: str) -> tuple[dict, LiveTrace]:
    """Every camera at once, paced at its clip's frame rate and looped, for `duration_s`.

    Args:
        loaded: the site config (looping cameras).
        pool: its models, warmed up.
        scratch: a folder for the register.
        duration_s: how long to run.
        device: where the models run (for the report).

    Returns:
        (the run's figures, in bench/perf.py's worker format plus `cpu_total_s`; what the callbacks saw).
    """
    from bench.cputime import ThreadCpuSampler
    from bench.perf import peak_rss_mb, weights_text
    from runner.register import Register
    from runner.service.lifecycle import Runner, RunOptions

    trace = LiveTrace()
    with Register(scratch / "live.db") as register:
        options = RunOptions(mode="live", realtime=True, retention=False, on_frame=trace.on_frame)
        runner = Runner(loaded, register, options, pool=pool, on_alert=trace.on_alert)

        def stop() -> None:
            trace.stop_mono = time.monotonic()
            runner.stop()

        timer = threading.Timer(duration_s, stop)
        cpu_before = cpu_s_now()
        timer.start()
        with ThreadCpuSampler() as cpu:
            summary = runner.run()
        timer.cancel()
        cpu_total_s = cpu_s_now() - cpu_before
    trace.stop_mono = trace.stop_mono or time.monotonic()
    frames = sum(summary.frames.values())
    return {
        "frames": summary.frames,
        "frames_total": frames,
        "wall_s": summary.wall_s,
        "fps": frames / summary.wall_s if summary.wall_s else 0.0,
        "stage_s": summary.stage_s,
        "rule_s": summary.rule_s,
        "cpu_s": cpu.groups(),
        "cpu_total_s": cpu_total_s,
        "alert_latency_s": summary.alert_latency_s,
        "frames_gated": summary.frames_gated,
        "frames_predicted": summary.frames_predicted,
        "stop_reason": summary.stop_reason,
        "camera_errors": summary.camera_errors,
        "rule_errors": summary.rule_errors,
        "weights": {name: weights_text(d) for name, d in pool.loaded().items()},
        "peak_rss_mb": peak_rss_mb(),
        "device": device,
        "live": True,
    }, trace


def run_site_capacity(loaded, pool, scratch: Path, max_s: float) -> dict:
    """Every camera at once, looped, as fast as the node goes (no pacing, no frame dropped), for `max_s`: how
    many frames a second the node analyses on this site's mix.

    Args:
        loaded: the site config (looping cameras).
        pool: its models, warmed up.
        scratch: a folder for the register.
        max_s: how long to run.

    Returns:
        {"fps": processed frames per second, "frames": per camera, "wall_s": seconds, "cpu_total_s": CPU seconds}.
    """
    from runner.register import Register
    from runner.service.lifecycle import Runner, RunOptions

    with Register(scratch / "capacity.db") as register:
        runner = Runner(loaded, register, RunOptions(mode="live", realtime=False, retention=False), pool=pool)
        timer = threading.Timer(max_s, runner.stop)
        cpu_before = cpu_s_now()
        timer.start()
        summary = runner.run()
        timer.cancel()
        cpu_total_s = cpu_s_now() - cpu_before
    frames = sum(summary.frames.values())
    return {
        "fps": frames / summary.wall_s if summary.wall_s else 0.0,
        "frames": summary.frames,
        "wall_s": summary.wall_s,
        "cpu_total_s": cpu_total_s,
    }


def site_capacity_lines(result: dict, demand_fps: float, cores: int) -> tuple[list[str], float]:
    """The report of the site capacity run.

    Args:
        result: `run_site_capacity`'s figures.
        demand_fps: what one site's cameras ask for (`site_demand_fps`).
        cores: the CPU cores the process may use.

    Returns:
        (the lines, sites the node carries: processed fps / one site's demand).
    """
    sites = result["fps"] / demand_fps if demand_fps else 0.0
    return [
        "",
        f"== Site capacity: the same cameras at once, as fast as the node goes, {result['wall_s']:.0f} s",
        f"{result['fps']:.1f} processed fps against {demand_fps:g} asked by one site: {sites:.2f} sites of this mix",
        cpu_used_line(result["cpu_total_s"], result["wall_s"], cores),
    ], sites


@dataclass
class PlainReplay:
    """The plain replay: alerts (kind, stream time) per camera, frames per pass of each clip, stream frame rate."""

    alerts: dict[str, list[tuple[str, float]]]
    pass_frames: dict[str, int]
    fps: dict[str, float]
    wall_s: float


def run_plain(loaded, pool, scratch: Path) -> PlainReplay:
    """The same cameras one at a time, as fast as possible, one pass of each clip.

    Args:
        loaded: the site config (cameras not looping).
        pool: the models.
        scratch: a folder for the register.

    Returns:
        The replay's alerts and each clip's pass length.
    """
    from runner.register import Register
    from runner.service.lifecycle import Runner, RunOptions

    alerts: dict[str, list[tuple[str, float]]] = {}
    fps: dict[str, float] = {}
    started = time.monotonic()
    with Register(scratch / "plain.db") as register:
        for camera in loaded.config.cameras:

            def on_frame(camera_id: str, frame) -> None:
                if frame.t_s > 0:  # a file's stream time is its frame number / its frame rate
                    fps[camera_id] = frame.index / frame.t_s

            options = RunOptions(mode="replay", camera_ids=[camera.id], on_frame=on_frame)
            summary = Runner(loaded, register, options, pool=pool).run()
            if summary.camera_errors:
                raise RuntimeError(f"plain replay: {'; '.join(summary.camera_errors.values())}")
            alerts[camera.id] = [(a.record.kind, a.record.t_s) for a in summary.alerts]
        pass_frames = {}
        for row in register.audit_rows(event="source_ended"):
            details = row["details"] if isinstance(row["details"], dict) else json.loads(row["details"] or "{}")
            pass_frames[row["camera_id"]] = int(details["frames"])
    return PlainReplay(alerts, pass_frames, fps, time.monotonic() - started)


# -- figures ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraFigures:
    """One camera's live figures."""

    camera_id: str
    frames: int
    backlog_p95_s: float  # over the frames due in the second half of the run
    backlog_end_s: float  # stream time not analysed yet at the stop, less one frame period
    latencies_s: tuple[float, ...]  # alert latency beyond the dwell, each alert

    @property
    def latency_p95_s(self) -> float | None:
        """The alert latency p95 beyond the dwell (None without an alert)."""
        return percentile(list(self.latencies_s), 95) if self.latencies_s else None

    @property
    def realtime(self) -> bool:
        """Whether the node kept this camera in real time (backlog and alert latency within the limit)."""
        latency = self.latency_p95_s or 0.0
        return max(self.backlog_p95_s, self.backlog_end_s, latency) <= REALTIME_LIMIT_S


def camera_figures(
    camera_id: str,
    frames: list[tuple[float, int, float, float]],
    alerts: list[tuple[str, str, float, int, float]],
    stop_mono: float,
) -> CameraFigures:
    """Backlog and alert latency of one camera from what the live run's callbacks saw.

    Args:
        camera_id: the camera.
        frames: its analysed frames, (stream time, index, read time, analysed time), in order.
        alerts: the run's alerts, (camera, kind, stream time, frame index, committed time).
        stop_mono: when the run was asked to stop (time.monotonic).

    Returns:
        The camera's figures; a camera that analysed no frame is as far behind as the whole run.
    """
    if not frames:
        return CameraFigures(camera_id, 0, float("inf"), float("inf"), ())
    # The source paces frame t at its start + t; a frame read on time gives that start exactly.
    origin = min(read - t_s for t_s, _, read, _ in frames)
    backlogs = [(t_s, done - (origin + t_s)) for t_s, _, _, done in frames]
    half_s = (stop_mono - origin) / 2.0
    second_half = [b for t_s, b in backlogs if t_s >= half_s] or [backlogs[-1][1]]
    times = [t_s for t_s, *_ in frames]
    period_s = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    end_s = max(0.0, stop_mono - origin - times[-1] - period_s)
    latencies = tuple(done - (origin + t_s) for cid, _, t_s, _, done in alerts if cid == camera_id)
    return CameraFigures(camera_id, len(frames), percentile(second_half, 95), end_s, latencies)


@dataclass
class EventComparison:
    """The plain replay's alerts (the events) found again, or not, in the passes the live run analysed."""

    expected: int = 0
    found: int = 0
    lost: list[tuple[str, str, int, float]] = field(default_factory=list)  # camera, kind, pass, stream time
    # Events of a later pass held back by the rule's cooldown: it runs on stream time, which goes on across a loop,
    # so a clip shorter than the cooldown cannot alert again for the same subject in the next pass (as a live
    # camera would not re-alert after a reconnect).
    cooled: list[tuple[str, str, int, float]] = field(default_factory=list)
    extra: list[tuple[str, str, int, float]] = field(default_factory=list)  # live alerts no event explains


def cooldowns_of(site: dict) -> dict[tuple[str, str], float]:
    """The longest cooldown of each camera's rules of each kind.

    Args:
        site: the site config data.

    Returns:
        (camera id, kind) -> seconds.
    """
    cooldowns: dict[tuple[str, str], float] = {}
    for camera in site["cameras"]:
        for rule in camera["rules"]:
            key = (camera["id"], rule["kind"])
            cooldowns[key] = max(cooldowns.get(key, 0.0), float(rule["cooldown_s"]))
    return cooldowns


def compare_events(
    plain: PlainReplay,
    live_alerts: list[tuple[str, str, float, int, float]],
    live_last_index: dict[str, int],
    cooldowns_s: dict[tuple[str, str], float] | None = None,
) -> EventComparison:
    """Match the live alerts to the plain replay's, clip pass by clip pass.

    An event at stream time t of camera c is expected in every pass the live run analysed to at least
    t + MATCH_TOLERANCE_S (or found in); it is found by a live alert of the same camera and kind in that pass within
    MATCH_TOLERANCE_S of t (each live alert explains one event at most). One not found is held back by the
    cooldown when a live alert of that camera and kind came less than the cooldown before it (stream time), else
    lost.

    Args:
        plain: the plain replay.
        live_alerts: the live run's alerts, (camera, kind, stream time, frame index, committed time).
        live_last_index: per camera, the index of the last frame the live run analysed.
        cooldowns_s: (camera, kind) -> the rules' cooldown (`cooldowns_of`); none: every miss is lost.

    Returns:
        The comparison.
    """
    result = EventComparison()
    for camera_id, events in plain.alerts.items():
        per_pass, fps = plain.pass_frames.get(camera_id), plain.fps.get(camera_id)
        last = live_last_index.get(camera_id, -1)
        if not per_pass or not fps:
            continue
        pass_s = per_pass / fps
        raised = [(kind, t_s, index // per_pass) for cid, kind, t_s, index, _ in live_alerts if cid == camera_id]
        unused = [(kind, k, t_s - k * pass_s) for kind, t_s, k in raised]
        for k in range(last // per_pass + 1 if last >= 0 else 0):
            analysed_s = (last - k * per_pass) / fps if k == last // per_pass else float("inf")
            for kind, t_s in events:
                match = next(
                    (a for a in unused if a[0] == kind and a[1] == k and abs(a[2] - t_s) <= MATCH_TOLERANCE_S), None
                )
                if match is None and t_s + MATCH_TOLERANCE_S > analysed_s:
                    continue  # the live run stopped before it was due
                result.expected += 1
                if match is not None:
                    result.found += 1
                    unused.remove(match)
                    continue
                due_s, cooldown_s = k * pass_s + t_s, (cooldowns_s or {}).get((camera_id, kind), 0.0)
                held = any(
                    same == kind and MATCH_TOLERANCE_S < due_s - live_s < cooldown_s + MATCH_TOLERANCE_S
                    for same, live_s, _ in raised
                )
                (result.cooled if held else result.lost).append((camera_id, kind, k, t_s))
        result.extra += [(camera_id, kind, k, round(t_s, 3)) for kind, k, t_s in unused]
    return result


def cpu_used_line(cpu_total_s: float, wall_s: float, cores: int) -> str:
    """The process's CPU time over the wall time, in cores and per core.

    Args:
        cpu_total_s: CPU seconds the process used (every thread).
        wall_s: wall seconds.
        cores: cores the process may run on.

    Returns:
        One line.
    """
    used = cpu_total_s / wall_s if wall_s else 0.0
    return (
        f"CPU used: {cpu_total_s:.1f} CPU s in {wall_s:.1f} s = {used:.2f} cores of {cores} "
        f"({used / max(cores, 1) * 100:.0f} % per core)"
    )


def seconds_text(value: float | None) -> str:
    """A duration for the camera table.

    Args:
        value: seconds, None for none, inf for never.

    Returns:
        e.g. "0.21", "-" or "never".
    """
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:.2f}"


def camera_lines(figures: list[CameraFigures], cameras: list) -> list[str]:
    """The per-camera table of the live run.

    Args:
        figures: each camera's figures.
        cameras: the site's validated cameras (their analysed rate and rule kinds).

    Returns:
        The table's lines.
    """
    by_id = {c.id: c for c in cameras}
    lines = [
        f"  {'camera':<21}{'fps':>5}{'frames':>8}{'backlog p95':>13}{'at stop':>9}{'alerts':>8}"
        f"{'latency p95':>13}  real time  rules"
    ]
    for f in figures:
        camera = by_id[f.camera_id]
        kinds = ",".join(sorted({r.kind for r in camera.rules}))
        lines.append(
            f"  {f.camera_id:<21}{camera.analysed_fps:>5g}{f.frames:>8}{seconds_text(f.backlog_p95_s):>13}"
            f"{seconds_text(f.backlog_end_s):>9}{len(f.latencies_s):>8}{seconds_text(f.latency_p95_s):>13}"
            f"  {'yes' if f.realtime else 'NO':<9}  {kinds}"
        )
    return lines


def event_lines(comparison: EventComparison, plain: PlainReplay) -> list[str]:
    """The event-level comparison of the live alerts with the plain replay's.

    Args:
        comparison: the comparison.
        plain: the plain replay.

    Returns:
        Its lines.
    """
    alerts = sum(len(a) for a in plain.alerts.values())
    lines = [
        f"plain replay: {len(plain.alerts)} cameras one at a time, as fast as possible, {alerts} alerts in "
        f"{plain.wall_s:.0f} s",
        f"events (the plain replay's alerts, in every pass the live run analysed past them): {comparison.expected}; "
        f"found live {comparison.found}; held back by the rule's cooldown across a loop {len(comparison.cooled)}; "
        f"lost {len(comparison.lost)}; live alerts no event explains {len(comparison.extra)}",
    ]
    lines += [f"  cooldown: {cid} {kind} at {t_s:.2f} s (pass {k + 1})" for cid, kind, k, t_s in comparison.cooled]
    lines += [f"  LOST: {cid} {kind} at {t_s:.2f} s (pass {k + 1})" for cid, kind, k, t_s in comparison.lost]
    lines += [f"  extra: {cid} {kind} at {t_s:.2f} s (pass {k + 1})" for cid, kind, k, t_s in comparison.extra]
    return lines


def last_lines(realtime: int, cameras: int, ratio: float | None, capacity: int | None) -> list[str]:
    """The three machine-readable lines.

    Args:
        realtime: cameras kept in real time.
        cameras: cameras run.
        ratio: runner fps / naive fps, None when not measured.
        capacity: cameras at 5 processed fps, None when not measured.

    Returns:
        The lines.
    """
    return [
        f"site_cameras_realtime: {realtime}/{cameras}",
        f"ratio_vs_naive: {ratio:.2f}" if ratio is not None else "ratio_vs_naive: n/a",
        f"camera_capacity_5fps: {capacity}" if capacity is not None else "camera_capacity_5fps: n/a",
    ]


# -- main -------------------------------------------------------------------------------------------------
def measure_site(
    cameras: tuple[SiteCamera, ...], duration_s: float, device: str, capacity_s: float | None
) -> tuple[list[str], int, float | None]:
    """The live run, the plain replay and the capacity run of the site, in this process.

    Args:
        cameras: the site's cameras to run.
        duration_s: the live run's length.
        device: where the models run.
        capacity_s: the capacity run's length; None: no capacity run.

    Returns:
        (the report's lines, cameras kept in real time, sites of this mix the node carries or None).
    """
    from bench.perf import quality_lines, runner_lines
    from bench.sites import write_site
    from runner.inference.detector import ModelPool

    live_site = build_cannes_site(cameras, loop=True)
    with tempfile.TemporaryDirectory(prefix="vigie-bench-site-") as folder:
        scratch = Path(folder)
        loaded = write_site(live_site, scratch / "live")
        pool = ModelPool(loaded.config, loaded.base_dir, device=device)
        warm_up(loaded, pool)
        print(f"live run: {len(loaded.config.cameras)} cameras for {duration_s:g} s ...", file=sys.stderr, flush=True)
        live, trace = run_live(loaded, pool, scratch, duration_s, device)
        print("plain replay: one camera at a time ...", file=sys.stderr, flush=True)
        plain_loaded = write_site(build_cannes_site(cameras, loop=False), scratch / "plain")
        plain = run_plain(plain_loaded, pool, scratch)
        capacity = None
        if capacity_s is not None:
            print(f"site capacity: {len(loaded.config.cameras)} cameras as fast as possible ...", file=sys.stderr)
            capacity = run_site_capacity(loaded, pool, scratch, capacity_s)
        del pool
        gc.collect()
    figures = [
        camera_figures(c.id, trace.frames.get(c.id, []), trace.alerts, trace.stop_mono) for c in loaded.config.cameras
    ]
    last_index = {cid: frames[-1][1] for cid, frames in trace.frames.items() if frames}
    comparison = compare_events(plain, trace.alerts, last_index, cooldowns_of(live_site.data))
    realtime = sum(f.realtime for f in figures)
    places = sorted({c.place for c in cameras})
    lines = [
        "",
        f"== Live run: {len(figures)} cameras ({', '.join(places)}), {duration_s:g} s, each clip at its own frame "
        f"rate, looped; one process",
        f"cameras kept in real time: {realtime}/{len(figures)} (backlog p95 over the second half, backlog at the "
        f"stop and alert latency p95 beyond the dwell, each <= {REALTIME_LIMIT_S:g} s; seconds below)",
    ]
    lines += camera_lines(figures, loaded.config.cameras)
    demand_fps = site_demand_fps(loaded.config.cameras)
    asked_fps = sum(c.process_fps for c in loaded.config.cameras)
    lines.append(
        f"the cameras ask for {demand_fps:g} processed fps in all (the rate their rules need; {asked_fps:g} at their "
        f"process_fps); the node analysed {live['fps']:.1f} fps (each round takes one frame of every camera that "
        f"has one: an overloaded node slows them all alike)"
    )
    lines.append(cpu_used_line(live["cpu_total_s"], live["wall_s"], len(os.sched_getaffinity(0))))
    lines += runner_lines(live)
    lines += [f"note: {note}" for note in live_site.notes]
    lines += ["", "== Alerts live against the plain replay of the same clips"] + event_lines(comparison, plain)
    plain_result = {
        "clips": dict(live_site.clips),
        "kinds": {c["id"]: sorted({r["kind"] for r in c["rules"]}) for c in live_site.data["cameras"]},
        "alerts": [[cid, kind, t_s] for cid, alerts in plain.alerts.items() for kind, t_s in alerts],
    }
    lines += ["", "Quality of the plain replay's alerts against the labels (vigie eval's scoring):"]
    lines += quality_lines(plain_result)
    sites = None
    if capacity is not None:
        capacity_lines, sites = site_capacity_lines(capacity, demand_fps, len(os.sched_getaffinity(0)))
        lines += capacity_lines
    return lines, realtime, sites


def measure_perf(args: argparse.Namespace) -> tuple[list[str], float | None, int | None]:
    """The short ratio and capacity runs of `bench/perf.py --quick`, each in its own process.

    Args:
        args: the parsed command line (`--no-ratio`, `--no-capacity`, `--device`).

    Returns:
        (report lines, ratio or None, camera capacity at 5 fps or None).
    """
    from bench.perf import build_parser as perf_parser
    from bench.perf import camera_capacity, make_plan, median_ratio, run_worker

    plan = make_plan(perf_parser().parse_args(["--quick"]))
    lines: list[str] = []
    ratio = capacity = None
    if not args.no_ratio:
        job = {"clips": list(plan.ratio_clips), "model": "pose", "device": args.device, "without": []}
        print("ratio run (perf.py --quick): runner, then the naive loop ...", file=sys.stderr, flush=True)
        runner, naive = run_worker("runner", job), run_worker("naive", job)
        ratio = median_ratio([runner["fps"]], [naive["fps"]])
        lines.append(
            f"ratio run (perf.py --quick, model pose, {len(plan.ratio_clips)} clips): runner {runner['fps']:.1f} fps, "
            f"naive loop {naive['fps']:.1f} fps"
        )
    if not args.no_capacity:
        job = {
            "clips": list(plan.capacity_clips),
            "model": "coco",
            "device": args.device,
            "max_s": plan.capacity_max_s,
            "without": [],
        }
        print(f"capacity run (perf.py --quick): {len(plan.capacity_clips)} cameras ...", file=sys.stderr, flush=True)
        result = run_worker("runner", job)
        capacity = camera_capacity(result["fps"])
        lines.append(
            f"capacity run (perf.py --quick, model coco, {len(plan.capacity_clips)} cameras, "
            f"{plan.capacity_max_s:g} s): {result['fps']:.1f} processed fps"
        )
    return lines, ratio, capacity


def main(argv: list[str] | None = None) -> int:
    """Run the site benchmark and print its report.

    Args:
        argv: the command line (default sys.argv[1:]).

    Returns:
        0, 2 for bad arguments or missing data, 1 when a measurement failed.
    """
    args = build_parser().parse_args(argv)
    problem = check_args(args) or check_data()
    if problem:
        print(f"bench-site: {problem}", file=sys.stderr)
        return 2
    os.environ["VIGIE_DEVICE"] = args.device
    cameras = selected_cameras(args.cameras)
    started = time.monotonic()
    try:
        capacity_s = None if args.no_site_capacity else args.site_capacity_s
        lines, realtime, sites = measure_site(cameras, duration_of(args), args.device, capacity_s)
        perf_lines, ratio, capacity = measure_perf(args)
    except (RuntimeError, ValueError) as exc:
        print(f"bench-site: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines + ([""] + perf_lines if perf_lines else [])))
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    if sites is not None:
        print(f"sites_per_node: {math.floor(sites + 1e-9)} ({sites:.2f})")
    print("\n".join(last_lines(realtime, len(cameras), ratio, capacity)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
