#!/usr/bin/env python3
"""An example consumer of Vigie's pushed alerts (docs/outputs.md): an MQTT subscriber, a webhook receiver, or both.

    # MQTT: every alert and decision of a site, and the nodes' status
    python examples/consumer.py mqtt --host broker.csu.local --site cannes \
        [--username csu --password-env CSU_MQTT_PASSWORD]

    # Webhook: an HTTP endpoint checking each X-Vigie-Signature (the secret from an environment variable)
    VMS_HOOK_SECRET=... python examples/consumer.py webhook --port 8080 --secret-env VMS_HOOK_SECRET

Delivery is at least once: the same alert may come twice (after a node or broker restart). Deduplicate on
(event, id) as `Deduplicator` does; a real consumer keeps what it has seen in its own database.
Needs only the standard library (and paho-mqtt for the MQTT mode: `pip install paho-mqtt`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def valid_signature(secret: bytes, body: bytes, header: str) -> bool:
    """Whether `header` (X-Vigie-Signature) is the HMAC-SHA256 of the exact body bytes, compared in constant time.

    Args:
        secret: the shared secret (the endpoint's `secret` in the site file).
        body: the request body, as received (before any JSON parsing).
        header: the X-Vigie-Signature header, "sha256=<hex>".

    Returns:
        True when the body comes from a Vigie node holding the secret.
    """
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header or "")


class Deduplicator:
    """At least once in, exactly once out: remembers the (event, alert id) pairs already handled."""

    def __init__(self) -> None:
        """An empty memory (a real consumer keeps it in its database)."""
        self.seen: set[tuple[str, int]] = set()

    def first_time(self, message: dict) -> bool:
        """Whether this message is new.

        Args:
            message: a Vigie payload (`event`, `id`).

        Returns:
            False for a repeat of a message already handled.
        """
        key = (message["event"], int(message["id"]))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def handle(message: dict, dedup: Deduplicator) -> None:
    """What the control room does with a message: here, print one line.

    Args:
        message: the payload.
        dedup: the repeat filter.
    """
    if not dedup.first_time(message):
        return
    test = " (TEST)" if message.get("is_test") else ""
    if message["event"] == "alert":
        print(
            f"ALERT{test} #{message['id']} {message['kind']} camera {message['camera']} at {message['ts_utc']} "
            f"score {message['score']:.2f} snapshot {message['snapshot']} sha256 {message['snapshot_sha256']}",
            flush=True,
        )
    else:
        print(f"DECISION{test} #{message['id']}: {message['decision']} by {message['operator']}", flush=True)


def run_mqtt(args: argparse.Namespace) -> None:
    """Subscribe to `<prefix>/<site>/#` (QoS 1, persistent session: what is published while away is kept).

    Args:
        args: the parsed command line.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    dedup = Deduplicator()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False)
    if args.username:
        client.username_pw_set(args.username, os.environ.get(args.password_env or "", None))
    if args.tls:
        client.tls_set()

    def on_connect(client, userdata, flags, reason, properties):
        client.subscribe(f"{args.prefix}/{args.site}/#", qos=1)

    def on_message(client, userdata, msg):
        payload = json.loads(msg.payload)
        if "/status/" in msg.topic:
            print(f"node {payload['node']}: {payload['state']} since {payload['since_utc']}", flush=True)
        else:
            handle(payload, dedup)

    client.on_connect, client.on_message = on_connect, on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_forever()


def run_webhook(args: argparse.Namespace) -> None:
    """Serve POSTs on a port; answer 401 to a bad signature, 204 to a good one (Vigie then moves on).

    Args:
        args: the parsed command line.
    """
    secret = os.environ[args.secret_env].encode()
    dedup = Deduplicator()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not valid_signature(secret, body, self.headers.get("X-Vigie-Signature", "")):
                self.send_response(401)
            else:
                handle(json.loads(body), dedup)
                self.send_response(204)
            self.end_headers()

    HTTPServer((args.bind, args.port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and consume.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("mqtt")
    m.add_argument("--host", required=True)
    m.add_argument("--port", type=int, default=1883)
    m.add_argument("--site", required=True)
    m.add_argument("--prefix", default="vigie")
    m.add_argument("--username")
    m.add_argument("--password-env", help="the environment variable holding the password (never on the command line)")
    m.add_argument("--tls", action="store_true")
    m.add_argument("--client-id", default="csu-consumer")
    w = sub.add_parser("webhook")
    w.add_argument("--bind", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8080)
    w.add_argument("--secret-env", required=True, help="the environment variable holding the shared secret")
    args = parser.parse_args(argv)
    try:
        run_mqtt(args) if args.mode == "mqtt" else run_webhook(args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
