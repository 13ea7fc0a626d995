"""The workbench token never appears in what is printed, logged, audited, exported or shown as an error."""

from __future__ import annotations

import logging

import pytest

from runner.core.access import Principal
from runner.register import Register
from tests.helpers import alert_record, tiny_jpeg
from workbench import serve

CANARY = "canary-token-7f3a9c2e51d04b8e"  # long enough to be accepted as VIGIE_TOKEN


def _serve(capsys, argv, environ) -> tuple[int, str]:
    code = serve.main([*argv, "--dry-run"], environ=environ)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize(
    ("argv", "environ", "expected_code"),
    [
        (["--role", "operator"], {"VIGIE_TOKEN": CANARY}, 0),
        (["--role", "analyst", "--ip", "0.0.0.0"], {"VIGIE_TOKEN": CANARY}, 0),
        (["--role", "design", "--port", "70000"], {"VIGIE_TOKEN": CANARY}, 2),
        (["--notebooks", "/nonexistent"], {"VIGIE_TOKEN": CANARY, "VIGIE_ROLE": "operator"}, 2),
        ([], {"VIGIE_TOKEN": CANARY}, 2),  # no role
        ([], {"VIGIE_TOKEN": CANARY, "VIGIE_ROLE": "runner"}, 2),
        ([], {"VIGIE_TOKEN": CANARY, "VIGIE_ROLE": "root"}, 2),
        (["--role", "operator", "--user", "bad\nname"], {"VIGIE_TOKEN": CANARY}, 2),
        (["--role", "operator"], {"VIGIE_TOKEN": CANARY[:10]}, 2),  # too short: the refusal does not echo it
    ],
)
def test_a_chosen_token_is_never_printed_nor_put_in_an_error(capsys, argv, environ, expected_code):
    code, text = _serve(capsys, argv, environ)
    assert code == expected_code, text
    assert CANARY[:10] not in text
    if code == 0:
        assert "?token=$VIGIE_TOKEN" in text  # the URLs name where the token is, not the token
        assert f"{serve.sys.executable} -m voila" in text  # the command line, printed, token-free
    else:
        assert text.startswith("workbench.serve: ") and text.count("\n") == 1  # one line


def test_the_kernels_get_the_role_and_user_but_not_vigie_token():
    principal = Principal("analyste-3", "analyst")
    env = serve.server_environment({"VIGIE_TOKEN": CANARY, "VIGIE_ROLE": "operator", "PATH": "/bin"}, CANARY, principal)
    assert "VIGIE_TOKEN" not in env and env["JUPYTER_TOKEN"] == CANARY  # Voilà reads it once at start
    assert (env["VIGIE_ROLE"], env["VIGIE_USER"]) == ("analyst", "analyste-3")  # the server's role wins
    assert all(CANARY not in part for part in serve.voila_command(serve.PROJECT_ROOT / "notebooks", "127.0.0.1", 8866))


def test_nothing_the_apps_write_carries_the_token(tmp_path, monkeypatch, caplog):
    """Run every attributed action with the token in the environment (as the kernels have it), then look
    for it in the register file, the exports, the config revisions, the log records and the messages."""
    from tests.helpers import config_dict, make_video, write_config
    from workbench.analysis_app import AnalysisDashboard
    from workbench.console_app import ConsoleModel, OperatorConsole
    from workbench.setup_app import CameraSetupApp

    caplog.set_level(logging.DEBUG)
    db = tmp_path / "var" / "vigie.db"
    zones = tmp_path / "zones"
    (zones / "test-site").mkdir(parents=True)
    make_video(zones / "test-site" / "clip.avi", 5)
    write_config(zones / "test-site" / "site.yaml", config_dict())
    for name, value in {
        "JUPYTER_TOKEN": CANARY,
        "VIGIE_DB": str(db),
        "VIGIE_ZONES_DIR": str(zones),
        "VIGIE_EXPORT_DIR": str(tmp_path / "exports"),
        "VIGIE_USER": "someone",
    }.items():
        monkeypatch.setenv(name, value)
    with Register(db) as register:
        for _ in range(2):
            register.add_alert(alert_record(is_test=False), tiny_jpeg())
    messages = []

    monkeypatch.setenv("VIGIE_ROLE", "operator")
    console = OperatorConsole(ConsoleModel(db))
    console.operator_input.value = "agent-7"
    console.operator_start.click()
    console.model.decide(1, "confirmed", follow_up="field_check")
    console.model.set_paused("*", True, reason="exercise")
    console.model.set_paused("*", False)
    messages.append(console.message.value)
    monkeypatch.setenv("VIGIE_ROLE", "analyst")
    dashboard = AnalysisDashboard()
    assert dashboard.export()
    dashboard.export_folder.value = "../x"
    dashboard.export()
    messages.append(dashboard.export_result.value)
    monkeypatch.setenv("VIGIE_ROLE", "design")
    app = CameraSetupApp(zones, db)
    app.setup.camera_form.values["process_fps"] = 2.0  # an export needs a change
    app.actor.value = "Agent Dupont"
    app.export_button.click()
    messages.append(app.export_output.value)
    monkeypatch.setenv("VIGIE_ROLE", "analyst")  # refused attempts make messages too
    app.export_button.click()
    messages.append(app.export_output.value)
    with Register(db) as register:
        register.purge(media_days=30, alert_days=365)
        events = {r["event"] for r in register.audit_rows()}
    assert {"decision", "pause", "resume", "statistics_exported", "config_exported", "purge"} <= events

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 8
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in caplog.text and all(CANARY not in m for m in messages)
