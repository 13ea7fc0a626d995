"""Small people in the pipeline: beyond the largest input size, the model that detects a camera's persons also
runs on the region its person rules watch (enlarged, or tiled for a fixed-size model), and the frame's output
holds both passes' persons in frame pixels; without `person_height_px` nothing changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.config.loading import LoadedConfig
from runner.core.detections import empty_detections
from runner.inference.detector import ModelPool
from runner.pipeline.camera import CameraPipeline
from runner.sources.capture import Frame
from tests.helpers import HEIGHT, WIDTH, Obj, ScriptedDetector, box_at, detections_from
from tests.runner.pipeline.test_models_in_pipeline import START, ScriptedPool, config_with_models

INTRUSION = {"kind": "zone_intrusion", "id": "z", "zone": "lawn", "labels": ["person", "car"]}  # lawn: lower right
COCO = {"coco": {"weights": "coco.pt", "task": "detect"}}


class Sized(ScriptedDetector):
    """A detector that records each call's image shapes and input size, and finds one person per image."""

    def __init__(self, any_input_size: bool = True):
        super().__init__(lambda i: [], names={0: "person", 2: "car"}, name="coco")
        self.any_input_size = any_input_size
        self.seen: list[tuple[list[tuple[int, int]], int | None]] = []

    def detect(self, images, labels=None, imgsz=None):
        self.seen.append(([image.shape[:2] for image in images], imgsz))
        return [self._one_person(image) for image in images]

    @staticmethod
    def _one_person(image):
        height, width = image.shape[:2]
        found = detections_from([Obj(-1, box_at(0.5, 0.9, height=0.5, width=0.2))], width, height)
        found.tracker_id = None
        found.data["model"] = np.array(["coco"], dtype=object)
        return found


def _pipeline(detector, person_height_px):
    config = config_with_models(COCO, [INTRUSION])
    # The whole frame's pass (not the lawn's crop, tests/runner/pipeline/test_zone_crops.py), as before the crops.
    camera = config.cameras[0].model_copy(update={"person_height_px": person_height_px, "detect_margin_frac": None})
    pool = ScriptedPool(config, {"coco": detector})
    return CameraPipeline(LoadedConfig(config, Path("site.yaml"), "0" * 64), camera, pool, None, mode="replay")


def test_without_a_person_height_the_model_runs_once_on_the_frame_as_before():
    detector = Sized()
    pipe = _pipeline(detector, None)
    pipe.process(Frame("cam-01", 0, 0.0, START, np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    assert detector.seen == [([(HEIGHT, WIDTH)], None)]
    assert pipe.models[0].person_pass((HEIGHT, WIDTH)) is None


@pytest.mark.parametrize("any_input_size", [True, False])
def test_beyond_the_cap_the_region_pass_adds_its_persons_in_frame_pixels(any_input_size):
    detector = Sized(any_input_size)
    pipe = _pipeline(detector, 8.0)  # 8 px of 640 need a 3200 px input: beyond 1280
    found = pipe.detect(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 0.0).to_track
    chosen = pipe.models[0].person_pass((HEIGHT, WIDTH))
    assert chosen is not None and chosen.kind == ("enlarged" if any_input_size else "tiles")
    (frame_shapes, frame_imgsz), (region_shapes, region_imgsz) = detector.seen
    assert frame_shapes == [(HEIGHT, WIDTH)] and frame_imgsz is None  # the whole frame at the model's own size
    assert len(region_shapes) == len(chosen.boxes) and region_imgsz == chosen.region_imgsz
    # Each crop's person, moved to the frame: inside the region (the lawn grown by 8 px), below its top left.
    x0, y0 = chosen.region[0] * WIDTH, chosen.region[1] * HEIGHT
    assert (x0, y0) == pytest.approx((0.5 * WIDTH - 8, 0.5 * HEIGHT - 8))
    whole = Sized._one_person(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).xyxy[0]
    region_boxes = np.array([box for box in found.xyxy if not np.allclose(box, whole)])
    assert len(region_boxes) >= 1 and len(found) == len(region_boxes) + 1
    assert (region_boxes[:, 0] >= x0 - 1).all() and (region_boxes[:, 1] >= y0 - 1).all()
    assert found.tracker_id is None and set(found.data["model"]) == {"coco"}
    pipe.warm_up(HEIGHT, WIDTH)  # the region pass's crop is compiled ahead, at its input size
    assert (*region_shapes[0], region_imgsz) in detector.warmed


# -- with a real model ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def person_pt(tmp_path_factory) -> Path:
    """Untrained YOLO11n weights whose class 0 is named "person": it finds it everywhere on its stride-8 grid
    (sigmoid of the bias), so the boxes it returns depend only on the input's size and the crops' places."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("weights") / "tiny_person.pt"
    model = YOLO("yolo11n.yaml")
    for level, branch in enumerate(model.model.model[-1].cv3):
        branch[-1].bias.data.fill_(-10.0)
        if level == 0:
            branch[-1].bias.data[0] = 2.0
    model.model.names = {i: "person" if i == 0 else str(i) for i in range(80)}
    model.save(str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fixed_size", [False, True])
def test_a_real_model_runs_the_region_pass_and_returns_frame_boxes(person_pt, fixed_size, monkeypatch):
    models = {"tiny": {"weights": str(person_pt), "imgsz": 320, "runtime": "torch", "task": "detect"}}
    config = config_with_models(models, [{**INTRUSION, "labels": ["person"]}])
    # 20 px of 1280: 2560 px needed; the frame pass on the whole frame (silenced below by its shape)
    camera = config.cameras[0].model_copy(update={"person_height_px": 20.0, "detect_margin_frac": None})
    pool = ModelPool(config)
    detector = pool.get("tiny")
    if fixed_size:  # as an export of fixed input size: the region is tiled
        monkeypatch.setattr(type(detector.model), "any_input_size", property(lambda self: False))
    pipe = CameraPipeline(LoadedConfig(config, Path("site.yaml"), "0" * 64), camera, pool, None, mode="replay")
    image = np.full((720, 1280, 3), 114, np.uint8)
    pipe.warm_up(720, 1280)
    # The untrained model's whole-frame boxes are huge and would hold every region box: silence that pass, so
    # that what the frame's output holds is the region pass's, from the real model.
    run = detector.detect
    region_calls: list[tuple[list[tuple[int, int]], int | None]] = []

    def region_only(images, labels=None, imgsz=None):
        if images[0].shape == image.shape:
            return [empty_detections() for _ in images]
        region_calls.append(([crop.shape[:2] for crop in images], imgsz))
        return run(images, labels, imgsz=imgsz)

    monkeypatch.setattr(detector, "detect", region_only)
    found = pipe.detect(image, 0.0).to_track
    chosen = pipe.models[0].person_pass((720, 1280))
    assert chosen is not None and chosen.kind == ("tiles" if fixed_size else "enlarged")
    assert len(region_calls) == 1 and len(region_calls[0][0]) == len(chosen.boxes) == (15 if fixed_size else 1)
    assert region_calls[0][1] == (None if fixed_size else 1344)  # the 660x380 px region at 2x, or 320-px tiles
    x0, y0 = chosen.region[0] * 1280, chosen.region[1] * 720
    # The region pass found persons, in frame pixels: inside the region, some beyond the crop's own width.
    assert len(found) > 0 and (found.xyxy[:, 0] >= x0 - 1).all() and (found.xyxy[:, 1] >= y0 - 1).all()
    assert found.xyxy[:, 2].max() > 1280 - x0 and (found.xyxy[:, 2:] <= (1281, 721)).all()
    assert set(found.data["class_name"]) == {"person"} and set(found.data["model"]) == {"tiny"}
