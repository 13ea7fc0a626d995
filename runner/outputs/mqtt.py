"""MQTT: each outbox row published to `<prefix>/<site>/<camera>/<kind>` (a decision to `.../<kind>/decision`), QoS 1,
acknowledged by the broker's PUBACK before the cursor moves; and one retained status per node,
`<prefix>/<site>/status/<node>`: {"state": "online", ...} while connected, {"state": "offline", ...} when it stops
or, as its last will, when the broker loses it. (A topic holds one retained message, hence one per node.)

paho-mqtt's network thread connects in the background and reconnects with a capped backoff; a row is only
published while connected, so a broker down for minutes leaves the rows in the outbox, not in a client queue.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from runner.config.loading import expand_env, redact
from runner.config.outputs import MqttOutput
from runner.core.errors import ConfigError
from runner.outputs.base import DeliveryError
from runner.register import clock
from runner.register.outbox import OutboxEntry

log = logging.getLogger(__name__)
PUBACK_TIMEOUT_S = 10.0
_NOT_TOPIC_WORD = re.compile(r"[^A-Za-z0-9_-]")


def topic_word(text: str) -> str:
    """A name made safe as one topic level (no '/', no wildcard '+' or '#', nothing a subscriber must escape).

    Args:
        text: a node or host name.

    Returns:
        The text with every other character replaced by '_'.
    """
    return _NOT_TOPIC_WORD.sub("_", text)[:64] or "_"


def alert_topic(prefix: str, entry: OutboxEntry) -> str:
    """The topic of an outbox row.

    Args:
        prefix: the config's topic_prefix.
        entry: the row.

    Returns:
        `<prefix>/<site>/<camera>/<kind>`, with `/decision` after it for a decision.
    """
    topic = f"{prefix}/{entry.site}/{entry.camera_id}/{entry.kind}"
    return topic + "/decision" if entry.event == "decision" else topic


NODE_BROKER_ENV = "VIGIE_MQTT_URL"


def node_broker(site_broker: MqttOutput | None, url: str | None) -> tuple[MqttOutput | None, str | None]:
    """The broker this node publishes to: the site file's, or the node's own `VIGIE_MQTT_URL`
    (`mqtt://[user[:password]@]host[:port]`, `mqtts://` for TLS) in its place, the site's other settings kept.

    Args:
        site_broker: the site file's `outputs.mqtt`, or None.
        url: the node's VIGIE_MQTT_URL, or None / empty when unset.

    Returns:
        (the broker's settings or None when there is none, the password from the URL or None).

    Raises:
        ConfigError: a URL that is not mqtt:// or mqtts:// with a host (one line, credentials redacted).
    """
    if not url:
        return site_broker, None
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == -1:
        raise ConfigError(
            NODE_BROKER_ENV, [f"expected mqtt://[user[:password]@]host[:port] or mqtts://..., not {redact(url)}"]
        )
    tls = parts.scheme == "mqtts"
    fields = site_broker.model_dump() if site_broker is not None else {}
    fields.update(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=None,
    )
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return MqttOutput(**fields), password


class MqttDestination:
    """The site's MQTT broker: a paho client connected in the background, its node's retained status."""

    def __init__(self, config: MqttOutput, site: str, node: str, password: str | None = None):
        """Start connecting (in the background: a broker down now is retried, not an error).

        Args:
            config: the site's `outputs.mqtt` (or the node's, see `node_broker`).
            site: the site id (second topic level).
            node: this node's name (its status topic).
            password: the password itself, from the node's VIGIE_MQTT_URL (default: the config's ${ENV}).
        """
        self.name = "mqtt"
        self.include_tests = config.include_tests
        self.max_backoff_s = config.max_backoff_s
        self.config = config
        self.label = f"{config.host}:{config.port}"
        self.node = topic_word(node)
        self.status_topic = f"{config.topic_prefix}/{site}/status/{self.node}"
        self._connected = threading.Event()
        self._closing = False
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"vigie-{site}-{self.node}-{uuid.uuid4().hex[:6]}"[:64]
        )
        if config.username is not None:
            if password is None and config.password:
                password = expand_env(config.password, "outputs.mqtt.password")
            self.client.username_pw_set(config.username, password)
        if config.tls:
            self.client.tls_set()
        self.client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(config.max_backoff_s)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        self.client.loop_start()

    def __repr__(self) -> str:
        return f"MqttDestination({self.label}, node {self.node})"

    def _status(self, state: str) -> str:
        return json.dumps({"state": state, "node": self.node, "since_utc": clock.iso(clock.utc_now())})

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt %s: connection refused (%s)", self.label, reason)
            return
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        self._connected.set()
        log.info("mqtt %s: connected", self.label)

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("mqtt %s: disconnected (%s); reconnecting", self.label, reason)
        self._connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait for the broker.

        Args:
            timeout_s: how long to wait, seconds.

        Returns:
            Whether the client is connected.
        """
        return self._connected.wait(timeout_s)

    def deliver(self, entry: OutboxEntry) -> None:
        """Publish a row and wait for the broker's acknowledgement (PUBACK for QoS 1).

        Args:
            entry: the outbox row.

        Raises:
            DeliveryError: not connected, or no acknowledgement within PUBACK_TIMEOUT_S.
        """
        if not self._connected.is_set():
            raise DeliveryError(f"mqtt {self.label}: not connected")
        info = self.client.publish(alert_topic(self.config.topic_prefix, entry), entry.payload, qos=self.config.qos)
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"mqtt {self.label}: {redact(str(exc))}") from None
        if not info.is_published():
            raise DeliveryError(f"mqtt {self.label}: no acknowledgement within {PUBACK_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        """Say "offline" (retained), disconnect cleanly (the last will is then not sent) and stop the thread."""
        self._closing = True
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass  # the broker went away: its last will says offline instead
        self.client.disconnect()
        self.client.loop_stop()
