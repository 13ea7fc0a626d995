"""The rights of the persons filmed are the DPO's: every `vigie rights` action is refused to the other roles in
one line (exit 3) before the register is opened, so that nothing is written; what the DPO restricts is hidden
from the operators' and analysts' dashboards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner.cli import main
from runner.core.access import Principal, Role
from runner.register import Register
from tests.helpers import alert_record, tiny_jpeg
from workbench import register_data

OTHER_ROLES = [r.value for r in Role if r is not Role.DPO]
SPAN = ["--from", "2026-05-14T19:00Z", "--to", "2026-05-14T20:00Z"]
ACTIONS = {
    "find": ["--request", "R-1", "--camera", "cam-01", *SPAN],
    "export": ["--request", "R-1", "--alert", "1", "--out", "OUT"],
    "restrict": ["--request", "R-1", "--alert", "1"],
    "lift": ["--request", "R-1", "--alert", "1"],
    "erase": ["--request", "R-1", "--alert", "1"],
    "open": ["--request", "R-1", "--kind", "access"],
    "close": ["--request", "R-1", "--status", "answered"],
    "list": [],
}


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    for name in ("VIGIE_ROLE", "VIGIE_USER", "VIGIE_OPERATOR", "VIGIE_DB"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "vigie.db"
    with Register(path) as reg:
        for _ in range(2):
            alert_id = reg.add_alert(alert_record(ts_utc="2026-05-14T19:30:00.000+00:00"), tiny_jpeg()).id
            reg.decide(alert_id, "rejected", by=Principal("op", "operator"), follow_up="none", reason="shadow")
    return path


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file under the folder (register, WAL, anchor, media) and its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm")  # SQLite's shared-memory index, rebuilt by any reader
    }


@pytest.mark.parametrize("role", OTHER_ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_rights_action_is_refused_to_other_roles_and_writes_nothing(db, tmp_path, capsys, action, role):
    argv = [str(tmp_path / "export") if a == "OUT" else a for a in ACTIONS[action]]
    before = _fingerprint(tmp_path)
    code = main(["rights", action, "--db", str(db), *argv, "--user", "mallory", "--role", role])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert err.startswith(f"vigie: mallory (role {role}) may not ") and err.endswith("only the dpo role may\n")
    assert err.count("\n") == 1
    assert _fingerprint(tmp_path) == before


def test_a_rights_action_without_a_role_is_refused(db, capsys):
    assert main(["rights", "list", "--db", str(db), "--user", "someone"]) == 2
    assert "--role is required" in capsys.readouterr().err


@pytest.mark.parametrize(("role", "visible"), [("operator", [2]), ("analyst", [2]), ("design", [2]), ("dpo", [1, 2])])
def test_dashboards_hide_restricted_alerts_from_all_but_the_dpo(db, monkeypatch, role, visible):
    with Register(db, create=False) as reg:
        reg.restrict_alerts("R-2", [1], by=Principal("dpo.martin", "dpo"))
    monkeypatch.setenv("VIGIE_ROLE", role)
    assert register_data.load_register(db).alerts["id"].to_list() == visible
    assert register_data.load_register(db, include_restricted=True).alerts["id"].to_list() == [1, 2]
