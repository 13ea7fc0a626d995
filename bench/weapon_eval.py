"""Measure Vigie's weapon model (models/weapon-yolo11n) through the production runner, and choose the rule's defaults.

    .venv/bin/python bench/weapon_eval.py [--model models/weapon-yolo11n] [--data ../shared/data] [--json OUT]

1. **Replay**: every video of `<data>/clips` goes through the real runner (`Runner`, replay mode, motion gate,
   batching: as `vigie eval`) on a site holding only this model (untracked, confidence floor `--floor`) and one
   weapon rule per camera at its most permissive settings; every frame the runner hands to the rule is recorded
   (its detections only).
2. **Sweep**: the real `WeaponRule` is replayed on those frames for each candidate (min_confidence, k-of-n voting,
   min/max box size) and scored at event level like `vigie eval` (`runner.tools.evaluation.score_clip`,
   labels `<data>/labels/events.csv` + `bench/labels/extra_events.csv`): clips without a weapon label row are
   negatives, alerts inside *uncertain* windows count neither way.
3. **Split**: clips sorted by name; the labelled-positive clips alternate between a tuning and a checking half,
   and so do the others. The defaults are chosen on the tuning half only (most events found, then fewest false
   alerts, with at most `--max-false` false alerts, then the strictest settings) and reported on the checking half.
4. **Confirm**: a second real-runner replay of the checking half with the chosen settings written in the site
   (alerts straight from the runner), which must agree with the sweep's figures for that half.
5. **Cost**: ms per frame of the model at `--imgsz` (640) (the runner's OpenVINO engine, one frame at a time).

The last line is `weapon_checking_half: found F/E, false F, false_per_camera_hour X (clips without a weapon)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "ultralytics"))

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov"}
MODEL_NAME = "weapon"
PROCESS_FPS = 5
# The candidates of the sweep (every combination with k <= n and min box < max box).
MIN_CONFIDENCES = (0.25, 0.35, 0.45, 0.55, 0.65, 0.75)
K_OF_N = ((1, 1), (2, 3), (2, 5), (3, 5), (4, 6), (5, 8))
MIN_BOX_AREA_FRACS = (0.0, 0.0002, 0.001)
MAX_BOX_AREA_FRACS = (0.05, 0.2)


def camera_id_of(clip: str) -> str:
    """A camera id (slug) for a clip file name."""
    slug = "".join(c if c.isalnum() else "-" for c in Path(clip).stem.lower()).strip("-")
    return slug[:63]


def write_site(folder: Path, clips: list[Path], model: Path, floor: float, rule: dict, imgsz: int = 640) -> Path:
    """Write an evaluation site: one camera per clip, this model only, the same weapon rule everywhere."""
    import yaml

    site = {
        "schema_version": 1,
        "site": "eval-weapon-model",
        "revision": 1,
        "phase": "design",
        "timezone": "Europe/Paris",
        "models": {
            MODEL_NAME: {
                "weights": str(model.resolve()),
                "classes": ["weapon"],
                "imgsz": imgsz,
                "conf": floor,
                "task": "detect",
                "track": False,
            }
        },
        "cameras": [
            {
                "id": camera_id_of(clip.name),
                "source": str(clip.resolve()),
                "process_fps": PROCESS_FPS,
                "rules": [{"kind": "weapon", "id": f"{camera_id_of(clip.name)[:56]}-weapon", **rule}],
            }
            for clip in clips
        ],
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def permissive_rule(floor: float) -> dict:
    """The weapon rule settings that let every detection of the model through (the sweep filters afterwards)."""
    return {
        "labels": ["weapon"],
        "extra_labels": [],
        "min_confidence": floor,
        "min_box_area_frac": 0.0,
        "max_box_area_frac": 1.0,
        "min_hit_frames": 1,
        "window_frames": 1,
    }


def replay(site_path: Path, labels: list, record: bool) -> tuple[list, dict[str, list]]:
    """Replay every camera of the site through the runner; return its clip results and the recorded frames."""
    from runner.config.loading import load_config
    from runner.register import Register
    from runner.rules.weapon import WeaponRule
    from runner.tools.evaluation import evaluate_site

    recorded: dict[str, list] = defaultdict(list)
    original = WeaponRule.update

    def recording_update(self, ctx):
        # Detections only: the rule reads neither the image nor the tracks.
        recorded[ctx.camera_id].append(dataclasses.replace(ctx, image=None, _downscaled={}))
        return original(self, ctx)

    if record:
        WeaponRule.update = recording_update  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="vigie-weapon-eval-") as scratch:
            with Register(Path(scratch) / "eval.db") as register:
                results = evaluate_site(load_config(site_path), labels, register)
    finally:
        WeaponRule.update = original  # type: ignore[method-assign]
    return results, recorded


def replay_rule(frames: list, rule_settings: dict, camera_id: str) -> list[float]:
    """The alert times of a fresh WeaponRule with these settings on a camera's recorded frames."""
    from runner.config.rules.weapon import WeaponConfig
    from runner.rules.base import CameraView
    from runner.rules.weapon import WeaponRule

    config = WeaponConfig(kind="weapon", id="sweep", **rule_settings)
    rule = WeaponRule(config, CameraView(camera_id=camera_id, process_fps=PROCESS_FPS))
    times = []
    for ctx in frames:
        times += [alert.t_s for alert in rule.update(ctx)]
    return times


def candidates() -> list[dict]:
    """Every rule setting of the sweep."""
    grid = itertools.product(MIN_CONFIDENCES, K_OF_N, MIN_BOX_AREA_FRACS, MAX_BOX_AREA_FRACS)
    return [
        {
            "labels": ["weapon"],
            "extra_labels": [],
            "min_confidence": conf,
            "min_hit_frames": k,
            "window_frames": n,
            "min_box_area_frac": low,
            "max_box_area_frac": high,
        }
        for conf, (k, n), low, high in grid
    ]


def split_halves(clips: list[str], labels: list) -> dict[str, str]:
    """Tuning/checking half of each clip: positives alternate by name, and so do the others."""
    positive = {e.clip for e in labels if e.kind == "weapon" and e.polarity == "positive"}
    half = {}
    for group in (sorted(c for c in clips if c in positive), sorted(c for c in clips if c not in positive)):
        for index, clip in enumerate(group):
            half[clip] = "tuning" if index % 2 == 0 else "checking"
    return half


def score(alerts_by_clip: dict[str, list[float]], durations: dict[str, float], labels: list, clips: list[str]) -> dict:
    """Event-level totals over some clips: events found/total, and false alerts, both on the clips without any
    weapon label row (per camera-hour of them) and on the weapon clips outside their labelled windows."""
    from runner.tools.evaluation import score_clip

    found = events = false_negative_clips = false_weapon_clips = 0
    negatives_s = 0.0
    per_clip = {}
    for clip in clips:
        clip_events = [e for e in labels if e.clip == clip and e.kind == "weapon"]
        result = score_clip(alerts_by_clip.get(clip, []), clip_events)
        found, events = found + len(result.found), events + len(result.found) + len(result.missed)
        if clip_events:
            false_weapon_clips += len(result.false_alert_times_s)
        else:
            false_negative_clips += len(result.false_alert_times_s)
            negatives_s += durations[clip]
        per_clip[clip] = {
            "alerts_t_s": [round(t, 2) for t in alerts_by_clip.get(clip, [])],
            "found": len(result.found),
            "missed": len(result.missed),
            "false": len(result.false_alert_times_s),
        }
    negatives_h = negatives_s / 3600
    return {
        "clips": len(clips),
        "events": events,
        "found": found,
        "recall": round(found / events, 3) if events else None,
        "false_alerts": false_negative_clips + false_weapon_clips,
        "false_on_clips_without_weapon": false_negative_clips,
        "false_on_weapon_clips": false_weapon_clips,
        "clips_without_weapon_h": round(negatives_h, 4),
        "false_per_camera_hour": round(false_negative_clips / negatives_h, 1) if negatives_h else 0.0,
        "per_clip": per_clip,
    }


def choose(sweep: list[tuple[dict, dict]], max_false: int) -> tuple[dict, dict]:
    """The tuning-half winner: among the settings with at most `max_false` false alerts (all of them when none
    has so few), most events found, then fewest false alerts, then the larger max box, then the highest confidence,
    the most votes and the largest min box."""
    allowed = [item for item in sweep if item[1]["false_alerts"] <= max_false] or sweep

    def key(item):
        rule, tuning = item
        strictness = (rule["min_confidence"], rule["min_hit_frames"], -rule["window_frames"], rule["min_box_area_frac"])
        return (-tuning["found"], tuning["false_alerts"], -rule["max_box_area_frac"], tuple(-v for v in strictness))

    return min(allowed, key=key)


def tuning_front(sweep: list, durations: dict[str, float], labels: list, checking: list[str]) -> list[dict]:
    """The operating points of the tuning half (for each count of events found, the setting with the fewest false
    alerts, chosen as `choose` would), each with its figures on the checking half: what a stricter or looser
    choice would have given."""
    front = []
    for found in sorted({t["found"] for _, t, _ in sweep}):
        rule, tuning = choose([(r, t) for r, t, _ in sweep if t["found"] == found], max_false=10**6)
        alerts = next(a for r, _, a in sweep if r is rule)
        checked = score(alerts, durations, labels, checking)
        front.append(
            {
                "rule": {k: v for k, v in rule.items() if k not in {"labels", "extra_labels"}},
                "tuning": {k: v for k, v in tuning.items() if k != "per_clip"},
                "checking": {k: v for k, v in checked.items() if k != "per_clip"},
                "alerts_t_s": {clip: [round(t, 1) for t in times] for clip, times in alerts.items() if times},
            }
        )
    return front


def cost_ms_per_frame(model: Path, imgsz: int = 640, repeats: int = 30) -> dict:
    """Milliseconds per frame at `imgsz` through the runner's OpenVINO engine (a 1280x720 frame, one at a time)."""
    from runner.inference.export_cache import inference_threads
    from runner.inference.ov_engine import OpenVinoEngine

    engine = OpenVinoEngine(model, imgsz, inference_threads(), precision="auto")
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    for _ in range(3):
        engine.predict([frame], 0.25)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.predict([frame], 0.25)
        times.append((time.perf_counter() - start) * 1000)
    return {"ms_per_frame_median": round(float(np.median(times)), 1), "threads": inference_threads()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("VIGIE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument(
        "--model", default=str(ROOT / "models" / "weapon-yolo11n" / "weapon-yolo11n_int8_openvino_model")
    )
    parser.add_argument("--imgsz", type=int, default=640, help="the model's input size (its export's)")
    parser.add_argument("--floor", type=float, default=0.2, help="model confidence floor of the recording replay")
    parser.add_argument("--json", help="write the full results here")
    parser.add_argument("--max-false", type=int, default=1, help="most false alerts allowed on the tuning half")
    parser.add_argument("--pattern", default="*", help="only the clips matching this glob (a quick check)")
    parser.add_argument("--no-confirm", action="store_true", help="skip the second runner replay")
    args = parser.parse_args()
    if not 0.01 <= args.floor <= min(MIN_CONFIDENCES):
        parser.error(f"--floor must be within 0.01 .. {min(MIN_CONFIDENCES)}")

    from runner.tools.evaluation import clip_duration_s, load_labels

    data, model = Path(args.data), Path(args.model)
    if not (data / "clips").is_dir() or not model.exists():
        print(f"needs {data / 'clips'} and {model}")
        return 1
    labels = load_labels(data / "labels" / "events.csv") + load_labels(ROOT / "bench" / "labels" / "extra_events.csv")
    clips = sorted(p for p in (data / "clips").glob(args.pattern) if p.suffix.lower() in VIDEO_SUFFIXES)
    names = [c.name for c in clips]
    durations = {c.name: clip_duration_s(str(c)) for c in clips}
    half = split_halves(names, labels)
    halves = {h: [c for c in names if half[c] == h] for h in ("tuning", "checking")}
    out: dict = {"model": str(model), "clips": len(clips), "halves": halves}

    with tempfile.TemporaryDirectory(prefix="vigie-weapon-site-") as folder:
        started = time.monotonic()
        _, recorded = replay(
            write_site(Path(folder), clips, model, args.floor, permissive_rule(args.floor), args.imgsz), labels, True
        )
        out["replay_wall_s"] = round(time.monotonic() - started)
        frames = {c.name: recorded.get(camera_id_of(c.name), []) for c in clips}
        out["frames_recorded"] = sum(len(f) for f in frames.values())
        sweep = []
        for rule in candidates():
            alerts = {clip: replay_rule(frames[clip], rule, camera_id_of(clip)) for clip in names}
            sweep.append((rule, score(alerts, durations, labels, halves["tuning"]), alerts))
        rule, tuning = choose([(r, t) for r, t, _ in sweep], args.max_false)
        alerts = next(a for r, _, a in sweep if r is rule)
        out["front"] = tuning_front(sweep, durations, labels, halves["checking"])
        out["sweep"] = [
            {k: v for k, v in {**r, **t}.items() if k not in {"per_clip", "labels", "extra_labels"}}
            for r, t, _ in sweep
        ]
        out["chosen"] = {k: v for k, v in rule.items() if k not in {"labels", "extra_labels"}}
        out["tuning"] = tuning
        out["checking_sweep_replay"] = score(alerts, durations, labels, halves["checking"])
        if not args.no_confirm:
            checking = [c for c in clips if half[c.name] == "checking"]
            results, _ = replay(write_site(Path(folder), checking, model, args.floor, rule, args.imgsz), labels, False)
            runner_alerts = {r.clip: r.alert_times_s for r in results}
            out["runner_checking"] = score(runner_alerts, durations, labels, halves["checking"])
    out[f"cost_{args.imgsz}"] = cost_ms_per_frame(model, args.imgsz)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    final = out.get("runner_checking", out["checking_sweep_replay"])
    print(json.dumps({k: v for k, v in out.items() if k not in {"sweep", "front"}}, indent=1))
    for point in out["front"]:
        tuning, checking = point["tuning"], point["checking"]
        print(
            f"front {point['rule']}: tuning {tuning['found']}/{tuning['events']} found, {tuning['false_alerts']} false"
            f" ({tuning['false_per_camera_hour']}/h); checking {checking['found']}/{checking['events']} found,"
            f" {checking['false_alerts']} false ({checking['false_per_camera_hour']}/h)"
        )
    print(
        f"weapon_checking_half: found {final['found']}/{final['events']}, false {final['false_alerts']}, "
        f"false_per_camera_hour {final['false_per_camera_hour']} (clips without a weapon)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
