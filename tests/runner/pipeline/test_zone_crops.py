"""The detector on the zones' crop: each model's frame pass runs on the bounding box of the zones its rules watch,
grown by `detect_margin_frac`, at the scale of the whole frame; its detections come back in frame pixels, the same
through one camera's `detect` and through the scheduler's batched rounds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from runner.config.loading import LoadedConfig
from runner.inference.routing import WHOLE_FRAME, crop_input_size, detection_box, watched_region
from runner.pipeline.camera import CameraPipeline
from runner.service.lifecycle import Runner, RunOptions
from runner.sources.capture import Frame
from tests.helpers import FakePool, WhiteBoxFinder, site_config
from tests.runner.service.helpers import INSIDE, INTRUSION, Site, two_cameras

HEIGHT, WIDTH = 480, 640
# The lawn zone of the test config is the bottom-right quarter: grown by 0.2 (0.4 above), the crop is x 0.3-1, y 0.1-1.
LAWN_CROP = detection_box((0.5, 0.5, 1.0, 1.0), 0.2)
assert LAWN_CROP is not None
CROP_X0, CROP_Y0 = int(LAWN_CROP[0] * WIDTH), int(LAWN_CROP[1] * HEIGHT)
IN_LAWN = (400, 300, 440, 420)  # a white box in the lawn, frame pixels xyxy
FAR_AWAY = (20, 20, 60, 120)  # one in the top-left corner, outside the crop


def _frame_with(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for x0, y0, x1, y1 in boxes:
        image[y0:y1, x0:x1] = 255
    return image


def _pipeline(margin: float | None) -> tuple[CameraPipeline, WhiteBoxFinder]:
    config = site_config([INTRUSION], detect_margin_frac=margin)
    finder = WhiteBoxFinder()
    pipe = CameraPipeline(
        LoadedConfig(config, Path("site.yaml"), "0" * 64), config.cameras[0], FakePool(finder), None, mode="replay"
    )
    return pipe, finder


def test_the_watched_region_is_the_box_of_the_zones_of_the_rules_using_the_labels():
    camera = site_config([INTRUSION, {"kind": "wrong_way", "id": "w", "zone": "path", "labels": ["car"]}]).cameras[0]
    assert watched_region(camera, frozenset({"person"})) == pytest.approx((0.5, 0.5, 1.0, 1.0))
    assert watched_region(camera, frozenset({"car"})) == pytest.approx((0.0, 0.0, 1.0, 0.5))
    assert watched_region(camera, frozenset({"person", "car"})) == WHOLE_FRAME
    whole_image_rule = {"kind": "crowd_movement", "id": "m"}  # no zone: the whole image
    assert watched_region(site_config([INTRUSION, whole_image_rule]).cameras[0], frozenset({"person"})) == WHOLE_FRAME


def test_the_crop_is_the_region_grown_by_the_margin_and_only_where_it_spares_pixels():
    assert detection_box((0.5, 0.5, 1.0, 1.0), 0.2) == pytest.approx((0.3, 0.1, 1.0, 1.0))  # twice the margin above
    assert detection_box((0.4, 0.4, 0.6, 0.6), 0.0) == pytest.approx((0.4, 0.4, 0.6, 0.6))
    assert detection_box((0.4, 0.5, 0.6, 0.6), 0.1) == pytest.approx((0.3, 0.3, 0.7, 0.7))
    assert detection_box((0.1, 0.3, 0.9, 0.85), 0.1) is None  # 1.0 x 0.85 of the frame: the whole frame
    assert detection_box((0.5, 0.5, 1.0, 1.0), None) is None
    assert detection_box(WHOLE_FRAME, 0.2) is None


@pytest.mark.parametrize(("crop_hw", "frame_imgsz"), [((336, 448), 640), ((100, 600), 640), ((700, 900), 1024)])
def test_a_crop_runs_at_the_scale_of_the_whole_frame_or_just_above(crop_hw, frame_imgsz):
    frame_hw = (720, 1280)
    size = crop_input_size(frame_hw, crop_hw, frame_imgsz)
    assert size % 32 == 0 and size <= frame_imgsz
    frame_gain, crop_gain = frame_imgsz / max(frame_hw), size / max(crop_hw)
    assert frame_gain <= crop_gain < frame_gain + 32 / max(crop_hw)


def test_a_camera_detects_on_the_crop_around_its_zones_and_gets_frame_pixels_back():
    pipe, finder = _pipeline(0.2)
    detected = pipe.detect(_frame_with(IN_LAWN, FAR_AWAY), 0.0)
    crop_hw = (HEIGHT - CROP_Y0, WIDTH - CROP_X0)
    assert finder.seen == [(crop_hw, crop_input_size((HEIGHT, WIDTH), crop_hw, 640))]
    assert detected.to_track.xyxy.tolist() == [list(map(float, IN_LAWN))]  # the corner box is outside the crop


def test_without_a_margin_the_whole_frame_is_detected():
    pipe, finder = _pipeline(None)
    detected = pipe.detect(_frame_with(IN_LAWN, FAR_AWAY), 0.0)
    assert finder.seen == [((HEIGHT, WIDTH), None)]
    assert sorted(detected.to_track.xyxy.tolist()) == sorted([list(map(float, IN_LAWN)), list(map(float, FAR_AWAY))])


def test_the_warm_up_compiles_the_crop_s_shape():
    pipe, finder = _pipeline(0.2)
    pipe.warm_up(HEIGHT, WIDTH)
    crop_hw = (HEIGHT - CROP_Y0, WIDTH - CROP_X0)
    assert (*crop_hw, crop_input_size((HEIGHT, WIDTH), crop_hw, 640)) in finder.warmed
    assert (HEIGHT, WIDTH, None) not in finder.warmed  # the whole frame is never run


def test_the_scheduler_s_rounds_move_each_camera_s_crop_back_to_its_frame(tmp_path):
    data = two_cameras(detect_margin_frac=0.2)
    data["cameras"][1]["detect_margin_frac"] = None
    site = Site(tmp_path, data, clips={"clip.avi": (30, (WIDTH, HEIGHT)), "clip2.avi": (30, (WIDTH, HEIGHT))})
    finder = WhiteBoxFinder()
    runner = Runner(site.loaded, site.register, RunOptions(mode="replay"), pool=FakePool(finder))
    pipelines, _ = runner._build(runner.cameras())
    seen: dict[str, list] = {cid: [] for cid in pipelines}
    for cid, pipeline in pipelines.items():
        original = pipeline.analyse

        def spy(frame, image, detected, original=original, cid=cid):
            seen[cid].append(sorted(detected.to_track.xyxy.tolist()))
            return original(frame, image, detected)

        pipeline.analyse = spy
    for i in range(3):
        ready = [
            (p, Frame(cid, i, i / 5, INSIDE + timedelta(seconds=i / 5), _frame_with(IN_LAWN, FAR_AWAY)))
            for cid, p in pipelines.items()
        ]
        runner.scheduler.hand(ready)
    runner.scheduler.finish_detected()
    runner.scheduler.shutdown()
    assert seen["cam-01"] == [[list(map(float, IN_LAWN))]] * 3
    assert seen["cam-02"] == [sorted([list(map(float, FAR_AWAY)), list(map(float, IN_LAWN))])] * 3
