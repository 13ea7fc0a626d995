"""The design-phase apps in a real browser: Debian's chromium, driven by Playwright, against the Voilà
server that `make workbench` runs (fixtures in conftest.py).

Camera setup: draw a polygon on the snapshot with mouse clicks, export it, find the new revision on
disk and the export in the audit log. Tuning: replay a short clip through the production pipeline
and the real person model, and see the timeline and the scores.

Screenshots go to $VIGIE_SCREENSHOTS_DIR when set (`VIGIE_SCREENSHOTS_DIR=docs` refreshes
docs/workbench_camera_setup.png and docs/workbench_tuning.png).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
import yaml

from runner.config.loading import load_config
from runner.register import Register
from tests.helpers import make_video

ROOT = Path(__file__).resolve().parents[2]
PETS = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian's opencv-doc; `make test` installs it
SETUP_SITE = "browser-setup"
TUNING_SITE = "browser-tuning"
ACTOR = "Agent Navigateur (DGPN)"
# The polygon clicked on the snapshot, as fractions of the canvas; the last click closes it.
CLICKS = [(0.55, 0.12), (0.85, 0.12), (0.85, 0.30), (0.55, 0.30), (0.551, 0.121)]


def zones_dir_of(server) -> Path:
    """The server's VIGIE_ZONES_DIR (the session fixture creates it beside the register's folder)."""
    return server.db_path.parent.parent / "zones"


def write_site(zones: Path, site: str, source: Path, imgsz: int | None = None) -> Path:
    """A copy of the demo site (its zones, rules and privacy mask) under another name and source."""
    data = yaml.safe_load((ROOT / "zones" / "demo" / "site.yaml").read_text())
    data["site"] = site
    data["cameras"][0]["source"] = str(source)
    if imgsz:
        data["models"]["person"]["imgsz"] = imgsz
    folder = zones / site
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def open_app(page, server, notebook: str, site: str) -> None:
    page.goto(server.url(notebook))
    site_select = page.locator(".vigie-site select")
    site_select.wait_for()
    if site_select.input_value() != site:
        site_select.select_option(label=site)


@pytest.mark.slow
def test_draw_a_polygon_on_the_snapshot_export_it_and_find_the_revision_on_disk(page, design_server, screenshot):
    zones = zones_dir_of(design_server)
    source = PETS if PETS.is_file() else make_video(zones.parent / "setup-clip.avi", 10)
    folder = write_site(zones, SETUP_SITE, source)

    open_app(page, design_server, "01_camera_setup.ipynb", SETUP_SITE)
    page.locator(".vigie-shapes option", has_text="lawn").wait_for()  # the demo's zones are loaded
    page.locator(".vigie-tools button", has_text=re.compile(r"^\s*Zone\s*$")).click()
    canvas = page.locator("canvas.vigie-canvas")
    box = canvas.bounding_box()
    for fx, fy in CLICKS:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.locator(".vigie-shapes option", has_text="zone-1").wait_for()
    page.locator(".vigie-problems", has_text="configuration valide").wait_for()
    screenshot(page, "workbench_camera_setup.png")

    page.locator(".lm-TabBar-tab", has_text="Export").click()
    page.locator(".vigie-export-actor input").fill(ACTOR)
    page.locator(".vigie-export-button").click()
    page.locator(".vigie-export-output", has_text="site.r0002.yaml").wait_for()

    revision = load_config(folder / "revisions" / "site.r0002.yaml")
    assert revision.config.revision == 2
    assert (folder / "site.yaml").read_bytes() == (folder / "revisions" / "site.r0002.yaml").read_bytes()
    drawn = revision.config.camera("pets").zone("zone-1").polygon
    expected = [(0.55, 0.12), (0.85, 0.12), (0.85, 0.30), (0.55, 0.30)]
    assert len(drawn) == 4
    assert all(abs(a - b) < 0.01 for p, q in zip(drawn, expected, strict=True) for a, b in zip(p, q, strict=True))
    with Register(design_server.db_path) as register:
        rows = [
            r for r in register.audit_rows(event="config_exported") if json.loads(r["details"])["site"] == SETUP_SITE
        ]
    assert [(r["actor"], json.loads(r["details"])["sha256"]) for r in rows] == [(ACTOR, revision.sha256)]


@pytest.mark.slow
def test_replay_a_clip_rerun_with_a_new_threshold_and_compare_in_the_tuning_app(
    page, design_server, screenshot, tmp_path
):
    if not PETS.is_file():
        pytest.skip(f"{PETS} not found (make test installs Debian's opencv-doc)")
    zones = zones_dir_of(design_server)
    write_site(zones, TUNING_SITE, PETS, imgsz=640)  # the person crossing the lawn is big: 640 px find them
    clip = cut(PETS, tmp_path / "pets_47s.avi", first_frame=470, frames=90)  # 9 s where someone crosses the lawn
    labels = tmp_path / "events.csv"
    labels.write_text("clip,event_type,polarity,start_s,end_s\npets_47s.avi,intrusion,positive,4.0,6.5\n")

    open_app(page, design_server, "02_tuning.ipynb", TUNING_SITE)
    page.locator(".vigie-clip input").fill(str(clip))
    page.locator(".vigie-labels input").fill(str(labels))
    page.locator(".vigie-labels input").press("Enter")
    page.locator(".vigie-run").click()
    page.locator(".vigie-scores-box", has_text=re.compile("#1 .*terminé")).wait_for(timeout=240_000)
    assert page.locator(".vigie-timeline-box .alert").count() >= 1
    assert page.locator(".vigie-scores tr").count() == 2  # header + the lawn-intrusion row

    dwell = page.locator(".vigie-field-min_dwell_s input")
    dwell.fill("4")
    dwell.press("Tab")
    page.locator(".vigie-run").click()
    page.locator(".vigie-scores-box", has_text=re.compile("#2 r1\\* .*terminé")).wait_for(timeout=240_000)
    page.locator(".vigie-compare").click()
    comparison = page.locator(".vigie-comparison")
    comparison.wait_for()
    assert "min_dwell_s: 1.0 -> 4.0" in comparison.inner_text()
    assert comparison.locator(".vigie-timeline").count() == 1
    screenshot(page, "workbench_tuning.png")


def cut(source: Path, target: Path, first_frame: int, frames: int) -> Path:
    """A short clip of `source` (MJPG), so the real model has little to do."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    capture.set(cv2.CAP_PROP_POS_FRAMES, first_frame)
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(
                str(target), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0])
            )
        writer.write(frame)
    capture.release()
    assert writer is not None, f"cannot read {source}"
    writer.release()
    return target
