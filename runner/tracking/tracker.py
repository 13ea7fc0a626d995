"""Per-camera tracking (ByteTrack from the `trackers` package) and the bounded track history."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import cast

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from runner.core.fields import CLASS_NAME
from runner.core.geometry import normalised_anchors
from runner.core.timebase import TIME_EPSILON_S


@dataclass(frozen=True, slots=True)
class TrackPoint:
    t_s: float
    anchor: tuple[float, float]  # normalised bottom-centre
    box: tuple[float, float, float, float]  # normalised xyxy
    class_name: str
    confidence: float

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


class TrackHistory:
    """Recent points of every live track, bounded in points per track and dropped when a track ends.

    A track "ends" when it has not been seen for `expiry_s` of stream time; rules receive the ended
    ids in the same frame so that they can drop their own per-track state.
    """

    def __init__(self, max_points: int = 150, expiry_s: float = 3.0):
        self.max_points = max_points
        self.expiry_s = expiry_s
        self._points: dict[int, deque[TrackPoint]] = {}

    def __len__(self) -> int:
        return len(self._points)

    def __contains__(self, track_id: int) -> bool:
        return track_id in self._points

    def ids(self) -> list[int]:
        """The live tracks' ids.

        Returns:
            A list (a copy), in the order the tracks were first seen.
        """
        return list(self._points)

    def points(self, track_id: int) -> deque[TrackPoint]:
        """A track's kept points, oldest first.

        Args:
            track_id: the tracker's id.

        Returns:
            The track's own deque (not a copy; do not modify it), or an empty one for an unknown or ended track.
        """
        return self._points.get(track_id, deque())

    def last(self, track_id: int) -> TrackPoint | None:
        """A track's latest point.

        Args:
            track_id: the tracker's id.

        Returns:
            The point, or None for an unknown or ended track.
        """
        pts = self._points.get(track_id)
        return pts[-1] if pts else None

    def update(self, detections: sv.Detections, t_s: float, width: int, height: int) -> frozenset[int]:
        """Append this frame's tracked detections; return the ids that ended.

        Args:
            detections: the tracker's output, in pixels; rows with a negative tracker id are not tracks.
            t_s: the frame's stream time, seconds.
            width: the frame's width, pixels.
            height: the frame's height, pixels.

        Returns:
            The ids not seen for more than `expiry_s` (their history is dropped).
        """
        if len(detections) and detections.tracker_id is not None:
            scale = np.array([width, height, width, height], dtype=float)
            boxes = detections.xyxy / scale
            anchors = normalised_anchors(detections.xyxy, width, height)
            names = detections.data.get(CLASS_NAME, [""] * len(detections))
            conf = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            for i, track_id in enumerate(detections.tracker_id):
                if track_id < 0:
                    continue
                x0, y0, x1, y1 = (float(v) for v in boxes[i])
                point = TrackPoint(
                    t_s=t_s,
                    anchor=(float(anchors[i, 0]), float(anchors[i, 1])),
                    box=(x0, y0, x1, y1),
                    class_name=str(names[i]),
                    confidence=float(conf[i]),
                )
                self._points.setdefault(int(track_id), deque(maxlen=self.max_points)).append(point)
        ended = [tid for tid, pts in self._points.items() if t_s - pts[-1].t_s > self.expiry_s + TIME_EPSILON_S]
        for tid in ended:
            del self._points[tid]
        return frozenset(ended)

    def point_before(self, track_id: int, t_s: float) -> TrackPoint | None:
        """The latest point at or before `t_s` (or the oldest kept, if all are later).

        `t_s` is usually "now - window", computed in floating point: a frame within a microsecond of
        it counts as "at" it, so 1.4 - 0.6 = 0.7999999999999999 still selects the frame at 0.8.

        Args:
            track_id: the tracker's id.
            t_s: the stream time, seconds.

        Returns:
            The latest point at or before `t_s` (within TIME_EPSILON_S), else the oldest kept; None for an unknown
            or ended track.
        """
        pts = self._points.get(track_id)
        if not pts:
            return None
        limit = t_s + TIME_EPSILON_S
        chosen = pts[0]
        for point in pts:
            if point.t_s > limit:
                break
            chosen = point
        return chosen

    def clear(self) -> None:
        self._points.clear()


@dataclass(frozen=True)
class TrackerSettings:
    process_fps: float
    lost_s: float = 2.0
    activation_conf: float = 0.45
    high_conf: float = 0.5
    min_iou: float = 0.1
    min_consecutive_frames: int = 2


class CameraTracker:
    """One ByteTrack per camera, fed with stream timestamps so frame drops do not confuse it."""

    def __init__(self, settings: TrackerSettings):
        self.settings = settings
        self._tracker = self._new()
        self._last_tracked = sv.Detections.empty()  # the last update's confirmed rows (labels, scores, data)
        self._last_update_s: float | None = None

    def _new(self) -> ByteTrackTracker:
        s = self.settings
        return ByteTrackTracker(
            # `trackers` turns the buffer into a time budget as buffer / 30 s whatever frame_rate is
            # (it is "frames at 30 fps"), so express lost_s that way or tracks die after one gap.
            lost_track_buffer=max(1, math.ceil(s.lost_s * 30.0)),
            frame_rate=s.process_fps,
            track_activation_threshold=s.activation_conf,
            minimum_consecutive_frames=s.min_consecutive_frames,
            minimum_iou_threshold=s.min_iou,
            high_conf_det_threshold=s.high_conf,
        )

    def update(self, detections: sv.Detections, t_s: float) -> sv.Detections:
        """Runs ByteTrack on one frame's detections.

        Args:
            detections: the frame's detections to track, in pixels.
            t_s: the frame's stream time, seconds.

        Returns:
            The tracked detections; every row has a tracker_id, -1 where it is not (yet) part of a confirmed track.
        """
        tracked = self._tracker.update(detections, timestamp=t_s)
        if tracked.tracker_id is None:
            tracked.tracker_id = np.full(len(tracked), -1, dtype=int)
        self._last_tracked = cast(sv.Detections, tracked[tracked.tracker_id >= 0])
        self._last_update_s = t_s
        return tracked

    @property
    def settled(self) -> bool:
        """Whether every live track is confirmed: no newcomer is waiting for the detections that confirm its track
        (predicting over a newcomer's frames would delay, or at a distance lose, its track).

        Returns:
            True with no tentative track (and with none at all).
        """
        return all(track.tracker_id >= 0 for track in self._tracker.tracks)

    def predict(self, t_s: float) -> sv.Detections:
        """The boxes of the tracks matched by the last update, moved to `t_s` by their Kalman velocity; the
        tracker's state is left as it is (the next update predicts from the last detection itself).

        Args:
            t_s: the stream time of a frame after the last update, seconds.

        Returns:
            One row per such track, as the last update returned it (label, score, data) with the predicted box;
            empty before any update.
        """
        ids = self._last_tracked.tracker_id
        if self._last_update_s is None or ids is None or not len(ids):
            empty = sv.Detections.empty()
            empty.tracker_id = np.zeros(0, dtype=int)
            return empty
        frame_steps = max(0.0, t_s - self._last_update_s) * self.settings.process_fps
        moved = {
            int(track.tracker_id): predicted_box(track.state_estimator.kf.state, frame_steps)
            for track in self._tracker.tracks
            if track.tracker_id >= 0 and track.time_since_update == 0
        }
        rows = [i for i, tid in enumerate(ids.tolist()) if tid in moved]
        predicted = cast(sv.Detections, self._last_tracked[rows])
        if rows:
            predicted.xyxy = np.stack([moved[tid] for tid in ids[rows].tolist()]).astype(np.float64)
        return predicted

    def reset(self) -> None:
        self._tracker = self._new()
        self._last_tracked = sv.Detections.empty()
        self._last_update_s = None


def predicted_box(state: np.ndarray, frame_steps: float) -> np.ndarray:
    """A corner-state Kalman box (x1, y1, x2, y2 and their velocities per frame) moved `frame_steps` frames on.

    Args:
        state: the filter's state, at least 8 values: the corners then their velocities, pixels per frame.
        frame_steps: frames (of the tracker's rate) since the state's time.

    Returns:
        The (4,) xyxy box; never inverted (corners that crossed are re-ordered).
    """
    flat = np.asarray(state, dtype=float).reshape(-1)
    x1, y1, x2, y2 = flat[:4] + flat[4:8] * frame_steps
    return np.array([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
