"""The person cascade: a detector's persons for every rule, keypoints from a pose model on their crops."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from runner.config.loading import LoadedConfig
from runner.core.errors import ConfigError, ModelError
from runner.core.fields import KEYPOINTS
from runner.inference.cascade import attach_keypoints, crop_side_px
from runner.inference.routing import person_input_size, person_px_at_input, route_camera, static_facts
from runner.pipeline.camera import CameraPipeline
from runner.sources.capture import Frame
from tests.helpers import HEIGHT, WIDTH, ScriptedDetector, box_at
from tests.runner.pipeline.test_models_in_pipeline import START, ScriptedPool, Spy, config_with_models, scripted

INTRUSION = {"kind": "zone_intrusion", "id": "z", "zone": "lawn", "labels": ["person", "car"]}
DOWN = {"kind": "person_down", "id": "down", "labels": ["person"]}
CASCADE_DOWN = {**DOWN, "model": "coco"}  # the detector named on the keypoint rule: the cascade
MODELS = {"pose": {"weights": "yolo11n-pose.pt", "task": "pose"}, "coco": {"weights": "coco.pt", "task": "detect"}}


class PoseOnCrops(ScriptedDetector):
    """A pose model: finds one person filling each crop, with 17 keypoints down its middle."""

    any_input_size = True

    def __init__(self):
        super().__init__(lambda i: [], names={0: "person"}, name="pose")
        self.has_keypoints = True
        self.spec = type("Spec", (), {"imgsz": 640})()
        self.crop_calls: list[tuple[int, int | None]] = []  # (crops, imgsz) per call
        self.frame_calls = 0

    def detect(self, images, labels=None, imgsz=None):
        self.frame_calls += len(images)
        return [sv.Detections.empty() for _ in images]

    def detect_crops(self, images, labels=None, imgsz=None):
        self.crop_calls.append((len(images), imgsz))
        out = []
        for image in images:
            h, w = image.shape[:2]
            kp = np.zeros((1, 17, 3), np.float32)
            kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = w / 2, np.linspace(0.1 * h, 0.9 * h, 17), 0.9
            out.append(
                sv.Detections(
                    xyxy=np.array([[0.1 * w, 0.05 * h, 0.9 * w, 0.95 * h]]),
                    confidence=np.array([0.8]),
                    class_id=np.array([0]),
                    data={
                        "class_name": np.array(["person"], dtype=object),
                        "model": np.array(["pose"], dtype=object),
                        KEYPOINTS: kp,
                    },
                )
            )
        return out


def pool_for(rules, models=MODELS, coco_script=lambda i: []):
    config = config_with_models(models, rules)
    detectors = {"coco": scripted("coco", {0: "person", 2: "car"}, coco_script), "pose": PoseOnCrops()}
    return config, ScriptedPool(config, detectors)


# -- routing -----------------------------------------------------------------------------------------
def test_a_detector_serves_persons_before_a_pose_model_whatever_the_order():
    config, pool = pool_for([INTRUSION])
    routes = pool.camera_routes(config.cameras[0])
    assert routes.detect == {"coco": frozenset({"person", "car"})} and routes.keypoints == {}


def test_a_keypoint_rule_beside_other_person_rules_gets_the_cascade_by_default():
    config, pool = pool_for([INTRUSION, DOWN])
    routes = pool.camera_routes(config.cameras[0])
    assert routes.detect == {"coco": frozenset({"person", "car"})}  # the pose model runs on no frame
    assert routes.keypoints == {"person": "pose"} and routes.pose_as_detector == {}
    assert routes.by_rule["down"] == {"person": "coco + pose keypoints on its crops"}
    assert routes.by_rule["z"] == {"car": "coco", "person": "coco"}


def test_a_fall_only_camera_gets_the_pose_model_as_person_detector_by_default():
    config, pool = pool_for([DOWN, {**INTRUSION, "labels": ["car"]}])  # measured better on falls (docs/config.md)
    routes = pool.camera_routes(config.cameras[0])
    assert routes.detect == {"pose": frozenset({"person"}), "coco": frozenset({"car"})}
    assert routes.keypoints == {} and routes.pose_as_detector == {"person": "pose"}


def test_naming_the_detector_on_the_keypoint_rule_gives_the_cascade():
    config, pool = pool_for([CASCADE_DOWN])
    routes = pool.camera_routes(config.cameras[0])
    assert routes.detect == {"coco": frozenset({"person"})}
    assert routes.keypoints == {"person": "pose"}
    assert routes.by_rule["down"] == {"person": "coco + pose keypoints on its crops"}


def test_a_rule_naming_the_pose_model_takes_persons_from_it_for_the_camera():
    config, pool = pool_for([{**INTRUSION, "labels": ["person"], "model": "pose"}])
    routes = pool.camera_routes(config.cameras[0])
    assert routes.detect == {"pose": frozenset({"person"})} and routes.pose_as_detector == {"person": "pose"}


def test_a_pose_model_alone_serves_persons_and_keypoints_as_before():
    config, pool = pool_for([DOWN], models={"pose": MODELS["pose"]})
    routes = pool.camera_routes(config.cameras[0])
    assert routes.detect == {"pose": frozenset({"person"})} and routes.keypoints == {}
    assert routes.pose_as_detector == {} and routes.missing_keypoints == {}


def test_a_keypoint_rule_without_any_pose_model_is_reported():
    config, pool = pool_for([DOWN], models={"coco": MODELS["coco"]})
    assert pool.camera_routes(config.cameras[0]).missing_keypoints == {"down": frozenset({"person"})}


def test_a_named_model_must_exist_and_provide_the_rules_labels():
    with pytest.raises(ConfigError, match=r"rules\[0\]\.model: unknown model 'yolo'"):
        pool_for([{**DOWN, "model": "yolo"}])
    config, pool = pool_for([{**INTRUSION, "model": "pose"}])
    with pytest.raises(ModelError, match="rule z: model 'pose' does not detect 'car'"):
        pool.camera_routes(config.cameras[0])


def test_static_facts_route_without_loading():
    config, _ = pool_for([INTRUSION, DOWN])
    facts = {name: static_facts(spec) for name, spec in config.models.items()}
    assert facts["pose"].labels == {"person"} and facts["pose"].keypoints is True
    assert facts["coco"].labels is None and facts["coco"].keypoints is False
    routes = route_camera(
        config.cameras[0], list(config.models), lambda n: facts[n].labels, lambda n: facts[n].keypoints, strict=False
    )
    assert routes.detect == {"pose": frozenset({"person"})}  # coco's classes are unknown without loading


# -- small people ------------------------------------------------------------------------------------
def test_person_height_raises_the_input_size_so_people_are_40_px_at_the_input():
    assert person_input_size((576, 768), 60, 640) == 640  # 60 px of 768 -> 50 px at 640: enough
    assert person_input_size((352, 640), 25, 640) == 1024  # 25 px of 640 -> 40 px at 1024
    assert person_input_size((1080, 1920), 10, 640) == 1280  # capped
    assert person_px_at_input((352, 640), 25, 1024) == 40.0


# -- the cascade in the pipeline ---------------------------------------------------------------------
def test_keypoints_come_from_the_pose_model_on_the_crops_of_the_detectors_persons():
    person = lambda i: [(box_at(0.3, 0.9), "person", 0.9), (box_at(0.7, 0.9, 0.1, 0.1), "car", 0.8)]  # noqa: E731
    config, pool = pool_for([INTRUSION, CASCADE_DOWN], coco_script=person)
    pipe = CameraPipeline(
        LoadedConfig(config, Path("site.yaml"), "0" * 64), config.cameras[0], pool, None, mode="replay"
    )
    spy = Spy()
    pipe.rules = [spy]
    for i in range(3):
        t = i / 5
        pipe.process(Frame("cam-01", i, t, START + timedelta(seconds=t), np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    pose = pool.detectors["pose"]
    assert pose.frame_calls == 0 and pose.crop_calls == [(1, 128)] * 3  # one small crop per frame, never the frame
    ctx = spy.seen[-1]
    names = list(ctx.class_names)
    keypoints = ctx.keypoints
    person_row, car_row = keypoints[names.index("person")], keypoints[names.index("car")]
    x1, y1, x2, y2 = ctx.detections.xyxy[names.index("person")]
    assert np.all(np.isnan(car_row))
    assert np.allclose(person_row[:, 0], (x1 + x2) / 2, atol=1.5) and person_row[:, 2].min() == pytest.approx(0.9)
    height = y2 - y1  # the crop adds 15 % of the box above and below: keypoints come back in frame pixels
    expected_y = y1 - 0.15 * height + np.linspace(0.1, 0.9, 17) * 1.3 * height
    assert np.allclose(person_row[:, 1], expected_y, atol=2.0)
    assert pipe.pose_crops == 3


def test_a_person_the_pose_model_misses_gets_unseen_keypoints():
    class Blind(PoseOnCrops):
        def detect_crops(self, images, labels=None, imgsz=None):
            self.crop_calls.append((len(images), imgsz))
            return [sv.Detections.empty() for _ in images]

    detections = sv.Detections(
        xyxy=np.array([[10.0, 10.0, 40.0, 90.0]]),
        confidence=np.array([0.9]),
        class_id=np.array([0]),
        data={"class_name": np.array(["person"], dtype=object)},
    )
    assert attach_keypoints(np.zeros((120, 160, 3), np.uint8), detections, "person", Blind()) == 1
    assert np.all(detections.data[KEYPOINTS][0] == 0.0)  # finite, confidence 0: "not seen"


def test_crops_run_at_about_their_own_scale():
    assert crop_side_px((90, 40), 640) == 128
    assert crop_side_px((300, 120), 640) == 384
    assert crop_side_px((900, 400), 640) == 640
    assert crop_side_px((300, 120), 320) == 320


def test_where_the_detector_loses_a_person_the_pose_model_looks_for_them_for_two_seconds():
    seen = lambda i: [(box_at(0.3, 0.9), "person", 0.9)] if i < 2 else []  # noqa: E731  (lost from frame 2)
    config, pool = pool_for([INTRUSION, CASCADE_DOWN], coco_script=seen)
    pipe = CameraPipeline(
        LoadedConfig(config, Path("site.yaml"), "0" * 64), config.cameras[0], pool, None, mode="replay"
    )
    spy = Spy()
    pipe.rules = [spy]
    for i in range(16):  # 5 fps: lost at 0.4 s, searched until 2.2 s (the last box seen at 0.2 s)
        t = i / 5
        pipe.process(Frame("cam-01", i, t, START + timedelta(seconds=t), np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    pose = pool.detectors["pose"]
    assert len(pose.crop_calls) == 2 + 10  # the person's own crops, then one search per frame for 2 s
    found = spy.seen[2]
    assert list(found.class_names) == ["person"] and list(found.detections.data["model"]) == ["pose"]
    assert np.isfinite(found.keypoints).all()
    assert len(spy.seen[-1].detections) == 0


def test_a_camera_with_small_people_runs_its_person_detector_at_a_larger_input():
    class Sized(ScriptedDetector):
        any_input_size = True

        def __init__(self):
            super().__init__(lambda i: [], names={0: "person", 2: "car"}, name="coco")
            self.sizes: list[int | None] = []

        def detect(self, images, labels=None, imgsz=None):
            self.sizes.append(imgsz)
            return super().detect(images, labels)

    config = config_with_models({"coco": MODELS["coco"]}, [INTRUSION])
    for margin, size in [(None, 1024), (0.2, 736)]:  # 25 px of 640 -> 40 px at 1024; the crop 0.7 of it
        camera = config.cameras[0].model_copy(update={"person_height_px": 25.0, "detect_margin_frac": margin})
        pool = ScriptedPool(config, {"coco": Sized()})
        pipe = CameraPipeline(LoadedConfig(config, Path("site.yaml"), "0" * 64), camera, pool, None, mode="replay")
        pipe.process(Frame("cam-01", 0, 0.0, START, np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
        assert pool.detectors["coco"].sizes == [size]
        assert pipe.models[0].input_size((HEIGHT, WIDTH)) == 1024
