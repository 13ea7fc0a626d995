"""The site file's `outputs:` block: secrets only as ${ENV} placeholders, one-line errors naming the field."""

from __future__ import annotations

import pytest
import yaml

from runner.config.loading import dump_config, parse_config
from runner.core.errors import ConfigError
from tests.helpers import config_dict


def parse_with(outputs: dict):
    data = config_dict()
    data["outputs"] = outputs
    return parse_config(yaml.safe_dump(data), "site.yaml")


def problems(outputs: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_with(outputs)
    return caught.value.problems


def test_a_complete_outputs_block_round_trips():
    config = parse_with(
        {
            "mqtt": {
                "host": "broker.csu.local",
                "port": 8883,
                "tls": True,
                "username": "vigie",
                "password": "${VIGIE_MQTT_PASSWORD}",
            },
            "webhooks": [
                {
                    "name": "vms",
                    "url": "https://vms.csu.local/events",
                    "secret": "${VMS_HOOK_SECRET}",
                    "headers": {"Authorization": "${VMS_AUTHORIZATION}", "X-Site": "cannes"},
                },
            ],
        }
    )
    assert config.outputs.configured and config.outputs.mqtt.qos == 1 and config.outputs.mqtt.topic_prefix == "vigie"
    assert config.outputs.webhooks[0].timeout_s == 5.0
    assert parse_config(dump_config(config), "again.yaml") == config
    assert not parse_config(yaml.safe_dump(config_dict()), "site.yaml").outputs.configured


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"mqtt": {"host": "b", "username": "u", "password": "hunter2"}}, "outputs.mqtt.password: must be an ${ENV}"),
        ({"webhooks": [{"name": "a", "url": "https://h/x", "secret": "plain"}]}, "outputs.webhooks[0].secret: must"),
        (
            {
                "webhooks": [
                    {"name": "a", "url": "https://h/x", "secret": "${S}", "headers": {"Authorization": "Bearer x"}}
                ]
            },
            "outputs.webhooks[0].headers.Authorization: a credential header must be an ${ENV} placeholder",
        ),
        (
            {"webhooks": [{"name": "a", "url": "https://h/x", "secret": "${S}"}] * 2},
            "outputs.webhooks[1].name: duplicate webhook name 'a'",
        ),
        ({"webhooks": [{"name": "a", "url": "ftp://h/x", "secret": "${S}"}]}, "outputs.webhooks[0].url"),
        ({"mqtt": {"host": "b", "topic_prefix": "vigie/#"}}, "outputs.mqtt.topic_prefix"),
        ({"mqtt": {"host": "b", "qos": 0}}, "outputs.mqtt.qos"),
        ({"mqtt": {"host": "b", "pasword": "${P}"}}, "outputs.mqtt.pasword"),
    ],
)
def test_bad_outputs_are_refused_in_one_line_naming_the_field(outputs, expected):
    found = problems(outputs)
    assert len(found) == 1 and "\n" not in found[0]
    assert found[0].startswith(expected) or expected in found[0], found
    assert "hunter2" not in found[0]
