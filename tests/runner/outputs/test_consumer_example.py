"""examples/consumer.py runs: its webhook mode checks the signatures a real dispatcher sends, refuses a forged
body, and prints each alert once (at least once in, deduplicated out)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from runner.config.outputs import WebhookOutput
from runner.outputs.dispatcher import Dispatcher
from runner.outputs.webhook import WebhookDestination
from runner.register import Register
from tests.helpers import alert_record
from tests.servers.mosquitto import free_port

CONSUMER = Path(__file__).resolve().parents[3] / "examples" / "consumer.py"


def test_the_example_webhook_consumer_verifies_and_deduplicates(tmp_path, monkeypatch):
    port = free_port()
    env = {**os.environ, "CSU_HOOK_SECRET": "example-secret"}
    consumer = subprocess.Popen(
        [sys.executable, str(CONSUMER), "webhook", "--port", str(port), "--secret-env", "CSU_HOOK_SECRET"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the example consumer did not start"
                time.sleep(0.05)
        forged = urllib.request.Request(
            f"http://127.0.0.1:{port}/", data=b'{"event":"alert","id":1}', headers={"X-Vigie-Signature": "sha256=00"}
        )
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(forged, timeout=5)

        monkeypatch.setenv("CSU_HOOK_SECRET", "example-secret")
        config = WebhookOutput(name="csu", url=f"http://127.0.0.1:{port}/", secret="${CSU_HOOK_SECRET}")
        with Register(tmp_path / "vigie.db") as register:
            destination = WebhookDestination(config, "outputs.webhooks[0]")
            dispatcher = Dispatcher(register, [destination]).start()
            stored = register.add_alert(alert_record(is_test=False, kind="fire"))
            assert dispatcher.drain(10)
            dispatcher.stop()
            # A node that died after the POST but before moving its cursor sends the alert again on restart.
            with register.database.transaction() as conn:
                conn.execute("UPDATE outbox_delivery SET last_id = 0")
            dispatcher = Dispatcher(register, [destination]).start()
            assert dispatcher.drain(10) and dispatcher.delivered == {"webhook:csu": 1}
            dispatcher.stop()
    finally:
        consumer.terminate()
        out, _ = consumer.communicate(timeout=10)
    lines = [line for line in out.splitlines() if line.startswith("ALERT")]
    assert len(lines) == 1 and lines[0].startswith(f"ALERT #{stored.id} fire camera cam-01")
