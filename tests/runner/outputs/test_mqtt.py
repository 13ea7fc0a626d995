"""MQTT against a real Mosquitto broker started by the test, and a real paho subscriber: topics and payloads,
the node's retained status and last will, a broker stopped for a while under load (nothing lost, in order per
camera), a password-protected broker, and one replay of a clip through the runner with outputs on."""

from __future__ import annotations

import time

import pytest
import yaml

from runner.config.loading import parse_config
from runner.config.outputs import MqttOutput
from runner.core.access import Principal
from runner.outputs.dispatcher import Dispatcher, start_dispatcher
from runner.outputs.mqtt import MqttDestination
from runner.register import Register
from runner.register.outbox import Outbox
from tests.helpers import ScriptedDetector, alert_record, config_dict, tiny_jpeg
from tests.runner.outputs.receivers import MqttSubscriber
from tests.runner.service.helpers import INTRUSION, Site, person_from
from tests.servers.mosquitto import TempMosquitto

pytestmark = pytest.mark.cluster
OPERATOR = Principal("op.durand", "operator")
CAMERAS = ("cam-01", "cam-02", "cam-03")


@pytest.fixture
def register(tmp_path):
    with Register(tmp_path / "vigie.db") as reg:
        yield reg


def mqtt(port: int, **fields) -> MqttDestination:
    return MqttDestination(MqttOutput(host="127.0.0.1", port=port, max_backoff_s=2.0, **fields), "test-site", "node-a")


def wait_until(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_alerts_and_decisions_reach_a_subscriber_with_the_node_status(register):
    with TempMosquitto() as broker:
        subscriber = MqttSubscriber(broker.port)
        destination = mqtt(broker.port)
        assert destination.wait_connected(10)
        dispatcher = Dispatcher(register, [destination]).start()
        try:
            first = register.add_alert(alert_record(is_test=False, camera_id="cam-02"), tiny_jpeg())
            register.add_alert(alert_record(is_test=False, kind="person_down", camera_id="cam-01"))
            register.decide(first.id, "confirmed", by=OPERATOR, follow_up="intervention")
            register.add_alert(alert_record(is_test=True))  # a test alert reaches nobody by default
            wait_until(lambda: len(subscriber.alerts()) >= 3)
            time.sleep(0.5)
        finally:
            dispatcher.stop()
        wait_until(lambda: subscriber.statuses() and subscriber.statuses()[-1][1]["state"] == "offline")
        subscriber.close()
    (topic1, alert), (topic2, _), (topic3, decision) = subscriber.alerts()
    assert (topic1, topic2, topic3) == (
        "vigie/test-site/cam-02/zone_intrusion",
        "vigie/test-site/cam-01/person_down",
        "vigie/test-site/cam-02/zone_intrusion/decision",
    )
    assert alert["id"] == first.id and alert["event"] == "alert" and alert["snapshot"] == first.snapshot
    assert len(alert["snapshot_sha256"]) == 64 and "source" not in alert
    assert (decision["event"], decision["id"], decision["decision"]) == ("decision", first.id, "confirmed")
    states = [(t, p["state"], p["node"]) for t, p, _ in subscriber.statuses()]
    assert states[0] == ("vigie/test-site/status/node-a", "online", "node-a") and states[-1][1] == "offline"


def test_the_last_will_says_offline_when_a_node_vanishes():
    with TempMosquitto() as broker:
        destination = mqtt(broker.port, keepalive_s=5)
        assert destination.wait_connected(10)
        destination.client.loop_stop()  # the node hangs: no more pings, no clean disconnect
        destination.client.socket().close()
        subscriber = MqttSubscriber(broker.port)
        wait_until(lambda: subscriber.statuses() and subscriber.statuses()[-1][1]["state"] == "offline", 20)
        subscriber.close()


@pytest.mark.parametrize("outage_s", [10, pytest.param(60, marks=pytest.mark.slow)])
def test_a_broker_down_under_load_loses_nothing_and_keeps_each_cameras_order(register, outage_s):
    with TempMosquitto() as broker:
        subscriber = MqttSubscriber(broker.port)
        destination = mqtt(broker.port)
        assert destination.wait_connected(10)
        dispatcher = Dispatcher(register, [destination]).start()
        stored: list[tuple[str, int]] = []
        try:
            for i in range(6):
                camera = CAMERAS[i % 3]
                stored.append((camera, register.add_alert(alert_record(is_test=False, camera_id=camera)).id))
            wait_until(lambda: len(subscriber.alerts()) == 6)
            broker.stop()
            deadline = time.monotonic() + outage_s
            i = 0
            while time.monotonic() < deadline:  # alerts keep coming while the broker is down
                camera = CAMERAS[i % 3]
                stored.append((camera, register.add_alert(alert_record(is_test=False, camera_id=camera)).id))
                i += 1
                time.sleep(0.25)
            (owed,) = Outbox(register.database).backlog()
            assert owed["pending"] >= len(stored) - 6 - 1 and owed["attempts"] >= 1
            broker.start()
            wait_until(lambda: {a["id"] for _, a in subscriber.alerts()} >= {alert_id for _, alert_id in stored}, 60)
        finally:
            dispatcher.stop()
            subscriber.close()
    received = [(topic.split("/")[2], message["id"]) for topic, message in subscriber.alerts()]
    assert {alert_id for _, alert_id in received} == {alert_id for _, alert_id in stored}  # none missing
    for camera in CAMERAS:
        ids = [alert_id for cam, alert_id in received if cam == camera]
        first_seen = list(dict.fromkeys(ids))  # at least once: a repeat is allowed, never out of order
        assert first_seen == sorted(first_seen) == [a for c, a in stored if c == camera]
    assert Outbox(register.database).backlog()[0]["pending"] == 0


def test_a_password_protected_broker(register, monkeypatch):
    with TempMosquitto(users={"vigie": "broker-pass-42"}) as broker:
        subscriber = MqttSubscriber(broker.port, username="vigie", password="broker-pass-42")
        monkeypatch.setenv("VIGIE_TEST_MQTT_PASSWORD", "wrong-pass")
        refused = mqtt(broker.port, username="vigie", password="${VIGIE_TEST_MQTT_PASSWORD}")
        assert not refused.wait_connected(2)
        refused.close()
        monkeypatch.setenv("VIGIE_TEST_MQTT_PASSWORD", "broker-pass-42")
        destination = mqtt(broker.port, username="vigie", password="${VIGIE_TEST_MQTT_PASSWORD}")
        assert destination.wait_connected(10)
        dispatcher = Dispatcher(register, [destination]).start()
        try:
            stored = register.add_alert(alert_record(is_test=False))
            wait_until(lambda: len(subscriber.alerts()) == 1)
        finally:
            dispatcher.stop()
            subscriber.close()
    assert subscriber.alerts()[0][1]["id"] == stored.id
    assert "broker-pass-42" not in repr(destination) and "broker-pass-42" not in str(subscriber.alerts())


def test_a_node_url_names_the_broker_and_its_password(register, monkeypatch):
    with TempMosquitto(users={"node-7": "n0de-pass"}) as broker:
        subscriber = MqttSubscriber(broker.port, username="node-7", password="n0de-pass")
        monkeypatch.setenv("VIGIE_MQTT_URL", f"mqtt://node-7:n0de-pass@127.0.0.1:{broker.port}")
        config = parse_config(yaml.safe_dump(config_dict()), "site.yaml")  # no outputs in the site file
        dispatcher = start_dispatcher(register, config, node="node-7")
        assert dispatcher is not None
        try:
            stored = register.add_alert(alert_record(is_test=False))
            wait_until(lambda: len(subscriber.alerts()) == 1)
        finally:
            dispatcher.stop()
            subscriber.close()
    assert subscriber.alerts()[0][1]["id"] == stored.id
    assert subscriber.statuses()[0][0] == "vigie/test-site/status/node-7"


def test_a_replay_with_outputs_on_pushes_its_test_alert(tmp_path):
    with TempMosquitto() as broker:
        subscriber = MqttSubscriber(broker.port)
        data = config_dict([INTRUSION])
        data["outputs"] = {"mqtt": {"host": "127.0.0.1", "port": broker.port, "include_tests": True}}
        site = Site(tmp_path, data)
        try:
            summary = site.runner(ScriptedDetector(person_from(3)), mode="replay").run()
            wait_until(lambda: len(subscriber.alerts()) == 1, 10)
        finally:
            subscriber.close()
            site.register.close()
    assert len(summary.alerts) == 1
    ((topic, message),) = subscriber.alerts()
    assert topic == "vigie/test-site/cam-01/zone_intrusion" and message["is_test"] is True
    assert message["rule_id"] == "lawn-intrusion" and message["uid"] == summary.alerts[0].record.uid
