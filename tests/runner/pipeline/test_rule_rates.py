"""Each rule is evaluated at the rate its kind needs: the camera analyses frames at the highest of its rules'
rates (at most its `process_fps`), and a rule needing fewer runs on a subset of them, on its own grid of stream
time, with the track ids ended meanwhile handed to it on its next frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from runner.config.loading import load_config
from runner.pipeline.camera import CameraPipeline
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.sources.capture import Frame
from tests.helpers import (
    HEIGHT,
    WIDTH,
    FakePool,
    ScriptedDetector,
    box_at,
    config_dict,
    make_video,
    site_config,
    write_config,
)

START = datetime(2025, 5, 13, 10, 0, tzinfo=UTC)
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 0.6}
DENSITY = {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn", "max_count": 1, "sustain_s": 2.0}
ABANDONED = {"kind": "abandoned_object", "id": "lawn-bags", "zone": "lawn", "abandon_s": 5.0}
FIRE = {"kind": "fire", "id": "fire"}


@pytest.mark.parametrize(
    ("rules", "process_fps", "analysed_fps"),
    [
        ([ABANDONED], 5, 1.0),  # a still bag: one frame a second
        ([DENSITY], 10, 1.0),
        ([{**DENSITY, "foreground": True}], 10, 5.0),  # its background model learns from consecutive frames
        ([ABANDONED, INTRUSION], 5, 5.0),  # the highest need
        ([INTRUSION], 3, 3.0),  # never more than the camera allows
        ([{**INTRUSION, "process_fps": 2}], 5, 2.0),  # a rule's own rate overrides its kind's
        ([{**DENSITY, "enabled": False}, INTRUSION], 5, 5.0),  # disabled rules do not count
        ([], 4, 4.0),  # no rule: the camera's rate
    ],
)
def test_a_camera_is_analysed_at_the_highest_rate_its_rules_need(rules, process_fps, analysed_fps):
    camera = site_config(rules, process_fps=process_fps).cameras[0]
    assert camera.analysed_fps == analysed_fps


def test_a_rule_needing_every_frame_follows_the_camera():
    # Fire and weapon need every frame the camera allows (the flicker, a brief glimpse of a weapon).
    camera = site_config([FIRE], process_fps=6).cameras[0]
    assert camera.rules[0].rate_fps(camera.process_fps) == 6.0
    assert camera.analysed_fps == 6.0


def test_a_rate_out_of_bounds_is_refused_in_the_config():
    with pytest.raises(Exception, match="process_fps"):
        site_config([{**DENSITY, "process_fps": 0}])


def _pipeline(tmp_path, rules, script, **camera):
    loaded = load_config(write_config(tmp_path / "site.yaml", config_dict(rules, **camera)))
    pipe = CameraPipeline(loaded, loaded.config.cameras[0], FakePool(ScriptedDetector(script)), None, mode="replay")
    seen: dict[str, list[float]] = {}
    ended: dict[str, set[int]] = {}
    for rule in pipe.rules:
        update = rule.update

        def spy(ctx, update=update, rule_id=rule.config.id):
            seen.setdefault(rule_id, []).append(round(ctx.t_s, 3))
            ended.setdefault(rule_id, set()).update(ctx.ended_track_ids)
            return update(ctx)

        rule.update = spy
    return pipe, seen, ended


def _frame(i: int, fps: float) -> Frame:
    t = i / fps
    return Frame("cam-01", i, t, START + timedelta(seconds=t), np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8))


def test_a_slower_rule_runs_on_its_own_grid_of_the_cameras_frames(tmp_path):
    pipe, seen, _ = _pipeline(tmp_path, [INTRUSION, DENSITY], lambda i: [(box_at(0.75, 0.9), "person", 0.9)])
    # Frames at 5 fps whose times fall near, not on, the grid (jitter of a live stream).
    for i in range(26):
        frame = _frame(i, 5.0)
        jitter = 0.03 if i % 2 else -0.03
        pipe.process(Frame(frame.camera_id, i, frame.t_s + jitter, frame.wall_time, frame.image))
    assert len(seen["lawn-intrusion"]) == 26
    # One a second, none skipped or doubled: the frame nearest each step of its grid.
    assert seen["lawn-density"] == [-0.03, 1.03, 1.97, 3.03, 3.97, 5.03]


def test_track_ids_ended_between_a_slow_rules_frames_reach_it(tmp_path):
    # A person seen for 0.4 s then gone: their track ends on a frame the density rule does not run on.
    person = [(box_at(0.75, 0.9), "person", 0.9)]
    pipe, seen, ended = _pipeline(
        tmp_path, [INTRUSION, DENSITY], lambda i: person if i < 2 else [], tracking={"lost_s": 0.3}
    )
    for i in range(16):
        pipe.process(_frame(i, 5.0))
    assert ended["lawn-intrusion"], "the track ended"
    assert ended["lawn-density"] == ended["lawn-intrusion"]
    assert len(seen["lawn-density"]) == 4  # 0, 1, 2, 3 s


def test_a_camera_whose_rules_need_one_frame_a_second_reads_one(tmp_path):
    make_video(tmp_path / "clip.avi", 50, fps=10)  # 5 s
    data = config_dict([ABANDONED], source="clip.avi", process_fps=5)
    loaded = load_config(write_config(tmp_path / "site.yaml", data))
    with Register(tmp_path / "vigie.db") as register:
        summary = Runner(
            loaded, register, RunOptions(mode="replay"), pool=FakePool(ScriptedDetector(lambda i: []))
        ).run()
    assert summary.frames == {"cam-01": 5}
