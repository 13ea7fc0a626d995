"""Locale-true numbers and the config in the agent's words, without a browser: the decimal parser, the
French title and help of every config field, rule kinds by name, validation problems that name the
field as the form shows it, and English with VIGIE_LANG=en."""

from __future__ import annotations

import copy

import ipywidgets as widgets
import pytest
from pydantic import ValidationError

from runner.config.loading import validation_problems
from runner.config.rules import RULE_CONFIGS_BY_KIND
from runner.config.rules.zone_intrusion import ZoneIntrusionConfig
from runner.config.site import SiteConfig
from tests.helpers import config_dict
from workbench import i18n
from workbench.config_text import (
    CONFIG_MODELS,
    FIELDS_FR,
    describe_problem,
    field_help,
    field_title,
    kind_title,
    problem_message,
)
from workbench.export import ExportError
from workbench.forms import ModelForm, ModelFormView, format_decimal, new_rule, parse_decimal
from workbench.setup_app import CameraSetup


@pytest.fixture(autouse=True)
def french(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("VIGIE_LANG", raising=False)
    i18n.set_language(None)
    yield
    i18n.set_language(None)


# -- numbers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "number"),
    [("1,5", 1.5), ("1.5", 1.5), ("0,45", 0.45), (" -2 ", -2.0), (",5", 0.5), ("3,", 3.0), ("1e-3", 0.001)],
)
def test_a_decimal_comma_or_point_gives_the_number_the_agent_meant(typed, number):
    assert parse_decimal(typed) == number


@pytest.mark.parametrize("typed", ["abc", "1,5,3", "1 000", "1.000,5", "15 %", "1,5 s", "--1", "0x10", "nan", "inf"])
def test_anything_else_is_refused_with_a_french_message_quoting_it(typed):
    with pytest.raises(ValueError, match=r"« .+ » : nombre attendu \(ex\. 1,5 ou 1\.5\)"):
        parse_decimal(typed)


def test_whole_numbers_empty_fields_and_english_messages():
    assert parse_decimal("3") == 3 and isinstance(parse_decimal("3,0", integer=True), int)
    with pytest.raises(ValueError, match="nombre entier attendu"):
        parse_decimal("3,5", integer=True)
    assert parse_decimal("  ") is None
    with pytest.raises(ValueError, match="nombre attendu"):
        parse_decimal("", nullable=False)
    i18n.set_language("en")
    with pytest.raises(ValueError, match="'abc': a number is expected"):
        parse_decimal("abc")


def test_numbers_are_shown_as_the_agents_locale_writes_them():
    assert [format_decimal(v) for v in (1.5, 0.45, 1.0, 3, None)] == ["1,5", "0,45", "1", "3", ""]
    i18n.set_language("en")
    assert format_decimal(1.5) == "1.5"


def test_a_form_stores_commas_as_numbers_and_refuses_other_text_at_the_field():
    form = ModelForm(ZoneIntrusionConfig, new_rule("zone_intrusion", "r", zone="lawn"))
    form.set("min_dwell_s", "1,5")
    form.set("handover_radius_frac", "0,45")
    assert (form.values["min_dwell_s"], form.values["handover_radius_frac"]) == (1.5, 0.45)
    assert form.input_errors == {} and form.display_value("min_dwell_s") == "1,5"
    form.set("min_dwell_s", "1,5,0")
    # Not stored (the previous value stays); the field says why in French, and the apps count it as a problem.
    assert form.values["min_dwell_s"] == 1.5
    assert form.input_errors == {"min_dwell_s": "« 1,5,0 » : nombre attendu (ex. 1,5 ou 1.5)"}
    form.set("min_dwell_s", "2")
    assert form.values["min_dwell_s"] == 2.0 and form.input_errors == {}


def test_number_fields_are_text_boxes_with_french_labels_and_the_key_in_the_tooltip():
    form = ModelForm(ZoneIntrusionConfig, new_rule("zone_intrusion", "r", zone="lawn"))
    view = ModelFormView(form, on_change=lambda: None, ref_options=lambda kind: ["lawn"])
    dwell = view.inputs["min_dwell_s"]
    assert type(dwell) is widgets.Text and dwell.value == "1" and not dwell.continuous_update
    dwell.value = "abc"  # what the browser sends when the agent leaves the field
    view.show_problems({})
    assert "nombre attendu" in view.errors["min_dwell_s"].value
    html = "".join(w.value for w in _html_widgets(view.widget))
    assert "<span title='min_dwell_s'>Durée minimale de présence (s)</span>" in html
    assert "avant l&#39;alerte (secondes). [0 ≤ … ≤ 3600]" in html
    assert ("de gauche à droite", "left_to_right") in view.inputs["crossing"].options  # the value stays the config's


def _html_widgets(widget):
    if isinstance(widget, widgets.HTML):
        yield widget
    for child in getattr(widget, "children", ()):
        yield from _html_widgets(child)


# -- the config's words -----------------------------------------------------------------------------
def test_every_config_field_has_a_french_title_and_help():
    missing = [
        f"{model.__name__}.{name}"
        for model in CONFIG_MODELS
        for name in model.model_fields
        if not (FIELDS_FR.get(f"{model.__name__}.{name}") or FIELDS_FR.get(name))
    ]
    assert missing == [], "add them to workbench/config_text.py FIELDS_FR"
    for model in CONFIG_MODELS:
        for name in model.model_fields:
            assert field_title(model, name) and field_help(model, name), (model.__name__, name)


def test_every_rule_kind_has_a_name_in_both_languages():
    french = {kind: kind_title(kind) for kind in RULE_CONFIGS_BY_KIND}
    assert french["zone_intrusion"] == "Intrusion en zone interdite"
    assert all(name != kind for kind, name in french.items()), french
    i18n.set_language("en")
    english = {kind: kind_title(kind) for kind in RULE_CONFIGS_BY_KIND}
    assert all(name != kind and name != french[kind] for kind, name in english.items()), english


def test_english_with_vigie_lang_en_titles_from_the_names_and_help_from_the_models(monkeypatch):
    monkeypatch.setenv("VIGIE_LANG", "en")
    assert field_title(ZoneIntrusionConfig, "min_dwell_s") == "Min dwell (s)"
    assert field_help(ZoneIntrusionConfig, "min_dwell_s") == ZoneIntrusionConfig.model_fields["min_dwell_s"].description
    assert problem_message("must be >= 0") == "must be >= 0"
    assert describe_problem("cameras[0].rules[0].min_dwell_s", "must be >= 0", _parvis()) == (
        "Camera 'parvis', rule 'lawn-intrusion', min dwell (s): must be >= 0"
    )


def _parvis() -> dict:
    rule = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn"}
    data = config_dict([rule], id="parvis")
    return SiteConfig.model_validate(data).model_dump(mode="json")


def test_a_problem_names_the_camera_the_rule_and_the_field_as_the_agent_sees_them():
    setup = CameraSetup(_parvis())
    setup.canvas.set_tool("calibration")
    for x, y in ((0.1, 0.9), (0.9, 0.9), (0.7, 0.4), (0.3, 0.4)):
        setup.canvas.click(x, y)
    setup.set_world_point(0, "abc", 0.0)
    for index in (1, 2, 3):
        setup.set_world_point(index, float(index), float(index * index))
    setup.rules[0].set("min_dwell_s", "-1")
    setup.rules[0].set("clear_s", "deux")
    lines = [describe_problem(path, message, setup.draft()) for path, message in setup.problems()]
    assert "Caméra « parvis », calibration au sol, point 1 (x) : nombre attendu" in lines
    assert "Caméra « parvis », règle « lawn-intrusion », durée minimale de présence (s) : doit être ≥ 0" in lines
    refused = "Caméra « parvis », règle « lawn-intrusion », retour au calme (s) : « deux » : nombre attendu"
    assert [line for line in lines if "retour au calme" in line] == [refused + " (ex. 1,5 ou 1.5)"]
    with pytest.raises(ExportError):
        setup.config()


def test_the_runners_messages_for_common_mistakes_all_read_in_french():
    good = SiteConfig.model_validate(config_dict()).model_dump(mode="json")
    broken = copy.deepcopy(good)
    broken["phase"] = "test"
    broken["timezone"] = "Mars/Olympus"
    broken["retention"] = {"media_days": 40}
    broken["models"]["person"]["imgsz"] = 100
    camera = broken["cameras"][0]
    camera["id"] = "Caméra 1"
    camera["process_fps"] = "vite"
    camera["unknown"] = 1
    camera["zones"][0]["polygon"] = [[0.1, 0.1], [0.2, 0.2]]
    camera["lines"][0]["end"] = camera["lines"][0]["start"]
    camera["rules"] = [
        {"kind": "zone_intrusion", "id": "a", "zone": "nowhere", "min_dwell_s": -1, "active_hours": [{"start": "25h"}]},
        {"kind": "zone_intrusion", "id": "b", "zone": "lawn", "line": "gate"},
        {"kind": "crowd_density", "id": "c", "zone": "lawn"},
    ]
    with pytest.raises(ValidationError) as caught:
        SiteConfig.model_validate(broken)
    problems = validation_problems(caught.value)
    assert len(problems) >= 8
    untranslated = [message for _, message in problems if problem_message(message) == message]
    assert untranslated == []


def test_an_export_change_names_the_field_as_the_agent_sees_it():
    from workbench.config_text import describe_change
    from workbench.export import MISSING, FieldChange

    site = {"cameras": [{"id": "parvis", "rules": [{"id": "lawn", "kind": "zone_intrusion"}], "zones": [{"id": "z"}]}]}
    rule_change = FieldChange("cameras[parvis].rules[lawn].min_dwell_s", 1.0, 1.5)
    assert describe_change(rule_change, site) == (
        "~ Caméra « parvis », règle « lawn », durée minimale de présence (s) : 1.0 → 1.5"
    )
    assert describe_change(FieldChange("cameras[parvis].zones[z]", MISSING, {"id": "z"}), site).startswith(
        "+ Caméra « parvis », zone « z » : "
    )
    gone = FieldChange("cameras[salle]", {"id": "salle"}, MISSING)  # no longer in the site: named by its id
    assert describe_change(gone, site) == "- cameras[salle]: {id: salle}"
