"""Operator console without a browser: widget state in, register and audit log out."""

from __future__ import annotations

import ast
import asyncio
import json
import threading
from pathlib import Path

import nbformat
import pytest

from runner.core.access import Principal
from runner.core.alerts import FOLLOW_UPS
from runner.core.errors import StoreError
from runner.register import Register
from tests.workbench.conftest import ROOT, add_alert
from workbench.console_app import (
    ALL_CAMERAS,
    MAX_NOTE_CHARS,
    MAX_OPERATOR_CHARS,
    NOT_CHOSEN,
    PRIORITY_COLOURS,
    ConsoleModel,
    OperatorConsole,
    clean_operator,
    decision_request,
)
from workbench.i18n import t


def console_for(register: Register, zones: Path | None = None) -> OperatorConsole:
    return OperatorConsole(ConsoleModel(register.db_path, register.media_dir, zones))


def start_session(console: OperatorConsole, name: str = "agent 7") -> None:
    console.operator_input.value = name
    console.operator_start.click()


def listed_ids(console: OperatorConsole) -> list[int]:
    return [alert_id for _, alert_id in console.alert_list.options]


# -- identity and form rules ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("agent 7", "agent 7"),
        ("  Dupont J.  ", "Dupont J."),
        ("x" * MAX_OPERATOR_CHARS, "x" * MAX_OPERATOR_CHARS),
        ("", None),
        ("   ", None),
        ("x" * (MAX_OPERATOR_CHARS + 1), None),
        ("agent\n7", None),
        ("agent\x007", None),
    ],
)
def test_operator_identity_is_trimmed_printable_and_bounded(name, expected):
    if expected is None:
        with pytest.raises(ValueError, match=str(MAX_OPERATOR_CHARS)):
            clean_operator(name)
    else:
        assert clean_operator(name) == expected


@pytest.mark.parametrize(
    "decision, reason, follow_up, note, expected",
    [
        (
            "confirmed",
            NOT_CHOSEN,
            "intervention",
            " on my way ",
            {"decision": "confirmed", "reason": None, "follow_up": "intervention", "note": "on my way"},
        ),
        (
            "rejected",
            "shadow",
            NOT_CHOSEN,
            "",
            {"decision": "rejected", "reason": "shadow", "follow_up": "none", "note": None},
        ),
        (
            "rejected",
            "fixture",
            "field_check",
            None,
            {"decision": "rejected", "reason": "fixture", "follow_up": "field_check", "note": None},
        ),
        ("rejected", NOT_CHOSEN, "none", "", "console.reason_needed"),
        ("confirmed", "shadow", "intervention", "", "console.reason_not_for_confirm"),
        ("confirmed", NOT_CHOSEN, NOT_CHOSEN, "", "console.follow_up_needed"),
        ("confirmed", NOT_CHOSEN, "none", "n" * (MAX_NOTE_CHARS + 1), "console.note_too_long"),
    ],
)
def test_decision_form_rules(decision, reason, follow_up, note, expected):
    if isinstance(expected, str):
        with pytest.raises(ValueError) as error:
            decision_request(decision, reason, follow_up, note)
        assert str(error.value) == t(expected, max=MAX_NOTE_CHARS)
    else:
        assert decision_request(decision, reason, follow_up, note) == expected


# -- the console over a register ------------------------------------------------------------------
def test_pending_alerts_listed_newest_first_with_tests_marked_and_hideable(register, workbench_env):
    real = add_alert(register, minutes=0, is_test=False)
    test = add_alert(register, minutes=1, is_test=True)
    decided = add_alert(register, minutes=2, is_test=False)
    register.decide(decided, "rejected", by=Principal("someone", "operator"), reason="shadow")
    console = console_for(register)

    assert listed_ids(console) == [test, real]
    labels = dict((i, label) for label, i in console.alert_list.options)
    assert labels[test].startswith("[TEST]") and not labels[real].startswith("[TEST]")
    assert console.alert_list.value == test  # the newest is shown
    assert t("console.test_badge") in console.badge.value

    console.hide_tests.value = True
    assert listed_ids(console) == [real]
    assert console.alert_list.value == real
    assert console.badge.value == ""
    assert console.counter.value == f"<b>{t('console.pending_count', count=1)}</b>"


def test_no_decision_or_pause_before_the_operator_says_who_they_are(register, workbench_env):
    alert_id = add_alert(register, minutes=0)
    console = console_for(register)
    assert console.confirm_button.disabled and console.reject_button.disabled and console.pause_button.disabled
    with pytest.raises(ValueError, match=t("console.operator_required")):
        console.model.decide(alert_id, "rejected", reason="shadow")
    start_session(console, "   ")
    assert console.confirm_button.disabled
    assert str(MAX_OPERATOR_CHARS) in console.message.value
    assert register.alert(alert_id)["status"] == "pending"


def test_confirm_goes_to_the_register_and_audit_with_the_operator(register, workbench_env):
    first = add_alert(register, minutes=0, is_test=False)
    second = add_alert(register, minutes=1, is_test=False, subject="zone:other")
    console = console_for(register)
    start_session(console, "  Brigadier Martin ")
    assert "Brigadier Martin" in console.operator_shown.value
    assert console.operator_bar.children == (console.operator_shown, console.operator_change)

    console.alert_list.value = first
    console.follow_up.value = "intervention"
    console.note.value = "patrol sent"
    console.confirm_button.click()

    stored = register.alert(first)
    assert (
        stored["status"],
        stored["decision"],
        stored["operator"],
        stored["follow_up"],
        stored["note"],
        stored["reason"],
    ) == ("confirmed", "confirmed", "Brigadier Martin", "intervention", "patrol sent", None)
    audit = register.audit_rows(event="decision")
    assert len(audit) == 1 and audit[0]["actor"] == "Brigadier Martin"
    assert json.loads(audit[0]["details"])["alert_id"] == first
    assert listed_ids(console) == [second]
    assert "Brigadier Martin" in console.message.value
    assert register.verify().ok


def test_reject_needs_a_reason_then_records_it(register, workbench_env):
    alert_id = add_alert(register, minutes=0)
    console = console_for(register)
    start_session(console)
    console.reject_button.click()
    assert t("console.reason_needed").replace("'", "&#x27;") in console.message.value
    assert register.alert(alert_id)["status"] == "pending"

    console.reason.value = "reflection"
    console.reject_button.click()
    stored = register.alert(alert_id)
    assert (stored["status"], stored["reason"], stored["follow_up"], stored["operator"]) == (
        "rejected",
        "reflection",
        "none",
        "agent 7",
    )
    assert listed_ids(console) == []
    assert console.detail_box.layout.visibility == "hidden"


def test_follow_up_options_are_the_registers(register, workbench_env):
    console = console_for(register)
    assert [value for _, value in console.follow_up.options] == [NOT_CHOSEN, *FOLLOW_UPS]


def test_poll_adds_new_alerts_and_drops_those_decided_elsewhere(register, workbench_env):
    first = add_alert(register, minutes=0)
    console = console_for(register)
    assert console.model.last_id == first

    second = add_alert(register, minutes=1)
    result = console.refresh()
    assert result.new_ids == [second]
    assert listed_ids(console) == [second, first]
    assert t("console.new_count", count=1) in console.counter.value

    register.decide(
        first, "confirmed", by=Principal("colleague", "operator"), follow_up="none"
    )  # from another console or the CLI
    result = console.refresh()
    assert result.gone_ids == [first]
    assert listed_ids(console) == [second]


def test_deciding_an_alert_already_decided_elsewhere_says_so(register, workbench_env):
    alert_id = add_alert(register, minutes=0)
    console = console_for(register)
    start_session(console)
    register.decide(alert_id, "confirmed", by=Principal("colleague", "operator"), follow_up="none")
    console.reason.value = "duplicate"
    console.reject_button.click()
    assert "already confirmed" in console.message.value and "colleague" in console.message.value
    assert register.alert(alert_id)["operator"] == "colleague"


def test_image_sequence_of_the_same_subject(register, workbench_env):
    add_alert(register, minutes=-30, subject="track:3")  # outside the 10-minute window
    earlier = add_alert(register, minutes=0, subject="track:3")
    add_alert(register, minutes=1, subject="track:9")  # another subject
    add_alert(register, minutes=2, subject="track:3", snapshot=False)  # no image: skipped
    latest = add_alert(register, minutes=3, subject="track:3")
    add_alert(register, minutes=4, subject="track:3")  # after the alert shown
    console = console_for(register)

    sequence = console.model.image_sequence(register.alert(latest))
    expected = [register.snapshot_file(register.alert(i)) for i in (earlier, latest)]
    assert sequence == expected

    console.alert_list.value = latest
    assert console.sequence_slider.max == 1 and console.sequence_slider.value == 1
    assert console.image.value == expected[1].read_bytes()  # the alert's own image first
    console.sequence_slider.value = 0
    assert console.image.value == expected[0].read_bytes()
    assert console.sequence_box.layout.display == ""


def test_alert_without_snapshot_says_why(register, workbench_env):
    alert_id = add_alert(register, minutes=0, snapshot=False)
    console = console_for(register)
    assert console.alert_list.value == alert_id
    assert console.image.layout.display == "none"
    assert "no snapshot requested" in console.no_image.value


def test_pause_and_resume_are_audited_with_the_operator_and_shown(register, workbench_env):
    (workbench_env / "zones" / "site-a").mkdir()
    config = (ROOT / "zones" / "demo" / "site.yaml").read_text()
    (workbench_env / "zones" / "site-a" / "site.yaml").write_text(config)
    add_alert(register, minutes=0, camera_id="cam-07")
    console = console_for(register, workbench_env / "zones")
    scopes = [value for _, value in console.scope.options]
    assert scopes[0] == ALL_CAMERAS and {"cam-07", "pets"} <= set(scopes[1:])

    start_session(console, "chef de poste")
    console.scope.value = "cam-07"
    console.pause_button.click()
    assert register.is_paused("cam-07") and not register.is_paused("cam-01")
    assert register.control_state()["cam-07"]["actor"] == "chef de poste"
    assert "chef de poste" in console.control_state.value

    console.scope.value = ALL_CAMERAS
    console.pause_button.click()  # every camera: asks for a confirmation and a reason first
    assert not register.is_paused("cam-01") and console.pause_confirm_box.layout.display == ""
    assert t("console.pause_all_ask") in console.control_message.value
    console.pause_confirm.click()  # no reason: refused, said beside the button
    assert not register.is_paused("cam-01")
    assert t("console.pause_reason_needed") in console.control_message.value
    console.pause_reason.value = "  exercice   incendie "
    console.pause_confirm.click()
    assert register.is_paused("cam-01") and console.pause_confirm_box.layout.display == "none"
    assert json.loads(register.audit_rows(event="pause")[-1]["details"])["reason"] == "exercice incendie"
    console.resume_button.click()
    console.scope.value = "cam-07"
    console.resume_button.click()
    assert not register.is_paused("cam-07")
    events = [
        (r["event"], r["actor"], r["camera_id"]) for r in register.audit_rows() if r["event"] in ("pause", "resume")
    ]
    assert events == [
        ("pause", "chef de poste", "cam-07"),
        ("pause", "chef de poste", None),
        ("resume", "chef de poste", None),
        ("resume", "chef de poste", "cam-07"),
    ]
    assert "chef de poste" not in console.control_state.value  # everything shown as running again


def test_missing_register_is_reported_and_not_created(tmp_path, workbench_env):
    db_path = tmp_path / "nowhere" / "vigie.db"
    console = OperatorConsole(ConsoleModel(db_path))
    assert "no such file" in console.message.value
    assert not db_path.exists()
    with pytest.raises(StoreError):
        console.model.register  # noqa: B018


def test_polling_on_the_event_loop_shows_new_alerts(register, workbench_env):
    async def scenario() -> tuple[list[int], int]:
        console = console_for(register)
        console.start(interval_s=0.05)
        new = add_alert(register, minutes=5)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if new in listed_ids(console):
                break
        console.stop()
        return listed_ids(console), new

    # In a thread of its own: the browser tests' Playwright keeps an event loop running in this one.
    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(scenario())))
    runner.start()
    runner.join(timeout=30)
    listed, new = outcome[0]
    assert new in listed


# -- the alarm workflow: priorities, new alerts, who holds what, shortcuts, clips -------------------------
def test_list_is_sorted_by_priority_then_newest_with_colours(register, workbench_env):
    intrusion = add_alert(register, minutes=0, kind="zone_intrusion")
    fire = add_alert(register, minutes=1, kind="fire", rule_id="fire-1")
    crowd = add_alert(register, minutes=2, kind="crowd_density", rule_id="crowd-1")
    later_fire = add_alert(register, minutes=3, kind="fire", rule_id="fire-1")
    console = console_for(register)
    assert listed_ids(console) == [later_fire, fire, crowd, intrusion]
    rows = {row["id"]: row for row in console.alert_list.rows}
    assert (rows[fire]["priority"], rows[crowd]["priority"], rows[intrusion]["priority"]) == ("high", "medium", "low")
    assert rows[fire]["priority_label"] == "haute" and rows[fire]["priority_colour"] == PRIORITY_COLOURS["high"]
    assert rows[fire]["kind_colour"] != rows[intrusion]["kind_colour"]
    assert not any(row["fresh"] for row in rows.values())  # there when the console opened: not "new"


def test_site_config_sets_the_priority_of_a_kind(register, workbench_env):
    (workbench_env / "zones" / "test-site").mkdir()
    config = (ROOT / "zones" / "demo" / "site.yaml").read_text().replace("site: demo", "site: test-site", 1)
    (workbench_env / "zones" / "test-site" / "site.yaml").write_text(
        config + "alert_priorities:\n  zone_intrusion: high\n  fire: low\n"
    )
    intrusion = add_alert(register, minutes=0, kind="zone_intrusion")
    fire = add_alert(register, minutes=1, kind="fire", rule_id="fire-1")
    console = console_for(register, workbench_env / "zones")
    assert listed_ids(console) == [intrusion, fire]
    assert console.model.priority(register.alert(fire)) == "low"


def test_a_new_high_priority_alert_is_highlighted_and_sounds_until_looked_at(register, workbench_env):
    add_alert(register, minutes=0, kind="zone_intrusion")
    console = console_for(register)
    low = add_alert(register, minutes=1, kind="zone_intrusion")
    console.refresh()
    assert console.alert_list.alarm == 0 and not any(row["fresh"] for row in console.alert_list.rows)
    high = add_alert(register, minutes=2, kind="person_down", rule_id="down-1")
    console.refresh()
    assert console.alert_list.alarm == 1
    assert listed_ids(console)[0] == high
    assert [row["id"] for row in console.alert_list.rows if row["fresh"]] == [high]
    console.refresh()
    assert console.alert_list.alarm == 1  # one alarm per new alert, not one per poll
    console._on_board_message({"type": "select", "id": high})  # the operator clicks it
    assert not any(row["fresh"] for row in console.alert_list.rows) and console.alert_list.value == high
    assert low in listed_ids(console)


def test_take_shows_who_holds_the_alert_to_the_other_operators(register, workbench_env):
    alert_id = add_alert(register, minutes=0, is_test=False)
    console_a, console_b = console_for(register), console_for(register)
    start_session(console_a, "A")
    start_session(console_b, "B")
    console_a.take_button.click()
    assert register.claims()[alert_id]["operator"] == "A"
    assert console_a.release_button.layout.display == "" and console_a.take_button.layout.display == "none"
    console_b.refresh()
    row = console_b.alert_list.rows[0]
    assert row["state_label"] == "pris par A" and "pris par A" in console_b.holder_info.value
    assert console_b.take_button.description == t("console.take_over", operator="A")

    console_b.follow_up.value = "intervention"
    console_b.confirm_button.click()  # held by A: refused, and said so
    assert register.alert(alert_id)["status"] == "pending" and "held by A" in console_b.message.value

    console_b.take_button.click()  # B takes it over (audited with A's name)
    taken = register.audit_rows(event="alert_taken")
    assert [r["actor"] for r in taken] == ["A", "B"] and json.loads(taken[-1]["details"])["from"] == "A"
    console_b.follow_up.value = "intervention"
    console_b.confirm_button.click()
    assert register.alert(alert_id)["operator"] == "B" and register.claims() == {}
    with pytest.raises(Exception, match="already confirmed"):
        console_a.model.decide(alert_id, "confirmed", follow_up="intervention")  # exactly once
    assert register.verify().ok


def test_release_makes_the_alert_new_again(register, workbench_env):
    add_alert(register, minutes=0)
    console = console_for(register)
    start_session(console, "A")
    console.take_button.click()
    console.release_button.click()
    assert register.claims() == {} and console.alert_list.rows[0]["state_label"] == "nouvelle"
    assert [r["event"] for r in register.audit_rows() if r["event"].startswith("alert_")][-2:] == [
        "alert_taken",
        "alert_released",
    ]


def test_shortcut_keys_move_confirm_and_reject(register, workbench_env):
    first = add_alert(register, minutes=0, is_test=False)
    second = add_alert(register, minutes=1, is_test=False, subject="zone:other")
    console = console_for(register)
    start_session(console, "agent 7")
    assert console.alert_list.value == second
    console._on_board_message({"type": "key", "action": "next"})
    assert console.alert_list.value == first
    console._on_board_message({"type": "key", "action": "previous"})
    assert console.alert_list.value == second
    console.follow_up.value = "intervention"
    console._on_board_message({"type": "key", "action": "confirm"})
    assert register.alert(second)["decision"] == "confirmed"
    console._on_board_message({"type": "key", "action": "reject"})  # no reason chosen: refused
    assert register.alert(first)["status"] == "pending" and t("console.reason_needed") in console.message.value
    console.reason.value = "shadow"
    console._on_board_message({"type": "key", "action": "reject"})
    assert register.alert(first)["decision"] == "rejected"


def test_the_alert_s_clip_is_played_in_the_console(register, workbench_env):
    import numpy as np

    from runner.pipeline.clips import TimedFrame, encode_clip

    with_clip = add_alert(register, minutes=0)
    without = add_alert(register, minutes=1, subject="zone:other")
    clip = encode_clip([TimedFrame(i / 5, np.full((72, 128, 3), 40, np.uint8)) for i in range(10)])
    register.add_clip(
        with_clip, clip.data, extension="mp4", media_type=clip.media_type, frames=10, duration_s=clip.duration_s
    )
    console = console_for(register)
    assert console.alert_list.value == without and console.clip_box.layout.display == "none"
    console.alert_list.value = with_clip
    assert console.clip_box.layout.display == "" and console.clip.value == clip.data
    assert console.clip.format == "mp4" and "2.0" in console.clip_caption.value


# -- the notebooks hold no logic -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, module",
    [
        ("03_operator_console.ipynb", "workbench.console_app"),
        ("04_analysis.ipynb", "workbench.analysis_app"),
        ("05_social_acceptability.ipynb", "workbench.social_app"),
    ],
)
def test_notebook_is_one_import_and_one_display_call(name, module):
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) == 1
    statements = ast.parse(code[0].source).body
    assert [type(s) for s in statements] == [ast.ImportFrom, ast.Expr]
    assert statements[0].module == module
    assert isinstance(statements[1].value, ast.Call) and not statements[1].value.args


# -- languages ----------------------------------------------------------------------------------
def test_every_string_of_the_operator_and_analyst_apps_exists_in_both_languages():
    import workbench.analysis_app  # noqa: F401  (each app registers its strings on import)
    import workbench.social_app  # noqa: F401
    from workbench.i18n import MESSAGES

    prefixes = ("console.", "analysis.", "social.", "register.")
    french = {k for k in MESSAGES["fr"] if k.startswith(prefixes)}
    english = {k for k in MESSAGES["en"] if k.startswith(prefixes)}
    assert french == english
    assert all(MESSAGES["en"][k].strip() for k in english)


def test_console_speaks_english_when_asked(register, workbench_env):
    from workbench.i18n import set_language

    add_alert(register, minutes=0, is_test=True)
    set_language("en")
    try:
        console = console_for(register)
        assert console.confirm_button.description == "Confirm"
        assert "TEST — do not intervene" in console.badge.value
        assert "Forbidden zone" in console.alert_list.options[0][0]
    finally:
        set_language(None)


@pytest.mark.parametrize("status", ["ok", "degraded", "error", "ended", "crashed", "damaged"])
def test_every_camera_health_the_runner_writes_reads_in_words(status):
    from workbench.console_app import _health_label

    assert _health_label(status) != status
