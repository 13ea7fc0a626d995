"""HTTP webhooks: one POST per outbox row, its JSON body signed with HMAC-SHA256.

Headers: `X-Vigie-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the endpoint's secret>`,
`X-Vigie-Alert-Id` (the key to deduplicate on, with `X-Vigie-Event`), `X-Vigie-Event` (alert | decision),
`X-Vigie-Delivery` (the outbox row's id, grows with each row). Any 2xx answer acknowledges the row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request

from runner.config.loading import expand_env, redact
from runner.config.outputs import WebhookOutput
from runner.outputs.base import DeliveryError
from runner.register.outbox import OutboxEntry

SIGNATURE_HEADER = "X-Vigie-Signature"


def signature(secret: bytes, body: bytes) -> str:
    """The X-Vigie-Signature value of a body: what a receiver recomputes (and compares in constant time).

    Args:
        secret: the shared secret.
        body: the exact bytes posted.

    Returns:
        "sha256=" and the hex HMAC-SHA256 of the body.
    """
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookDestination:
    """One HTTP endpoint of the site's `outputs.webhooks`."""

    def __init__(self, config: WebhookOutput, field: str):
        """An endpoint, its URL and secret expanded from the environment now (a missing variable is a ConfigError).

        Args:
            config: the endpoint's config.
            field: its config path, named by an error (`outputs.webhooks[0]`).
        """
        self.name = f"webhook:{config.name}"
        self.include_tests = config.include_tests
        self.max_backoff_s = config.max_backoff_s
        self.timeout_s = config.timeout_s
        self._url, basic_auth = _without_userinfo(expand_env(config.url, f"{field}.url"))
        self._secret = expand_env(config.secret, f"{field}.secret").encode("utf-8")
        self._headers = {name: expand_env(value, f"{field}.headers.{name}") for name, value in config.headers.items()}
        if basic_auth:
            self._headers.setdefault("Authorization", basic_auth)
        self.label = redact(config.url)  # what logs and errors show

    def __repr__(self) -> str:
        return f"WebhookDestination({self.name}, {self.label})"

    def deliver(self, entry: OutboxEntry) -> None:
        """POST the row's payload; return once the endpoint answered 2xx.

        Args:
            entry: the outbox row.

        Raises:
            DeliveryError: another status, a timeout or a network error (one line, URL redacted).
        """
        body = entry.payload.encode("utf-8")
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "vigie-outbox",
            SIGNATURE_HEADER: signature(self._secret, body),
            "X-Vigie-Alert-Id": str(entry.alert_id),
            "X-Vigie-Event": entry.event,
            "X-Vigie-Delivery": str(entry.id),
        }
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (http/https only)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {self.label} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.name}: {self.label}: {redact(str(reason))}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"{self.name}: {self.label} answered HTTP {status}")

    def close(self) -> None:
        """Nothing to release: each POST opens its own connection."""


def _without_userinfo(url: str) -> tuple[str, str | None]:
    """`https://user:pass@host/x` -> (`https://host/x`, its Basic Authorization header): urllib would take
    `user:pass@host` for a host name."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"
