"""Where alerts are pushed once stored: the site file's `outputs:` block (an MQTT broker, HTTP webhooks).

Secrets never sit in the site file (it is hashed, exported, kept in revisions and shown in the workbench): a
password, an HMAC secret or a secret header is an `${ENV}` placeholder, expanded by the node that connects.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from runner.config.base import ConfigProblems, Frozen, NoControlCharacters, Slug

_ENV_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
# Header names whose value is a credential: such a value must come from the environment too.
_SECRET_HEADER = re.compile(r"(?i)auth|token|key|secret|pass|cookie|session|signature")
_TOPIC_WORD = r"^[A-Za-z0-9_-]{1,64}$"  # one MQTT topic level: no '/', no wildcard '+' or '#'


def _env_placeholder(value: str) -> str:
    if not _ENV_ONLY.match(value):
        raise ValueError("must be an ${ENV} placeholder such as ${VIGIE_MQTT_PASSWORD}: no secret in the site file")
    return value


EnvSecret = Annotated[str, AfterValidator(_env_placeholder)]
"""A secret named by its environment variable (`${NAME}`), never its value."""
HostName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_\[\]-]+$")]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
HeaderValue = Annotated[str, StringConstraints(max_length=2000), NoControlCharacters]


class MqttOutput(Frozen):
    host: HostName = Field(description="MQTT broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (1883; 8883 with TLS).")
    username: Annotated[str, StringConstraints(max_length=200), NoControlCharacters] | None = Field(
        None, description="Broker user name; none: anonymous."
    )
    password: EnvSecret | None = Field(
        None, description="Broker password as an ${ENV} placeholder (e.g. ${VIGIE_MQTT_PASSWORD}), never the value."
    )
    tls: bool = Field(False, description="Connect with TLS, the broker's certificate checked against the system CAs.")
    topic_prefix: Annotated[str, StringConstraints(pattern=_TOPIC_WORD)] = Field(
        "vigie", description="First topic level: alerts go to <prefix>/<site>/<camera>/<kind>."
    )
    qos: Literal[1, 2] = Field(1, description="MQTT quality of service: 1 = at least once (the broker's PUBACK).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Seconds between keep-alive pings to the broker.")
    max_backoff_s: float = Field(
        10.0, ge=1.0, le=600.0, description="Longest wait (seconds) between two reconnection or delivery attempts."
    )
    include_tests: bool = Field(
        False,
        description="Also push test alerts (design phase, replays), marked is_test: only to commission the "
        "receiving side; by default test alerts reach nobody.",
    )


class WebhookOutput(Frozen):
    name: Slug = Field(description="Name of this endpoint (its delivery cursor in the register, its status line).")
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000), NoControlCharacters] = Field(
        description="Endpoint receiving one HTTP POST per alert and decision (http:// or https://; ${ENV} allowed)."
    )
    secret: EnvSecret = Field(
        description="HMAC-SHA256 key of the X-Vigie-Signature header, as an ${ENV} placeholder (e.g. ${HOOK_SECRET})."
    )
    timeout_s: float = Field(5.0, gt=0.0, le=120.0, description="Seconds to wait for the endpoint's answer.")
    max_backoff_s: float = Field(
        60.0, ge=1.0, le=3600.0, description="Longest wait (seconds) between two attempts on a failing endpoint."
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        {},
        max_length=16,
        description="Extra HTTP headers; a credential (Authorization, a token or key) must be an ${ENV} placeholder.",
    )
    include_tests: bool = Field(
        False,
        description="Also push test alerts (design phase, replays), marked is_test; by default they reach nobody.",
    )

    @model_validator(mode="after")
    def _secret_headers_from_env(self) -> WebhookOutput:
        problems = [
            (f"headers.{name}", "a credential header must be an ${ENV} placeholder: no secret in the site file")
            for name, value in self.headers.items()
            if _SECRET_HEADER.search(name) and not _ENV_ONLY.match(value)
        ]
        if problems:
            raise ConfigProblems(problems)
        return self


class Outputs(Frozen):
    mqtt: MqttOutput | None = Field(None, description="MQTT broker the alerts are published to; none: no MQTT.")
    webhooks: list[WebhookOutput] = Field(
        [], max_length=16, description="HTTP endpoints each alert and decision is posted to."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Outputs:
        seen: set[str] = set()
        problems = []
        for i, hook in enumerate(self.webhooks):
            if hook.name in seen:
                problems.append((f"webhooks[{i}].name", f"duplicate webhook name '{hook.name}'"))
            seen.add(hook.name)
        if problems:
            raise ConfigProblems(problems)
        return self

    @property
    def configured(self) -> bool:
        """Whether any output is configured.

        Returns:
            True when there is an MQTT broker or at least one webhook.
        """
        return self.mqtt is not None or bool(self.webhooks)
