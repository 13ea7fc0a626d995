"""The replay progress bar: drawn on a terminal (a pseudo-terminal here), never on piped output or JSON;
its total is the number of frames the capture really analyses."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from runner.config.loading import load_config
from runner.sources.capture import VideoSource
from runner.tools.progress import ReplayProgress, due_frames, eval_due_frames, replay_due_frames, wants_bar
from tests.conftest import ROOT
from tests.helpers import config_dict, make_video, write_config

FRAMES = 24  # analysed by the fake runner below

# `vigie replay` with a runner that "analyses" FRAMES frames and raises one alert (not in --json), no model.
FAKE_REPLAY = f"""
import sys, time
import runner.service.lifecycle as lifecycle
from runner.service.lifecycle import RunSummary

class FakeRunner:
    def __init__(self, loaded, register, options, *, on_alert=None, **kwargs):
        self.options, self.on_alert = options, on_alert

    def run(self):
        for index in range({FRAMES}):
            if index == 3 and "--json" not in sys.argv:  # a JSON line would need a whole alert
                self.on_alert(type("Raised", (), {{"stored": None}})())
            if self.options.on_frame is not None:
                self.options.on_frame("cam-01", None)
            time.sleep(0.02)
        return RunSummary(frames={{"cam-01": {FRAMES}}}, wall_s=2.0)

    def stop(self):
        pass

lifecycle.Runner = FakeRunner
from runner.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    make_video(tmp_path / "clip.avi", 40, fps=10.0, size=(64, 48))  # 4 s at process_fps 5: 20 frames analysed
    return write_config(tmp_path / "site.yaml", config_dict([]))


def replay(tmp_path: Path, site: Path, *extra: str, terminal: bool) -> tuple[int, str, str]:
    """Run the fake replay with stderr on a pseudo-terminal (`terminal`) or a pipe; (exit code, stdout, stderr)."""
    script = tmp_path / "fake_replay.py"
    script.write_text(FAKE_REPLAY)
    argv = [sys.executable, str(script), "replay", str(site), "--camera", "cam-01", "--db", str(tmp_path / "v.db")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not terminal:
        done = subprocess.run([*argv, *extra], capture_output=True, text=True, env=env, timeout=120)
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        child = subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=follower, env=env, text=True)
        os.close(follower)
        chunks = []
        reader = threading.Thread(target=lambda: chunks.append(child.stdout.read()))
        reader.start()
        drawn = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                break
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal (Linux says EIO)
                break
            if not data:
                break
            drawn += data
        code = child.wait(timeout=120)
        reader.join()
    finally:
        os.close(leader)
    return code, chunks[0], drawn.decode(errors="replace")


def test_the_bar_is_drawn_on_a_terminal_and_the_output_is_unchanged(tmp_path, site):
    code, out, err = replay(tmp_path, site, terminal=True)
    assert code == 0, err
    assert "frame" in err and "/20 " in err  # frames analysed out of the clip's 20
    assert "1 alert(s)" in err  # alerts so far
    piped_code, piped_out, piped_err = replay(tmp_path, site, terminal=False)
    assert piped_code == 0
    assert out == piped_out  # the table and summary lines, the same with or without the bar
    assert "1 alert(s) on 24 processed frame(s) in 2.0 s (12.0 fps); all marked as tests" in out


def test_no_bar_when_piped_or_json(tmp_path, site):
    code, out, err = replay(tmp_path, site, terminal=False)
    assert (code, err) == (0, "")
    code, out, err = replay(tmp_path, site, "--json", terminal=True)
    assert code == 0
    assert "frame/s" not in err and "%|" not in err
    assert "0 alert(s) on 24 processed frame(s)" in err  # --json prints its summary on stderr, as before


def test_wants_bar_only_on_a_terminal_without_json():
    assert not wants_bar(io.StringIO())
    leader, follower = pty.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            assert wants_bar(terminal)
            assert not wants_bar(terminal, json_output=True)
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize(("clip_fps", "process_fps"), [(10.0, 5.0), (25.0, 3.0), (10.0, 10.0), (7.0, 3.0)])
def test_due_frames_counts_what_the_capture_analyses(tmp_path, clip_fps, process_fps):
    clip = make_video(tmp_path / "clip.avi", 37, fps=clip_fps, size=(64, 48))
    analysed = sum(1 for _ in VideoSource("cam-01", str(clip), process_fps).frames())
    assert due_frames(str(clip), process_fps) == analysed


def test_totals_are_unknown_for_missing_clips_and_streams(tmp_path, site):
    loaded = load_config(site)
    assert replay_due_frames(loaded, "cam-01") == 20
    assert replay_due_frames(loaded, "cam-01", str(tmp_path / "absent.avi")) is None
    assert replay_due_frames(loaded, "no-such-camera") is None
    assert due_frames("rtsp://camera.local/stream", 5.0) is None
    assert eval_due_frames([loaded, loaded]) == 40
    assert eval_due_frames([loaded], ["other"]) == 0


def test_a_disabled_progress_only_passes_notes_through():
    stream = io.StringIO()
    with ReplayProgress(False, 10, stream) as progress:
        progress.note("replaying site/cam: clip.avi")
        progress.frame_analysed("cam", None)
        progress.alert_raised()
    assert stream.getvalue() == "replaying site/cam: clip.avi\n"
    assert progress.alerts == 1
