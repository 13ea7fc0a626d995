"""Named logins on the server's side (workbench/auth.py, serve.py) and in the kernel (access.login_from_env).

The browser's view (log in, decide, lock, expiry) is in test_browser_login.py.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import nbformat
import pytest

from runner.core.access import LOGIN_VARIABLE, SESSION_END_VARIABLE, PermissionDenied, Role, login_from_env
from runner.register import Register
from workbench import serve
from workbench.auth import VigieIdentityProvider, prelaunch_hook, refusal_message

PASSWORD = "un mot de passe assez long"


@pytest.fixture
def provider(tmp_path, monkeypatch) -> VigieIdentityProvider:
    """An operators' server's identity provider over a register holding one operator and one designer."""
    monkeypatch.setenv("VIGIE_DB", str(tmp_path / "vigie.db"))
    monkeypatch.setenv("VIGIE_ROLE", "operator")
    monkeypatch.delenv("VIGIE_LANG", raising=False)
    with Register(tmp_path / "vigie.db") as register:
        register.users.add("martin", "operator", PASSWORD, by="admin")
        register.users.add("durand", "design", PASSWORD, by="admin")
    return VigieIdentityProvider(session_hours=12)


def test_the_kernel_reads_the_login_and_refuses_it_once_the_session_ended():
    assert login_from_env({}) is None  # a page opened with the token
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert login_from_env({LOGIN_VARIABLE: "martin", SESSION_END_VARIABLE: later}) == "martin"
    ended = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with pytest.raises(PermissionDenied, match="session ended"):
        login_from_env({LOGIN_VARIABLE: "martin", SESSION_END_VARIABLE: ended})


def test_a_login_is_checked_for_the_servers_role(provider):
    assert provider.authenticate("martin", PASSWORD).login == "martin"
    refused = provider.authenticate("durand", PASSWORD)
    assert refused.refusal == "role" and "rôle de ce poste (opérateur)" in refusal_message(refused)
    wrong = provider.authenticate("personne", PASSWORD)
    assert refusal_message(wrong) == "Identifiant ou mot de passe incorrect."


def test_the_session_cookie_holds_the_login_until_the_shift_ends_or_the_user_is_disabled(provider, tmp_path):
    user = provider.user_for_login("martin")
    cookie = provider.user_to_cookie(user)
    assert json.loads(cookie)["login"] == "martin" and provider.user_from_cookie(cookie) == user
    opened_long_ago = json.dumps({**json.loads(cookie), "since_utc": "2020-01-01T08:00:00.000+00:00"})
    assert provider.user_from_cookie(opened_long_ago) is None
    with Register(tmp_path / "vigie.db") as register:
        register.users.disable("martin", by="admin")
    assert provider.user_from_cookie(cookie) is None
    token_user = provider.generate_anonymous_user(None)  # the token's page: no login, still a shift long
    assert provider.user_from_cookie(provider.user_to_cookie(token_user)) == token_user


def test_the_prelaunch_hook_tells_a_logged_in_pages_kernel_who_it_is(provider, monkeypatch):
    user = provider.user_for_login("martin")
    handler = SimpleNamespace(current_user=user, settings={"identity_provider": provider})
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("app()")])
    prelaunch_hook(handler, notebook, "notebooks")
    assert len(notebook.cells) == 2 and notebook.cells[1].source == "app()"
    for name in (LOGIN_VARIABLE, "VIGIE_USER", SESSION_END_VARIABLE):
        monkeypatch.setenv(name, "")  # so that the test's end restores them, whatever the cell sets
    exec(notebook.cells[0].source, {})  # what the kernel runs first
    assert (os.environ[LOGIN_VARIABLE], os.environ["VIGIE_USER"]) == ("martin", "martin")
    assert datetime.fromisoformat(os.environ[SESSION_END_VARIABLE]) == provider.session_end(user).replace(microsecond=0)
    token_page = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("app()")])
    prelaunch_hook(SimpleNamespace(current_user=provider.generate_anonymous_user(None)), token_page, "notebooks")
    assert len(token_page.cells) == 1


def test_serve_starts_voila_with_vigies_logins_and_the_session_length():
    command = serve.voila_command(serve.PROJECT_ROOT / "notebooks", "127.0.0.1", 8866, session_hours=8)
    assert command[1:3] == ["-m", "voila"]
    assert "--Voila.identity_provider_class=workbench.auth.VigieIdentityProvider" in command
    assert "--VigieIdentityProvider.session_hours=8" in command
    assert serve.choose_session_hours(None, {}) == serve.DEFAULT_SESSION_HOURS == 12
    assert serve.choose_session_hours(None, {"VIGIE_SESSION_HOURS": "7,5"}) == 7.5
    with pytest.raises(serve.ServeError, match="at most 168"):
        serve.choose_session_hours(0, {})
    env = serve.server_environment({LOGIN_VARIABLE: "intrus", SESSION_END_VARIABLE: "2099-01-01"}, "t" * 20)
    assert LOGIN_VARIABLE not in env and SESSION_END_VARIABLE not in env  # only a login's page gets them


def test_the_provider_installs_the_prelaunch_hook_in_voilas_configuration_and_refuses_preheated_kernels():
    from voila.app import Voila
    from voila.configuration import VoilaConfiguration

    app = Voila()
    app.voila_configuration = VoilaConfiguration(parent=app)
    VigieIdentityProvider(parent=app)
    assert app.voila_configuration.prelaunch_hook is prelaunch_hook
    app.voila_configuration = VoilaConfiguration(parent=app, preheat_kernel=True)
    with pytest.raises(ValueError, match="preheat_kernel"):
        VigieIdentityProvider(parent=app)


def test_a_logged_in_page_acts_as_its_login_whatever_name_is_typed(register, workbench_env, monkeypatch):
    from workbench.console_app import ConsoleModel, OperatorConsole
    from workbench.setup_app import export_principal

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    monkeypatch.setenv(LOGIN_VARIABLE, "martin")
    monkeypatch.setenv(SESSION_END_VARIABLE, later)
    console = OperatorConsole(ConsoleModel(register.db_path, role="operator"))
    assert "martin" in console.operator_shown.value
    assert console.operator_bar.children == (console.operator_shown,)  # no field, no "change operator"
    console.model.set_operator("quelqu'un d'autre")
    assert console.model.principal().user == "martin"
    assert export_principal("quelqu'un d'autre", Role.DESIGN).user == "martin"
    monkeypatch.setenv(SESSION_END_VARIABLE, (datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    with pytest.raises(PermissionDenied, match="log in again"):
        console.model.principal()
