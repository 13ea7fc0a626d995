"""Two agents edit one site in two browsers (two Playwright contexts, Debian's chromium) and both export:
the second is refused with what the first changed, merges, and the revision it then exports holds both
edits (issue 19). Also: the setup app's tab titles are shown whole; in the tuning app the clip follows
the camera and every threshold of the scrolling box can be reached; a new site is created, its stream grab
cancelled, a server file refused as a source; an analyst sees one site, delays in hours and pseudonyms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from runner.config.loading import load_config
from tests.helpers import make_video
from tests.workbench.conftest import _serve
from tests.workbench.test_browser_setup import PETS, open_app, write_site, zones_dir_of

SITE = "browser-concurrent"
ROOT = Path(__file__).resolve().parents[2]


def open_setup(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    open_app(tab, server, "01_camera_setup.ipynb", SITE)
    tab.locator(".vigie-shapes option", has_text="lawn").wait_for()
    return context, tab


def show_tab(tab, title: str) -> None:
    tab.locator(".lm-TabBar-tab", has_text=re.compile(rf"^\s*{title}\s*$")).click()


def export(tab, actor: str) -> None:
    show_tab(tab, "Export")
    tab.locator(".vigie-export-actor input").fill(actor)
    tab.locator(".vigie-export-button").click()


@pytest.mark.slow
def test_two_browsers_export_one_site_the_second_is_warned_and_merges_without_losing_anything(browser, design_server):
    zones = zones_dir_of(design_server)
    source = PETS if PETS.is_file() else make_video(zones.parent / "concurrent-clip.avi", 10)
    folder = write_site(zones, SITE, source)
    first_context, first = open_setup(browser, design_server)
    second_context, second = open_setup(browser, design_server)
    try:
        for tab in (first, second):  # no tab title is cut
            labels = tab.evaluate(
                "() => [...document.querySelectorAll('.vigie-setup-tabs .lm-TabBar-tabLabel')]"
                ".map(e => [e.textContent, e.scrollWidth <= e.clientWidth + 1])"
            )
            assert len(labels) == 6 and all(whole for _, whole in labels), labels

        show_tab(first, "Caméra")  # agent 1 lowers the camera's rate and exports r2
        rate = first.locator(".vigie-field-process_fps input:visible")  # the camera's, not a rule's
        rate.fill("2")
        rate.press("Tab")
        export(first, "Agent Un (DGPN)")
        first.locator(".vigie-export-output", has_text="site.r0002.yaml").wait_for()

        show_tab(second, "Caméra")  # agent 2, still on r1, renames the camera and exports
        name = second.locator(".vigie-field-name input")
        name.fill("Parvis nord")
        name.press("Tab")
        export(second, "Agent Deux (DGPN)")
        conflict = second.locator(".vigie-conflict")
        conflict.wait_for()
        assert "images analysées par seconde (au plus) : 3.0 → 2.0" in conflict.inner_text()
        assert not (folder / "revisions" / "site.r0003.yaml").exists()

        second.locator(".vigie-merge").click()
        second.locator(".vigie-merged").wait_for()
        second.locator(".vigie-export-button").click()
        second.locator(".vigie-export-output", has_text="site.r0003.yaml").wait_for()
    finally:
        first_context.close()
        second_context.close()

    camera = load_config(folder / "site.yaml").config.camera("pets")
    assert (camera.process_fps, camera.name) == (2.0, "Parvis nord")
    assert yaml.safe_load((folder / "revisions" / "site.r0002.yaml").read_text())["cameras"][0]["process_fps"] == 2.0


@pytest.mark.slow
def test_tuning_clip_follows_the_camera_and_every_threshold_can_be_scrolled_to(page, design_server):
    zones = zones_dir_of(design_server)
    folder = zones / "browser-two-cams"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("parvis.avi", "salle.avi"):
        make_video(folder / name, 4, fps=10, size=(64, 48))
    data = yaml.safe_load((ROOT / "zones" / "demo" / "site.yaml").read_text())
    data["site"] = "browser-two-cams"
    parvis = {**data["cameras"][0], "id": "parvis", "source": "parvis.avi"}
    salle = {**data["cameras"][0], "id": "salle", "source": "salle.avi"}
    data["cameras"] = [parvis, salle]
    (folder / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    open_app(page, design_server, "02_tuning.ipynb", "browser-two-cams")
    clip = page.locator(".vigie-clip input")
    page.wait_for_function("() => document.querySelector('.vigie-clip input').value.endsWith('parvis.avi')")
    page.locator(".widget-dropdown select").nth(2).select_option("salle")  # site, revision, camera
    page.wait_for_function("() => document.querySelector('.vigie-clip input').value.endsWith('salle.avi')")
    assert clip.input_value() == str(folder / "salle.avi")

    box = page.locator(".vigie-thresholds")
    assert box.evaluate("e => e.scrollHeight > e.clientHeight && getComputedStyle(e).overflowY === 'auto'")
    # The camera's fields may be redrawn just after the switch: scroll to the last field's control and measure
    # it in one step, within the box's visible part (a control redrawn between two calls is measured again).
    page.wait_for_function(
        """() => {
            const box = document.querySelector('.vigie-thresholds');
            const last = [...box.querySelectorAll('input, select, textarea')].pop();
            if (!last) return false;
            last.scrollIntoView({block: 'nearest'});
            const r = last.getBoundingClientRect(), b = box.getBoundingClientRect();
            return r.height > 10 && r.top >= b.top - 1 && r.bottom <= b.bottom + 1;
        }""",
        timeout=10_000,
    )


@pytest.mark.slow
def test_create_a_site_cancel_its_stream_grab_refuse_a_server_file_and_export_it(page, design_server):
    zones = zones_dir_of(design_server)
    page.goto(design_server.url("01_camera_setup.ipynb"))
    page.locator(".vigie-new-site-name").wait_for(state="attached")  # in the Site tab, not shown yet
    show_tab(page, "Site")
    page.locator(".vigie-new-site-name input").fill("browser-new-site")
    page.locator(".vigie-new-site-camera input").fill("quai")
    page.locator(".vigie-new-site-source input").fill("rtsp://127.0.0.1:9/quai")
    page.locator(".vigie-create-site").click()
    cancel = page.locator(".vigie-grab-cancel")
    cancel.wait_for()  # the stream is grabbed in the background, with progress
    page.locator(".vigie-status", has_text="connexion à la caméra quai").wait_for()
    assert page.locator(".vigie-grab-progress").is_visible()
    cancel.click()
    page.locator(".vigie-status", has_text="annulé").wait_for(timeout=5_000)

    show_tab(page, "Caméra")
    page.locator(".vigie-new-camera-id input").fill("salle")
    page.locator(".vigie-new-camera-source input").fill("/etc/shadow")
    page.locator(".vigie-add-camera").click()
    page.locator(".vigie-status", has_text="refusée").wait_for()
    assert page.locator(".vigie-export-button").is_disabled()
    options = page.locator(".widget-dropdown select").nth(1).locator("option").all_inner_texts()
    assert options == ["quai", "salle"]
    assert page.locator(".vigie-field-enabled input[type=checkbox]").is_checked()  # the default it will export
    source = page.locator(".vigie-field-source input")
    source.fill("rtsp://127.0.0.1:9/salle")
    source.press("Tab")

    export(page, "Agent Trois (DGPN)")
    page.locator(".vigie-export-output", has_text="site.r0001.yaml").wait_for()
    config = load_config(zones / "browser-new-site" / "site.yaml").config
    assert [c.id for c in config.cameras] == ["quai", "salle"] and config.phase == "design"


@pytest.fixture(scope="module")
def analyst_server(tmp_path_factory):
    """An analysts' server (`--role analyst`) over the console fixtures' register."""
    yield from _serve(tmp_path_factory, "analyst")


@pytest.mark.slow
def test_an_analyst_sees_one_site_delays_in_hours_and_pseudonyms_never_a_name(page, analyst_server):
    page.goto(analyst_server.url("04_analysis.ipynb"))
    page.locator(".vigie-analyst-view").wait_for()
    assert page.locator(".vigie-site-filter select option").all_inner_texts() == ["test-site"]
    show_tab(page, "Validation")
    validation = page.locator(".vigie-analysis").inner_text()
    assert re.search(r"op-[0-9a-f]{10}", validation) and "agent-setup" not in validation
    assert re.search(r"\d+ h \d\d min", validation) and "Délai médian (s)" not in validation
    show_tab(page, "Carte de chaleur")
    assert page.locator(".vigie-analysis input[type=checkbox]").last.is_disabled()  # no camera image under it
