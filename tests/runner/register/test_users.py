"""Named logins (runner/register/users.py): argon2 hashes, roles, disabling, failed logins and their lock."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from runner.core.errors import UsageError
from runner.register import Register
from runner.register import clock as register_clock
from runner.register.users import LOCK_MINUTES, MAX_FAILURES

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL

PASSWORD = "correct horse battery"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def now(monkeypatch):
    """The register's clock, frozen at START; move it with `now.append(moment)`."""
    moments = [START]
    monkeypatch.setattr(register_clock, "utc_now", lambda: moments[-1])
    return moments


def events(register: Register) -> list[tuple[str, str, dict]]:
    return [(r["event"], r["actor"], json.loads(r["details"])) for r in register.audit_rows()]


def test_a_user_is_stored_with_an_argon2_hash_and_the_change_is_audited(register, raw):
    row = register.users.add("  Agent.Dupont ", "operator", PASSWORD, by="admin")
    assert (row["login"], row["role"], row["disabled"], row["created_by"]) == ("agent.dupont", "operator", 0, "admin")
    assert "password_hash" not in row
    stored = raw(register).execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert events(register)[-1] == ("user_added", "admin", {"login": "agent.dupont", "role": "operator"})
    assert register.verify().ok
    assert [u["login"] for u in register.users.list()] == ["agent.dupont"]


@pytest.mark.parametrize(
    ("login", "role", "password", "message"),
    [
        ("a", "operator", PASSWORD, "2 to 64 characters"),
        ("jean dupont", "operator", PASSWORD, "2 to 64 characters"),
        ("dupont", "runner", PASSWORD, "the service's role"),
        ("dupont", "chief", PASSWORD, "must be one of"),
        ("dupont", "operator", "short", "12 to 1024 characters"),
    ],
)
def test_bad_logins_roles_and_passwords_are_refused_in_one_line(register, login, role, password, message):
    with pytest.raises(UsageError, match=message) as refused:
        register.users.add(login, role, password, by="admin")
    assert "\n" not in str(refused.value)
    assert register.users.list() == []


def test_a_login_is_added_once(register):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    with pytest.raises(UsageError, match="exists already"):
        register.users.add("DUPONT", "analyst", PASSWORD, by="admin")


def test_the_right_password_for_the_servers_role_logs_in(register, now):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    outcome = register.users.authenticate("Dupont", PASSWORD, "operator")
    assert outcome.ok and outcome.login == "dupont"
    assert events(register)[-1] == ("login", "dupont", {"role": "operator"})
    assert register.users.session_valid("dupont", "operator", START)


def test_another_roles_server_refuses_the_login(register, now):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    outcome = register.users.authenticate("dupont", PASSWORD, "design")
    assert (outcome.ok, outcome.refusal) == (False, "role")
    assert events(register)[-1][:2] == ("login_failed", "dupont")
    assert not register.users.session_valid("dupont", "design", START)


def test_five_wrong_passwords_lock_the_login_even_with_the_right_one_then_it_unlocks(register, now):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    outcomes = [register.users.authenticate("dupont", f"wrong password {i}", "operator") for i in range(MAX_FAILURES)]
    assert [o.refusal for o in outcomes] == ["wrong"] * (MAX_FAILURES - 1) + ["locked"]
    assert outcomes[-1].locked_until == START + timedelta(minutes=LOCK_MINUTES)
    refused = register.users.authenticate("dupont", PASSWORD, "operator")
    assert (refused.ok, refused.refusal) == (False, "locked")
    audited = events(register)
    assert [e for e, _, d in audited if e == "login_failed" and d.get("reason") == "wrong_password"] == [
        "login_failed"
    ] * MAX_FAILURES
    assert ("login_locked", "dupont") in [(e, a) for e, a, _ in audited]
    assert audited[-1] == ("login_failed", "dupont", {"reason": "locked", "server_role": "operator"})
    now.append(START + timedelta(minutes=LOCK_MINUTES, seconds=1))
    assert register.users.authenticate("dupont", PASSWORD, "operator").ok
    assert register.verify().ok


def test_an_unknown_login_is_refused_and_locked_like_a_known_one(register, now):
    outcomes = [register.users.authenticate("nobody", "some password here", "operator") for _ in range(MAX_FAILURES)]
    assert [o.refusal for o in outcomes] == ["wrong"] * (MAX_FAILURES - 1) + ["locked"]
    assert events(register)[0] == (
        "login_failed",
        "nobody",
        {"reason": "unknown_login", "server_role": "operator", "failures": 1},
    )


def test_failures_far_apart_start_a_new_count(register, now):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    for step in range(MAX_FAILURES + 2):
        now.append(START + timedelta(minutes=(LOCK_MINUTES + 1) * step))
        assert register.users.authenticate("dupont", "a typo each time", "operator").refusal == "wrong"


def test_a_disabled_user_cannot_log_in_and_their_sessions_end(register, now):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    register.users.authenticate("dupont", PASSWORD, "operator")
    now.append(START + timedelta(minutes=5))
    register.users.disable("dupont", by="admin")
    assert not register.users.session_valid("dupont", "operator", START)
    outcome = register.users.authenticate("dupont", PASSWORD, "operator")
    assert (outcome.ok, outcome.refusal) == (False, "disabled")
    assert ("user_disabled", "admin", {"login": "dupont"}) in events(register)
    with pytest.raises(UsageError, match="no such user"):
        register.users.disable("durand", by="admin")


def test_a_new_password_replaces_the_old_ends_sessions_and_clears_the_failures(register, now):
    register.users.add("dupont", "operator", PASSWORD, by="admin")
    for _ in range(MAX_FAILURES):
        register.users.authenticate("dupont", "wrong password!", "operator")
    now.append(START + timedelta(minutes=1))
    register.users.set_password("dupont", "another long password", by="admin")
    assert not register.users.session_valid("dupont", "operator", START)
    assert register.users.authenticate("dupont", PASSWORD, "operator").refusal == "wrong"
    assert register.users.authenticate("dupont", "another long password", "operator").ok
    assert ("user_password_changed", "admin", {"login": "dupont"}) in events(register)


def test_a_read_only_register_lists_the_users(tmp_path):
    with Register(tmp_path / "vigie.db") as first:
        first.users.add("dupont", "analyst", PASSWORD, by="admin")
    with Register(tmp_path / "vigie.db", read_only=True) as reader:
        assert [u["login"] for u in reader.users.list()] == ["dupont"]


def test_vigie_users_reads_the_password_from_stdin_and_audits_the_shell_user(tmp_path, monkeypatch, capsys):
    import io

    from runner.cli import main

    db = str(tmp_path / "vigie.db")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "dupont", "--role", "analyst", "--db", db, "--user", "chef"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    assert main(["users", "passwd", "dupont", "--db", db, "--user", "chef"]) == 2
    assert "12 to 1024 characters" in capsys.readouterr().err
    assert main(["users", "disable", "dupont", "--db", db, "--user", "chef"]) == 0
    assert main(["users", "list", "--db", db]) == 0
    assert re.search(r"^dupont\s+analyst\s+disabled", capsys.readouterr().out, re.MULTILINE)
    with Register(tmp_path / "vigie.db") as register:
        assert [(r["event"], r["actor"]) for r in register.audit_rows()] == [
            ("user_added", "chef"),
            ("user_disabled", "chef"),
        ]
        assert not register.users.authenticate("dupont", PASSWORD, "analyst").ok
