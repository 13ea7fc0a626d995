"""The camera setup app as a French agent uses it, in Debian's chromium with a fr-FR locale (fixtures in
conftest.py): decimal commas typed in a number field reach the exported config as numbers, anything
else is refused at the field in French, the rule form speaks French, and no request leaves the server.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from runner.config.loading import load_config
from tests.helpers import make_video
from tests.workbench.test_browser_setup import PETS, open_app, write_site, zones_dir_of

SITE = "browser-french"
ACTOR = "Agente Francophone (préfecture)"


def type_in(field, text: str, until) -> None:
    """Type into a text field and leave it (the value syncs on blur), until `until` shows; under load the first
    keystrokes may reach the page before the widget is wired to its kernel, so the typing is retried once."""
    for attempt in range(2):
        field.fill(text)
        field.press("Tab")
        try:
            until.wait_for(timeout=20_000 if attempt == 0 else 60_000)
            return
        except Exception:
            if attempt:
                raise


def foreign_requests(requests: list[str], base_url: str) -> list[str]:
    """The URLs (http, https, ws, wss) whose host is not the server's."""
    server = urlsplit(base_url).netloc
    return [
        u for u in requests if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != server
    ]


@pytest.mark.slow
def test_a_french_agent_types_decimal_commas_in_french_forms_and_nothing_leaves_the_server(page, design_server):
    zones = zones_dir_of(design_server)
    source = PETS if PETS.is_file() else make_video(zones.parent / "french-clip.avi", 10)
    folder = write_site(zones, SITE, source)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("websocket", lambda socket: requests.append(socket.url))

    open_app(page, design_server, "01_camera_setup.ipynb", SITE)
    page.locator(".lm-TabBar-tab", has_text="Règles").click()
    dwell = page.locator(".vigie-field-min_dwell_s input")
    dwell.wait_for()

    # The rule form in the agent's words: the kind's name, French labels, no config key as a label.
    assert page.locator(".widget-html", has_text="lawn-intrusion — Intrusion en zone interdite").first.is_visible()
    assert page.locator("option", has_text="Personne au sol").count() == 1  # the kinds a rule may be added as
    labels = page.locator(".vigie-field-label").all_inner_texts()
    assert "Durée minimale de présence (s)" in labels and "Rayon de reprise de piste" in labels
    assert not [label for label in labels if "_" in label], labels
    help_texts = page.locator(".jupyter-widgets", has_text="avant l'alerte (secondes)")
    assert help_texts.count() >= 1

    error = page.locator(".vigie-field-min_dwell_s").locator("xpath=..").locator(".vigie-field-error")
    type_in(dwell, "abc", error.get_by_text("nombre attendu"))  # refused at the field, in French
    page.locator(
        ".vigie-problems", has_text="Caméra « pets », règle « lawn-intrusion », durée minimale de présence (s)"
    ).wait_for()
    assert page.locator(".vigie-export-button").is_disabled()

    dwell.fill("1,5")
    dwell.press("Tab")
    page.locator(".vigie-problems", has_text="configuration valide").wait_for()
    assert error.inner_text().strip() == ""
    handover = page.locator(".vigie-field-handover_radius_frac input")
    handover.fill("0,45")
    handover.press("Tab")
    page.locator(".vigie-problems", has_text="configuration valide").wait_for()

    page.locator(".lm-TabBar-tab", has_text="Export").click()
    page.locator(".vigie-export-actor input").fill(ACTOR)
    page.locator(".vigie-export-button").click()
    page.locator(".vigie-export-output", has_text="site.r0002.yaml").wait_for()

    rule = load_config(folder / "revisions" / "site.r0002.yaml").config.camera("pets").rules[0]
    assert (rule.id, rule.min_dwell_s, rule.handover_radius_frac) == ("lawn-intrusion", 1.5, 0.45)
    assert dwell.input_value() == "1,5"  # shown back as the agent writes it

    page.goto(design_server.url("02_tuning.ipynb"))  # another app, the same page template
    page.locator(".vigie-site select").wait_for()
    assert requests and not foreign_requests(requests, design_server.base_url)
