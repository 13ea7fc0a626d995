"""Soak test (`make soak`): the runner in live mode on looping clips for an hour, RSS printed as it goes.

    .venv/bin/python bench/soak.py [--duration-s 3600] [--every-s 60] [--model coco] [--clips A B ...] [--site]

Each clip is a camera (the benchmark's cameras, `bench/sites.py`) with `loop: true`, read at its own
frame rate as a live camera would be (`--site`: the 17 cameras of `bench/site.py`'s Cannes-like site, each
at the rate its rules need), through the real runner (capture threads, detection, tracking,
rules, register, retention schedule). Every `--every-s` seconds one line: elapsed time, RSS, alerts
so far, and where glibc's malloc holds its memory (`mallinfo2`): its arenas and the free space inside
them (fragmentation: holes a later block may not fit), and the blocks it mapped on their own (128 kB
and more, until freed large blocks raise that threshold). Most of a runner's memory is native, out of
`tracemalloc`'s sight: PyAV hands out numpy views of FFmpeg's frame buffers, OpenVINO keeps its own.
At the end: the growth of the RSS high-water mark from the first `--baseline-s` (10 minutes;
a third of the run when shorter) to the same length of time at the end, against the 5 % target, and
the alert latency when the runner reports it. The last line is machine-readable:
`rss_growth_pct: X.X`. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("VIGIE_VAR_DIR", str(ROOT / "var"))
import runner.core.env  # noqa: E402,F401  Ultralytics offline, private settings (before any ultralytics import)

os.environ.setdefault("VIGIE_SHARED_DATA", str(ROOT.parent / "shared" / "data"))

GROWTH_TARGET_PCT = 5.0
# Four cameras with crowd, abandoned-object, wrong-way and person rules: a light load at 5 fps each.
SOAK_CLIPS = {
    "coco": (
        "crowd_drishti_stampede_cctv.mp4",
        "abandoned_ilids_avss2007_platform_suitcase_trim26s.mp4",
        "traffic_bgslibrary_video02_highway_cctv.avi",
        "opencv_vtest_pets_pedestrians.avi",
    ),
    "pose": (
        "crowd_drishti_stampede_cctv.mp4",
        "fall_eikesan_video_sit_then_fall_room.mp4",
        "ped_pc_example02_plaza_topdown.mp4",
        "opencv_vtest_pets_pedestrians.avi",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=3600.0, help="how long to run (default 3600)")
    parser.add_argument("--every-s", type=float, default=60.0, help="RSS printed every this many seconds (default 60)")
    parser.add_argument(
        "--baseline-s",
        type=float,
        default=600.0,
        help="length of the first and last windows compared (default 600; a third of the run at most)",
    )
    parser.add_argument(
        "--model", choices=("pose", "coco"), default="coco", help="detector of every camera (default coco)"
    )
    parser.add_argument(
        "--clips", nargs="+", default=None, help="clip file names (default: four clips of the model's set)"
    )
    parser.add_argument(
        "--site", action="store_true", help="the 17-camera site of bench/site.py instead of --model and --clips"
    )
    parser.add_argument("--db", default=None, help="register (default: a temporary one, deleted at the end)")
    parser.add_argument(
        "--native-blocks",
        action="store_true",
        help="with bench/native_blocks.c preloaded (make soak-native): the call stacks keeping more large blocks",
    )
    return parser


def rss_mb() -> float:
    """Resident set size now, from /proc (the high-water mark would hide a drop after a peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): sizes in bytes, summed over every arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


@dataclass(frozen=True)
class MallocFigures:
    """Where glibc's malloc holds its memory."""

    arenas_mb: float  # taken from the kernel for the arenas
    in_use_mb: float  # of which handed out
    free_in_arenas_mb: float  # of which free
    mapped_mb: float  # blocks mapped on their own
    mapped_blocks: int

    def describe(self) -> str:
        return (
            f"malloc arenas {self.arenas_mb:.0f} MB ({self.free_in_arenas_mb:.0f} free), "
            f"mapped {self.mapped_mb:.0f} MB in {self.mapped_blocks} blocks"
        )


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc 2.33 or later (it has `mallinfo2`), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None  # musl, or an older glibc
    libc.mallinfo2.restype = _MallInfo2
    return libc


def malloc_figures() -> MallocFigures | None:
    """glibc malloc's figures now; None under another C library."""
    libc = _glibc()
    if libc is None:
        return None
    info = libc.mallinfo2()
    mb = 1024.0 * 1024.0
    return MallocFigures(info.arena / mb, info.uordblks / mb, info.fordblks / mb, info.hblkhd / mb, int(info.hblks))


def growth_pct(samples: list[tuple[float, float]], window_s: float) -> tuple[float, float, float]:
    """(first-window peak MB, last-window peak MB, growth %) of (elapsed s, RSS MB) samples.

    Peaks rather than means: a leak shows as a rising peak, and a peak is not lowered by a quiet
    moment of the scene."""
    if not samples:
        raise ValueError("no RSS sample")
    end_s = samples[-1][0]
    first = [mb for t, mb in samples if t <= window_s] or [samples[0][1]]
    last = [mb for t, mb in samples if t >= end_s - window_s] or [samples[-1][1]]
    base, final = max(first), max(last)
    return base, final, (final - base) / base * 100.0 if base else 0.0


def native_growth_lines(dumps: list[tuple[float, Path]], window_s: float) -> list[str]:
    """The native blocks' growth from the last dump of the first window to the last dump (none: no lines)."""
    from bench.native_blocks import growth_lines, read_dump

    readable = [(t, path) for t, path in dumps if path.is_file()]
    if len(readable) < 2:
        return []
    first = [path for t, path in readable if t <= window_s][-1:] or [readable[0][1]]
    return growth_lines(read_dump(first[0].read_text()), read_dump(readable[-1][1].read_text()))


def soak(args, dump=None) -> int:
    """The soak itself; `dump` is the preloaded shim's dump function (`--native-blocks`), else None."""
    import numpy as np

    from bench.perf import latency_line
    from bench.sites import build_site, write_site
    from runner.inference.detector import ModelPool
    from runner.register import Register
    from runner.service.lifecycle import Runner, RunOptions

    clips = args.clips or SOAK_CLIPS[args.model]
    window_s = min(args.baseline_s, args.duration_s / 3.0)
    with tempfile.TemporaryDirectory(prefix="vigie-soak-") as scratch:
        if args.site:
            from bench.site import build_cannes_site
            from bench.site import warm_up as warm_up_site

            site = build_cannes_site(loop=True)
        else:
            site = build_site(clips, args.model, loop=True)
        loaded = write_site(site, Path(scratch) / "site")
        pool = ModelPool(loaded.config, loaded.base_dir)
        if args.site:
            warm_up_site(loaded, pool)
        else:
            for name in loaded.config.models:
                pool.get(name).detect([np.zeros((480, 640, 3), dtype=np.uint8)])
        wanted_fps = sum(c.analysed_fps for c in loaded.config.cameras)
        with Register(args.db or Path(scratch) / "soak.db") as register:
            runner = Runner(loaded, register, RunOptions(mode="live", realtime=True), pool=pool)
            outcome: dict = {}
            thread = threading.Thread(target=lambda: outcome.setdefault("summary", runner.run()), name="soak-runner")
            print(
                f"soak: {len(site.clips)} looping cameras, model {'of the site' if args.site else args.model}, "
                f"{args.duration_s:g} s, "
                f"RSS every {args.every_s:g} s; windows compared: {window_s:g} s",
                flush=True,
            )
            for note in site.notes:
                print(f"note: {note}")
            started = time.monotonic()
            thread.start()
            samples: list[tuple[float, float]] = []
            dumps: list[tuple[float, Path]] = []
            while thread.is_alive():
                elapsed = time.monotonic() - started
                samples.append((elapsed, rss_mb()))
                if dump is not None:
                    dumps.append((elapsed, Path(scratch) / f"native-blocks-{len(dumps):04d}.txt"))
                    dump(str(dumps[-1][1]).encode())
                print(
                    f"t={elapsed:7.0f} s  rss={samples[-1][1]:8.1f} MB  alerts={runner.summary.alerts_total}"
                    + (f"  {figures.describe()}" if (figures := malloc_figures()) else ""),
                    flush=True,
                )
                if elapsed >= args.duration_s:
                    break
                thread.join(timeout=min(args.every_s, max(0.0, args.duration_s - elapsed)))
            runner.stop()
            thread.join(timeout=30.0)
            summary = outcome.get("summary", runner.summary)
            native_lines = native_growth_lines(dumps, window_s)
    if summary.camera_errors:
        print(f"camera errors: {summary.camera_errors}")
    base, final, growth = growth_pct(samples, window_s)
    frames = sum(summary.frames.values())
    wanted = wanted_fps * summary.wall_s
    print(
        f"processed {frames} frames in {summary.wall_s:.0f} s ({frames / max(summary.wall_s, 1e-9):.1f} fps; "
        f"~{wanted:.0f} at the cameras' rates, {wanted_fps:g} fps in all: fewer means the machine could not keep "
        "up), "
        f"{summary.alerts_total} alerts, stop: {summary.stop_reason}"
    )
    print(latency_line(getattr(summary, "alert_latency_s", None)))
    for line in native_lines:
        print(line)
    verdict = "within" if growth < GROWTH_TARGET_PCT else "ABOVE"
    print(
        f"RSS peak first {window_s:g} s: {base:.1f} MB; last {window_s:g} s: {final:.1f} MB; "
        f"growth {growth:+.1f} % ({verdict} the {GROWTH_TARGET_PCT:g} % target)"
    )
    print(f"rss_growth_pct: {growth:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.duration_s <= 0 or args.every_s <= 0 or args.baseline_s <= 0:
        print("soak: --duration-s, --every-s and --baseline-s must be positive", file=sys.stderr)
        return 2
    if not (Path(os.environ["VIGIE_SHARED_DATA"]) / "clips").is_dir():
        print(
            f"soak: evaluation clips not found under {os.environ['VIGIE_SHARED_DATA']} (set VIGIE_SHARED_DATA)",
            file=sys.stderr,
        )
        return 2
    dump = None
    if args.native_blocks:
        from bench.native_blocks import preloaded_dump

        dump = preloaded_dump()
        if dump is None:
            print("soak: --native-blocks needs bench/native_blocks.c preloaded: run make soak-native", file=sys.stderr)
            return 2
    try:
        return soak(args, dump)
    except ValueError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
