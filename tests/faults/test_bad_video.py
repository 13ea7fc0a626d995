"""Bad video: each broken input goes to one camera of a two-camera runner (every rule kind enabled, a
scripted detector); it must end in a clear one-line per-camera error or be handled gracefully, while
the good camera processes all its frames and raises its alert. `vigie replay` on a bad file exits
with the source error code and one line on stderr, no traceback. Rules that keep per-camera state
sized by the frame (background models, masks, the motion gate) survive a size change."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from runner.config.loading import load_config
from runner.pipeline.camera import CameraPipeline
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.sources.capture import Frame
from tests.helpers import FakePool, ScriptedDetector, box_at, config_dict, make_video, write_config

ROOT = Path(__file__).resolve().parents[2]
PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)
EVERY_RULE = [
    {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 0.6},
    {"kind": "abandoned_object", "id": "left-luggage", "abandon_s": 10.0},
    {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn", "max_count": 1, "sustain_s": 0.4},
    {"kind": "crowd_movement", "id": "move"},
    {"kind": "fire", "id": "fire"},
    {"kind": "weapon", "id": "weapon"},
    {"kind": "wrong_way", "id": "wrong", "zone": "path"},
]
GOOD_FRAMES = 10  # 20 frames at 10 fps, analysed at 5 fps


def _smooth(frame: np.ndarray, i: int) -> None:
    """A gradient (compresses well, unlike make_video's noise: an 8K clip stays small)."""
    h, w = frame.shape[:2]
    frame[:] = (np.arange(w, dtype=np.uint16) * 255 // max(1, w - 1)).astype(np.uint8)[None, :, None]
    cv2.rectangle(frame, (w * i // 4, h // 2), (w * i // 4 + w // 10, h // 2 + h // 5), (255, 255, 255), -1)


def _overwrite_middle(data: bytes, count: int) -> bytes:
    corrupt = bytearray(data)
    middle = len(corrupt) // 2
    corrupt[middle : middle + count] = np.random.default_rng(1).integers(0, 256, count, dtype=np.uint8).tobytes()
    return bytes(corrupt)


def _mjpeg_of_two_sizes(path: Path) -> Path:
    """A raw MJPEG stream (concatenated JPEGs) whose frames switch from 320x240 to 160x120 half-way."""
    parts = []
    for i in range(20):
        width, height = (320, 240) if i < 10 else (160, 120)
        image = np.full((height, width, 3), 40 + 8 * i, np.uint8)
        parts.append(cv2.imencode(".jpg", image)[1].tobytes())
    path.write_bytes(b"".join(parts))
    return path


def _wav(path: Path) -> Path:
    """One second of silence: a real container with no video stream."""
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\0\0" * 8000)
    return path


def make_bad(kind: str, directory: Path) -> Path:
    clip = make_video(directory / "source.avi", 20, fps=10, size=(320, 240))
    data = clip.read_bytes()
    if kind == "truncated":
        (directory / "bad.avi").write_bytes(data[: len(data) // 2])
    elif kind == "zero-byte":
        (directory / "bad.mp4").write_bytes(b"")
    elif kind == "text renamed .mp4":
        (directory / "bad.mp4").write_text("camera 12, north gate: see the attached report\n" * 40)
    elif kind == "random bytes":
        (directory / "bad.mp4").write_bytes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind == "corrupt frames":
        (directory / "bad.avi").write_bytes(_overwrite_middle(data, 4000))
    elif kind == "unknown codec":
        (directory / "bad.avi").write_bytes(data.replace(b"MJPG", b"XQZ9"))  # the AVI's fourcc, in two headers
    elif kind == "audio only":
        _wav(directory / "bad.avi")
    elif kind == "size change":
        _mjpeg_of_two_sizes(directory / "bad.mjpeg")
    elif kind == "1x1":
        make_video(directory / "bad.avi", 5, fps=10, size=(1, 1), draw=lambda frame, i: None)
    elif kind == "8K":
        make_video(directory / "bad.avi", 3, fps=10, size=(7680, 4320), draw=_smooth)
    return next(p for p in directory.iterdir() if p.stem == "bad")


# kind -> ("error", message part) or ("ok", frames the bad camera must analyse)
CASES = {
    "zero-byte": ("error", "source file is empty"),
    "text renamed .mp4": ("error", "not a video or unsupported codec"),
    "random bytes": ("error", "not a video or unsupported codec"),
    "unknown codec": ("error", "not a video or unsupported codec"),
    "audio only": ("error", "not a video or unsupported codec"),
    "truncated": ("ok", range(3, 8)),  # what was written before the cut
    "corrupt frames": ("ok", range(8, 11)),  # the damaged frame skipped or decoded with artefacts
    "size change": ("ok", range(4, 5)),  # raw MJPEG is read at 25 fps: frames 0, 5 (320x240), 10, 15 (160x120)
    "1x1": ("ok", range(3, 4)),
    "8K": ("ok", range(2, 3)),
}


def _events(register: Register, event: str) -> list[dict]:
    return [dict(r, details=json.loads(r["details"])) for r in register.audit_rows(event=event)]


class WidthCounter(ScriptedDetector):
    def __init__(self):
        super().__init__(lambda i: [PERSON_IN_LAWN])
        self.widths: list[int] = []

    def detect(self, images, labels=None):
        self.widths += [image.shape[1] for image in images]
        return super().detect(images, labels)


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k == "8K" else k for k in CASES])
def test_a_bad_video_fails_one_camera_only(tmp_path, kind):
    bad = make_bad(kind, tmp_path)
    make_video(tmp_path / "good.avi", 20, fps=10, size=(200, 150))
    data = config_dict(EVERY_RULE, id="cam-good", source="good.avi")
    data["cameras"].append(dict(copy.deepcopy(data["cameras"][0]), id="cam-bad", source=bad.name))
    register = Register(tmp_path / "vigie.db")
    detector = WidthCounter()
    summary = Runner(
        load_config(write_config(tmp_path / "site.yaml", data)),
        register,
        RunOptions(mode="replay"),
        pool=FakePool(detector),
    ).run()

    # the good camera is unaffected
    assert summary.frames["cam-good"] == GOOD_FRAMES and detector.widths.count(200) == GOOD_FRAMES
    assert any(a["camera_id"] == "cam-good" and a["kind"] == "zone_intrusion" for a in register.alerts())
    assert not _events(register, "rule_error"), _events(register, "rule_error")
    errors = _events(register, "camera_error")
    health = {h["camera_id"]: h for h in register.health()}
    outcome, expected = CASES[kind]
    if outcome == "error":
        message = summary.camera_errors["cam-bad"]
        assert list(summary.camera_errors) == ["cam-bad"]
        assert message.startswith("camera cam-bad: ") and expected in message and bad.name in message
        assert "\n" not in message and "Traceback" not in message
        assert [(e["camera_id"], e["details"]["error"]) for e in errors] == [("cam-bad", message)]
        assert health["cam-bad"]["status"] == "error" and health["cam-bad"]["detail"] == message
    else:
        assert summary.camera_errors == {} and errors == []
        assert summary.frames["cam-bad"] in expected, summary.frames
        # A cut file decodes fewer frames than its header declares: the partial analysis is said.
        damaged = kind == "truncated"
        assert health["cam-bad"]["status"] == ("damaged" if damaged else "ended")
        assert (list(summary.source_warnings) == ["cam-bad"]) is damaged, summary.source_warnings
    assert health["cam-good"]["status"] == "ended"
    assert register.verify().ok


@pytest.mark.parametrize("kind", ["zero-byte", "unknown codec"])
def test_vigie_replay_of_a_bad_video_is_one_line_and_exit_code_4(tmp_path, kind):
    bad = make_bad(kind, tmp_path)
    write_config(tmp_path / "site.yaml", config_dict([], source="unused.avi"))  # no rule: no model is loaded
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "replay",
            str(tmp_path / "site.yaml"),
            "--camera",
            "cam-01",
            "--source",
            str(bad),
            "--db",
            str(tmp_path / "vigie.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("[", "OpenCV"))]
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    # the error, once as the command's last word (the service log may have said it before, in one line too)
    final = lines[-1]
    assert final.startswith("vigie: camera cam-01: ") and bad.name in final and CASES[kind][1] in final, done.stderr
    assert all(final.removeprefix("vigie: ") in line for line in lines), done.stderr


def test_every_rule_survives_frame_size_changes_without_a_reset(tmp_path):
    """A camera reconfigured behind the same URL, or a decoder that changes size mid-stream: the rules
    keep per-camera images (background models, masks, flow, the motion gate) and must follow."""
    loaded = load_config(write_config(tmp_path / "site.yaml", config_dict(EVERY_RULE)))
    register = Register(tmp_path / "vigie.db")
    detector = WidthCounter()
    pipeline = CameraPipeline(loaded, loaded.config.cameras[0], FakePool(detector), register, mode="replay")
    start = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
    sizes = [(320, 240)] * 12 + [(160, 120)] * 12 + [(1, 1)] * 3 + [(7680, 4320)] * 2 + [(240, 320)] * 12
    rng = np.random.default_rng(3)
    for index, (width, height) in enumerate(sizes):
        image = np.full((height, width, 3), 60, np.uint8)
        if width > 8:  # something that moves, for the motion gate, the background models and the flow
            x = (index * width // 12) % max(1, width - width // 8)
            image[height // 3 : height // 3 + height // 4, x : x + width // 8] = rng.integers(
                150, 255, 3, dtype=np.uint8
            )
        t_s = index / 5
        pipeline.process(Frame("cam-01", index, t_s, start + timedelta(seconds=t_s), image))
    assert pipeline.frames_processed == len(sizes)
    assert not _events(register, "rule_error"), _events(register, "rule_error")
    assert {w for w in detector.widths} >= {320, 160, 240}


def test_vigie_replay_of_a_video_with_a_damaged_index_says_the_analysis_is_partial(tmp_path):
    """The header declares 100 frames, one decodes: a warning on stderr (exit 0, the frame analysed is kept),
    `source_damaged` in the audit log and `damaged` in the health."""
    from tests.runner.sources.test_capture import make_h264

    clip = make_h264(tmp_path / "clip.mp4", 100, fps=25, size=(320, 192), faststart=True).read_bytes()
    first_packet_end = clip.find(b"mdat") + 4 + 1500  # the index (moov) first, then the first key frame
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(clip[:first_packet_end])
    write_config(tmp_path / "site.yaml", config_dict([], source="unused.avi"))  # no rule: no model is loaded
    done = subprocess.run(
        [sys.executable, "-m", "runner.cli", "replay", str(tmp_path / "site.yaml"), "--camera", "cam-01"]
        + ["--source", str(damaged), "--db", str(tmp_path / "vigie.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "on 1 processed frame(s)" in done.stdout, done.stdout
    warning = next(line for line in done.stderr.splitlines() if line.startswith("warning: camera cam-01:"))
    assert "decoded 1 of the 20 frames due in the 100 frames damaged.mp4 declares" in warning, done.stderr
    with Register(tmp_path / "vigie.db", read_only=True) as register:
        assert [e["details"]["declared"] for e in _events(register, "source_damaged")] == [100]
        assert [h["status"] for h in register.health()] == ["damaged"]
