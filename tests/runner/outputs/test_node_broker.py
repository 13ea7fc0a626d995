"""A node's own broker (VIGIE_MQTT_URL) in place of the site file's: parsed, its password kept out of the config
and of every message."""

from __future__ import annotations

import pytest

from runner.config.outputs import MqttOutput
from runner.core.errors import ConfigError
from runner.outputs.mqtt import node_broker

SITE_BROKER = MqttOutput(host="broker.site", topic_prefix="cannes", include_tests=True, password="${P}", username="a")


def test_without_the_variable_the_site_broker_stands():
    assert node_broker(SITE_BROKER, None) == (SITE_BROKER, None)
    assert node_broker(None, "") == (None, None)


def test_the_node_url_replaces_the_connection_and_keeps_the_site_settings():
    broker, password = node_broker(SITE_BROKER, "mqtts://node%2D7:p%40ss@10.1.2.3")
    assert (broker.host, broker.port, broker.tls, broker.username, broker.password) == (
        "10.1.2.3",
        8883,
        True,
        "node-7",
        None,
    )
    assert password == "p@ss" and broker.topic_prefix == "cannes" and broker.include_tests is True
    broker, password = node_broker(None, "mqtt://127.0.0.1:1884")
    assert (broker.host, broker.port, broker.tls, broker.username, password) == ("127.0.0.1", 1884, False, None, None)


@pytest.mark.parametrize("url", ["http://u:hunter2@host", "mqtt://u:hunter2@", "mqtt://u:hunter2@host:99999"])
def test_a_bad_url_is_one_line_without_its_password(url):
    with pytest.raises(ConfigError) as caught:
        node_broker(None, url)
    assert "VIGIE_MQTT_URL" in str(caught.value) and "hunter2" not in str(caught.value)
