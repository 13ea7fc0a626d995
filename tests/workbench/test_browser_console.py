"""The apps in a real browser (Debian's chromium via Playwright) against `python -m workbench.serve`.

One Voilà server serves the whole session (conftest.workbench_server); each page load starts its own
kernel, as a user's would. Selectors are the CSS classes the apps put on their widgets, so the tests
do not depend on the interface language.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from runner.core.access import Principal
from runner.core.alerts import FOLLOW_UPS
from runner.register import Register
from tests.workbench.conftest import ROOT, add_alert
from workbench import serve

OPERATOR = "agent-browser-7"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect to the login page is an answer here, not something to follow


def status_of(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=60) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def wait_for(predicate, timeout_s: float = 20.0, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


# -- serving: the token, the address ------------------------------------------------------------------
@pytest.mark.slow
def test_token_is_required(workbench_server):
    notebook = "03_operator_console.ipynb"
    code, location = status_of(workbench_server.url(notebook, token=False))
    assert code in (302, 403) and (code == 403 or "/login" in location)
    code, location = status_of(workbench_server.url(notebook, token=False) + "?token=wrong-token-123456789")
    assert code in (302, 403)
    code, _ = status_of(f"{workbench_server.base_url}/")  # the list of notebooks
    assert code in (302, 403)
    code, body = status_of(workbench_server.url(notebook))
    assert code == 200 and "voila" in body.lower()


@pytest.mark.parametrize("ip", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_serve_refuses_a_non_loopback_address_without_a_token(ip, capsys):
    assert serve.main(["--ip", ip, "--dry-run", "--role", "operator"], environ={}) == 2
    assert "without a token" in capsys.readouterr().err
    assert serve.main(["--ip", ip, "--dry-run", "--role", "operator"], environ={"VIGIE_TOKEN": "x" * 32}) == 0


def test_serve_prints_the_url_with_a_generated_token_and_keeps_it_off_the_command_line(capsys):
    assert serve.main(["--dry-run", "--port", "8870", "--role", "operator"], environ={}) == 0
    out = capsys.readouterr().out
    token = re.search(r"http://127\.0\.0\.1:8870/\?token=(\S+)", out).group(1)
    assert len(token) >= serve.MIN_TOKEN_CHARS
    assert f"/voila/render/03_operator_console.ipynb?token={token}" in out
    command_line = out.strip().splitlines()[-1]
    assert "voila" in command_line and token not in command_line
    env = serve.server_environment({"VIGIE_TOKEN": "t" * 20, "VIGIE_DB": "var/x.db"}, "t" * 20)
    assert env["JUPYTER_TOKEN"] == "t" * 20 and "VIGIE_TOKEN" not in env
    assert Path(env["VIGIE_DB"]).is_absolute() and env["VIGIE_DB"].endswith("/var/x.db")  # kernels run in notebooks/
    assert serve.main(["--dry-run", "--role", "operator"], environ={"VIGIE_TOKEN": "short"}) == 2


def test_make_workbench_runs_the_same_command_as_the_tests():
    # --no-print-directory: under `make test` this make is nested and would add "Leaving directory" lines.
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "workbench"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    recipe = result.stdout.strip().splitlines()[-1]
    assert recipe.startswith(".venv/bin/python -m workbench.serve")  # what the server fixture runs


# -- the operator console -----------------------------------------------------------------------
def open_console(page, workbench_server):
    page.goto(workbench_server.url("03_operator_console.ipynb"))
    page.wait_for_selector(".vigie-console")
    page.fill(".vigie-operator-input input", OPERATOR)
    page.click(".vigie-operator-start")
    page.wait_for_selector(".vigie-operator-shown")


def alert_row(alert_id: int) -> str:
    return f".vigie-alert-row[data-alert-id='{alert_id}']"


def add_clip(register: Register, alert_id: int) -> bytes:
    """A short grey clip for an alert (what the runner stores beside its snapshot)."""
    import numpy as np

    from runner.pipeline.clips import TimedFrame, encode_clip

    clip = encode_clip([TimedFrame(i / 5, np.full((180, 320, 3), 90 + 5 * i, np.uint8)) for i in range(15)])
    register.add_clip(
        alert_id, clip.data, extension="mp4", media_type=clip.media_type, frames=clip.frames, duration_s=clip.duration_s
    )
    return clip.data


@pytest.mark.slow
def test_confirm_an_alert_with_the_shortcut_key_and_its_clip_plays(page, workbench_server, screenshot):
    alert_id = workbench_server.ids["first"]
    with Register(workbench_server.db_path, create=False) as register:
        add_clip(register, alert_id)
    open_console(page, workbench_server)
    assert OPERATOR in page.inner_text(".vigie-operator-shown")
    listed = page.inner_text(".vigie-alert-rows")
    assert "[TEST]" in listed and f"#{alert_id} " in listed
    assert page.locator(alert_row(workbench_server.ids["decided"])).count() == 0  # already decided: not pending

    page.click(alert_row(alert_id))
    page.wait_for_selector(f"{alert_row(alert_id)}.vigie-selected")
    page.wait_for_selector("img.vigie-snapshot")
    # The browser itself decodes the clip (H.264 MP4 from the register, no request elsewhere).
    page.wait_for_function(
        "() => { const v = document.querySelector('video.vigie-clip'); return v && v.videoWidth > 0; }"
    )
    page.select_option(".vigie-follow-up select", index=1 + FOLLOW_UPS.index("field_check"))
    page.fill(".vigie-note input", "checked on site")
    screenshot(page, "workbench_console.png")
    page.click(alert_row(alert_id))  # focus back on the list: keys typed in a field stay in the field
    page.keyboard.press("c")

    with Register(workbench_server.db_path, create=False) as register:
        stored = wait_for(lambda: register.alert(alert_id)["status"] != "pending" and register.alert(alert_id))
        assert (stored["decision"], stored["operator"], stored["follow_up"], stored["note"]) == (
            "confirmed",
            OPERATOR,
            "field_check",
            "checked on site",
        )
        assert any(r["event"] == "decision" and r["actor"] == OPERATOR for r in register.audit_rows())
    page.wait_for_selector(alert_row(alert_id), state="detached")


@pytest.mark.slow
def test_a_new_high_priority_alert_is_highlighted_within_2_s(page, workbench_server):
    open_console(page, workbench_server)
    page.wait_for_selector(".vigie-alert-row")
    with Register(workbench_server.db_path, create=False) as register:
        stored_at = time.monotonic()
        new_id = add_alert(register, minutes=40, is_test=False, camera_id="cam-04", kind="fire", rule_id="fire-1")
    page.wait_for_selector(f"{alert_row(new_id)}.vigie-alert-fresh.vigie-priority-high", timeout=5_000)
    elapsed_s = time.monotonic() - stored_at
    print(f"new high-priority alert highlighted {elapsed_s:.2f} s after it was stored")  # docs/operations.md
    assert elapsed_s < 2.0, f"highlighted after {elapsed_s:.2f} s"
    assert f"#{new_id}" in page.inner_text(".vigie-new-alert")
    first_row = page.locator(".vigie-alert-row").first
    assert first_row.get_attribute("data-alert-id") == str(new_id)  # high priority first
    assert int(page.get_attribute(".vigie-alert-board", "data-alarms") or 0) >= 1  # the sound was played
    page.click(alert_row(new_id))  # looked at: no longer flashing
    page.wait_for_selector(f"{alert_row(new_id)}:not(.vigie-alert-fresh)")


@pytest.mark.slow
def test_an_alert_taken_by_a_is_shown_taken_to_b(browser, workbench_server):
    with Register(workbench_server.db_path, create=False) as register:
        alert_id = add_alert(register, minutes=50, is_test=False, camera_id="cam-05", subject="zone:hall")
    pages = []
    for name in ("A", "B"):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        pages.append(tab)
        tab.goto(workbench_server.url("03_operator_console.ipynb"))
        tab.wait_for_selector(".vigie-console")
        tab.fill(".vigie-operator-input input", name)
        tab.click(".vigie-operator-start")
        tab.wait_for_selector(".vigie-operator-shown")
    try:
        page_a, page_b = pages
        page_a.click(alert_row(alert_id))
        page_a.wait_for_selector(f"{alert_row(alert_id)}.vigie-selected")
        page_a.click(".vigie-take")
        page_a.wait_for_selector(f"{alert_row(alert_id)} .vigie-held:has-text('pris par A')")
        page_b.wait_for_selector(f"{alert_row(alert_id)} .vigie-held:has-text('pris par A')", timeout=10_000)
        with Register(workbench_server.db_path, create=False) as register:
            assert register.claims()[alert_id]["operator"] == "A"
            register.release(alert_id, Principal("A", "operator"))
    finally:
        for tab in pages:
            tab.context.close()


@pytest.mark.slow
def test_console_shows_new_alerts_and_pauses_all_only_with_a_reason(page, workbench_server):
    open_console(page, workbench_server)
    with Register(workbench_server.db_path, create=False) as register:
        new_id = add_alert(register, minutes=30, is_test=False, camera_id="cam-03", subject="zone:gate")
    page.wait_for_selector(alert_row(new_id), timeout=15_000)

    page.select_option(".vigie-scope select", "cam-03")
    page.click(".vigie-pause")
    page.wait_for_selector(f".vigie-control-state span[data-scope='cam-03'] b:has-text('{OPERATOR}')")
    assert "cam-03" in page.inner_text(".vigie-control-message")  # said beside the button
    with Register(workbench_server.db_path, create=False) as register:
        assert register.is_paused("cam-03") and not register.is_paused("cam-01")
        assert register.control_state()["cam-03"]["actor"] == OPERATOR
        page.click(".vigie-resume")
        assert wait_for(lambda: not register.is_paused("cam-03"))

        page.select_option(".vigie-scope select", index=0)  # every camera, the first option
        page.click(".vigie-pause")  # every camera: a confirmation, and a reason
        page.wait_for_selector(".vigie-pause-confirm")
        page.click(".vigie-pause-confirm")
        page.wait_for_selector(".vigie-control-message:has-text('motif')")
        assert not register.is_paused("cam-01")
        page.fill(".vigie-pause-reason input", "exercice d'évacuation")
        page.click(".vigie-pause-confirm")
        assert wait_for(lambda: register.is_paused("cam-01"))
        details = json.loads(register.audit_rows(event="pause")[-1]["details"])
        assert details["scope"] == "*" and details["reason"] == "exercice d'évacuation"
        page.click(".vigie-resume")
        assert wait_for(lambda: not register.is_paused("cam-01"))


# -- the dashboards -----------------------------------------------------------------------------
@pytest.mark.slow
def test_analysis_dashboard_shows_its_plots(page, workbench_server, screenshot):
    page.goto(workbench_server.url("04_analysis.ipynb"))
    page.wait_for_selector(".vigie-analysis")
    plot = page.wait_for_selector("img.vigie-plot")
    assert page.evaluate("(img) => img.naturalWidth", plot) > 100
    assert page.locator("table.vigie-table").count() >= 3
    screenshot(page, "workbench_analysis.png")


@pytest.mark.slow
def test_social_dashboard_shows_the_example(page, workbench_server, screenshot):
    page.goto(workbench_server.url("05_social_acceptability.ipynb"))
    page.wait_for_selector(".vigie-social")
    page.click(".vigie-load-example")
    plot = page.wait_for_selector("img.vigie-plot")
    assert page.evaluate("(img) => img.naturalWidth", plot) > 100
    assert page.locator("table.vigie-survey-table tbody tr").count() == 5
    screenshot(page, "workbench_social.png")


@pytest.mark.slow
def test_the_token_is_in_no_log_register_or_export_of_the_session(workbench_server):
    """Last of the session: the server's log (Voilà's and ours) and every file it wrote hold no token."""
    assert status_of(workbench_server.url("03_operator_console.ipynb"))[0] == 200  # the token works
    root = workbench_server.db_path.parent.parent
    files = [p for p in root.rglob("*") if p.is_file() and "jupyter-runtime" not in p.parts]
    assert workbench_server.log_path in files and workbench_server.db_path in files
    for path in files:
        assert workbench_server.token.encode() not in path.read_bytes(), path
