"""Bounded track history (runner.tracking.tracker.TrackHistory) and the per-camera ByteTrack wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from runner.tracking.tracker import CameraTracker, TrackerSettings, TrackHistory
from tests.helpers import HEIGHT, WIDTH, Obj, box_at, detections_from


def feed(history: TrackHistory, t_s: float, *objects: Obj) -> frozenset[int]:
    return history.update(detections_from(objects), t_s, WIDTH, HEIGHT)


def test_points_are_normalised_with_label_and_confidence():
    history = TrackHistory()
    feed(history, 0.0, Obj(7, box_at(0.5, 0.8, height=0.4, width=0.1), label="car", conf=0.6))
    point = history.last(7)
    assert point is not None
    assert point.t_s == 0.0
    assert point.anchor == pytest.approx((0.5, 0.8))
    assert point.box == pytest.approx((0.45, 0.4, 0.55, 0.8))
    assert point.height == pytest.approx(0.4)
    assert (point.class_name, point.confidence) == ("car", pytest.approx(0.6))


@pytest.mark.parametrize("max_points", [1, 2, 5, 150])
def test_history_is_bounded_per_track(max_points):
    history = TrackHistory(max_points=max_points, expiry_s=3.0)
    for i in range(400):
        feed(history, i / 5, Obj(1, box_at(0.1 + i / 1000, 0.5)), Obj(2, box_at(0.9, 0.5)))
    for track_id in (1, 2):
        points = history.points(track_id)
        assert len(points) == max_points
        assert points[-1].t_s == pytest.approx(399 / 5)  # the newest are kept
        assert [p.t_s for p in points] == sorted(p.t_s for p in points)
    assert len(history) == 2


def test_untracked_detections_are_not_recorded():
    history = TrackHistory()
    feed(history, 0.0, Obj(-1, box_at(0.5, 0.5)), Obj(3, box_at(0.2, 0.5)))
    assert history.ids() == [3]
    detections = detections_from([Obj(1, box_at(0.5, 0.5))])
    detections.tracker_id = None  # a frame that bypassed the tracker
    assert history.update(detections, 0.2, WIDTH, HEIGHT) == frozenset()
    assert history.ids() == [3]


@pytest.mark.parametrize(
    ("expiry_s", "last_seen_s", "now_s", "ended"),
    [
        (3.0, 0.0, 2.8, False),
        (3.0, 0.0, 3.0, False),  # exactly expiry_s: still alive
        (3.0, 0.0, 3.2, True),
        (1.0, 5.0, 6.2, True),
        (1.0, 5.0, 5.8, False),
        (1.0, 2.2, 3.2, False),  # 3.2 - 2.2 = 1.0000000000000002: still exactly expiry_s
    ],
)
def test_tracks_end_after_expiry(expiry_s, last_seen_s, now_s, ended):
    history = TrackHistory(expiry_s=expiry_s)
    feed(history, last_seen_s, Obj(4, box_at(0.5, 0.5)))
    result = feed(history, now_s, Obj(9, box_at(0.1, 0.5)))
    assert (4 in result) is ended
    assert (4 in history) is not ended
    assert 9 in history and 9 not in result


def test_ended_ids_are_reported_once_and_history_empties():
    history = TrackHistory(expiry_s=1.0)
    for i in range(10):
        feed(history, i / 5, Obj(1, box_at(0.5, 0.5)), Obj(2, box_at(0.6, 0.5)))
    feed(history, 2.0, Obj(2, box_at(0.6, 0.5)))  # track 1 missed from now on
    ended = [feed(history, 2.0 + i / 5) for i in range(1, 11)]
    assert ended[0] == frozenset()
    flat = [tid for ids in ended for tid in ids]
    assert sorted(flat) == [1, 2]  # each reported exactly once
    assert len(history) == 0 and history.ids() == []
    assert history.last(1) is None and len(history.points(1)) == 0


@pytest.mark.parametrize(
    ("query_s", "expected_s"),
    [
        (1.0, 1.0),  # exact timestamp
        (1.1, 1.0),  # between two points: the earlier one
        (10.0, 1.8),  # after the last: the last
        (0.2, 0.4),  # before the oldest kept: the oldest kept
        (1.6 - 1.2, 0.4),  # float noise on a frame time (0.4000000000000001) still selects that frame
        (2.0 - 1.8, 0.4),  # 0.19999999999999996: before the oldest
        (1.4 - 0.6, 0.8),  # 0.7999999999999999 is the frame at 0.8, not the one before it
    ],
)
def test_point_before(query_s, expected_s):
    history = TrackHistory()
    for i in range(2, 10):  # points at 0.4, 0.6, ... 1.8
        feed(history, i / 5, Obj(5, box_at(0.1 * i / 2, 0.5)))
    point = history.point_before(5, query_s)
    assert point is not None and point.t_s == pytest.approx(expected_s)


def test_point_before_unknown_track():
    assert TrackHistory().point_before(1, 5.0) is None


def test_clear():
    history = TrackHistory()
    feed(history, 0.0, Obj(1, box_at(0.5, 0.5)))
    history.clear()
    assert len(history) == 0


def test_camera_tracker_keeps_one_id_for_a_walking_person():
    tracker = CameraTracker(TrackerSettings(process_fps=5.0))
    ids = []
    for i in range(15):
        t = i / 5
        detections = detections_from([Obj(-1, box_at(0.2 + 0.01 * i, 0.8)), Obj(-1, box_at(0.8, 0.8 - 0.01 * i))])
        detections.tracker_id = None
        tracked = tracker.update(detections, t)
        assert tracked.tracker_id is not None and tracked.tracker_id.dtype.kind == "i"
        ids.append(sorted(int(v) for v in tracked.tracker_id if v >= 0))
    settled = ids[3:]
    assert all(len(frame_ids) == 2 for frame_ids in settled)
    assert all(frame_ids == settled[0] for frame_ids in settled)  # no id switch
    tracker.reset()
    empty = detections_from([])
    empty.tracker_id = None
    assert len(tracker.update(empty, 3.0)) == 0


def test_camera_tracker_marks_unconfirmed_detections_as_untracked():
    tracker = CameraTracker(TrackerSettings(process_fps=5.0))
    detections = detections_from([Obj(-1, box_at(0.5, 0.5), conf=0.9)])
    detections.tracker_id = None
    tracked = tracker.update(detections, 0.0)
    assert tracked.tracker_id is not None
    assert np.all((tracked.tracker_id == -1) | (tracked.tracker_id >= 0))


def _walk(
    tracker: CameraTracker, fps: float, seconds: float, missing: tuple[float, float] = (-1.0, -1.0)
) -> list[list[int]]:
    ids = []
    for i in range(int(seconds * fps) + 1):
        t = i / fps
        objects = [] if missing[0] <= t < missing[1] else [Obj(-1, box_at(0.2 + 0.02 * t, 0.8))]
        detections = detections_from(objects)
        detections.tracker_id = None
        ids.append(sorted(int(v) for v in tracker.update(detections, t).tracker_id if v >= 0))
    return ids


@pytest.mark.parametrize("fps", [1.0, 2.0, 3.0, 5.0, 10.0])
def test_tracks_are_confirmed_at_any_processing_rate(fps):
    # `trackers` reads its lost-track buffer as frames at 30 fps: at low rates a wrong buffer
    # pruned every track between two processed frames, so nothing was ever confirmed.
    ids = _walk(CameraTracker(TrackerSettings(process_fps=fps)), fps, 4.0)
    settled = [frame_ids for frame_ids in ids[3:]]
    assert settled and all(frame_ids == settled[0] and len(frame_ids) == 1 for frame_ids in settled)


@pytest.mark.parametrize(("gap_s", "same_id"), [(1.0, True), (3.0, False)])
def test_a_track_survives_gaps_shorter_than_lost_s(gap_s, same_id):
    ids = _walk(CameraTracker(TrackerSettings(process_fps=5.0, lost_s=2.0)), 5.0, 8.0, missing=(2.0, 2.0 + gap_s))
    before, after = ids[8], ids[-1]
    assert before and after
    assert (before == after) is same_id
