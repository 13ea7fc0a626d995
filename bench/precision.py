"""Is an INT8 OpenVINO model faster as quantized, or with its INT8 weights computed in bf16?

    .venv/bin/python bench/precision.py [--model FOLDER] [--rounds 3] [--clips N] [--data ../shared/data]

On a CPU that computes in bf16 (AMX), INT8 arithmetic pays for quantize/dequantize steps around each
layer, and the layers of a small YOLO are too small for AMX-INT8 to win that back. This benchmark runs
the model (default: the shared COCO YOLO11n INT8 export) through the runner's OpenVINO engine twice:
as given, and *expanded* (`expand_quantized`: each INT8 weight times its scale folded into a float
constant, the activations' FakeQuantize steps taken out), and prints:

- time per frame, in turn, per round: 8 frames of 640x384 (parallel single-core requests, as in a
  round of cameras), a lone frame (latency mode), an enlarged density pass at 1280; and the median;
- detection agreement on six frames of each clip of `<data>/clips`: detections of each, how many of the
  quantized run's are found by the expanded one (same class, IoU > 0.5), their median IoU.

The runner keeps the model as given: on this 2-core machine the expansion was faster here (a bare loop:
16.8 -> 13.6 ms per frame) but not in the capacity run, and it changes the detections (README,
"tried, not kept"). The last line is `expanded_speedup_8_frames: X.XX` (as given / expanded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "ultralytics"))

QUANTIZED_WEIGHT_TYPES = ("i8", "u8", "i4", "u4")
MATCH_IOU = 0.5


# -- the expansion ------------------------------------------------------------------------------------
def expand_quantized(template):
    """A copy of an INT8-quantized OpenVINO model (NNCF, Ultralytics `int8=True`) computing in floating
    point, or None when it has no activation quantizer. The weights keep the values the quantization
    chose; the activations are no longer rounded to 256 levels."""
    from openvino import opset13 as ops

    model = template.clone()
    ordered = model.get_ordered_ops()
    for op in ordered:
        weights = decompressed_weights(op)
        if weights is not None:
            replacement = ops.constant(weights).output(0)
            for target_input in list(op.output(0).get_target_inputs()):
                target_input.replace_source_output(replacement)
    bypassed = 0
    for op in ordered:
        if op.get_type_name() == "FakeQuantize" and not _constant_derived(op.input_value(0).get_node()):
            for target_input in list(op.output(0).get_target_inputs()):
                target_input.replace_source_output(op.input_value(0))
            bypassed += 1
    if not bypassed:
        return None
    model.validate_nodes_and_infer_types()
    return model


def decompressed_weights(op) -> np.ndarray | None:
    """The float weights of a decompression chain ending at `op`: Multiply(Convert(INT8 constant)
    [- zero point], scale constant), computed in numpy; None for any other node."""
    if op.get_type_name() != "Multiply":
        return None
    quantized, scale = op.input_value(0).get_node(), op.input_value(1).get_node()
    if scale.get_type_name() != "Constant":
        return None
    zero_point = None
    if quantized.get_type_name() == "Subtract":
        zero_point = _constant_value(quantized.input_value(1).get_node())
        if zero_point is None:
            return None
        quantized = quantized.input_value(0).get_node()
    if quantized.get_type_name() != "Convert":
        return None
    source = quantized.input_value(0).get_node()
    if (
        source.get_type_name() != "Constant"
        or source.get_output_element_type(0).get_type_name() not in QUANTIZED_WEIGHT_TYPES
    ):
        return None
    values = source.get_data().astype(np.float32)
    if zero_point is not None:
        values = values - zero_point
    return (values * scale.get_data().astype(np.float32)).astype(np.float32)


def _constant_value(node) -> np.ndarray | None:
    if node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node.get_data().astype(np.float32) if node.get_type_name() == "Constant" else None


def _constant_derived(node) -> bool:
    """A FakeQuantize on weights (a constant, or its conversion) stays: the compiler folds it."""
    return node.get_type_name() == "Constant" or (
        node.get_type_name() == "Convert" and node.input_value(0).get_node().get_type_name() == "Constant"
    )


# -- agreement ----------------------------------------------------------------------------------------
def agreement(reference: list, candidate: list) -> tuple[int, int, int, list[float]]:
    """(detections of the reference, of the candidate, reference detections the candidate finds with the
    same class and IoU > 0.5, those IoUs) over frames of `runner.inference.ov_engine.Prediction`s."""
    import supervision as sv

    found = got = matched = 0
    ious: list[float] = []
    for ref, cand in zip(reference, candidate, strict=True):
        found, got = found + len(ref.xyxy), got + len(cand.xyxy)
        if len(ref.xyxy) and len(cand.xyxy):
            same_class = ref.class_id[:, None] == cand.class_id[None, :]
            best = (sv.box_iou_batch(ref.xyxy, cand.xyxy) * same_class).max(axis=1)
            hits = best[best > MATCH_IOU]
            matched += len(hits)
            ious.extend(float(v) for v in hits)
    return found, got, matched, ious


def sample_frames(clip: Path, count: int = 6) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(clip))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    frames = []
    for index in np.linspace(0, max(total - 2, 0), count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, image = capture.read()
        if ok:
            frames.append(image)
    capture.release()
    return frames


# -- timing -------------------------------------------------------------------------------------------
def ms_per_frame(engine, images: list[np.ndarray], imgsz: int | None, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        engine.predict(images, 0.25, imgsz=imgsz)
    return (time.perf_counter() - start) / repeats / len(images) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("VIGIE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", help="an INT8 OpenVINO folder (default: <data>/models/yolo11n_int8_openvino_model)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=int, help="compare detections on the first N clips only (default: all)")
    args = parser.parse_args()
    if args.rounds < 1 or (args.clips is not None and args.clips < 1):
        parser.error("--rounds and --clips must be at least 1")

    from runner.core.errors import VigieError
    from runner.inference.export_cache import inference_threads
    from runner.inference.ov_engine import OpenVinoEngine

    data = Path(args.data)
    folder = Path(args.model) if args.model else data / "models" / "yolo11n_int8_openvino_model"
    if not folder.is_dir():
        print(f"model folder not found: {folder}")
        return 1
    try:
        as_given = OpenVinoEngine(folder, 640, inference_threads(), precision="auto")
        expanded = OpenVinoEngine(folder, 640, inference_threads(), precision="auto")
    except (VigieError, StopIteration) as exc:  # StopIteration: no .xml in the folder
        print(f"cannot load {folder}: {str(exc) or 'no OpenVINO .xml model in it'}")
        return 1
    model = expand_quantized(expanded.template)
    if model is None:
        print(f"{folder.name} has no activation quantizer: not an INT8 model")
        return 1
    expanded.template = model  # compiled per shape on first use, from this template

    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    cases = (
        ("8 frames 640x384", [frame] * 8, None, 10),
        ("lone frame 640x384", [frame], None, 10),
        ("enlarged pass 1280", [frame], 1280, 5),
    )
    for engine in (as_given, expanded):  # compile every shape before timing
        for _, images, imgsz, _ in cases:
            engine.predict(images, 0.25, imgsz=imgsz)
    times: dict[tuple[str, str], list[float]] = {}
    print(f"model {folder.name}, {inference_threads()} threads; ms per frame, as given / expanded, in turn:")
    for round_no in range(1, args.rounds + 1):
        cells = []
        for label, images, imgsz, repeats in cases:
            pair = [ms_per_frame(engine, images, imgsz, repeats) for engine in (as_given, expanded)]
            times.setdefault((label, "given"), []).append(pair[0])
            times.setdefault((label, "expanded"), []).append(pair[1])
            cells.append(f"{label}: {pair[0]:.1f} / {pair[1]:.1f}")
        print(f"  round {round_no}: " + "; ".join(cells))
    print(
        "  median: "
        + "; ".join(
            f"{label}: {statistics.median(times[(label, 'given')]):.1f}"
            f" / {statistics.median(times[(label, 'expanded')]):.1f}"
            for label, *_ in cases
        )
    )

    clips = sorted(p for p in (data / "clips").glob("*") if p.suffix in (".mp4", ".avi"))[: args.clips]
    totals = [0, 0, 0]
    ious: list[float] = []
    for clip in clips:
        frames = sample_frames(clip)
        if frames:
            found, got, matched, clip_ious = agreement(as_given.predict(frames, 0.25), expanded.predict(frames, 0.25))
            totals = [totals[0] + found, totals[1] + got, totals[2] + matched]
            ious.extend(clip_ious)
    if clips:
        print(
            f"detections on 6 frames of each of {len(clips)} clips: as given {totals[0]}, expanded {totals[1]}, "
            f"{totals[2]} of the former found by the latter (same class, IoU > {MATCH_IOU}), "
            f"median IoU {statistics.median(ious) if ious else float('nan'):.3f}"
        )
    given, faster = (statistics.median(times[("8 frames 640x384", k)]) for k in ("given", "expanded"))
    print(f"expanded_speedup_8_frames: {given / faster:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
