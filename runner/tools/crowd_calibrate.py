"""Fit a camera's `foreground_coef` (crowd rules).

Usage: `python -m runner.tools.crowd_calibrate CONFIG --camera ID --rule RULE_ID`.

Replays the camera's clip (or `--source`) through the camera's person model and a crowd_density
probe on the rule's zone (crowd_density or crowd_movement; the whole image for a movement rule
without zone) with its foreground estimate switched on, and keeps the frames where counting works: at least
`--min-count` people detected in the zone while the foreground covers at most `--max-cover` of it
(people apart enough for the detector to see each of them). On those frames it fits, through the
origin, detected count ~ coef x person-equivalents, and prints the coefficient to set in the
rule (`foreground_coef: ...`). The first seconds (background model filling) are skipped. When
fewer than `--min-frames` frames qualify (a zone packed from the first frame) it says
so: keep the prior 1.0, or calibrate on footage of the same camera at a quieter time.

The coefficient maps foreground to *detected* people, so it inherits the detector's recall on that
camera (set thresholds accordingly, as for detections).

`--density` calibrates the `density_map` method instead (CSRNet, see `runner.inference.crowd_counter`):
`--empty CLIP_OR_IMAGE` (footage of the same camera with nobody in the zone) gives `density_floor`, the
median of what the map reads on the empty zone; then the frames of the clip where at least `--min-count`
people are detected in the zone give `density_scale`, fitted through the origin as detected count ~
scale x (map count - floor). Without `--empty` the floor is the rule's (its `density_floor`, else 0.005 per
map cell). A scale fitted on detections inherits the detector's recall, which is what the map is there to
beat where people hide each other: there, count the heads in the zone on one frame by eye and pass
`--heads N --at SECONDS`; the scale is N over the map's count (net of the floor) on the pass nearest that second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def fit_coefficient(counts, people_eq) -> tuple[float, float] | None:
    """Least squares through the origin: detected count ~ coef x person-equivalents.

    Args:
        counts: people detected in the zone, one per usable frame.
        people_eq: the foreground's person-equivalents on the same frames.

    Returns:
        (coef, median absolute relative error of the fit), or None when there is nothing to fit.
    """
    x = np.asarray(people_eq, dtype=float)
    y = np.asarray(counts, dtype=float)
    if len(x) == 0 or float((x * x).sum()) <= 0.0:
        return None
    coef = float((x * y).sum() / (x * x).sum())
    relative = np.abs(coef * x - y) / np.maximum(y, 1.0)
    return coef, float(np.median(relative))


def calibrate(
    config_path: str,
    camera_id: str,
    rule_id: str,
    source: str | None = None,
    min_count: int = 3,
    max_cover: float = 0.4,
    max_seconds: float | None = None,
    min_frames: int = 10,
    warmup_s: float = 2.0,
    density: bool = False,
    empty_source: str | None = None,
    heads: tuple[int, float] | None = None,
) -> dict:
    """Replays a camera's clip through a crowd_density probe on the rule's zone and fits `foreground_coef`.

    Args:
        config_path: the site config (YAML).
        camera_id: the camera whose clip and person model are used.
        rule_id: the camera's crowd_density or crowd_movement rule to calibrate.
        source: another clip of the same camera (default: the camera's source).
        min_count: fewest detected people for a frame to be used.
        max_cover: most foreground cover of the zone (0-1) for a frame to be used.
        max_seconds: stop after this much of the clip (None = the whole clip).
        min_frames: fewest usable frames for a fit.
        warmup_s: seconds skipped at the start, while the background model fills.
        density: calibrate the density_map method (`density_floor`, `density_scale`) instead of the foreground.
        empty_source: with `density`, a clip or image of the camera with the zone empty (its floor).
        heads: with `density`, (heads counted by eye in the zone, at this second of the clip): the scale is that
            count over the map's count (net of the floor) on the pass nearest that second.

    Returns:
        {"frames": frames processed, "used": usable frames, "fit": (coef, error) or None}; with `density` also
        "floor" (the floor used), "floor_measured" (True when it comes from `empty_source`) and "snapshot"
        ((t_s of the pass, its net map count, heads / that count or None) with `heads`, else None).
    """
    import runner.core.env  # noqa: F401  (Ultralytics offline defaults, before it is imported)
    from runner.config.loading import expand_env, load_config
    from runner.config.rules import CrowdDensityConfig, CrowdMovementConfig
    from runner.config.site import Zone
    from runner.inference.detector import ModelPool
    from runner.pipeline.camera import CameraPipeline
    from runner.rules.crowd_density import CrowdDensityRule
    from runner.sources.capture import VideoSource, resolve_source

    loaded = load_config(config_path)
    camera = loaded.config.camera(camera_id)
    rule_cfg = next((r for r in camera.rules if r.id == rule_id), None)
    if not isinstance(rule_cfg, CrowdDensityConfig | CrowdMovementConfig):
        raise SystemExit(f"camera {camera_id} has no crowd_density or crowd_movement rule '{rule_id}'")
    zones = list(camera.zones)
    zone = rule_cfg.zone
    if zone is None:  # a movement rule on the whole image
        zone = "calibration-whole-image"
        zones.append(Zone(id=zone, polygon=[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]))
    probe = CrowdDensityConfig(
        kind="crowd_density",
        id="calibration-probe",
        zone=zone,
        labels=rule_cfg.labels,
        min_confidence=rule_cfg.min_confidence,
        max_per_m2=None,
        max_count=1,
        process_fps=rule_cfg.rate_fps(camera.process_fps),  # the frames the calibrated rule sees
        foreground=not density,
        person_height_frac=rule_cfg.person_height_frac,
        density_every_s=(getattr(rule_cfg, "density_every_s", None) or 2.0) if density else None,
        density_model=getattr(rule_cfg, "density_model", None) if density else None,
        density_width_px=getattr(rule_cfg, "density_width_px", 640),
        density_floor=getattr(rule_cfg, "density_floor", None) if density else None,
    )
    camera = camera.model_copy(update={"zones": zones, "rules": [probe]})
    pipe = CameraPipeline(loaded, camera, ModelPool(loaded.config, loaded.base_dir), None, mode="replay")
    rule = next(r for r in pipe.rules if isinstance(r, CrowdDensityRule))
    uri = source or resolve_source(expand_env(camera.source, "source"), loaded.base_dir)
    floor: float | None = None
    if density and empty_source is not None:
        floor = empty_floor(rule, empty_source, camera.id, camera.analysed_fps, max_seconds)
    frames, used, start = 0, [], None
    passes: list[tuple[float, float]] = []  # density mode: (t_s, map count net of the floor) of every pass
    for frame in VideoSource(camera.id, uri, camera.analysed_fps).frames():
        if max_seconds is not None and frame.t_s > max_seconds:
            break
        pipe.process(frame)
        frames += 1
        m = rule.last_measure
        if density:  # no warm-up: the map needs no history
            raw, rule_floor = m.get("density_raw"), m.get("density_floor")
            if raw is not None and rule_floor is not None:
                floor = rule_floor if floor is None else floor
                passes.append((frame.t_s, raw - floor))
                if (m.get("count") or 0) >= min_count:
                    used.append((m["count"], raw - floor))
            continue
        start = frame.t_s if start is None else start
        if frame.t_s - start < warmup_s:
            continue  # the background model and the activity window are still filling
        count, people_eq, cover = m.get("count"), m.get("person_equivalents"), m.get("cover")
        if people_eq and count is not None and cover is not None and count >= min_count and cover <= max_cover:
            used.append((count, people_eq))
    fit = fit_coefficient([c for c, _ in used], [p for _, p in used]) if len(used) >= min_frames else None
    result: dict = {"frames": frames, "used": len(used), "fit": fit}
    if density:
        result.update(floor=floor, floor_measured=empty_source is not None, snapshot=None)
        if heads is not None and passes:
            count, at_s = heads
            t_s, net = min(passes, key=lambda p: abs(p[0] - at_s))
            result["snapshot"] = (t_s, net, count / net if net > 0 else None)
    return result


def empty_floor(rule, empty_source: str, camera_id: str, process_fps: float, max_seconds: float | None) -> float:
    """The median of what a density rule's map reads on its zone over footage of the empty scene.

    Args:
        rule: the probe `CrowdDensityRule` (its network and zone).
        empty_source: a clip, or an image, of the camera with nobody in the zone.
        camera_id: the camera (for the clip reader's messages).
        process_fps: frames per second read from a clip.
        max_seconds: most seconds of the clip read (None = all).

    Returns:
        The floor, in the map's counts.

    Raises:
        UsageError: the source gives no frame.
    """
    from runner.core.errors import UsageError
    from runner.sources.capture import VideoSource

    if Path(empty_source).suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(empty_source)
        images = [] if image is None else [image]
    else:
        images = [
            f.image
            for f in VideoSource(camera_id, empty_source, min(process_fps, 1.0)).frames()
            if max_seconds is None or f.t_s <= max_seconds
        ]
    if not images:
        raise UsageError(f"--empty {empty_source}: no frame could be read")
    return float(np.median([rule.density_reading(image)[0] for image in images]))


def main(argv: list[str] | None = None) -> int:
    """The command line: prints the usable frames and the coefficient to set.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        0 with a fit, 1 when too few frames qualify.
    """
    description = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m runner.tools.crowd_calibrate", description=description)
    parser.add_argument("config")
    parser.add_argument("--camera", required=True)
    parser.add_argument("--rule", required=True, help="id of the camera's crowd_density or crowd_movement rule")
    parser.add_argument("--source", help="another clip of the same camera (default: the camera's source)")
    parser.add_argument(
        "--min-count", type=int, default=3, help="fewest detected people for a frame to be used (default 3)"
    )
    parser.add_argument(
        "--max-cover",
        type=float,
        default=0.4,
        help="most foreground cover of the zone for a frame to be used (default 0.4)",
    )
    parser.add_argument("--max-seconds", type=float, help="stop after this much of the clip")
    parser.add_argument("--min-frames", type=int, help="fewest usable frames for a fit (default 10; 5 with --density)")
    parser.add_argument(
        "--density", action="store_true", help="calibrate the density_map method (density_floor, density_scale)"
    )
    parser.add_argument("--empty", help="with --density: a clip or image of the camera with the zone empty")
    parser.add_argument(
        "--heads",
        type=int,
        help="with --density: heads counted by eye in the zone at --at seconds (the scale = heads / map count)",
    )
    parser.add_argument("--at", type=float, default=0.0, help="with --heads: the second of the clip (default 0)")
    args = parser.parse_args(argv)
    if (args.empty is not None or args.heads is not None) and not args.density:
        parser.error("--empty and --heads go with --density")
    min_frames = args.min_frames or (5 if args.density else 10)
    result = calibrate(
        args.config,
        args.camera,
        args.rule,
        args.source,
        args.min_count,
        args.max_cover,
        args.max_seconds,
        min_frames,
        density=args.density,
        empty_source=args.empty,
        heads=(args.heads, args.at) if args.heads is not None else None,
    )
    if args.density:
        return report_density(result, args.min_count, min_frames)
    print(
        f"{result['frames']} frame(s) processed, {result['used']} where counting works "
        f"(>= {args.min_count} detected, foreground cover <= {args.max_cover:.0%})"
    )
    if result["fit"] is None:
        print(
            f"fewer than {min_frames} frames where counting works: keep foreground_coef: 1.0 "
            "(one person per person-sized area), or calibrate on footage of this camera at a quieter time"
        )
        return 1
    coef, error = result["fit"]
    print(f"foreground_coef: {coef:.3f}   (median relative error on those frames: {error:.0%})")
    return 0


def report_density(result: dict, min_count: int, min_frames: int) -> int:
    """Prints the density_map calibration: the floor, then the scale when enough frames qualify.

    Args:
        result: what `calibrate(..., density=True)` returned.
        min_count: the fewest detected people of a usable frame (for the message).
        min_frames: the fewest usable frames for a fit (for the message).

    Returns:
        0 with a fitted scale, 1 without.
    """
    floor, measured = result["floor"], result["floor_measured"]
    if floor is not None:
        origin = "measured on the empty footage" if measured else "the rule's (no --empty given)"
        print(f"density_floor: {floor:.1f}   ({origin})")
    if result["snapshot"] is not None:
        t_s, net, scale = result["snapshot"]
        if scale is None:
            print(f"the map reads nothing above its floor at {t_s:.1f} s: no scale from that snapshot")
            return 1
        print(f"density_scale: {scale:.2f}   (heads counted by eye / {net:.1f} read by the map at {t_s:.1f} s)")
        return 0
    print(f"{result['frames']} frame(s) processed, {result['used']} density pass(es) with >= {min_count} detected")
    if result["fit"] is None:
        print(f"fewer than {min_frames} passes where counting works: keep density_scale: 1.0 (the map as it is)")
        return 1
    scale, error = result["fit"]
    print(
        f"density_scale: {scale:.3f}   (median relative error on those passes: {error:.0%}; fitted on detections, "
        "it inherits their recall: where people hide each other, prefer --heads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
