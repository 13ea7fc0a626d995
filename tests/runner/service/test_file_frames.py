"""`vigie run` on a file: a file is not a live stream, so every frame due at the camera's rate is analysed,
with `--fast` too (the reader waits for a slow analysis instead of dropping frames). The run summary counts
the frames a live stream's slot dropped. Compared with `vigie replay` on the same clip."""

from __future__ import annotations

import time

from runner.config.loading import load_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from tests.helpers import FakePool, ScriptedDetector, box_at, config_dict, make_video, write_config

# At the camera's 10 fps (an intrusion rule alone would need 5).
INTRUSION = {
    "kind": "zone_intrusion",
    "id": "lawn-intrusion",
    "zone": "lawn",
    "min_dwell_s": 0.6,
    "cooldown_s": 1.0,
    "process_fps": 10,
}


class SlowDetector(ScriptedDetector):
    """A person in the lawn on every frame, 20 ms per call: slower than a file is read."""

    def __init__(self):
        super().__init__(lambda i: [(box_at(0.75, 0.9), "person", 0.9)])

    def detect(self, images, labels=None):
        time.sleep(0.02)
        return super().detect(images, labels)


def _run(tmp_path, name: str, options: RunOptions):
    data = config_dict([INTRUSION], source="clip.avi", process_fps=10)
    config = load_config(write_config(tmp_path / "site.yaml", data))
    with Register(tmp_path / f"{name}.db") as register:
        summary = Runner(config, register, options, pool=FakePool(SlowDetector())).run()
        alerts = len(register.alerts())
    return summary, alerts


def test_vigie_run_fast_on_a_file_analyses_the_frames_replay_analyses(tmp_path):
    make_video(tmp_path / "clip.avi", 60, fps=10)
    # What `vigie run --fast` builds (cli.cmd_run), then what `vigie replay` builds.
    fast, fast_alerts = _run(tmp_path, "fast", RunOptions(mode="live", realtime=False, retention=False))
    replay, replay_alerts = _run(tmp_path, "replay", RunOptions(mode="replay"))
    assert replay.frames == {"cam-01": 60}
    assert fast.frames == replay.frames, (fast.frames, fast.frames_dropped)
    assert fast.frames_dropped == {"cam-01": 0}
    assert fast_alerts == replay_alerts >= 1
