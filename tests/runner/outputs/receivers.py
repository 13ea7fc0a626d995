"""A webhook receiver on loopback for the tests: it checks each X-Vigie-Signature as a real receiver would, keeps
what it accepted, and can be told to fail (HTTP 500) for a while."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 accepting POSTs signed with `secret`."""

    def __init__(self, secret: str):
        self.secret = secret.encode()
        self.accepted: list[dict] = []  # bodies with a valid signature, in arrival order, duplicates included
        self.alert_ids: list[str] = []
        self.authorizations: list[str | None] = []
        self.rejected_signatures = 0
        self.failing = False  # answer 500 to everything while set
        self.failed_posts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.receive(body, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/vigie"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def receive(self, body: bytes, headers) -> int:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        with self.lock:
            if self.failing:
                self.failed_posts += 1
                return 500
            if not hmac.compare_digest(expected, headers.get("X-Vigie-Signature", "")):
                self.rejected_signatures += 1
                return 401
            message = json.loads(body)
            assert headers["X-Vigie-Alert-Id"] == str(message["id"]) and headers["X-Vigie-Event"] == message["event"]
            self.accepted.append(message)
            self.authorizations.append(headers.get("Authorization"))
            self.alert_ids.append(headers["X-Vigie-Alert-Id"])
        return 204

    def messages(self) -> list[dict]:
        with self.lock:
            return list(self.accepted)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class MqttSubscriber:
    """A real paho subscriber to `<prefix>/#` with a persistent session (QoS 1 messages published while it is away
    are queued for it by the broker), reconnecting on its own after a broker outage."""

    def __init__(self, port: int, topic: str = "vigie/#", username: str | None = None, password: str | None = None):
        import uuid

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topic
        self.messages: list[tuple[str, dict, bool]] = []  # (topic, payload, retained), arrival order
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the test subscriber could not connect"

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload), bool(message.retain)))

    def alerts(self) -> list[tuple[str, dict]]:
        """The alert and decision messages (not the status ones)."""
        with self.lock:
            return [(t, p) for t, p, _ in self.messages if "/status/" not in t]

    def statuses(self) -> list[tuple[str, dict, bool]]:
        with self.lock:
            return [m for m in self.messages if "/status/" in m[0]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
