"""runner.inference.backends: both backends offer what `Detector` needs (`DetectorBackend`), on the tiny
model: the same columns, each image filtered to its own classes, one blank frame to warm up."""

from __future__ import annotations

import pytest

from runner.config.site import ModelSpec
from runner.core.fields import CLASS_NAME, MODEL
from runner.inference.backends import (
    DetectorBackend,
    OpenVinoBackend,
    UltralyticsBackend,
    classes_to_run,
)
from runner.inference.detector import load_detector
from runner.inference.modelref import resolve_weights
from tests.runner.inference.tiny_model import IMGSZ, vtest_frames


def test_a_batched_call_runs_the_union_of_the_classes_its_images_want():
    assert classes_to_run([{3, 1}, {1, 2}]) == [1, 2, 3]
    assert classes_to_run([{3}, None]) is None  # one image wants every class
    assert classes_to_run([]) == []


@pytest.fixture(scope="module")
def backends(tiny_pt, built_cache) -> dict[str, DetectorBackend]:
    """The tiny model in Vigie's OpenVINO engine (its cached export) and in Ultralytics' predictor (PyTorch)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIGIE_CACHE_DIR", str(built_cache))
        spec = ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, conf=0.5)
        engine = load_detector("tiny", spec, resolve_weights("tiny", spec)).model
        spec = ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ, conf=0.5, runtime="torch")
        predictor = load_detector("tiny", spec, resolve_weights("tiny", spec)).model
    return {"openvino": engine, "ultralytics": predictor}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, cls, any_size", [("openvino", OpenVinoBackend, True), ("ultralytics", UltralyticsBackend, True)]
)
def test_both_backends_offer_what_the_detector_needs(backends, kind, cls, any_size):
    backend = backends[kind]
    assert isinstance(backend, cls) and isinstance(backend, DetectorBackend)
    assert backend.names[0] == "0" and len(backend.names) == 80 and not backend.has_keypoints
    assert backend.any_input_size is any_size  # the engine compiles per shape; PyTorch weights take any size
    backend.warm_up(240, 320)
    frame = vtest_frames(1)[0]
    everything, only_1, none = backend.start_predict([frame, frame, frame], [None, {1}, {5}])()
    assert {CLASS_NAME, MODEL} <= set(everything.data) and set(everything.data[MODEL]) == {"tiny"}
    assert set(everything.data[CLASS_NAME]) == {"0", "1"}  # the biased classes of the tiny weights
    assert set(only_1.data[CLASS_NAME]) == {"1"} and len(only_1) == (everything.class_id == 1).sum()
    assert len(none) == 0


def test_only_pytorch_weights_let_the_predictor_change_the_input_size():
    exported = UltralyticsBackend(object(), {0: "person"}, "m", "onnx", conf=0.25, imgsz=640)
    assert not exported.any_input_size and exported.max_batch == 16
    assert UltralyticsBackend(object(), {0: "person"}, "m", "pt", conf=0.25, imgsz=640).any_input_size
