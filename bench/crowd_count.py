"""Count accuracy of the crowd_density counting methods on the five ShanghaiTech Part A images.

    .venv/bin/python bench/crowd_count.py [--data ../shared/data] [--scales 2 4]

Prints one row per image: the true head count (exact head points shipped with the images), then
for each method its count and its error (count - truth, and as a share of the truth):

- `det640`: the COCO YOLO11n INT8 OpenVINO person model on the whole image at 640 px;
- `enlarged xS`: the same model on the whole image enlarged S times in one inference, merged with the
  full-frame pass (`runner.inference.tiling` with `tile_pass: enlarged`, what the crowd_density rule runs by default;
  the tiles below instead where that input would be longer than 3840 px, as in the rule);
- `tiled xS`: the same model on overlapping 640 px tiles enlarged S times, merged likewise
  (`tile_pass: grid`).

The last line is each method's median time per image, its shapes compiled beforehand.

The detector-free `foreground` method needs video (a background model and recent activity): it does
not apply to still photographs, and is not in this table.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "ultralytics"))

IMAGES = ("IMG_1", "IMG_4", "IMG_51", "IMG_167", "IMG_168")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("VIGIE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--conf", type=float, default=0.25)
    args = parser.parse_args()

    import cv2
    import numpy as np

    from runner.config.site import ModelSpec
    from runner.inference.crops import boxes_to_frame, make_crop
    from runner.inference.detector import load_detector
    from runner.inference.modelref import resolve_weights
    from runner.inference.tiling import TileSettings, crop_detector, tiled_detect
    from runner.pipeline.camera import enlarged_side_px

    data = Path(args.data)
    weights = data / "models" / "yolo11n_int8_openvino_model"
    if not (data / "crowd_images").is_dir() or not weights.is_dir():
        print(f"crowd images or model not found under {data}")
        return 1
    spec = ModelSpec(weights=str(weights), imgsz=640, conf=args.conf, task="detect")
    detector = load_detector("coco", spec, resolve_weights("coco", spec, None))

    def run(images):
        return detector.detect(images, {"person"})

    def enlarged(image):
        """The pipeline's `redetect_enlarged` on an image held in memory: None where it would not run."""

        def detect(region, scale, max_side_px):
            crop = make_crop(image, region, pad_frac=0.0)
            side_px = enlarged_side_px(crop.image.shape[:2], scale) if crop is not None else 0
            if crop is None or side_px > max_side_px or not detector.any_input_size:
                return None
            found = detector.detect([crop.image], {"person"}, imgsz=side_px)[0]
            if len(found):
                found.xyxy = boxes_to_frame(found.xyxy, crop)
            return found

        return detect

    passes = [(f"{kind} x{s:g}", s, kind == "enlarged") for s in args.scales for kind in ("enlarged", "tiled")]
    methods = ["det640"] + [method for method, _, _ in passes]
    header = f"{'image':8s} {'true':>5s} " + " ".join(f"{m:>22s}" for m in methods)
    print(header)
    print("-" * len(header))
    totals = {m: [] for m in methods}
    timings = {m: [] for m in methods}
    for name in IMAGES:
        image = cv2.imread(str(data / "crowd_images" / f"{name}.jpg"))
        with open(data / "crowd_images" / f"GT_{name}_points.csv", newline="") as handle:
            truth = sum(1 for _ in csv.DictReader(handle))
        height, width = image.shape[:2]
        # Each image has its own size: the first call of each method compiles its shapes, the second is timed.
        full = run([image])[0]
        start = time.perf_counter()
        full = run([image])[0]
        timings["det640"].append(time.perf_counter() - start)
        counts = {"det640": len(full)}
        for method, scale, one_pass in passes:

            def count_pass():
                return tiled_detect(
                    crop_detector(run, image),
                    (width, height),
                    full_frame=full,
                    settings=TileSettings(scale=scale, enlarged=one_pass),
                    detect_enlarged=enlarged(image) if one_pass else None,
                )[0]

            count_pass()
            start = time.perf_counter()
            counts[method] = len(count_pass())
            timings[method].append(time.perf_counter() - start)
        cells = []
        for m in methods:
            error = counts[m] - truth
            totals[m].append(abs(error) / truth)
            cells.append(f"{counts[m]:5d} ({error:+5d}, {error / truth:+5.0%})")
        print(f"{name:8s} {truth:5d} " + " ".join(f"{c:>22s}" for c in cells))
    print("-" * len(header))
    print(f"{'mean |error|':14s} " + " ".join(f"{np.mean(totals[m]):>22.0%}" for m in methods))
    print(f"{'ms per image':14s} " + " ".join(f"{1000 * np.median(timings[m]):>22.0f}" for m in methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
