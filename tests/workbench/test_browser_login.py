"""Named logins in a real browser (Debian's chromium via Playwright) against `python -m workbench.serve`:
Vigie's French login page, a decision recorded under the login, five wrong passwords locked and audited,
disabled users and other roles refused, and a session that ends.

Two operator servers of their own (not the session's token-only ones): one with a shift's session, one
whose sessions last a few seconds.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from runner.register import Register
from runner.register.users import MAX_FAILURES
from tests.workbench.conftest import ROOT, fill_console_register, serving

OPERATOR, DESIGNER, LEAVER = "agent.martin", "agent.durand", "agent.ancien"
PASSWORD = "un mot de passe assez long"
SHORT_SESSION_S = 6.0


@dataclass(frozen=True)
class LoginServer:
    base_url: str
    db_path: Path
    ids: dict[str, int]


def _start(root: Path, session_hours: float) -> Iterator[LoginServer]:
    db_path = root / "var" / "vigie.db"
    with Register(db_path) as register:
        ids = fill_console_register(register)
        register.users.add(OPERATOR, "operator", PASSWORD, by="test-admin")
        register.users.add(DESIGNER, "design", PASSWORD, by="test-admin")
        register.users.add(LEAVER, "operator", PASSWORD, by="test-admin")
    args = ["--role", "operator", "--session-hours", f"{session_hours}"]
    with serving(root, db_path, args, {"VIGIE_TOKEN": secrets.token_urlsafe(24)}) as (base_url, _):
        yield LoginServer(base_url, db_path, ids)


@pytest.fixture(scope="module")
def login_server(tmp_path_factory) -> Iterator[LoginServer]:
    yield from _start(tmp_path_factory.mktemp("login-server"), session_hours=12)


@pytest.fixture(scope="module")
def short_session_server(tmp_path_factory) -> Iterator[LoginServer]:
    yield from _start(tmp_path_factory.mktemp("short-sessions"), session_hours=SHORT_SESSION_S / 3600)


def log_in(page, server: LoginServer, login: str, password: str, then: str = "/") -> None:
    page.goto(f"{server.base_url}/login?next={then}")
    page.fill("#vigie-login", login)
    page.fill("#vigie-password", password)
    page.click(".vigie-login-submit")
    page.wait_for_load_state()


def audit_show(server: LoginServer) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "runner.cli", "audit", "show", "--db", str(server.db_path), "--limit", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_the_login_page_is_vigies_own_in_french_and_asks_nothing_of_another_host(page, login_server):
    hosts = []
    page.on("request", lambda request: hosts.append(urlparse(request.url).netloc or request.url[:5]))
    page.goto(f"{login_server.base_url}/voila/render/03_operator_console.ipynb")
    assert urlparse(page.url).path == "/login"  # no session, no token: the login page
    text = page.inner_text("body")
    assert "Connexion à Vigie" in text and "Identifiant" in text and "Mot de passe" in text and "opérateur" in text
    assert "Setup a Password" not in text and "jupyter server list" not in text and "token" not in text.lower()
    assert set(hosts) == {urlparse(login_server.base_url).netloc}  # only the server is asked for anything


@pytest.mark.slow
def test_an_operator_logs_in_and_decides_under_the_logins_identity(page, login_server):
    alert_id = login_server.ids["first"]
    log_in(page, login_server, OPERATOR.upper(), PASSWORD, then="/voila/render/03_operator_console.ipynb")
    page.wait_for_selector(".vigie-console")
    assert OPERATOR in page.inner_text(".vigie-operator-shown")
    assert not page.locator(".vigie-operator-input input").is_visible()  # no name to type
    assert not page.locator(".vigie-operator-change").is_visible()  # nor anyone else to become
    page.click(f".vigie-alert-row[data-alert-id='{alert_id}']")
    page.wait_for_selector("img.vigie-snapshot")
    page.select_option(".vigie-follow-up select", index=1)
    page.click(".vigie-confirm")
    with Register(login_server.db_path, create=False) as register:
        deadline = time.monotonic() + 20
        while register.alert(alert_id)["status"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.25)
        assert (register.alert(alert_id)["decision"], register.alert(alert_id)["operator"]) == ("confirmed", OPERATOR)
        decision = [r for r in register.audit_rows(event="decision") if r["actor"] == OPERATOR]
        assert len(decision) == 1 and '"role":"operator"' in decision[0]["details"]
    assert re.search(rf"\blogin\s+{re.escape(OPERATOR)}\b", audit_show(login_server))


@pytest.mark.slow
def test_five_wrong_passwords_lock_the_login_and_are_audited(page, login_server):
    for attempt in range(MAX_FAILURES):
        log_in(page, login_server, OPERATOR, f"mauvais mot de passe {attempt}")
    assert "Trop d'essais" in page.inner_text(".vigie-login-message")
    log_in(page, login_server, OPERATOR, PASSWORD)  # the right password, during the lock
    assert urlparse(page.url).path == "/login" and "Trop d'essais" in page.inner_text(".vigie-login-message")
    shown = audit_show(login_server)
    failures = re.findall(rf"\blogin_failed\s+{re.escape(OPERATOR)}\b.*", shown)
    assert sum('"reason":"wrong_password"' in line for line in failures) == MAX_FAILURES
    assert sum('"reason":"locked"' in line for line in failures) == 1
    assert re.search(rf"\blogin_locked\s+{re.escape(OPERATOR)}\b", shown)


@pytest.mark.slow
def test_a_disabled_user_and_another_roles_user_cannot_log_in(page, login_server):
    disabled = subprocess.run(
        [sys.executable, "-m", "runner.cli", "users", "disable", LEAVER, "--db", str(login_server.db_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VIGIE_USER": "chef-de-poste"},
    )
    assert disabled.returncode == 0, disabled.stderr
    log_in(page, login_server, LEAVER, PASSWORD)
    assert "désactivé" in page.inner_text(".vigie-login-message")
    log_in(page, login_server, DESIGNER, PASSWORD)  # a designer on the operators' server
    assert "rôle de ce poste" in page.inner_text(".vigie-login-message")
    shown = audit_show(login_server)
    assert re.search(rf"\buser_disabled\s+chef-de-poste\b.*{re.escape(LEAVER)}", shown)
    assert re.search(rf"\blogin_failed\s+{re.escape(LEAVER)}\b.*disabled", shown)


@pytest.mark.slow
def test_an_ended_session_asks_for_the_login_again(page, short_session_server):
    log_in(page, short_session_server, OPERATOR, PASSWORD)
    assert urlparse(page.url).path == "/"  # the list of apps
    time.sleep(SHORT_SESSION_S + 1)
    page.goto(f"{short_session_server.base_url}/voila/render/03_operator_console.ipynb")
    assert urlparse(page.url).path == "/login"
    assert page.locator("#vigie-password").is_visible()
