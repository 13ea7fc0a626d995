"""What every rule sees: a narrow view of its camera, and the frame's detections in normalised terms."""

from datetime import UTC, datetime

import numpy as np
import pytest
import supervision as sv

from runner.rules.base import CameraView, FrameContext
from runner.rules.registry import build_rule
from runner.tracking.tracker import TrackHistory
from tests.helpers import site_config

INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn"}


def test_a_rule_gets_a_view_of_its_camera_not_the_camera():
    camera = site_config([INTRUSION], calibration=None).cameras[0]
    rule = build_rule(camera.rules[0], camera)
    view = rule.camera
    assert isinstance(view, CameraView)
    assert view == CameraView.of(camera)
    assert (view.camera_id, view.process_fps, view.calibration) == ("cam-01", 5.0, None)
    assert view.zone("lawn") == camera.zone("lawn")
    assert view.line("gate") == camera.line("gate")
    assert not hasattr(view, "source") and not hasattr(view, "rules") and not hasattr(view, "privacy_masks")
    with pytest.raises(KeyError):
        view.zone("nowhere")
    with pytest.raises(KeyError):
        view.line("nowhere")


def test_a_rule_reset_keeps_its_view():
    camera = site_config([INTRUSION]).cameras[0]
    rule = build_rule(camera.rules[0], camera)
    view = rule.camera
    rule.reset()
    assert rule.camera is view and rule.state_size() == 0


def _context(xyxy: list[list[float]]) -> FrameContext:
    detections = sv.Detections(
        xyxy=np.array(xyxy, dtype=float).reshape(-1, 4),
        confidence=np.full(len(xyxy), 0.9),
        class_id=np.zeros(len(xyxy), dtype=int),
    )
    return FrameContext(
        camera_id="cam-01",
        t_s=0.0,
        frame_index=0,
        wall_time=datetime(2025, 5, 13, tzinfo=UTC),
        width=200,
        height=100,
        detections=detections,
        tracks=TrackHistory(max_points=10, expiry_s=1.0),
    )


def test_normalised_centres_areas_and_union_of_detections():
    ctx = _context([[0, 0, 100, 50], [150, 50, 200, 100]])
    assert ctx.centres.tolist() == [[0.25, 0.25], [0.875, 0.75]]
    assert ctx.area_fracs.tolist() == [0.25, 0.125]
    assert ctx.union_box_norm(np.array([True, True])) == (0.0, 0.0, 1.0, 1.0)
    assert ctx.union_box_norm(np.array([False, True])) == (0.75, 0.5, 1.0, 1.0)
    assert ctx.union_box_norm(np.array([False, False])) is None


def test_no_detections():
    ctx = _context([])
    assert ctx.centres.shape == (0, 2) and ctx.area_fracs.shape == (0,)
    assert ctx.union_box_norm(np.zeros(0, dtype=bool)) is None
