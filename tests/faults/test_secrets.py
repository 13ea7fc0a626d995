"""Credentials never leak: RTSP passwords written in a config, `${ENV}` placeholders that expand to secrets
and the dashboards' token must appear in no log line (Python logging or FFmpeg's own stderr), no register
row (audit, health, alerts, meta: the whole database is dumped), no camera error, no `vigie status` /
`vigie audit show` / `vigie alerts` / `vigie validate` output, and no exported config revision.

The runner is the real one (capture threads, pipelines, writer) with a scripted detector; the streams
point at a closed port on loopback, so FFmpeg really tries them and fails.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.cli import main as vigie
from runner.config.loading import load_config, redact
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from tests.conftest import ROOT
from tests.helpers import FakePool, ScriptedDetector, box_at, config_dict, make_video, write_config

LITERAL_PASSWORD = "Lit3ral-s3cret"  # written in the config file itself
# Secrets in a query string, by parameter name (issue 20: `pass=` reached stderr and an audit row).
QUERY_SECRETS = {"pass": "Qpass-77d1", "sig": "Qsig-90ab", "session": "Qsess-1c2d", "apikey": "Qkey-5e6f"}
MALFORMED_PASSWORD = "Malformed-pa55"  # in `rtsp:/user:...@host`, a URL with one slash
ENV = {
    "VIGIE_TEST_CAM_USER": "operator7",
    "VIGIE_TEST_CAM_PASSWORD": "Env-pa55-9f3c",
    "VIGIE_TOKEN": "tok-4e1d9a7c2b",
    "VIGIE_TEST_STREAM_KEY": "streamkey-71be",
    "VIGIE_TEST_CAM5_URL": "rtsp://admin:Whole-url-pa55@127.0.0.1:{port}/whole",  # not secret by name: URL redaction
}
SECRETS = [
    LITERAL_PASSWORD,
    "Env-pa55-9f3c",
    "tok-4e1d9a7c2b",
    "streamkey-71be",
    "Whole-url-pa55",
    *QUERY_SECRETS.values(),
    MALFORMED_PASSWORD,
]
INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 0.5}
PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)


def closed_port() -> int:
    """A loopback port nobody listens on: FFmpeg's connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def site_with_secrets(tmp_path: Path, port: int, rules=(INTRUSION,)) -> Path:
    """cam-01 a real clip that raises an alert; cam-02..05 sources whose credentials must stay hidden."""
    make_video(tmp_path / "clip.avi", 20, fps=10, size=(320, 240))
    data = config_dict(list(rules), source="clip.avi")
    base = {k: v for k, v in data["cameras"][0].items() if k not in ("id", "source", "rules")}
    for camera_id, source in [
        ("cam-02", f"rtsp://viewer:{LITERAL_PASSWORD}@127.0.0.1:{port}/x"),
        (
            "cam-03",
            f"rtsp://${{VIGIE_TEST_CAM_USER}}:${{VIGIE_TEST_CAM_PASSWORD}}@127.0.0.1:{port}/live?token=${{VIGIE_TOKEN}}",
        ),
        ("cam-04", "missing/${VIGIE_TEST_STREAM_KEY}/clip.avi"),  # a file: its error names the (expanded) path
        ("cam-05", "${VIGIE_TEST_CAM5_URL}"),
        ("cam-06", f"rtsp://127.0.0.1:{port}/q?user=viewer&" + "&".join(f"{k}={v}" for k, v in QUERY_SECRETS.items())),
        ("cam-07", f"rtsp:/viewer:{MALFORMED_PASSWORD}@127.0.0.1:{port}/x"),  # not a URL FFmpeg reads: a file error
    ]:
        data["cameras"].append({**base, "id": camera_id, "source": source, "rules": []})
    return write_config(tmp_path / "site.yaml", data)


@pytest.fixture
def secret_env(monkeypatch) -> int:
    port = closed_port()
    for name, value in ENV.items():
        monkeypatch.setenv(name, value.format(port=port))
    return port


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_until_every_camera_reported(config_path: Path, db: Path) -> tuple[Register, object]:
    register = Register(db)
    detector = ScriptedDetector(lambda i: [PERSON_IN_LAWN])
    runner = Runner(load_config(config_path), register, RunOptions(mode="live", realtime=True), pool=FakePool(detector))
    result = {}

    def run() -> None:
        try:
            result["summary"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def reported() -> bool:
        if "error" in result:
            raise result["error"]
        events = {(r["event"], r["camera_id"]) for r in register.audit_rows()}
        return (
            ("alert_created", "cam-01") in events
            and ("camera_error", "cam-04") in events
            and ("camera_error", "cam-07") in events
            and all(("camera_degraded", c) in events for c in ("cam-02", "cam-03", "cam-05", "cam-06"))
        )

    try:
        wait_for(reported, what="an alert on cam-01, an error on cam-04, the streams degraded")
    finally:
        runner.stop()
        thread.join(30)
    assert not thread.is_alive(), "runner did not stop"
    if "error" in result:
        raise result["error"]
    return register, result["summary"]


def test_no_secret_in_logs_register_errors_or_cli_output(tmp_path, secret_env, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    config_path = site_with_secrets(tmp_path, secret_env)
    db = tmp_path / "vigie.db"
    register, summary = run_until_every_camera_reported(config_path, db)

    # What the runner produced, and proof that the cameras really were tried.
    assert "cam-04" in summary.camera_errors and "source file not found" in summary.camera_errors["cam-04"]
    assert "${VIGIE_TEST_STREAM_KEY}" in summary.camera_errors["cam-04"]  # the placeholder, not its value
    degraded = {r["camera_id"]: json.loads(r["details"]) for r in register.audit_rows(event="camera_degraded")}
    assert degraded["cam-02"]["source"] == f"rtsp://viewer:***@127.0.0.1:{secret_env}/x"
    assert degraded["cam-03"]["source"].startswith("rtsp://operator7:***@127.0.0.1")
    assert degraded["cam-05"]["source"] == f"rtsp://admin:***@127.0.0.1:{secret_env}/whole"
    assert degraded["cam-06"]["source"] == f"rtsp://127.0.0.1:{secret_env}/q?user=viewer&" + "&".join(
        f"{k}=***" for k in QUERY_SECRETS
    )
    assert "rtsp:/viewer:***@127.0.0.1" in summary.camera_errors["cam-07"]
    (alert,) = register.alerts()[:1]
    assert alert["camera_id"] == "cam-01" and alert["source"] == "clip.avi"
    health = {h["camera_id"]: h for h in register.health()}
    assert health["cam-04"]["status"] == "error" and health["cam-02"]["status"] == "degraded"
    register.close()

    assert not leaks(" ".join(summary.camera_errors.values())), summary.camera_errors
    assert not leaks(caplog.text), caplog.text
    native = capfd.readouterr()  # FFmpeg / OpenCV write to file descriptor 2 directly
    assert not leaks(native.out + native.err), native.err
    with sqlite3.connect(db) as conn:  # every table: audit, health, alerts, decisions, meta...
        dump = "\n".join(conn.iterdump())
    assert "camera_degraded" in dump and not leaks(dump)

    for command in (["status"], ["audit", "show", "--limit", "200"], ["alerts", "--json"]):
        assert vigie([*command, "--db", str(db)]) == 0
        out, err = capfd.readouterr()
        assert out and not leaks(out + err), (command, out, err)
    assert "cam-04" in out or "cam-01" in out
    assert vigie(["validate", str(config_path)]) == 0
    out, err = capfd.readouterr()
    assert "valid" in out and not leaks(out + err)


def test_a_rejected_config_does_not_echo_its_credentials(tmp_path, secret_env, capsys):
    data = config_dict([INTRUSION], source=f"rtsp://u:{LITERAL_PASSWORD}@h/x", process_fps=0, bogus=1)
    data["models"]["person"]["weights"] = "rtsp://u:${VIGIE_TEST_CAM_PASSWORD}@h/model.pt"
    config_path = write_config(tmp_path / "site.yaml", data)
    assert vigie(["validate", str(config_path)]) == 2
    out, err = capsys.readouterr()
    assert "cameras[0].process_fps: must be >= 0.2" in err and "cameras[0].bogus: unknown key" in err
    assert not leaks(out + err), err


def test_redact_puts_secret_environment_values_back_as_placeholders(monkeypatch):
    monkeypatch.setenv("VIGIE_TOKEN", "tok-4e1d9a7c2b")
    monkeypatch.setenv("CAM9_PASSWORD", "Env-pa55-9f3c")
    monkeypatch.setenv("VIGIE_TEST_PLAIN_DIR", "/srv/clips")  # not a secret by its name: shown
    assert redact("rtsp://cam/live/tok-4e1d9a7c2b/x") == "rtsp://cam/live/${VIGIE_TOKEN}/x"
    assert redact("rtsp://a:Env-pa55-9f3c@cam/x") == "rtsp://a:***@cam/x"
    assert redact("cannot open /srv/clips/Env-pa55-9f3c.avi") == "cannot open /srv/clips/${CAM9_PASSWORD}.avi"
    assert redact("/srv/clips/a.avi") == "/srv/clips/a.avi"


def test_exported_revisions_keep_the_placeholder_not_the_secret(tmp_path, secret_env):
    from runner.core.access import Principal
    from workbench.export import ConfigExporter

    draft = config_dict(
        [INTRUSION],
        source="rtsp://${VIGIE_TEST_CAM_USER}:${VIGIE_TEST_CAM_PASSWORD}@10.0.0.5/live?token=${VIGIE_TOKEN}",
    )
    zones = tmp_path / "zones"
    with Register(tmp_path / "vigie.db") as register:
        result = ConfigExporter(zones, register).export(draft, Principal("ana", "design"))
        audit = json.dumps(register.audit_rows())
    files = {p: p.read_text() for p in (zones / "test-site").rglob("*") if p.is_file()}
    assert result.current_path in files and result.revision_path in files
    for text in files.values():
        assert not leaks(text), text
    assert (
        "${VIGIE_TEST_CAM_PASSWORD}" in files[result.current_path] and "${VIGIE_TOKEN}" in files[result.revision_path]
    )
    assert "config_exported" in audit and not leaks(audit)


@pytest.mark.slow
def test_vigie_run_stderr_and_status_never_show_credentials(tmp_path, secret_env):
    """The real `vigie run` process: FFmpeg's own messages about the refused streams included."""
    config_path = site_with_secrets(tmp_path, secret_env, rules=())  # no rule: no model to load
    db = tmp_path / "vigie.db"
    env = dict(
        os.environ,
        YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"),
        YOLO_OFFLINE="1",
        OPENCV_LOG_LEVEL="DEBUG",
        OPENCV_FFMPEG_DEBUG="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "-v", "run", str(config_path), "--db", str(db), "--fast"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def degraded() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"vigie run exited early:\n{process.stdout.read()}")
            if not db.exists():
                return False
            with Register(db, create=False) as reg:
                return {r["camera_id"] for r in reg.audit_rows(event="camera_degraded")} >= {
                    "cam-02",
                    "cam-03",
                    "cam-05",
                    "cam-06",
                }

        wait_for(degraded, timeout_s=120, what="streams degraded")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "cam-02" in output and "127.0.0.1" in output, output  # it did log the refused streams
    assert not leaks(output), output
    status = subprocess.run(
        [sys.executable, "-m", "runner.cli", "status", "--db", str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0 and "cam-04" in status.stdout, status.stderr
    assert not leaks(status.stdout + status.stderr), status.stdout
