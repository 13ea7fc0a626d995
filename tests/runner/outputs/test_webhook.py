"""Webhooks against a real HTTP receiver on loopback: signed bodies, every alert id, in order; an endpoint failing
for a while loses nothing; a wrong secret is refused by the receiver (the check can fail)."""

from __future__ import annotations

import base64
import time

import pytest

from runner.config.outputs import WebhookOutput
from runner.core.access import Principal
from runner.core.errors import ConfigError
from runner.outputs.dispatcher import Dispatcher
from runner.outputs.webhook import WebhookDestination, signature
from runner.register import Register
from runner.register.outbox import Outbox
from tests.helpers import alert_record, tiny_jpeg
from tests.runner.outputs.receivers import WebhookReceiver
from tests.servers.mosquitto import free_port

SECRET = "a-long-shared-secret-for-the-csu"
OPERATOR = Principal("op.durand", "operator")
DPO = Principal("dpo.martin", "dpo")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def register(request, tmp_path):
    """A register on SQLite, and on a fresh PostgreSQL database (a real server, hence `cluster`)."""
    target = request.getfixturevalue("postgres_url") if request.param == "postgresql" else tmp_path / "vigie.db"
    with Register(target, tmp_path / "media") as reg:
        yield reg


def hook(monkeypatch, url: str, secret: str = SECRET, **fields) -> WebhookDestination:
    monkeypatch.setenv("VIGIE_TEST_HOOK_SECRET", secret)
    config = WebhookOutput(name="csu", url=url, secret="${VIGIE_TEST_HOOK_SECRET}", max_backoff_s=1.0, **fields)
    return WebhookDestination(config, "outputs.webhooks[0]")


def wait_until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_signature_is_the_hmac_sha256_of_the_body():
    assert signature(b"key", b"The quick brown fox jumps over the lazy dog") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_each_alert_and_decision_is_posted_signed_in_order(register, monkeypatch):
    with WebhookReceiver(SECRET) as receiver:
        dispatcher = Dispatcher(register, [hook(monkeypatch, receiver.url)]).start()
        try:
            stored = [
                register.add_alert(alert_record(is_test=False, camera_id=f"cam-0{i % 2 + 1}"), tiny_jpeg())
                for i in range(6)
            ]
            register.decide(stored[0].id, "confirmed", by=OPERATOR, follow_up="intervention")
            wait_until(lambda: len(receiver.messages()) == 7)
        finally:
            dispatcher.stop()
    messages = receiver.messages()
    assert [(m["event"], m["id"]) for m in messages] == [("alert", s.id) for s in stored] + [("decision", stored[0].id)]
    assert receiver.alert_ids == [str(m["id"]) for m in messages] and receiver.rejected_signatures == 0
    assert messages[0]["snapshot"] == stored[0].snapshot and len(messages[0]["snapshot_sha256"]) == 64
    assert messages[-1]["follow_up"] == "intervention"
    (owed,) = Outbox(register.database).backlog()
    assert (owed["destination"], owed["pending"], owed["attempts"]) == ("webhook:csu", 0, 0)


def test_an_endpoint_failing_for_a_while_gets_everything_in_order_when_it_returns(register, monkeypatch):
    with WebhookReceiver(SECRET) as receiver:
        receiver.failing = True
        dispatcher = Dispatcher(register, [hook(monkeypatch, receiver.url)]).start()
        try:
            ids = [register.add_alert(alert_record(is_test=False)).id for _ in range(5)]
            wait_until(lambda: receiver.failed_posts >= 3)
            ids += [register.add_alert(alert_record(is_test=False)).id for _ in range(5)]
            (owed,) = Outbox(register.database).backlog()
            assert owed["pending"] == 10 and owed["attempts"] >= 3 and "HTTP 500" in owed["last_error"]
            receiver.failing = False
            wait_until(lambda: len(receiver.messages()) >= 10)
        finally:
            dispatcher.stop()
    assert [m["id"] for m in receiver.messages()] == ids  # each once, in order, none missing
    (owed,) = Outbox(register.database).backlog()
    assert (owed["pending"], owed["attempts"], owed["last_error"]) == (0, 0, None)


def test_a_receiver_refuses_a_body_signed_with_another_secret(register, monkeypatch):
    with WebhookReceiver(SECRET) as receiver:
        dispatcher = Dispatcher(register, [hook(monkeypatch, receiver.url, secret="not-the-shared-secret")]).start()
        try:
            register.add_alert(alert_record(is_test=False))
            wait_until(lambda: receiver.rejected_signatures >= 1)
        finally:
            dispatcher.stop()
    assert receiver.messages() == []
    (owed,) = Outbox(register.database).backlog()
    assert owed["pending"] == 1 and "HTTP 401" in owed["last_error"]


def test_test_alerts_and_restricted_alerts_are_not_pushed_unless_asked(register, monkeypatch):
    with WebhookReceiver(SECRET) as receiver:
        # Stored before the dispatcher starts, restricted before it delivers: skipped.
        Outbox(register.database).open_destination("webhook:csu", include_tests=False)
        hidden = register.add_alert(alert_record(is_test=False))
        register.decide(hidden.id, "confirmed", by=OPERATOR)
        register.restrict_alerts("DPO-2025-007", [hidden.id], by=DPO)
        test_alert = register.add_alert(alert_record(is_test=True))
        real = register.add_alert(alert_record(is_test=False))
        dispatcher = Dispatcher(register, [hook(monkeypatch, receiver.url)]).start()
        try:
            wait_until(lambda: len(receiver.messages()) == 1)
            time.sleep(0.5)
        finally:
            dispatcher.stop()
        assert [m["id"] for m in receiver.messages()] == [real.id]

        Outbox(register.database).open_destination("webhook:commissioning", include_tests=True)
        register.add_alert(alert_record(is_test=True))
        monkeypatch.setenv("VIGIE_TEST_HOOK_SECRET", SECRET)
        config = WebhookOutput(
            name="commissioning", url=receiver.url, secret="${VIGIE_TEST_HOOK_SECRET}", include_tests=True
        )
        dispatcher = Dispatcher(register, [WebhookDestination(config, "outputs.webhooks[1]")]).start()
        try:
            wait_until(lambda: len(receiver.messages()) == 2)
        finally:
            dispatcher.stop()
    assert receiver.messages()[-1]["is_test"] is True and receiver.messages()[-1]["id"] > test_alert.id


def test_a_missing_secret_variable_is_a_one_line_config_error(monkeypatch):
    monkeypatch.delenv("VIGIE_TEST_HOOK_SECRET", raising=False)
    config = WebhookOutput(name="csu", url="https://csu.example/hook", secret="${VIGIE_TEST_HOOK_SECRET}")
    with pytest.raises(ConfigError, match="VIGIE_TEST_HOOK_SECRET is not set"):
        WebhookDestination(config, "outputs.webhooks[0]")


def test_credentials_in_the_url_become_basic_auth_and_never_show(register, monkeypatch):
    with WebhookReceiver(SECRET) as receiver:
        url = receiver.url.replace("http://", "http://csu:p%40ss-99@")
        dispatcher = Dispatcher(register, [hook(monkeypatch, url)]).start()
        try:
            register.add_alert(alert_record(is_test=False))
            wait_until(lambda: len(receiver.messages()) == 1)
        finally:
            dispatcher.stop()
    assert receiver.authorizations == ["Basic " + base64.b64encode(b"csu:p@ss-99").decode()]

    dead = hook(monkeypatch, f"http://csu:p%40ss-99@127.0.0.1:{free_port()}/x?token=t0ken-77")
    dispatcher = Dispatcher(register, [dead]).start()
    try:
        register.add_alert(alert_record(is_test=False))
        wait_until(lambda: Outbox(register.database).backlog()[-1]["attempts"] >= 1)
    finally:
        dispatcher.stop()
    error = Outbox(register.database).backlog()[-1]["last_error"]
    assert "csu:***@127.0.0.1" in error and "p%40ss-99" not in error and "t0ken-77" not in error


def test_the_dispatching_duty_moves_between_nodes_without_resending(register, monkeypatch):
    holder = {"node": "a"}
    with WebhookReceiver(SECRET) as receiver:
        node_a = Dispatcher(register, [hook(monkeypatch, receiver.url)], should_run=lambda: holder["node"] == "a")
        node_b = Dispatcher(register, [hook(monkeypatch, receiver.url)], should_run=lambda: holder["node"] == "b")
        node_a.start(), node_b.start()
        try:
            ids = [register.add_alert(alert_record(is_test=False)).id for _ in range(3)]
            wait_until(lambda: len(receiver.messages()) == 3)
            holder["node"] = "b"  # node a lost the duty (its lease expired), node b took it
            ids += [register.add_alert(alert_record(is_test=False)).id for _ in range(3)]
            wait_until(lambda: len(receiver.messages()) == 6)
            time.sleep(0.5)
        finally:
            node_a.stop(drain_s=5.0)  # without the duty: returns at once, nothing to drain
            node_b.stop()
    assert [m["id"] for m in receiver.messages()] == ids  # each once, in order
    assert node_a.delivered == {"webhook:csu": 3} and node_b.delivered == {"webhook:csu": 3}
