"""The short clip stored with each alert: from the masked frames, before and after it, purged with its snapshot."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from runner.core.access import RETENTION_SCHEDULE
from runner.pipeline.clips import ClipRecorder, TimedFrame, decode_clip, encode_clip
from runner.sources.capture import Frame
from tests.helpers import HEIGHT, WIDTH
from tests.runner.pipeline.test_camera import INTRUSION, MASK, PERSON_IN_LAWN, build

INSIDE_MASK = (slice(int(0.04 * HEIGHT), int(0.26 * HEIGHT)), slice(int(0.04 * WIDTH), int(0.26 * WIDTH)))
OUTSIDE_MASK = (slice(int(0.45 * HEIGHT), int(0.6 * HEIGHT)), slice(int(0.05 * WIDTH), int(0.25 * WIDTH)))


def run(pipe, n: int) -> list:
    """n white frames at 5 fps, filmed now: the purge's clock checks see a register of today."""
    start = datetime.now(UTC)
    raised = []
    for i in range(n):
        t_s = i / 5
        image = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
        raised += pipe.process(Frame("cam-01", i, t_s, start + timedelta(seconds=t_s), image))
    return raised


def test_recorder_keeps_seconds_before_and_follows_after():
    recorder = ClipRecorder(before_s=1.0, after_s=1.0, max_width_px=64)
    image = np.zeros((90, 160, 3), np.uint8)
    finished = []
    for i in range(40):  # 5 fps, the alert at 4.0 s
        finished += recorder.observe(i / 5, image)
        if i == 20:
            recorder.follow(7, 4.0)
    assert [c.alert_id for c in finished] == [7]
    times = [f.t_s for f in finished[0].frames]
    assert times[0] == pytest.approx(3.0) and times[-1] == pytest.approx(5.0)
    assert finished[0].frames[0].image.shape == (36, 64, 3)  # downscaled, even sides (H.264)


def test_a_late_follow_still_gets_the_seconds_before():
    """The writer stores the alert after the analysis moved on: the frames before it are still kept."""
    recorder = ClipRecorder(before_s=2.0, after_s=1.0, max_width_px=64)
    image = np.zeros((36, 64, 3), np.uint8)
    for i in range(30):
        recorder.observe(i / 5, image)
    recorder.follow(1, 5.0)  # raised at 5.0 s, stored while the analysis is at 5.8 s
    finished = recorder.observe(6.0, image)
    assert finished and finished[0].frames[0].t_s == pytest.approx(3.0)


def test_encoded_clip_decodes_to_its_frames():
    frames = [TimedFrame(i / 5, np.full((72, 128, 3), 10 * i, np.uint8)) for i in range(15)]
    clip = encode_clip(frames)
    assert clip.data[4:8] == b"ftyp" and clip.media_type == "video/mp4" and clip.frames == 15
    decoded = decode_clip(clip.data)
    assert len(decoded) == 15 and decoded[0].shape == (72, 128, 3)
    assert abs(int(decoded[-1].mean()) - 140) < 8
    assert clip.duration_s == pytest.approx(3.0, abs=0.01)


def test_pipeline_stores_a_masked_clip_with_each_alert_and_the_purge_removes_it(tmp_path):
    pipe, _, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN], privacy_masks=[MASK])
    raised = run(pipe, 50)  # 10 s at 5 fps: the alert near 0.6 s, its clip complete 3 s later
    assert len(raised) == 1
    alert_id = raised[0].stored.id
    clip = reg.clip(alert_id)
    assert clip is not None and clip["file"] is not None and clip["media_type"] == "video/mp4"
    data = clip["file"].read_bytes()
    assert hashlib.sha256(data).hexdigest() == clip["sha256"] and clip["size_bytes"] == len(data)
    snapshot = reg.snapshot_file(reg.alert(alert_id))
    assert clip["file"].parent == snapshot.parent  # beside the snapshot, same retention
    frames = decode_clip(data)
    assert len(frames) == clip["frames"] >= 15  # >= 0.6 s before + 3 s after at 5 fps
    for image in frames:
        assert image[INSIDE_MASK].max() < 24  # black under the privacy mask (H.264 noise at most)
        assert image[OUTSIDE_MASK].min() > 220
    assert pipe.clip_stats["clips"] == 1

    # The purge removes the clip with the snapshot; then the console finds no clip file to play.
    reg.purge(media_days=7, alert_days=30, by=RETENTION_SCHEDULE, now=datetime.now(UTC) + timedelta(days=8))
    assert not snapshot.exists() and not clip["file"].exists()
    assert reg.clip(alert_id)["file"] is None and reg.alert(alert_id) is not None


def test_a_clip_waits_for_its_snapshot_s_retention(tmp_path):
    """A clip is no orphan while its snapshot is kept, however old its own file looks."""
    pipe, _, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN])
    raised = run(pipe, 30)
    clip = reg.clip(raised[0].stored.id)
    old = (datetime.now(UTC) - timedelta(days=10)).timestamp()
    os.utime(clip["file"], (old, old))  # past the media cutoff by its file time, not by its alert's
    reg.purge(media_days=7, alert_days=30, by=RETENTION_SCHEDULE, now=datetime.now(UTC) + timedelta(days=2))
    assert clip["file"].exists() and reg.clip(raised[0].stored.id)["file"] is not None


def test_an_unfinished_clip_is_stored_when_the_stream_restarts(tmp_path):
    pipe, _, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN])
    raised = run(pipe, 6)  # the alert at ~0.6 s, the stream ends at 1.0 s
    assert reg.clip(raised[0].stored.id) is None
    pipe.reset()
    clip = reg.clip(raised[0].stored.id)
    assert clip is not None and clip["frames"] >= 4


def test_an_altered_clip_is_not_played(tmp_path):
    pipe, _, reg, _ = build(tmp_path, [INTRUSION], lambda i: [PERSON_IN_LAWN])
    raised = run(pipe, 30)
    path = reg.clip(raised[0].stored.id)["file"]
    path.write_bytes(path.read_bytes() + b"x")
    assert reg.clip(raised[0].stored.id)["file"] is None
