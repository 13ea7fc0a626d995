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
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


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

    Returns:
        {"frames": frames processed, "used": usable frames, "fit": (coef, error) or None}.
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
        foreground=True,
        person_height_frac=rule_cfg.person_height_frac,
    )
    camera = camera.model_copy(update={"zones": zones, "rules": [probe]})
    pipe = CameraPipeline(loaded, camera, ModelPool(loaded.config, loaded.base_dir), None, mode="replay")
    rule = next(r for r in pipe.rules if isinstance(r, CrowdDensityRule))
    uri = source or resolve_source(expand_env(camera.source, "source"), loaded.base_dir)
    frames, used, start = 0, [], None
    for frame in VideoSource(camera.id, uri, camera.process_fps).frames():
        if max_seconds is not None and frame.t_s > max_seconds:
            break
        pipe.process(frame)
        frames += 1
        start = frame.t_s if start is None else start
        if frame.t_s - start < warmup_s:
            continue  # the background model and the activity window are still filling
        m = rule.last_measure
        count, people_eq, cover = m.get("count"), m.get("person_equivalents"), m.get("cover")
        if people_eq and count is not None and cover is not None and count >= min_count and cover <= max_cover:
            used.append((count, people_eq))
    fit = fit_coefficient([c for c, _ in used], [p for _, p in used]) if len(used) >= min_frames else None
    return {"frames": frames, "used": len(used), "fit": fit}


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
    parser.add_argument("--min-frames", type=int, default=10, help="fewest usable frames for a fit (default 10)")
    args = parser.parse_args(argv)
    result = calibrate(
        args.config,
        args.camera,
        args.rule,
        args.source,
        args.min_count,
        args.max_cover,
        args.max_seconds,
        args.min_frames,
    )
    print(
        f"{result['frames']} frame(s) processed, {result['used']} where counting works "
        f"(>= {args.min_count} detected, foreground cover <= {args.max_cover:.0%})"
    )
    if result["fit"] is None:
        print(
            f"fewer than {args.min_frames} frames where counting works: keep foreground_coef: 1.0 "
            "(one person per person-sized area), or calibrate on footage of this camera at a quieter time"
        )
        return 1
    coef, error = result["fit"]
    print(f"foreground_coef: {coef:.3f}   (median relative error on those frames: {error:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
