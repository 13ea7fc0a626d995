"""Camera setup without a browser: canvas edits (add, drag, delete, snap, undo), the editing state
turned into a valid config, forms generated from every registered rule model, field messages."""

from __future__ import annotations

import html
import time
import typing
from pathlib import Path

import annotated_types
import numpy as np
import pytest
from pydantic_core import to_jsonable_python

from runner.config.site import SiteConfig
from runner.core.errors import SourceError
from runner.register import Register
from runner.rules.registry import RULES
from tests.helpers import config_dict, make_video, write_config
from workbench import i18n
from workbench.canvas import CanvasModel, CanvasWidget, EditError, apply_intent
from workbench.config_text import field_help, field_title
from workbench.export import ConfigExporter, ExportError, SiteFolder
from workbench.forms import (
    CHOICE,
    TAGS,
    YAML,
    ZONE,
    ZONES,
    ModelForm,
    ModelFormView,
    field_specs,
    new_rule,
    rule_models,
)
from workbench.setup_app import CameraSetup, CameraSetupApp, grab_frame

W, H = 1000, 500  # 10 px snap radius = 0.01 of the width, 0.02 of the height


def canvas(tool: str = "edit") -> CanvasModel:
    model = CanvasModel(width=W, height=H, snap_px=10)
    model.set_tool(tool)
    return model


def draw(model: CanvasModel, tool: str, *points: tuple[float, float]) -> str:
    model.set_tool(tool)
    for x, y in points:
        model.click(x, y)
    return model.shapes[-1].key


SQUARE = [(0.2, 0.2), (0.4, 0.2), (0.4, 0.6), (0.2, 0.6)]


# -- canvas: drawing -------------------------------------------------------------------------------------
def test_zone_clicks_add_vertices_and_clicking_the_first_one_closes_the_polygon():
    model = canvas()
    key = draw(model, "zone", *SQUARE)
    assert model.active == key and model.shape(key).points == SQUARE
    model.click(0.201, 0.201)  # on the first vertex: closes instead of duplicating it
    assert model.active is None and model.shape(key).points == SQUARE
    second = draw(model, "zone", (0.6, 0.6), (0.8, 0.6), (0.8, 0.8))
    assert second != key and len(model.of_kind("zone")) == 2


def test_a_line_is_done_at_two_points_and_the_next_click_starts_another():
    model = canvas()
    draw(model, "line", (0.3, 0.1), (0.3, 0.9))
    model.click(0.7, 0.1)
    lines = model.of_kind("line")
    assert [len(line.points) for line in lines] == [2, 1]
    assert model.geometry()["lines"][0] == {"id": "line-1", "start": [0.3, 0.1], "end": [0.3, 0.9]}


def test_the_calibration_takes_exactly_four_points():
    model = canvas()
    draw(model, "calibration", (0.1, 0.9), (0.9, 0.9), (0.7, 0.4), (0.3, 0.4))
    with pytest.raises(EditError):
        model.click(0.5, 0.5)
    assert model.geometry()["calibration_image"] == [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]]


def test_direction_tool_sets_a_unit_arrow_on_the_zone_clicked_first():
    model = canvas()
    key = draw(model, "zone", *SQUARE)
    model.set_tool("direction")
    model.click(0.25, 0.4)
    model.click(0.35, 0.4)
    assert model.shape(key).direction == (1.0, 0.0)
    assert model.geometry()["zones"][0]["direction"] == [1.0, 0.0]
    model.select(None)
    with pytest.raises(EditError):  # outside every zone, and no zone selected to fall back on
        model.click(0.9, 0.9)


# -- canvas: snapping --------------------------------------------------------------------------------------
def test_a_new_vertex_snaps_to_a_vertex_of_another_shape_within_the_radius():
    model = canvas()
    draw(model, "zone", *SQUARE)
    model.finish()
    draw(model, "mask", (0.405, 0.205))  # 5 px from (0.4, 0.2)
    assert model.of_kind("mask")[0].points == [(0.4, 0.2)]


def test_a_vertex_near_the_border_snaps_to_it_and_one_far_from_everything_does_not():
    model = canvas()
    draw(model, "zone", (0.005, 0.3), (0.5, 0.985), (0.5, 0.5))
    assert model.of_kind("zone")[0].points == [(0.0, 0.3), (0.5, 1.0), (0.5, 0.5)]


def test_vertices_more_than_the_radius_away_do_not_snap():
    model = canvas()
    draw(model, "zone", *SQUARE)
    model.finish()
    draw(model, "zone", (0.42, 0.2))  # 20 px from (0.4, 0.2)
    assert model.of_kind("zone")[1].points == [(0.42, 0.2)]


# -- canvas: editing and undo ------------------------------------------------------------------------------
def test_drag_moves_a_vertex_with_snapping_but_never_onto_itself():
    model = canvas()
    key = draw(model, "zone", *SQUARE)
    model.move_vertex(key, 2, 0.5, 0.7)
    assert model.shape(key).points[2] == (0.5, 0.7)
    model.move_vertex(key, 2, 0.503, 0.7)  # 3 px from where it is: moves there (no snap to its old self)
    assert model.shape(key).points[2] == (0.503, 0.7)
    model.move_vertex(key, 2, 0.996, 0.7)
    assert model.shape(key).points[2] == (1.0, 0.7)


def test_edit_tool_click_on_an_edge_of_the_selected_polygon_inserts_a_vertex_there():
    model = canvas()
    key = draw(model, "zone", *SQUARE)
    model.set_tool("edit")
    model.select(key)
    model.click(0.3, 0.201)  # on the top edge, between vertices 0 and 1
    assert model.shape(key).points == [(0.2, 0.2), (0.3, 0.201), (0.4, 0.2), (0.4, 0.6), (0.2, 0.6)]


def test_delete_vertex_and_the_last_vertex_takes_the_shape_with_it():
    model = canvas()
    key = draw(model, "line", (0.3, 0.1), (0.3, 0.9))
    model.delete_vertex(key, 0)
    assert model.shape(key).points == [(0.3, 0.9)]
    model.delete_vertex(key, 0)
    assert model.find(key) is None


def test_undo_reverts_each_edit_in_turn():
    model = canvas()
    key = draw(model, "zone", *SQUARE)
    drawn = [list(s.points) for s in model.shapes]
    model.move_vertex(key, 0, 0.1, 0.1)
    model.delete_vertex(key, 3)
    model.rename(key, "lawn")
    model.undo()
    assert model.find(key) is not None and model.find("lawn") is None
    model.undo()
    assert len(model.shape(key).points) == 4
    model.undo()
    assert [list(s.points) for s in model.shapes] == drawn
    for _ in range(5):  # 4 vertices + the shape's creation
        model.undo()
    assert model.shapes == []
    with pytest.raises(EditError):
        model.undo()


def test_browser_intents_drive_the_model_and_errors_reach_the_callback():
    errors: list[str] = []
    model = canvas()
    widget = CanvasWidget(model, on_error=errors.append)
    model.set_tool("zone")
    for x, y in SQUARE[:3]:
        widget._on_browser_message(widget, {"type": "click", "x": x, "y": y}, [])
    key = model.shapes[0].key
    widget._on_browser_message(widget, {"type": "move_vertex", "key": key, "index": 1, "x": 0.5, "y": 0.2}, [])
    widget._on_browser_message(widget, {"type": "delete_vertex", "key": key, "index": 9}, [])
    assert model.shape(key).points == [(0.2, 0.2), (0.5, 0.2), (0.4, 0.6)]
    assert widget.scene["shapes"][0]["points"][1] == [0.5, 0.2]
    assert len(errors) == 1 and "9" in errors[0]
    apply_intent(model, {"type": "undo"})
    assert model.shape(key).points[1] == (0.4, 0.2)


# -- editing state -> config -------------------------------------------------------------------------------
@pytest.fixture
def setup() -> CameraSetup:
    return CameraSetup(SiteConfig.model_validate(config_dict()).model_dump(mode="json"))


def test_drawing_and_rules_give_a_valid_config_with_normalised_coordinates(setup):
    model = setup.canvas
    model.set_image_size(W, H)
    plaza = draw(model, "zone", (0.1, 0.6), (0.9, 0.6), (0.9, 0.95), (0.1, 0.95))
    setup.rename_shape(plaza, "plaza")
    draw(model, "mask", (0.6, 0.05), (0.8, 0.05), (0.8, 0.15))
    draw(model, "calibration", (0.1, 0.9), (0.9, 0.9), (0.7, 0.4), (0.3, 0.4))
    for index, point in enumerate([(0, 0), (20, 0), (20, 30), (0, 30)]):
        setup.set_world_point(index, *point)
    model.select("plaza")
    density = setup.add_rule("crowd_density")
    gate = setup.add_rule("zone_intrusion", target="gate")

    config = setup.config()
    camera = config.camera("cam-01")
    assert camera.zone("plaza").polygon == [(0.1, 0.6), (0.9, 0.6), (0.9, 0.95), (0.1, 0.95)]
    assert camera.privacy_masks == [[(0.6, 0.05), (0.8, 0.05), (0.8, 0.15)]]
    assert camera.calibration.world_m == [(0, 0), (20, 0), (20, 30), (0, 30)]
    rules = {r.id: r for r in camera.rules}
    assert rules[density.values["id"]].zone == "plaza" and rules[density.values["id"]].max_per_m2 == 4.0
    assert rules[gate.values["id"]].line == "gate" and rules[gate.values["id"]].zone is None
    assert all(0.0 <= v <= 1.0 for z in camera.zones for p in z.polygon for v in p)


def test_renaming_a_zone_renames_the_rules_that_use_it(setup):
    setup.add_rule("wrong_way", target="path")
    setup.rename_shape("path", "walkway")
    assert setup.rules[-1].values["zone"] == "walkway"
    assert setup.config().camera("cam-01").zone("walkway").direction == (1.0, 0.0)


def test_renaming_a_zone_renames_it_inside_zone_lists_too(setup):
    with_lists = [
        (kind, s.name) for kind, model in rule_models().items() for s in field_specs(model) if s.widget == ZONES
    ]
    if not with_lists:
        pytest.skip("no registered rule has a list of zones")
    kind, field = with_lists[0]
    form = setup.add_rule(kind, target="lawn")
    form.set(field, ["path", "lawn"])
    setup.rename_shape("path", "walkway")
    assert form.values[field] == ["walkway", "lawn"]


def test_an_unfinished_polygon_is_reported_on_its_shape(setup):
    draw(setup.canvas, "zone", (0.1, 0.1), (0.2, 0.1))
    problems = setup.shape_problems()
    assert problems == {"zone-1": ["Polygone : au moins 3 élément(s)"]}


def test_half_entered_calibration_metres_are_reported_on_the_calibration(setup):
    draw(setup.canvas, "calibration", (0.1, 0.9), (0.9, 0.9), (0.7, 0.4), (0.3, 0.4))
    setup.set_world_point(0, 0.0, 0.0)
    assert "Points au sol (m)" in " ".join(setup.shape_problems()["calibration"])
    with pytest.raises(ExportError, match=r"Caméra n°1, calibration au sol, point 2 \(x\) : nombre attendu"):
        setup.config()


# -- generated forms ---------------------------------------------------------------------------------------
def _bounds(field) -> dict[str, float]:
    found = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                found[name] = getattr(item, name)
    return found


@pytest.mark.parametrize("kind", sorted(RULES))
def test_the_form_of_every_registered_rule_has_every_field_with_its_bounds_and_description(kind):
    model = rule_models()[kind]
    specs = {s.name: s for s in field_specs(model)}
    assert set(specs) == set(model.model_fields) - {"kind"}
    for name, field in model.model_fields.items():
        if name == "kind":
            continue
        spec = specs[name]
        assert spec.description == field_help(model, name) and spec.title == field_title(model, name)
        bounds = _bounds(field)
        assert (spec.minimum, spec.exclusive_minimum, spec.maximum, spec.exclusive_maximum) == (
            bounds.get("ge"),
            bounds.get("gt"),
            bounds.get("le"),
            bounds.get("lt"),
        ), name
        if bounds:
            assert spec.bounds_text() and spec.bounds_text() in spec.help_text()
        annotation = typing.get_args(field.annotation) or (field.annotation,)
        literals = [a for a in annotation if typing.get_origin(a) is typing.Literal]
        if literals:
            assert spec.widget == CHOICE and set(spec.choices) == set(typing.get_args(literals[0]))
        if name == "labels":
            assert spec.widget == TAGS
        if name == "zone" or name.endswith("_zone"):
            assert spec.widget == ZONE, name  # a picker of the zones drawn on this camera
        if name.endswith("_zones"):
            assert spec.widget == ZONES, name


@pytest.mark.parametrize("kind", sorted(RULES))
def test_a_new_rule_of_every_kind_has_the_model_defaults_and_builds_its_widgets(kind):
    rule = new_rule(kind, "r-1", zone="lawn")
    model = rule_models()[kind]
    for name, field in model.model_fields.items():
        if name in ("kind", "id") or field.is_required() or rule[name] == "lawn":
            continue
        assert rule[name] == to_jsonable_python(field.get_default(call_default_factory=True)), name
    view = ModelFormView(ModelForm(model, rule), on_change=lambda: None, ref_options=lambda kind: ["lawn", "path"])
    assert set(view.inputs) == {s.name for s in field_specs(model)}


def test_an_invalid_value_shows_the_runner_message_next_to_its_field(setup):
    form = setup.add_rule("zone_intrusion", target="lawn")
    view = ModelFormView(form, on_change=lambda: None, ref_options=lambda kind: ["lawn"])
    form.set("min_dwell_s", -1.0)
    form.set("crossing", "upwards")
    by_field, general = setup.rule_problems(len(setup.rules) - 1)
    assert by_field == {
        "min_dwell_s": "doit être ≥ 0",
        "crossing": "valeur attendue parmi 'any', 'left_to_right' ou 'right_to_left'",
    }
    view.show_problems(by_field, general)
    assert "doit être ≥ 0" in view.errors["min_dwell_s"].value
    assert view.errors["clear_s"].value == ""


def test_a_rule_with_neither_zone_nor_line_says_so_on_the_field(setup):
    form = setup.add_rule("zone_intrusion", target="lawn")
    form.set("zone", None)
    by_field, _ = setup.rule_problems(len(setup.rules) - 1)
    assert by_field == {"zone": "donner une zone ou une ligne, pas les deux"}


def test_text_inputs_accept_a_decimal_comma_and_report_unreadable_yaml(setup):
    form = setup.add_rule("zone_intrusion", target="lawn")
    form.set("clear_s", "1,5")
    assert form.values["clear_s"] == 1.5
    form.set("active_hours", "[{start: '22:00', end: ")
    problems = dict(setup.problems())
    assert list(problems) == [f"cameras[0].rules[{len(setup.rules) - 1}].active_hours"]
    form.set("active_hours", "[{start: '22:00', end: '06:00'}]")
    assert form.spec("active_hours").widget == YAML and setup.problems() == []


def test_retention_above_the_legal_caps_is_refused_with_the_models_message(setup):
    setup.retention_form.set("media_days", 31)
    setup.retention_form.set("alert_days", 400)
    assert setup.problems() == [("retention.media_days", "must be <= 30"), ("retention.alert_days", "must be <= 365")]


# -- snapshot --------------------------------------------------------------------------------------------
def test_snapshot_from_a_file_and_privacy_mask_preview(tmp_path, setup):
    clip = make_video(tmp_path / "clip.avi", 20, fps=10)
    setup.base_dir = tmp_path
    image = setup.grab_snapshot(at_s=1.0)
    assert image.shape == (480, 640, 3)
    assert (setup.canvas.width, setup.canvas.height) == (640, 480)
    draw(setup.canvas, "mask", (0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5))
    masked = setup.preview(masks_applied=True)
    assert masked[100, 100].tolist() == [0, 0, 0] and not np.array_equal(masked, setup.snapshot)
    assert setup.preview(masks_applied=False)[100, 100].tolist() != [0, 0, 0]
    with pytest.raises(SourceError, match="clip.avi"):
        grab_frame(str(clip), tmp_path, at_s=60.0)


def test_an_unreachable_stream_gives_up_after_the_timeout_without_leaking_the_password():
    with pytest.raises(SourceError) as caught:
        grab_frame("rtsp://viewer:secret@127.0.0.1:9/stream", Path("."), timeout_s=1.0)
    assert "127.0.0.1:9" in str(caught.value) and "secret" not in str(caught.value)


# -- the widgets over the state ------------------------------------------------------------------------------
def test_the_app_draws_a_zone_from_browser_clicks_and_exports_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "design")  # as `python -m workbench.serve --role design` hands it to the app
    site_dir = tmp_path / "zones" / "test-site"
    site_dir.mkdir(parents=True)
    make_video(site_dir / "clip.avi", 10)
    write_config(site_dir / "site.yaml", config_dict())
    app = CameraSetupApp(tmp_path / "zones", tmp_path / "vigie.db")
    assert app.canvas_widget.image_src.startswith("data:image/jpeg;base64,")
    app.tool_picker.value = "zone"
    for x, y in [(0.1, 0.1), (0.3, 0.1), (0.3, 0.3), (0.1, 0.1)]:
        app.canvas_widget._on_browser_message(app.canvas_widget, {"type": "click", "x": x, "y": y}, [])
    assert "zone-1" in dict(app.shape_list.options).values()
    app.actor.value = "Agent Dupont (DGPN)"
    app.export_button.click()
    assert "r0002" in app.export_output.value, app.export_output.value
    exported = SiteFolder(tmp_path / "zones", "test-site").current().config
    assert exported.revision == 2
    assert exported.camera("cam-01").zone("zone-1").polygon == [(0.1, 0.1), (0.3, 0.1), (0.3, 0.3)]
    assert Register(tmp_path / "vigie.db").audit_rows(event="config_exported")[0]["actor"] == "Agent Dupont (DGPN)"


def test_french_by_default_and_english_on_request(monkeypatch):
    monkeypatch.delenv("VIGIE_LANG", raising=False)
    assert i18n.t("setup.title").startswith("Paramétrage")
    monkeypatch.setenv("VIGIE_LANG", "en")
    assert i18n.t("setup.title") == "Camera setup (design phase)"
    assert set(i18n.MESSAGES["fr"]) == set(i18n.MESSAGES["en"])
    with pytest.raises(ValueError, match="known: fr, en"):
        i18n.set_language("de")


def test_planning_an_export_does_not_open_the_register(tmp_path, setup):
    exporter = ConfigExporter(tmp_path / "zones", lambda: pytest.fail("register opened"))
    plan = setup.plan_export(exporter)
    assert (plan.site, plan.revision, plan.previous_revision) == ("test-site", 1, None)  # a site never exported
    assert not (tmp_path / "zones").exists()


# -- issue 19: cameras, sites, sources, concurrent exports ----------------------------------------------------
def two_camera_app(tmp_path) -> CameraSetupApp:
    site_dir = tmp_path / "zones" / "test-site"
    site_dir.mkdir(parents=True)
    make_video(site_dir / "clip.avi", 10)
    write_config(site_dir / "site.yaml", config_dict())
    return CameraSetupApp(tmp_path / "zones", tmp_path / "vigie.db")


def test_adding_then_switching_cameras_keeps_each_camera_its_own_id_and_source(tmp_path):
    app = two_camera_app(tmp_path)
    app.new_camera_id.value, app.new_camera_source.value = "salle", "clip.avi"
    app.add_camera_button.click()
    assert list(app.camera_picker.options) == ["cam-01", "salle"] and app.camera_picker.value == "salle"
    app.camera_picker.value = "cam-01"
    app.camera_picker.value = "salle"
    assert app.setup.camera_ids == ["cam-01", "salle"]
    assert app.setup.camera_form.values["id"] == "salle"
    assert [c["id"] for c in app.setup.draft()["cameras"]] == ["cam-01", "salle"]


def test_a_new_camera_shows_the_defaults_it_will_export(tmp_path):
    app = two_camera_app(tmp_path)
    app.new_camera_id.value, app.new_camera_source.value = "salle", "clip.avi"
    app.add_camera_button.click()
    view = next(v for v in app._form_views.values() if v.form is app.setup.camera_form)
    assert view.inputs["enabled"].value is True
    assert float(str(view.inputs["process_fps"].value).replace(",", ".")) == 5.0
    assert app.setup.config().camera("salle").process_fps == 5.0


def test_a_source_outside_the_allowed_folders_is_refused_alike_whether_the_file_exists_or_not(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_CLIPS_DIR", str(tmp_path / "clips"))
    app = two_camera_app(tmp_path)
    messages = []
    for source in ("/etc/shadow", "/etc/no-such-file-here", "../../../etc/shadow"):
        app.setup.camera_form.values["source"] = source
        problems = dict(app.setup.problems())
        messages.append(problems["cameras[0].source"].replace(source, "SOURCE"))
        with pytest.raises(SourceError):
            app.setup.grab_snapshot()
    assert len(set(messages)) == 1 and "refusée" in messages[0]
    for allowed in ("clip.avi", str(tmp_path / "clips" / "a.mp4"), "rtsp://cam.example/stream"):
        app.setup.camera_form.values["source"] = allowed
        assert "cameras[0].source" not in dict(app.setup.problems())


def test_the_stream_grab_shows_progress_and_can_be_cancelled(tmp_path):
    app = two_camera_app(tmp_path)
    app.setup.camera_form.values["source"] = "rtsp://viewer:secret@127.0.0.1:9/stream"
    app.grab_button.click()
    assert app.grab_cancel_button.layout.display == "flex" and app.grab_button.disabled
    deadline = time.monotonic() + 3
    while "connexion" not in app.status.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "connexion à la caméra cam-01" in app.status.value and "secret" not in app.status.value
    started = time.monotonic()
    app.grab_cancel_button.click()
    while app._grab_cancel is not None and time.monotonic() - started < 3:
        time.sleep(0.05)
    assert time.monotonic() - started < 2 and "annulé" in app.status.value
    assert app.grab_cancel_button.layout.display == "none" and not app.grab_button.disabled


def test_a_new_site_is_created_from_the_app_and_exported_as_revision_1(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "design")
    app = two_camera_app(tmp_path)
    app.new_site_name.value, app.new_site_timezone.value = "gare-nord", "Europe/Paris"
    app.new_site_camera.value, app.new_site_source.value = "quai-1", "rtsp://cam.example/quai1"
    app.create_site_button.click()
    assert app.site_picker.value == "gare-nord" and app.setup.camera_ids == ["quai-1"]
    app.actor.value = "Agent Dupont (DGPN)"
    app.export_button.click()
    exported = SiteFolder(tmp_path / "zones", "gare-nord").current().config
    assert (exported.revision, exported.timezone, exported.phase) == (1, "Europe/Paris", "design")
    assert exported.camera("quai-1").source == "rtsp://cam.example/quai1"
    app.create_site_button.click()  # the same name again
    assert "existe déjà" in app.status.value
    app._cancel_grab()  # the snapshot of the unreachable stream, still trying in the background


def test_a_concurrent_export_is_refused_then_merged_without_losing_either_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "design")
    first, second = two_camera_app(tmp_path), CameraSetupApp(tmp_path / "zones", tmp_path / "vigie.db")
    first.setup.camera_form.values["process_fps"] = 2.0
    first.actor.value = second.actor.value = "Agent"
    first.export_button.click()
    second.new_camera_id.value, second.new_camera_source.value = "salle", "clip.avi"
    second.add_camera_button.click()
    second.export_button.click()
    exported = html.unescape(second.export_output.value)
    assert "Caméra « cam-01 », images analysées par seconde (au plus) : 5.0 → 2.0" in exported
    assert second.conflict_box.layout.display == "flex"
    second.merge_button.click()
    second.export_button.click()
    exported = SiteFolder(tmp_path / "zones", "test-site").current().config
    assert exported.revision == 3 and [c.id for c in exported.cameras] == ["cam-01", "salle"]
    assert exported.camera("cam-01").process_fps == 2.0
    second.export_button.click()  # nothing changed since
    assert "rien à exporter" in second.export_output.value


def test_tab_titles_are_full_words_and_lumino_is_told_not_to_cut_them(tmp_path):
    app = two_camera_app(tmp_path)
    assert all(not title.endswith("…") for title in app.tabs.titles)
    assert "text-overflow:clip" in app.widget.children[0].value


def test_starting_again_after_a_conflict_reloads_the_site_as_the_other_agent_left_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "design")
    first, second = two_camera_app(tmp_path), CameraSetupApp(tmp_path / "zones", tmp_path / "vigie.db")
    first.setup.camera_form.values["process_fps"] = 2.0
    first.actor.value = second.actor.value = "Agent"
    first.export_button.click()
    second.setup.camera_form.values["process_fps"] = 8.0
    second.export_button.click()
    assert "vigie-conflict" in second.export_output.value
    second.start_again_button.click()
    assert second.setup.base_revision == 2 and second.setup.camera_form.values["process_fps"] == 2.0
    assert second.conflict_box.layout.display == "none"
