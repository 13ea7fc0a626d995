"""Small people: the input size, enlarged region or tiles chosen from a camera's `person_height_px`, and the
merge of the passes (runner.inference.routing.person_pass, runner.inference.tiling.merge_passes)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
import yaml

from runner.config.loading import parse_config
from runner.core.fields import CLASS_NAME, KEYPOINTS, MODEL
from runner.inference.routing import (
    MAX_ENLARGED_SIDE_PX,
    MAX_PERSON_PASS_INPUTS,
    PERSON_MIN_INPUT_PX,
    WHOLE_FRAME,
    input_px,
    person_input_size,
    person_pass,
    person_region,
)
from runner.inference.tiling import merge_passes
from tests.helpers import config_dict

LOWER_RIGHT = (0.5, 0.5, 1.0, 1.0)


@pytest.mark.parametrize(
    ("frame_hw", "person_height_px", "any_input_size", "imgsz"),
    [
        ((576, 768), 60, True, 640),  # 50 px at 640 already
        ((352, 640), 25, True, 1024),  # 40 px at 1024
        ((1080, 1920), 60, True, 1280),  # 1920 x 40 / 60 = 1280: just at the cap
        ((576, 768), 60, False, 640),  # a fixed-size model keeps its size where people are large enough at it
    ],
)
def test_below_the_cap_the_whole_frame_runs_at_the_raised_input_size_and_nothing_else(
    frame_hw, person_height_px, any_input_size, imgsz
):
    chosen = person_pass(frame_hw, person_height_px, 640, any_input_size=any_input_size, region=LOWER_RIGHT)
    assert (chosen.kind, chosen.imgsz, chosen.region, chosen.boxes, chosen.inferences) == ("input", imgsz, None, [], 1)
    if any_input_size:
        assert chosen.imgsz == person_input_size(frame_hw, person_height_px, 640)
    assert chosen.person_px == pytest.approx(person_height_px * imgsz / max(frame_hw))


def test_beyond_the_cap_the_person_rules_region_is_enlarged_in_one_input():
    # 20 px of 1920 need a 3840 px input: beyond 1280, so the zone's box (grown by a person height) is enlarged 2x.
    chosen = person_pass((1080, 1920), 20, 640, region=LOWER_RIGHT)
    assert chosen.kind == "enlarged" and chosen.imgsz == 640 and chosen.inferences == 2
    assert chosen.region == pytest.approx((0.5 - 20 / 1920, 0.5 - 20 / 1080, 1.0, 1.0))
    assert chosen.boxes == [chosen.region] and chosen.region_imgsz == chosen.enlarged_side_px == 1984  # 980 px x 2
    assert chosen.person_px == pytest.approx(20 * 1984 / 980) and chosen.person_px >= PERSON_MIN_INPUT_PX
    # The cost: the whole frame at 640 (640x384) and the region's 1984x1152 input.
    assert chosen.total_input_px() == 640 * 384 + 1984 * 1152


def test_a_region_too_large_for_the_budget_is_enlarged_as_much_as_the_budget_allows():
    chosen = person_pass((2160, 3840), 20, 640)  # the whole 4K frame at 2x: 7680 px, over both bounds
    side = chosen.enlarged_side_px
    assert chosen.region == WHOLE_FRAME and side is not None and side <= MAX_ENLARGED_SIDE_PX
    budget_px = MAX_PERSON_PASS_INPUTS * 640 * 640
    assert input_px((2160, 3840), side) <= budget_px < input_px((2160, 3840), side + 32)
    assert chosen.person_px == pytest.approx(20 * side / 3840) and chosen.person_px < PERSON_MIN_INPUT_PX


def test_a_fixed_size_model_tiles_the_region_instead():
    chosen = person_pass((1080, 1920), 20, 640, any_input_size=False, region=LOWER_RIGHT)
    assert chosen.kind == "tiles" and chosen.imgsz == 640 and chosen.region_imgsz is None
    sides = {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in chosen.tiles}
    assert sides == {(320, 320)} and chosen.person_px == pytest.approx(40.0)  # 640 / 2
    assert len(chosen.tiles) == 8 and chosen.inferences == 9  # 980x560 px in 320-px tiles overlapping a quarter
    x0, y0 = chosen.region[0] * 1920, chosen.region[1] * 1080
    assert min(t[0] for t in chosen.tiles) <= x0 + 1 and min(t[1] for t in chosen.tiles) <= y0 + 1
    assert max(t[2] for t in chosen.tiles) == 1920 and max(t[3] for t in chosen.tiles) == 1080
    assert chosen.boxes[0] == pytest.approx(tuple(v / s for v, s in zip(chosen.tiles[0], (1920, 1080, 1920, 1080))))
    # A fixed-size model is capped at its own size: people of 25 px in 640x352 need 1024, so it tiles the frame.
    small = person_pass((352, 640), 25, 640, any_input_size=False)
    assert small.kind == "tiles" and len(small.tiles) == 3 and small.person_px >= PERSON_MIN_INPUT_PX
    whole = person_pass((2160, 3840), 20, 640, any_input_size=False)  # 4K at 2x would need ~200 tiles
    assert len(whole.tiles) <= MAX_PERSON_PASS_INPUTS and whole.person_px < PERSON_MIN_INPUT_PX


def _camera(rules, zones):
    data = config_dict(rules)
    data["cameras"][0]["zones"] = [
        {"id": name, "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]} for name, (x0, y0, x1, y1) in zones.items()
    ]
    return parse_config(yaml.safe_dump(data, sort_keys=False)).cameras[0]


ZONES = {"far": (0.2, 0.1, 0.4, 0.3), "near": (0.6, 0.5, 0.9, 0.8), "bench": (0.0, 0.9, 0.1, 1.0)}
FAR = {"kind": "zone_intrusion", "id": "far", "zone": "far", "labels": ["person"]}
NEAR_DOWN = {"kind": "person_down", "id": "down", "zone": "near", "exclude_zones": ["bench"]}
CARS = {"kind": "zone_intrusion", "id": "cars", "zone": "bench", "labels": ["car"]}


def test_the_region_is_the_box_of_the_person_rules_zones_or_the_whole_frame():
    assert person_region(_camera([FAR], ZONES)) == pytest.approx((0.2, 0.1, 0.4, 0.3))
    # Exclusion zones and rules without persons do not widen it.
    assert person_region(_camera([FAR, NEAR_DOWN, CARS], ZONES)) == pytest.approx((0.2, 0.1, 0.9, 0.8))
    assert person_region(_camera([FAR, {**NEAR_DOWN, "zone": None}], ZONES)) == WHOLE_FRAME  # down anywhere
    assert person_region(_camera([FAR, {**NEAR_DOWN, "zone": None, "enabled": False}], ZONES)) == pytest.approx(
        (0.2, 0.1, 0.4, 0.3)
    )


def _found(boxes, confidences, model="coco", tracker=False, keypoints=True):
    n = len(boxes)
    return sv.Detections(
        xyxy=np.array(boxes, dtype=float).reshape(-1, 4),
        confidence=np.array(confidences, dtype=float),
        class_id=np.zeros(n, dtype=int),
        tracker_id=np.full(n, -1) if tracker else None,
        data={
            CLASS_NAME: np.array(["person"] * n, dtype=object),
            MODEL: np.array([model] * n, dtype=object),
            **({KEYPOINTS: np.zeros((n, 17, 3), np.float32)} if keypoints else {}),
        },
    )


def test_the_passes_merge_into_one_output_with_every_column_of_the_model():
    whole = _found([[100, 100, 120, 150], [500, 100, 600, 400]], [0.6, 0.9])
    region = _found([[101, 101, 121, 151], [300, 300, 310, 325], [500, 100, 600, 250]], [0.8, 0.7, 0.5], tracker=True)
    merged = merge_passes([whole, region])
    # The same person in both passes once (the surer box), the person cut by the region's edge dropped (inside
    # the whole one), the small one only the region found kept.
    assert sorted(map(tuple, merged.xyxy.tolist())) == [
        (101, 101, 121, 151),
        (300, 300, 310, 325),
        (500, 100, 600, 400),
    ]
    assert set(merged.data) == {CLASS_NAME, MODEL, KEYPOINTS} and merged.tracker_id is None
    assert region.tracker_id is not None  # the caller's detections are left as they were
    assert merge_passes([whole, _found([], [])]) is whole  # nothing to merge
    assert len(merge_passes([_found([], []), region])) == 3
