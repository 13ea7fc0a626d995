"""Who the workbench acts as: the server's principal (`serve.choose_principal`) and the analysis dashboard's
export principal, both built by `runner.core.access.principal_from_env` from the same variables as the CLI."""

from __future__ import annotations

import getpass

import pytest

from runner.core.access import PermissionDenied, Principal
from runner.core.errors import UsageError
from workbench.analysis_app import AnalysisDashboard
from workbench.serve import ServeError, choose_principal


def test_the_server_takes_its_role_and_user_from_the_arguments_then_the_environment():
    assert choose_principal(" Operator ", " alice ", {}) == Principal("alice", "operator")
    environ = {"VIGIE_ROLE": "analyst", "VIGIE_USER": "bob"}
    assert choose_principal(None, None, environ) == Principal("bob", "analyst")
    assert choose_principal("design", None, environ) == Principal("bob", "design")
    assert choose_principal(None, None, {"VIGIE_ROLE": "design"}) == Principal(getpass.getuser(), "design")


@pytest.mark.parametrize(
    ("role", "user", "environ", "message"),
    [
        (None, "alice", {"VIGIE_ROLE": "  "}, "choose the role this server is for: --role operator|analyst|design"),
        ("boss", "alice", {}, "role 'boss': must be one of operator, analyst, design, runner"),
        ("runner", "alice", {}, "--role runner: the service's role is not served to browsers"),
        # A bad user is named before a bad role (the order the server always checked them in).
        ("boss", "bad\nname", {}, "user identity: 1 to 200 printable characters"),
    ],
)
def test_the_server_refuses_a_missing_or_bad_role_or_user(role, user, environ, message):
    with pytest.raises(ServeError) as refused:
        choose_principal(role, user, environ)
    assert str(refused.value).startswith(message)


def test_the_dashboard_exports_as_the_server_user_in_the_server_role(monkeypatch):
    dashboard = AnalysisDashboard.__new__(AnalysisDashboard)  # the principal needs no register
    monkeypatch.setenv("VIGIE_ROLE", "analyst")
    monkeypatch.setenv("VIGIE_USER", " analyste-3 ")
    assert dashboard.principal() == Principal("analyste-3", "analyst")
    monkeypatch.setenv("VIGIE_USER", "")
    assert dashboard.principal() == Principal(getpass.getuser(), "analyst")
    monkeypatch.setenv("VIGIE_ROLE", "boss")
    with pytest.raises(UsageError, match="role 'boss'"):
        dashboard.principal()
    monkeypatch.delenv("VIGIE_ROLE")
    with pytest.raises(PermissionDenied, match="started without a role"):
        dashboard.principal()
