"""The naive baseline: frame stride, watched zones and the tracking loop itself (untrained model)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from bench.naive import (
    WHOLE_FRAME,
    NaiveClip,
    frame_stride,
    load_model,
    naive_clip,
    pixel_zones,
    run_naive,
    warm_up,
    watched_polygons,
)
from tests.helpers import make_video, site_config


@pytest.mark.parametrize(
    ("source_fps", "process_fps", "stride"),
    [
        (25.0, 5.0, 5),
        (30.0, 5.0, 6),
        (10.0, 5.0, 2),
        (60.1, 5.0, 12),
        (4.0, 5.0, 1),
        (0.0, 5.0, 1),
        (24.0, 5.0, 5),
    ],
)
def test_frame_stride_gives_the_process_fps(source_fps, process_fps, stride):
    assert frame_stride(source_fps, process_fps) == stride


def test_watched_polygons_are_the_rules_zones_and_the_whole_frame_for_a_rule_without_one():
    config = site_config(
        [
            {"kind": "zone_intrusion", "id": "lawn-in", "zone": "lawn", "labels": ["person"]},
            {"kind": "wrong_way", "id": "path-ww", "zone": "path", "labels": ["person"]},
            {"kind": "zone_intrusion", "id": "lawn-again", "zone": "lawn", "labels": ["person"]},
            {"kind": "person_down", "id": "down"},
        ]
    )
    camera = config.cameras[0]
    polygons = watched_polygons(camera)
    assert polygons == (
        tuple(map(tuple, camera.zone("lawn").polygon)),
        tuple(map(tuple, camera.zone("path").polygon)),
        WHOLE_FRAME,
    )


def test_zone_checks_count_bottom_centre_anchors_inside_the_pixel_polygon():
    lawn = ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0))  # the bottom-right quarter: x >= 320, y >= 240 px
    zone = pixel_zones([lawn], 640, 480)[0]
    detections = sv.Detections(
        xyxy=np.array([[400, 300, 440, 400], [100, 300, 140, 400], [420, 100, 480, 200]], dtype=float),
        confidence=np.array([0.9, 0.9, 0.9]),
        class_id=np.zeros(3, dtype=int),
    )
    assert zone.trigger(detections).tolist() == [True, False, False]


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """A YOLO11n built from its yaml (random weights, no download), saved as a .pt like real weights."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("model") / "untrained.pt"
    YOLO("yolo11n.yaml").save(str(path))
    return load_model(str(path))


@pytest.mark.slow
def test_the_naive_loop_tracks_every_strided_frame_of_every_clip(tmp_path, untrained_model):
    first = make_video(tmp_path / "a.avi", 20, fps=10.0, size=(160, 128))
    second = make_video(tmp_path / "b.avi", 8, fps=10.0, size=(160, 128))
    camera = site_config(
        [{"kind": "zone_intrusion", "id": "lawn-in", "zone": "lawn", "labels": ["person"]}], process_fps=5
    ).cameras[0]
    clips = [naive_clip(camera, str(first)), naive_clip(camera, str(second))]
    assert [c.stride for c in clips] == [2, 2]
    assert clips[0].labels == frozenset({"person"})
    warm_up(untrained_model, 64, "cpu")
    result = run_naive(untrained_model, clips, imgsz=64, conf=0.25)
    assert result.frames_per_clip == {str(first): 10, str(second): 4}
    assert result.frames == 14 and result.wall_s > 0 and result.fps > 0


@pytest.mark.slow
def test_the_naive_loop_sums_zone_hits(tmp_path, untrained_model, monkeypatch):
    """Zone checks run on each frame's detections: a model that always sees one person in the lawn
    quarter gives one hit per processed frame."""
    clip = NaiveClip(
        str(make_video(tmp_path / "c.avi", 6, fps=5.0, size=(160, 128))),
        1,
        (((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)), WHOLE_FRAME),
        frozenset({"person"}),
    )
    person_in_lawn = sv.Detections(
        xyxy=np.array([[100.0, 80.0, 120.0, 120.0]]), confidence=np.array([0.9]), class_id=np.array([0])
    )
    monkeypatch.setattr(sv.Detections, "from_ultralytics", classmethod(lambda cls, result: person_in_lawn))
    result = run_naive(untrained_model, [clip], imgsz=64, conf=0.25)
    assert result.frames == 6
    assert result.in_zone == 12  # inside both the lawn and the whole frame, on each of the 6 frames
