"""runner.inference.ov_engine: Ultralytics' letterbox, NMS and rescaling reproduced; a static YOLO11 export patched
for a rectangle computes what a dynamic export of the same weights computes; the engine finds what
Ultralytics' predictor finds on the same export; throughput (several frames) and latency (one) paths
agree; what the engine cannot run goes back to the predictor. Tiny untrained weights keep these fast
(their attention block and anchor grid are those of YOLO11n); the real COCO INT8 model runs in a data test."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from runner.config.site import ModelSpec
from runner.core.errors import ModelError
from runner.inference import ov_engine
from runner.inference.backends import OpenVinoBackend, UltralyticsBackend
from runner.inference.detector import load_detector
from runner.inference.modelref import resolve_weights
from runner.inference.ov_engine import OpenVinoEngine, letterbox, letterbox_shape, postprocess
from tests.runner.inference.tiny_model import IMGSZ, vtest_frames

SHARED_INT8 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "models" / "yolo11n_int8_openvino_model"


@pytest.fixture(scope="module")
def static_export(tiny_pt, tmp_path_factory) -> Path:
    """The tiny weights exported to a static 320x320 OpenVINO folder (like the shared COCO INT8 model)."""
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("static")
    copy = work / "tiny.pt"
    shutil.copyfile(tiny_pt, copy)
    folder = Path(YOLO(str(copy)).export(format="openvino", imgsz=IMGSZ, dynamic=False, device="cpu", verbose=False))
    assert not yaml.safe_load((folder / "metadata.yaml").read_text()).get("dynamic")
    return folder


@pytest.fixture(scope="module")
def dynamic_export(built_cache) -> Path:
    return next(p for p in built_cache.iterdir() if p.is_dir())


# -- pure functions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "height, width", [(576, 768), (240, 320), (360, 640), (720, 1280), (300, 400), (1080, 810), (97, 131)]
)
def test_letterbox_is_ultralytics_letterbox(height, width):
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(height).integers(0, 255, (height, width, 3), dtype=np.uint8)
    expected = LetterBox((IMGSZ, IMGSZ), auto=True, stride=32)(image=image)
    blob, gain, pad = letterbox(image, IMGSZ, 32)
    assert blob.shape == (1, *expected.shape) and np.array_equal(blob[0], expected)
    assert gain == pytest.approx(min(IMGSZ / height, IMGSZ / width))
    assert letterbox_shape(height, width, IMGSZ, 32)[3:] == expected.shape[:2]
    assert all(side % 32 == 0 for side in expected.shape[:2])


def test_postprocess_maps_boxes_and_keypoints_back_to_the_image():
    # One person at input pixels (cx 160, cy 128, 64 x 96) on a 320x256 input made from a 768x576 frame
    # (gain 320/768, top padding 8), with two keypoints; a second anchor under the confidence bar.
    gain, pad = 320 / 768, (0, 8)
    output = np.zeros((4 + 1 + 2 * 3, 2), np.float32)
    output[:5, 0] = [160, 128, 64, 96, 0.9]
    output[5:, 0] = [150, 100, 0.8, 170, 140, 0.3]
    output[:5, 1] = [10, 10, 4, 4, 0.1]
    found = postprocess(output, 1, 0.25, None, gain, pad, (576, 768), (2, 3))
    assert found.class_id.tolist() == [0] and found.confidence.tolist() == pytest.approx([0.9])
    assert found.xyxy[0] == pytest.approx(
        [(160 - 32) / gain, (128 - 48 - 8) / gain, (160 + 32) / gain, (128 + 48 - 8) / gain]
    )
    assert found.keypoints.shape == (1, 2, 3)
    assert found.keypoints[0, :, :2].ravel() == pytest.approx([150 / gain, 92 / gain, 170 / gain, 132 / gain])
    assert found.keypoints[0, :, 2] == pytest.approx([0.8, 0.3])
    assert len(postprocess(output, 1, 0.25, [3], gain, pad, (576, 768), (2, 3)).xyxy) == 0  # class filter


# -- the compiled models ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_static_export_patched_for_a_rectangle_computes_what_the_dynamic_export_computes(
    static_export, dynamic_export
):
    patched = OpenVinoEngine(static_export, IMGSZ, threads=2, precision="f32")
    dynamic = OpenVinoEngine(dynamic_export, IMGSZ, threads=2, precision="f32")
    assert patched.static and not dynamic.static
    for frame in vtest_frames(2):  # 768x576 -> 320x256: the traced 320x320 graph would refuse it
        blob, _, _ = letterbox(frame, IMGSZ, 32)
        assert blob.shape[1:3] == (256, 320)
        expected, got = dynamic.raw_output(blob), patched.raw_output(blob)
        assert got.shape == expected.shape == (84, 32 * 40 + 16 * 20 + 8 * 10)
        assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max() + 1e-4
    square = np.zeros((1, IMGSZ, IMGSZ, 3), np.uint8)  # at the traced size nothing is rewritten
    assert patched.raw_output(square).shape == (84, 2100)


@pytest.mark.slow
def test_a_graph_without_a_yolo_head_is_refused_and_the_predictor_runs_it(static_export, tmp_path, monkeypatch, caplog):
    import openvino as ov

    template = ov.Core().read_model(str(next(static_export.glob("*.xml"))))
    for op in template.get_ordered_ops():  # hide the anchor grid: the patch must not guess
        if op.get_type_name() == "Constant" and op.get_output_shape(0) and op.get_output_shape(0)[-1] == 2100:
            data = op.get_data()
            if data.shape[-2:] == (2, 2100):
                replacement = ov.opset13.constant(data + 1000.0).output(0)
                for target in list(op.output(0).get_target_inputs()):
                    target.replace_source_output(replacement)
    with pytest.raises(ModelError, match="not a YOLO head this engine knows"):
        ov_engine._static_for_shape(template, 256, 320, (IMGSZ, IMGSZ), (8, 16, 32))
    broken = tmp_path / "broken_openvino_model"
    shutil.copytree(static_export, broken)
    (broken / "metadata.yaml").write_text(
        (broken / "metadata.yaml").read_text().replace("task: detect", "task: segment")
    )
    assert not ov_engine.supports(broken, None) and ov_engine.supports(static_export, None)
    assert not ov_engine.supports(static_export, "pose")  # the config asks for another task
    nameless = tmp_path / "nameless_openvino_model"
    shutil.copytree(static_export, nameless)
    metadata = yaml.safe_load((nameless / "metadata.yaml").read_text())
    metadata.pop("names")
    (nameless / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    assert not ov_engine.supports(nameless, None)  # no class names: the predictor's loader says what is wrong
    monkeypatch.setenv("VIGIE_CACHE_DIR", str(tmp_path / "cache"))
    spec = ModelSpec(weights=str(broken), imgsz=IMGSZ, task="segment")
    with caplog.at_level(logging.INFO):
        try:
            detector = load_detector("m", spec, resolve_weights("m", spec))
        except ModelError:
            detector = None  # Ultralytics refuses a detect graph labelled segment: not the engine's doing
    assert detector is None or isinstance(detector.model, UltralyticsBackend)


@pytest.mark.slow
def test_the_engine_finds_what_ultralytics_predictor_finds_on_the_same_export(dynamic_export):
    from ultralytics import YOLO

    engine = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    predictor = YOLO(str(dynamic_export), task="detect")
    for frame in vtest_frames(2):
        (expected,) = predictor.predict(frame, imgsz=IMGSZ, conf=0.5, verbose=False)
        (got,) = engine.predict([frame], conf=0.5)
        boxes = expected.boxes.xyxy.numpy()
        assert len(boxes) > 10 and abs(len(got.xyxy) - len(boxes)) <= 0.05 * len(boxes)
        nearest = [np.abs(got.xyxy - box).max(axis=1).argmin() for box in boxes]
        close = [np.abs(got.xyxy[i] - box).max() < 1.0 for i, box in zip(nearest, boxes)]
        same_class = [got.class_id[i] == c for i, c in zip(nearest, expected.boxes.cls.numpy().astype(int))]
        assert np.mean(close) > 0.9 and np.mean(same_class) > 0.9


@pytest.mark.slow
def test_several_frames_in_parallel_requests_find_what_one_frame_finds(dynamic_export):
    engine = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    frames = vtest_frames(3)
    small = cv2.resize(frames[2], (400, 300))
    together = engine.predict([frames[0], small, frames[1], frames[2]], conf=0.5)
    assert list(engine._compiled) == [(256, 320, "throughput")]  # 768x576 and 400x300 both letterbox to 320x256
    for frame, found in zip([frames[0], small, frames[1], frames[2]], together):
        (alone,) = engine.predict([frame], conf=0.5)
        assert abs(len(found.xyxy) - len(alone.xyxy)) <= 0.05 * max(1, len(alone.xyxy))
        close = [np.abs(alone.xyxy - box).max(axis=1).min() < 1.0 for box in found.xyxy]
        assert np.mean(close) > 0.9
    assert list(engine._compiled) == [(256, 320, "throughput"), (256, 320, "latency")]


def test_requests_beyond_the_pool_are_freed_once_collected(dynamic_export, monkeypatch):
    """More frames in flight than the pool keeps: the extra requests are dropped, and freed. OpenVINO holds
    each request's completion callback where the garbage collector cannot see it; with the request reachable
    from the callback's argument, every dropped request stayed alive with its tensors, for ever."""
    import gc
    import weakref

    monkeypatch.setattr(ov_engine, "REQUESTS_KEPT", 2)
    engine = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    real, created = engine._request_for, []

    def tracked(input_h, input_w, mode):
        request, key = real(input_h, input_w, mode)
        created.append(weakref.ref(request))
        return request, key

    monkeypatch.setattr(engine, "_request_for", tracked)
    frames = vtest_frames(3) * 3
    for _ in range(3):
        assert len(engine.predict(frames, conf=0.5)) == 9
    gc.collect()
    alive = {id(ref()) for ref in created if ref() is not None}
    assert len(created) == 27 and len(alive) <= ov_engine.REQUESTS_KEPT
    assert engine._slots.free == 2


@pytest.mark.slow
def test_two_threads_share_the_engine_and_find_what_each_finds_alone(dynamic_export):
    """The detector thread's round and a rule's re-detection on the analysis thread run at once: their
    requests interleave (never more than `threads` single-core slots) and each gets its own results."""

    engine = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    frames = vtest_frames(3)
    crops = [np.ascontiguousarray(frame[100:400, 200:500]) for frame in frames]
    round_alone = engine.predict(frames + [cv2.resize(frames[0], (400, 300))], conf=0.5)
    crops_alone = [engine.predict([crop], conf=0.5, imgsz=2 * IMGSZ)[0] for crop in crops]
    seen_free: list[int] = []
    results: dict[str, list] = {"round": [], "crops": []}

    def rounds():
        for _ in range(4):
            results["round"].append(engine.predict(frames + [cv2.resize(frames[0], (400, 300))], conf=0.5))
            seen_free.append(engine._slots.free)

    def redetections():
        for _ in range(2):
            results["crops"].append([engine.predict([crop], conf=0.5, imgsz=2 * IMGSZ)[0] for crop in crops])
            seen_free.append(engine._slots.free)

    workers = [threading.Thread(target=rounds), threading.Thread(target=redetections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(results["round"]) == 4 and len(results["crops"]) == 2
    for got, expected in [(r, round_alone) for r in results["round"]] + [(c, crops_alone) for c in results["crops"]]:
        for one, alone in zip(got, expected):
            assert np.array_equal(one.xyxy, alone.xyxy) and np.array_equal(one.class_id, alone.class_id)
    assert all(0 <= free <= 2 for free in seen_free) and engine._slots.free == 2


@pytest.mark.slow
def test_a_failing_request_gives_its_slots_back(dynamic_export, monkeypatch):
    engine = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    frames = vtest_frames(3)
    engine.predict(frames, conf=0.5)
    real = engine._request_for
    started = []

    def fail_on_the_third(input_h, input_w, mode):
        started.append(mode)
        if len(started) == 3:
            raise RuntimeError("device lost")
        return real(input_h, input_w, mode)

    monkeypatch.setattr(engine, "_request_for", fail_on_the_third)
    with pytest.raises(RuntimeError, match="device lost"):
        engine.predict(frames, conf=0.5)
    assert engine._slots.free == 2
    monkeypatch.setattr(engine, "_request_for", real)
    assert len(engine.predict(frames, conf=0.5)) == 3


@pytest.mark.slow
def test_compiling_a_new_shape_holds_neither_the_slots_nor_the_other_callers(dynamic_export, monkeypatch):
    """A rule's first enlarged pass compiles a new shape (about a second on the real model): meanwhile the
    detector thread's frames of an already compiled shape still run, and the new shape is compiled once."""

    engine = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    frames = vtest_frames(2)
    expected = engine.predict(frames, conf=0.5)
    real_compile = engine._compile
    compiling, release = threading.Event(), threading.Event()
    compiled_shapes = []

    def slow_compile(input_h, input_w, mode):
        compiled_shapes.append((input_h, input_w, mode))
        compiling.set()
        assert release.wait(30.0)
        return real_compile(input_h, input_w, mode)

    monkeypatch.setattr(engine, "_compile", slow_compile)
    enlarged = []
    worker = threading.Thread(target=lambda: enlarged.append(engine.predict(frames[:1], conf=0.5, imgsz=2 * IMGSZ)))
    worker.start()
    try:
        assert compiling.wait(30.0)
        assert engine._slots.free == 2  # the compiling caller holds no slot
        during = engine.predict(frames, conf=0.5)  # would wait for the compile if it held the lock or the slots
    finally:
        release.set()
        worker.join(60)
    for got, alone in zip(during, expected):
        assert np.array_equal(got.xyxy, alone.xyxy)
    assert len(enlarged) == 1 and len(compiled_shapes) == 1 and compiled_shapes[0][2] == "latency"
    engine.predict(frames[:1], conf=0.5, imgsz=2 * IMGSZ)
    assert len(compiled_shapes) == 1 and engine._slots.free == 2


def _single_core_threads_while(
    engine: OpenVinoEngine, rounds_of: list[np.ndarray], stop_when_seen: bool, max_s: float
) -> set[tuple[int, str]]:
    """The engine's threads (id, name) seen bound to one core while it runs rounds of `rounds_of`: only
    threads started by its first call are watched, not those of models other tests left in this process."""
    before = set(os.listdir("/proc/self/task"))
    engine.predict(rounds_of, conf=0.5)  # compiled first: compiling may pin its own threads for a while
    watched = set(os.listdir("/proc/self/task")) - before
    assert watched, "the engine started no thread"
    seen: set[tuple[int, str]] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for task in watched:
                try:
                    if len(os.sched_getaffinity(int(task))) == 1:
                        seen.add((int(task), Path(f"/proc/self/task/{task}/comm").read_text().strip()))
                except OSError:  # the thread ended meanwhile
                    pass
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    deadline = time.monotonic() + max_s
    try:
        while time.monotonic() < deadline and not (stop_when_seen and seen):
            engine.predict(rounds_of, conf=0.5)
    finally:
        done.set()
        sampler.join()
    return seen


@pytest.mark.slow
@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs thread affinities (Linux) and two cores",
)
def test_inference_threads_float_across_cores_unless_pinning_is_asked(dynamic_export, monkeypatch):
    """Every compiled model (one per frame shape) would pin its stream i to core i: two requests of
    different shapes in flight then often share one core while the other idles. Unpinned by default;
    VIGIE_CPU_PINNING=1 gives OpenVINO's pinning back (and shows this sampler sees it)."""
    frames = vtest_frames(1)
    two_shapes = [frames[0], cv2.resize(frames[0], (640, 360))] * 2  # 320x256 and 320x192 inputs
    monkeypatch.delenv(ov_engine.PINNING_ENV, raising=False)
    floating = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    assert _single_core_threads_while(floating, two_shapes, stop_when_seen=False, max_s=1.5) == set()
    assert len(floating._compiled) == 2

    monkeypatch.setenv(ov_engine.PINNING_ENV, "1")
    pinned = OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    assert _single_core_threads_while(pinned, two_shapes, stop_when_seen=True, max_s=20.0)


@pytest.mark.slow
def test_a_bad_pinning_setting_is_one_line_naming_it_not_a_fallback_to_the_predictor(dynamic_export, monkeypatch):
    monkeypatch.setenv(ov_engine.PINNING_ENV, "yes")
    with pytest.raises(ModelError, match="^VIGIE_CPU_PINNING must be 1 .* or 0, got 'yes'$"):
        OpenVinoEngine(dynamic_export, IMGSZ, threads=2)
    spec = ModelSpec(weights=str(dynamic_export), imgsz=IMGSZ, task="detect")
    with pytest.raises(ModelError, match="^VIGIE_CPU_PINNING must be"):  # the engine's fallback does not hide it
        load_detector("tiny", spec, resolve_weights("tiny", spec, dynamic_export.parent))
    monkeypatch.setenv(ov_engine.PINNING_ENV, "0")
    assert not load_detector("tiny", spec, resolve_weights("tiny", spec, dynamic_export.parent)).model.engine.pinning


@pytest.mark.slow
def test_crops_of_any_shape_share_one_square_input(dynamic_export):
    """Re-detected crops (a person's spot turned 90 degrees, a bag) come in every aspect ratio: letterboxed
    to a square they share one compiled model, instead of compiling one per ratio (half a second each on
    the real model, and a bounded cache that would churn)."""
    spec = ModelSpec(weights=str(dynamic_export), imgsz=IMGSZ, task="detect")
    detector = load_detector("tiny", spec, resolve_weights("tiny", spec, dynamic_export.parent))
    frame = vtest_frames(1)[0]
    crops = [np.ascontiguousarray(frame[:h, :w]) for h, w in ((300, 120), (200, 500), (90, 90), (576, 300))]
    before = set(detector.model.engine._compiled)
    found = [detector.detect_crops([crop])[0] for crop in crops]
    assert set(detector.model.engine._compiled) - before == {(IMGSZ, IMGSZ, "latency")}
    for crop, detections in zip(crops, found):  # boxes in the crop's own pixels
        assert (
            len(detections)
            and detections.xyxy[:, 2].max() <= crop.shape[1]
            and detections.xyxy[:, 3].max() <= crop.shape[0]
        )
    assert detector.model.engine._slots.free == 2


@pytest.mark.slow
def test_a_detector_warms_each_size_once(dynamic_export, monkeypatch):
    """`Detector.warm_up` compiles a frame size (batch and lone frame) or an enlarged crop (lone) once
    per process: every camera of that size, and the runner's warm-up on a camera's first frame, reuse it."""
    spec = ModelSpec(weights=str(dynamic_export), imgsz=IMGSZ, task="detect")
    detector = load_detector("tiny", spec, resolve_weights("tiny", spec, dynamic_export.parent))
    assert isinstance(detector.model, OpenVinoBackend)
    compiled = []
    real_compile = detector.model.engine._compile
    monkeypatch.setattr(
        detector.model.engine,
        "_compile",
        lambda h, w, mode: (compiled.append((h, w, mode)), real_compile(h, w, mode))[1],
    )
    before = set(detector.model.engine._compiled)
    detector.warm_up([(576, 768), (576, 768), (240, 320)])
    detector.warm_up([(576, 768)])
    detector.warm_up([(300, 400)], imgsz=2 * IMGSZ)
    detector.warm_up([(300, 400)], imgsz=2 * IMGSZ)
    # 576x768 and 240x320 letterbox to the same 320x256 input: its two modes; the crop at 640: 640x480, alone.
    assert set(detector.model.engine._compiled) - before == {
        (256, 320, "throughput"),
        (256, 320, "latency"),
        (480, 640, "latency"),
    }
    assert sorted(compiled) == sorted(set(compiled))  # nothing compiled twice


@pytest.mark.slow
def test_a_larger_input_size_asked_per_call_is_what_an_engine_of_that_size_finds(static_export, dynamic_export):
    """`predict(imgsz=)` (the enlarged density pass): a static export traced at 320 runs a frame at 640,
    finding what the dynamic export's engine configured at 640 finds, in the frame's own pixels."""
    frame = vtest_frames(1)[0]  # 768x576
    (asked,) = OpenVinoEngine(static_export, IMGSZ, threads=2).predict([frame], conf=0.5, imgsz=2 * IMGSZ)
    (configured,) = OpenVinoEngine(dynamic_export, 2 * IMGSZ, threads=2).predict([frame], conf=0.5)
    assert len(configured.xyxy) > 10 and len(asked.xyxy) == len(configured.xyxy)
    assert np.abs(np.sort(asked.xyxy, axis=0) - np.sort(configured.xyxy, axis=0)).max() < 1.0
    assert asked.xyxy[:, 2].max() > IMGSZ  # frame pixels, not the 320 letterbox


@pytest.mark.slow
def test_a_detector_of_fixed_input_size_refuses_another_size(static_export):
    from runner.inference.detector import Detector

    spec = ModelSpec(weights=str(static_export), imgsz=IMGSZ, task="detect")
    resolved = resolve_weights("tiny", spec, static_export.parent)
    predictor = UltralyticsBackend(object(), {0: "person"}, "tiny", resolved.backend, spec.conf, spec.imgsz)
    fixed = Detector(name="tiny", spec=spec, resolved=resolved, model=predictor)
    assert resolved.backend == "openvino" and not fixed.any_input_size
    with pytest.raises(ValueError, match="fixed input size"):
        fixed.detect([np.zeros((64, 64, 3), np.uint8)], imgsz=2 * IMGSZ)
    direct = load_detector("tiny", spec, resolved)
    assert isinstance(direct.model, OpenVinoBackend) and direct.any_input_size


def test_pytorch_weights_run_at_the_input_size_asked(tiny_pt):
    """`runtime: torch` (Ultralytics' predictor on the .pt): another imgsz per call, then the configured
    one again. The tiny model's class "1" sits on every cell of the stride-32 grid: 4x the cells at 2x."""
    spec = ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, task="detect", runtime="torch")
    detector = load_detector("tiny", spec, resolve_weights("tiny", spec, tiny_pt.parent))
    assert isinstance(detector.model, UltralyticsBackend) and detector.any_input_size
    frame = np.full((IMGSZ, IMGSZ, 3), 114, np.uint8)
    cells = [len(detector.detect([frame], {"1"}, imgsz=size)[0]) for size in (IMGSZ, 2 * IMGSZ, None)]
    assert cells[0] > 0 and cells[1] >= 3 * cells[0] and cells[2] == cells[0]


@pytest.mark.data
@pytest.mark.slow
def test_the_enlarged_density_pass_counts_what_the_tiles_count_on_a_real_crossing():
    """The shared COCO INT8 model on the scramble crossing seen from above (~40 small people): the zone
    enlarged 2x in one inference finds about as many people as the grid of 640 px tiles, with fewer pixels."""
    import supervision as sv

    from runner.inference.tiling import TileSettings, crop_detector, tile_grid, tiled_detect

    if not SHARED_INT8.is_dir():
        pytest.skip(f"{SHARED_INT8} absent")
    engine = OpenVinoEngine(SHARED_INT8, 640, threads=2)

    def people(predictions):
        return [
            sv.Detections(
                xyxy=p.xyxy.astype(float),
                confidence=p.confidence,
                class_id=p.class_id,
                data={"class_name": np.array(["person"] * len(p.xyxy), dtype=object)},
            )
            for p in predictions
        ]

    capture = cv2.VideoCapture(
        str(SHARED_INT8.parents[1] / "clips" / "crowd_pc_example07_scramble_crossing_topdown.mp4")
    )
    frames = [capture.read()[1] for _ in range(200)][60::35]  # the crossing filling up
    capture.release()
    grid_total = enlarged_total = 0
    for frame in frames:  # 640x360
        height, width = frame.shape[:2]

        def enlarged(box, scale, max_side_px):
            (found,) = people(engine.predict([frame], conf=0.25, classes=[0], imgsz=int(round(width * scale))))
            return found

        grid, tiles = tiled_detect(
            crop_detector(lambda images: people(engine.predict(images, 0.25, [0])), frame),
            (width, height),
            settings=TileSettings(enlarged=False),
        )
        once, runs = tiled_detect(lambda box: pytest.fail("no tile"), (width, height), detect_enlarged=enlarged)
        grid_total, enlarged_total = grid_total + len(grid), enlarged_total + len(once)
        assert tiles == len(tile_grid((0, 0, width, height), (width, height))) == 6 and runs == 1
    assert grid_total > 60 and abs(enlarged_total - grid_total) <= 0.15 * grid_total


@pytest.mark.data
@pytest.mark.slow
def test_the_shared_coco_int8_model_runs_rectangles_and_matches_the_predictor_on_squares():
    from ultralytics import YOLO

    if not SHARED_INT8.is_dir():
        pytest.skip(f"{SHARED_INT8} absent")
    clip = SHARED_INT8.parents[1] / "clips" / "ped_pc_example02_plaza_topdown.mp4"
    capture = cv2.VideoCapture(str(clip))
    frames = [capture.read()[1] for _ in range(40)][::10]
    capture.release()
    engine = OpenVinoEngine(SHARED_INT8, 640, threads=2)
    predictor = YOLO(str(SHARED_INT8), task="detect")
    people_square = people_rect = 0
    for frame in frames:  # 1280x720
        square = cv2.resize(frame, (640, 640))  # a square frame: both letterbox it to 640x640, no patch
        (expected,) = predictor.predict(square, imgsz=640, conf=0.25, verbose=False)
        (got,) = engine.predict([square], conf=0.25)
        assert len(got.xyxy) == len(expected.boxes)
        assert np.abs(np.sort(got.xyxy, axis=0) - np.sort(expected.boxes.xyxy.numpy(), axis=0)).max() < 1.0
        (square_run,) = predictor.predict(frame, imgsz=640, conf=0.25, verbose=False)  # 640x640, padded
        (rect_run,) = engine.predict([frame], conf=0.25)  # 640x384: the patched graph
        people_square += int((square_run.boxes.cls.numpy() == 0).sum())
        people_rect += int((rect_run.class_id == 0).sum())
    assert (384, 640, "latency") in engine._compiled and (640, 640, "latency") in engine._compiled
    assert people_square > 20 and abs(people_rect - people_square) <= 0.1 * people_square
