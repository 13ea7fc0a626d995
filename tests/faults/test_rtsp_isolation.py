"""Cameras cannot starve each other: a healthy RTSP camera (Debian's GStreamer server, rtsp_server.py)
beside a silent one (accepts the TCP connection, never answers) and a garbage one (answers junk) opens as
fast as alone, raises its first alert on time, and reconnects within 5 s of its server's return; the RTSP
answers 401 and 404 reach the health line. (OpenCV's FFmpeg backend opened every capture of the process
under one lock: a silent camera held the others' opens and reconnects for its whole timeout.)

The open and reconnect figures are printed (`pytest -s`) for docs/operations.md."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time

import pytest

from runner.config.loading import load_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.sources.capture import open_capture
from tests.faults.test_rtsp import (  # noqa: F401 - stream_clip is a fixture
    PASSWORD,
    STREAM_SIZE,
    CountingDetector,
    RtspServer,
    free_port,
    stream_clip,
    wait_for,
)
from tests.helpers import FakePool, config_dict, write_config

pytestmark = pytest.mark.slow
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 0.6, "cooldown_s": 2.0}
OPEN_TIMEOUT_S = 10.0  # the runner's default open / stall timeout


class TinyServer:
    """A TCP server on loopback that accepts connections and then never answers (`junk=False`) or
    answers every request with bytes that are not RTSP (`junk=True`); the connections stay open."""

    def __init__(self, junk: bool):
        self.junk = junk
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/stream"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.junk:
                threading.Thread(target=self._answer_junk, args=(connection,), daemon=True).start()

    @staticmethod
    def _answer_junk(connection: socket.socket) -> None:
        try:
            while connection.recv(4096):
                connection.sendall(b"\x17\x03\x03 garbage \xff\xfe not rtsp \x00\r\n\r\n" * 8)
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def _open_s(url: str) -> float:
    started = time.monotonic()
    capture = open_capture(url, stream=True, timeout_s=OPEN_TIMEOUT_S)
    elapsed_s = time.monotonic() - started
    assert capture.isOpened(), getattr(capture, "error", "")
    capture.release()
    return elapsed_s


def test_a_silent_and_a_garbage_camera_do_not_slow_a_healthy_one(stream_clip, tmp_path, record_property):  # noqa: F811
    server = RtspServer(stream_clip, free_port())
    server.start()
    silent, garbage = TinyServer(junk=False), TinyServer(junk=True)
    run = None
    try:
        alone_s = statistics.median(_open_s(server.url) for _ in range(3))
        # Two silent opens and a garbage one in flight, then the healthy camera opens.
        blockers = [
            threading.Thread(target=open_capture, args=(url, True, OPEN_TIMEOUT_S), daemon=True)
            for url in (silent.url, silent.url, garbage.url)
        ]
        for blocker in blockers:
            blocker.start()
        time.sleep(0.3)
        beside_s = statistics.median(_open_s(server.url) for _ in range(3))
        assert beside_s < alone_s + 1.0, f"open took {beside_s:.2f} s beside a silent camera, {alone_s:.2f} s alone"

        run = _Run(tmp_path, server, silent, garbage)
        first_alert_s = wait_for(run.first_alert_s, 20, "the healthy camera's first alert")
        assert first_alert_s < 6.0, f"first alert {first_alert_s:.1f} s after the start"
        wait_for(lambda: run.detail("cam-401"), 20, "the 401 camera's health")
        assert run.detail("cam-401") == "RTSP 401 Unauthorized: check the credentials"
        wait_for(lambda: run.detail("cam-404"), 20, "the 404 camera's health")
        assert run.detail("cam-404") == "RTSP 404 Not Found: check the stream path"
        wait_for(lambda: run.detail("cam-silent"), OPEN_TIMEOUT_S + 10, "the silent camera's health")
        assert run.detail("cam-silent") == f"no answer within {OPEN_TIMEOUT_S:g} s"
        assert run.status("cam-garbage") == "degraded"

        reconnects = []
        for _ in range(3):
            frozen_before = run.detector.count(STREAM_SIZE[0])
            server.kill()
            wait_for(lambda: run.status("cam-ok") == "degraded", 20, "the healthy camera degraded")
            time.sleep(1.0)  # the server stays away a moment: the reconnect attempts back off meanwhile
            back_mono = server.start()
            frozen = max(frozen_before, run.detector.count(STREAM_SIZE[0]))
            wait_for(lambda: run.detector.count(STREAM_SIZE[0]) > frozen, 30, "frames after the server is back")
            reconnects.append(time.monotonic() - back_mono)
        assert max(reconnects) <= 5.0, reconnects
        summary = run.stop()
    finally:
        if run is not None and run.thread.is_alive():
            run.runner.stop()
        server.close()
        silent.close()
        garbage.close()
    assert summary.camera_errors == {}
    everything = json.dumps([dict(r) for r in run.register.audit_rows()] + run.register.health(), default=str)
    assert PASSWORD not in everything and "wrong-Pa55" not in everything
    figures = {
        "open_alone_s": round(alone_s, 2),
        "open_beside_silent_s": round(beside_s, 2),
        "first_alert_s": round(first_alert_s, 2),
        "reconnect_s": [round(s, 2) for s in reconnects],
        "reconnect_median_s": round(statistics.median(reconnects), 2),
    }
    print(f"\nRTSP isolation: {figures}")
    for key, value in figures.items():
        record_property(key, json.dumps(value))


class _Run:
    """The real `Runner` on a thread with five RTSP cameras: healthy, silent, garbage, 401, 404."""

    def __init__(self, tmp_path, server: RtspServer, silent: TinyServer, garbage: TinyServer):
        data = config_dict([INTRUSION], id="cam-ok", source=server.url, process_fps=5)
        healthy = data["cameras"][0]
        others = {
            "cam-silent": silent.url,
            "cam-garbage": garbage.url,
            "cam-401": server.url.replace(PASSWORD, "wrong-Pa55"),
            "cam-404": server.url.replace("/clip", "/no-such-path"),
        }
        data["cameras"] += [dict(json.loads(json.dumps(healthy)), id=cid, source=url) for cid, url in others.items()]
        self.register = Register(tmp_path / "vigie.db")
        self.detector = CountingDetector()
        self.runner = Runner(
            load_config(write_config(tmp_path / "site.yaml", data)),
            self.register,
            RunOptions(mode="live", realtime=True, retention=False),
            pool=FakePool(self.detector),
        )
        self.summary, self.error = None, None
        self.started = time.monotonic()
        self.first_alert_at: float | None = None
        self.runner.on_alert = self._on_alert
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_alert(self, raised) -> None:
        if raised.record.camera_id == "cam-ok" and self.first_alert_at is None:
            self.first_alert_at = time.monotonic()

    def first_alert_s(self) -> float | None:
        return None if self.first_alert_at is None else self.first_alert_at - self.started

    def _run(self) -> None:
        try:
            self.summary = self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test thread
            self.error = exc

    def _health(self, camera_id: str) -> dict:
        return next((h for h in self.register.health() if h["camera_id"] == camera_id), {})

    def status(self, camera_id: str) -> str | None:
        return self._health(camera_id).get("status")

    def detail(self, camera_id: str) -> str | None:
        health = self._health(camera_id)
        return health.get("detail") if health.get("status") == "degraded" else None

    def stop(self):
        self.runner.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error:
            raise self.error
        return self.summary
