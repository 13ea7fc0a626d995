"""What the runner's tests share: a site in a temporary folder (config, clips, register), one or two cameras,
and a runner run on a background thread."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from runner.config.loading import load_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from tests.helpers import FakePool, box_at, config_dict, make_video, write_config

PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 1.0}
INSIDE = datetime(2025, 5, 14, 12, 0, tzinfo=UTC)


def person_from(first_call: int):
    return lambda i: [PERSON_IN_LAWN] if i >= first_call else []


class Site:
    """A config file, its clips and a register in a temporary folder."""

    def __init__(self, tmp_path: Path, data: dict, clips: dict[str, tuple[int, tuple[int, int]]] | None = None):
        self.dir = tmp_path
        for name, (n_frames, size) in (clips or {"clip.avi": (30, (640, 480))}).items():
            make_video(tmp_path / name, n_frames, fps=10, size=size)
        self.loaded = load_config(write_config(tmp_path / "site.yaml", data))
        self.register = Register(tmp_path / "vigie.db")

    def runner(self, detector, **options) -> Runner:
        clock = options.pop("clock", None)
        kwargs = {"clock": clock} if clock else {}
        return Runner(self.loaded, self.register, RunOptions(**options), pool=FakePool(detector), **kwargs)

    def events(self, event: str | None = None, camera_id: str | None = None) -> list[dict]:
        rows = self.register.audit_rows(event=event)
        return [
            dict(r, details=json.loads(r["details"])) for r in rows if camera_id is None or r["camera_id"] == camera_id
        ]


def two_cameras(rules=(INTRUSION,), second_source="clip2.avi", **camera):
    data = config_dict(list(rules), **camera)
    second = copy.deepcopy(data["cameras"][0])
    second.update(id="cam-02", source=second_source)
    data["cameras"].append(second)
    return data


def wait_for(predicate, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Background:
    """Runs `runner.run()` in a thread; `stop()` joins it and re-raises what it raised."""

    def __init__(self, runner: Runner):
        self.runner, self.summary, self.error = runner, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.summary = self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def join(self, timeout_s: float = 15.0):
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error:
            raise self.error
        return self.summary

    def stop(self):
        self.runner.stop()
        return self.join()
