"""Roles x actions, enforced by the register and the exports themselves (not by hidden buttons),
and every attributed action's audit row carrying the user and the role under the hash chain."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from runner.cli import main
from runner.core.access import (
    PERMISSIONS,
    RETENTION_SCHEDULE,
    Action,
    PermissionDenied,
    Principal,
    Role,
    principal_from_env,
    require,
)
from runner.core.errors import UsageError
from runner.register import Register
from tests.helpers import alert_record, config_dict, tiny_jpeg

ROLES = [r.value for r in Role]


@pytest.fixture
def register(tmp_path: Path):
    with Register(tmp_path / "var" / "vigie.db") as reg:
        yield reg


def _state(register: Register) -> tuple:
    """Everything a refused action must leave unchanged."""
    return (
        len(register.audit_rows()),
        [(a["id"], a["status"], a["media_purged_utc"]) for a in register.alerts()],
        register.control_state(),
    )


# -- the matrix ------------------------------------------------------------------------------------------
ATTEMPTS = {
    Action.DECIDE: lambda reg, who, alert_id: reg.decide(alert_id, "confirmed", by=who, follow_up="field_check"),
    Action.PAUSE: lambda reg, who, alert_id: reg.set_paused("cam-01", True, who),
    Action.PURGE: lambda reg, who, alert_id: reg.purge(media_days=30, alert_days=365, by=who),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ATTEMPTS))
def test_each_register_write_is_allowed_to_its_roles_only(register, action, role):
    alert_id = register.add_alert(alert_record(), tiny_jpeg()).id
    who = Principal("alice", role)
    before = _state(register)
    if Role(role) in PERMISSIONS[action]:
        ATTEMPTS[action](register, who, alert_id)
        assert _state(register) != before
    else:
        with pytest.raises(PermissionDenied) as refused:
            ATTEMPTS[action](register, who, alert_id)
        message = str(refused.value)
        assert "\n" not in message and f"role {role}" in message and action.value in message
        assert refused.value.exit_code == 3
        assert _state(register) == before  # nothing written, not even an audit row
    assert register.verify().ok


def test_the_documented_matrix():
    allowed = {a: sorted(r.value for r in roles) for a, roles in PERMISSIONS.items()}
    assert allowed == {
        Action.DECIDE: ["operator"],
        Action.PAUSE: ["operator"],
        Action.PURGE: ["runner"],
        Action.EXPORT_STATISTICS: ["analyst"],
        Action.EXPORT_CONFIG: ["design"],
        Action.TAKE: ["operator"],
        Action.RIGHTS_ACCESS: ["dpo"],
        Action.RIGHTS_RESTRICT: ["dpo"],
        Action.RIGHTS_ERASE: ["dpo"],
    }
    table = (Path(__file__).resolve().parents[2] / "docs" / "threat_model.md").read_text(encoding="utf-8")
    for action in Action:  # the threat model's table names every action
        assert action.value in table


@pytest.mark.parametrize(
    "call",
    [
        lambda reg, alert_id: reg.decide(alert_id, "confirmed", by="alice", follow_up="none"),
        lambda reg, alert_id: reg.set_paused("*", True, "alice"),
        lambda reg, alert_id: reg.purge(media_days=30, alert_days=365, by="retention"),
    ],
)
def test_a_bare_name_from_before_roles_is_refused_with_the_migration(register, call):
    alert_id = register.add_alert(alert_record(), None).id
    with pytest.raises(TypeError, match=r"runner\.core\.access\.Principal\(user, role\)"):
        call(register, alert_id)
    assert register.audit_rows() == [r for r in register.audit_rows() if r["event"] == "alert_created"]


@pytest.mark.parametrize(
    ("user", "role", "message"),
    [
        ("", "operator", "user identity is required"),
        ("   ", "operator", "user identity is required"),
        ("alice\nbob", "operator", "printable"),
        ("alice\x00", "operator", "printable"),
        ("x" * 201, "operator", "printable"),
        ("alice", "admin", "must be one of operator, analyst, design, runner"),
        ("alice", "", "must be one of"),
    ],
)
def test_a_principal_is_a_clean_name_and_a_known_role(user, role, message):
    with pytest.raises(UsageError, match=message):
        Principal(user, role)


def test_principal_from_the_environment():
    assert principal_from_env({"VIGIE_ROLE": " Operator ", "VIGIE_USER": " alice "}) == Principal("alice", "operator")
    with pytest.raises(UsageError, match="VIGIE_ROLE"):
        principal_from_env({"VIGIE_USER": "alice"})
    with pytest.raises(UsageError, match="user identity"):
        principal_from_env({"VIGIE_ROLE": "operator"})
    with pytest.raises(PermissionDenied):
        require(principal_from_env({"VIGIE_ROLE": "analyst", "VIGIE_USER": "a"}), Action.DECIDE)


# -- the audit rows carry user and role, under the chain ------------------------------------------------------
def test_decision_pause_resume_and_purge_rows_carry_user_and_role(register):
    alert_id = register.add_alert(alert_record(), tiny_jpeg()).id
    register.decide(alert_id, "rejected", by=Principal("Brigadier Martin", "operator"), reason="shadow")
    register.set_paused("*", True, Principal("agent-7", "operator"))
    register.set_paused("*", False, Principal("agent-8", "operator"))
    register.purge(media_days=30, alert_days=365)  # the retention schedule, the service's role
    rows = {r["event"]: r for r in register.audit_rows()}
    for event, user, role in [
        ("decision", "Brigadier Martin", "operator"),
        ("pause", "agent-7", "operator"),
        ("resume", "agent-8", "operator"),
        ("purge", RETENTION_SCHEDULE.user, "runner"),
    ]:
        assert rows[event]["actor"] == user and json.loads(rows[event]["details"])["role"] == role, event
    assert register.alert(alert_id)["operator"] == "Brigadier Martin"
    assert register.verify().ok


@pytest.mark.parametrize("event", ["decision", "pause", "purge"])
def test_rewriting_the_recorded_role_breaks_the_chain(register, event):
    alert_id = register.add_alert(alert_record(), None).id
    register.decide(alert_id, "confirmed", by=Principal("alice", "operator"), follow_up="none")
    register.set_paused("*", True, Principal("alice", "operator"))
    register.purge(media_days=30, alert_days=365)
    register.audit("test", "runner")  # a later row, so the edited one is inside the chain
    (row,) = register.audit_rows(event=event)
    forged = (
        row["details"].replace('"role":"operator"', '"role":"design"').replace('"role":"runner"', '"role":"design"')
    )
    assert forged != row["details"]
    conn = sqlite3.connect(register.db_path)
    conn.execute("DROP TRIGGER audit_no_update")  # what a local attacker with the file would do
    conn.execute("UPDATE audit SET details = ? WHERE id = ?", (forged, row["id"]))
    conn.commit()
    conn.close()
    report = register.verify()
    assert not report.ok and report.first_bad_row == row["id"] and "content altered" in report.problem


# -- the command line ------------------------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path, monkeypatch):
    for name in ("VIGIE_ROLE", "VIGIE_USER", "VIGIE_OPERATOR", "VIGIE_DB"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "vigie.db"
    with Register(path) as reg:
        reg.add_alert(alert_record(), tiny_jpeg())
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


CLI_ACTIONS = {
    "decide": ["decide", "1", "--confirm", "--follow-up", "none"],
    "pause": ["pause"],
    "resume": ["resume", "--camera", "cam-01"],
    "purge": ["purge"],
}
CLI_ROLE = {"decide": "operator", "pause": "operator", "resume": "operator", "purge": "runner"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("command", list(CLI_ACTIONS))
def test_cli_role_flags(db, capsys, command, role):
    code, out, err = _cli(capsys, *CLI_ACTIONS[command], "--db", db, "--user", "alice", "--role", role)
    with Register(db, create=False) as reg:
        events = [(r["event"], r["actor"], json.loads(r["details"]).get("role")) for r in reg.audit_rows()][1:]
        assert reg.verify().ok
    if role == CLI_ROLE[command]:
        assert (code, err) == (0, "")
        assert events == [({"decide": "decision"}.get(command, command), "alice", role)]
    else:
        assert (code, out) == (3, "")
        assert err.startswith(f"vigie: alice (role {role}) may not ") and err.count("\n") == 1
        assert events == []


def test_cli_reads_role_and_user_from_the_environment(db, capsys, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "analyst")
    monkeypatch.setenv("VIGIE_USER", "bob")
    code, _, err = _cli(capsys, "pause", "--db", db)
    assert code == 3 and err == (
        "vigie: bob (role analyst) may not pause or resume analysis: only the operator role may\n"
    )
    monkeypatch.setenv("VIGIE_ROLE", "operator")
    assert _cli(capsys, "pause", "--db", db)[0] == 0
    monkeypatch.delenv("VIGIE_ROLE")
    code, _, err = _cli(capsys, "resume", "--db", db)
    assert code == 2 and "--role is required (or set VIGIE_ROLE)" in err
    code, _, err = _cli(capsys, "resume", "--db", db, "--role", "boss")
    assert code == 2 and "must be one of operator, analyst, design, runner" in err


# -- the workbench -------------------------------------------------------------------------------------------
@pytest.fixture
def workbench(tmp_path, monkeypatch):
    (tmp_path / "zones").mkdir()
    monkeypatch.setenv("VIGIE_DB", str(tmp_path / "var" / "vigie.db"))
    monkeypatch.setenv("VIGIE_ZONES_DIR", str(tmp_path / "zones"))
    monkeypatch.setenv("VIGIE_EXPORT_DIR", str(tmp_path / "exports"))
    for name in ("VIGIE_MEDIA_DIR", "VIGIE_LANG", "VIGIE_ROLE", "VIGIE_USER"):
        monkeypatch.delenv(name, raising=False)
    with Register(tmp_path / "var" / "vigie.db") as reg:
        reg.add_alert(alert_record(is_test=False), tiny_jpeg())
    return tmp_path


@pytest.mark.parametrize("role", [None, "analyst", "design"])
def test_the_console_of_another_role_cannot_decide_or_pause(workbench, monkeypatch, role):
    from workbench.console_app import ConsoleModel, OperatorConsole

    if role:
        monkeypatch.setenv("VIGIE_ROLE", role)
    console = OperatorConsole(ConsoleModel(workbench / "var" / "vigie.db"))
    console.operator_input.value = "agent-7"
    console.operator_start.click()
    assert console.confirm_button.disabled and console.pause_button.disabled  # shown, then enforced below
    with pytest.raises(PermissionDenied):
        console.model.decide(1, "confirmed", follow_up="none")
    with pytest.raises(PermissionDenied):
        console.model.set_paused("*", True)
    with Register(workbench / "var" / "vigie.db", create=False) as reg:
        assert [r["event"] for r in reg.audit_rows()] == ["alert_created"]
        assert reg.alert(1)["status"] == "pending"


@pytest.mark.parametrize("role", ROLES)
def test_statistics_export_is_for_analysts_and_audited(workbench, monkeypatch, role):
    from workbench.analysis_app import AnalysisDashboard

    monkeypatch.setenv("VIGIE_ROLE", role)
    monkeypatch.setenv("VIGIE_USER", "analyste-3")
    dashboard = AnalysisDashboard()
    dashboard.export_folder.value = "bilan"
    written = dashboard.export()
    with Register(workbench / "var" / "vigie.db", create=False) as reg:
        rows = reg.audit_rows(event="statistics_exported")
        assert reg.verify().ok
    if role == "analyst":
        assert written and all(p.is_file() for p in written)
        (row,) = rows
        details = json.loads(row["details"])
        assert (row["actor"], details["role"], details["folder"], details["format"]) == (
            "analyste-3",
            "analyst",
            "bilan",
            "csv",
        )
        assert details["rows"]["alerts"] == 1
    else:
        assert written == [] and rows == [] and not (workbench / "exports").exists()
        assert f"role {role}" in dashboard.export_result.value and "export statistics" in dashboard.export_result.value


@pytest.mark.parametrize("role", ROLES)
def test_config_export_from_the_setup_app_is_for_the_design_role(workbench, monkeypatch, role):
    from tests.helpers import make_video, write_config
    from workbench.export import SiteFolder
    from workbench.setup_app import CameraSetupApp

    site_dir = workbench / "zones" / "test-site"
    site_dir.mkdir()
    make_video(site_dir / "clip.avi", 5)
    write_config(site_dir / "site.yaml", config_dict())
    monkeypatch.setenv("VIGIE_ROLE", role)
    app = CameraSetupApp(workbench / "zones", workbench / "var" / "vigie.db")
    app.setup.camera_form.values["process_fps"] = 2.0  # an export needs a change
    app.actor.value = "Agent Dupont (DGPN)"
    app.export_button.click()
    current = SiteFolder(workbench / "zones", "test-site").current().config
    with Register(workbench / "var" / "vigie.db", create=False) as reg:
        rows = reg.audit_rows(event="config_exported")
    if role == "design":
        assert current.revision == 2 and json.loads(rows[0]["details"])["role"] == "design"
    else:
        assert current.revision == 1 and rows == []
        assert f"role {role}" in app.export_output.value
