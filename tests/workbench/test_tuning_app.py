"""Tuning by replay: a synthetic clip through the real Runner (scripted detector in place of the
network), found / missed / false against a small CSV, rerun with a changed threshold, comparison of
two runs, progress and Cancel."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from runner.config.loading import load_config
from runner.core.errors import SourceError
from runner.register import Register
from tests.helpers import FakePool, ScriptedDetector, box_at, config_dict, make_video, write_config
from workbench.export import SiteFolder
from workbench.tuning_app import (
    ReplayRequest,
    TuningApp,
    TuningSession,
    comparison_html,
    focus_on_rule,
    read_labels,
    scores_html,
    timeline_svg,
)

INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 1.0, "cooldown_s": 0.0}
PERSON_IN_LAWN = (box_at(0.75, 0.9), "person", 0.9)
# 60 frames at 10 fps, analysed at 5 fps: 30 detector calls per replay, t = call / 5. A person
# stands in the lawn for t = 0-1.4 s and again for t = 4.6-5.8 s. The tracker confirms a track on
# its second frame, so the dwell starts 0.2 s after arrival: with min_dwell_s 1.0 the alerts come
# at 1.2 s (in the first labelled window: found) and 5.8 s (outside any window: false); with
# min_dwell_s 1.1 only the first visit (1.2 s tracked) is long enough, alerting at 1.4 s.
FRAMES_PER_REPLAY = 30
PRESENT_CALLS = set(range(0, 8)) | set(range(23, 30))
LABELS = """clip,event_type,polarity,start_s,end_s,gt_source,notes
clip.avi,intrusion,positive,0.5,1.5,manual,first visit: found
clip.avi,intrusion,positive,8.0,9.0,manual,after the end of the clip: missed
other.avi,intrusion,positive,5.0,6.0,manual,another clip: ignored
clip.avi,wrong_way,positive,5.0,6.0,manual,another kind: ignored
"""


def two_visits(call: int):
    # The session keeps one pool (here one scripted detector) for every run with the same models:
    # each replay starts the script again.
    return [PERSON_IN_LAWN] if call % FRAMES_PER_REPLAY in PRESENT_CALLS else []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site folder with its clip and a labels file, read-only for the tests (made once: video is slow)."""
    root = tmp_path_factory.mktemp("tuning-site")
    site_dir = root / "zones" / "test-site"
    site_dir.mkdir(parents=True)
    data = config_dict([INTRUSION, {"kind": "wrong_way", "id": "path-wrong-way", "zone": "path"}])
    write_config(site_dir / "site.yaml", data)
    clip = make_video(site_dir / "clip.avi", 60, fps=10, size=(320, 240))
    labels = root / "events.csv"
    labels.write_text(LABELS)
    return load_config(site_dir / "site.yaml"), clip, labels


def session_with(tmp_path, script) -> TuningSession:
    return TuningSession(
        Register(tmp_path / "tuning.db"),
        tmp_path / "runs",
        pool_factory=lambda config, base_dir: FakePool(ScriptedDetector(script)),
    )


def request(loaded, clip, rule_id="lawn-intrusion", label="r1"):
    return ReplayRequest(loaded.config, "cam-01", clip, rule_id, label, loaded.base_dir)


def test_a_replay_through_the_runner_is_scored_found_missed_false_against_the_labels(tmp_path, site):
    loaded, clip, labels = site
    session = session_with(tmp_path, two_visits)
    updates = []
    job = session.start(request(loaded, clip), read_labels(labels), on_update=lambda r: updates.append(r.progress))
    result = job.wait(20)

    assert result.state == "done" and result.stop_reason == "sources ended" and result.error is None
    assert [(a.t_s, a.rule_id) for a in result.alerts] == [
        (pytest.approx(1.2), "lawn-intrusion"),
        (pytest.approx(5.8), "lawn-intrusion"),
    ]
    score = result.scores["zone_intrusion"]
    assert [(e.start_s, e.end_s) for e in score.found] == [(0.5, 1.5)]
    assert [(e.start_s, e.end_s) for e in score.missed] == [(8.0, 9.0)]
    assert score.false_alert_times_s == [pytest.approx(5.8)]
    assert list(result.scores) == ["zone_intrusion"]  # only the rule that was replayed
    assert result.frames == result.expected_frames == 30 and updates[-1] == 1.0


def test_replay_alerts_are_tests_in_the_tuning_register_with_the_replayed_config_hash(tmp_path, site):
    loaded, clip, _ = site
    session = session_with(tmp_path, two_visits)
    result = session.start(request(loaded, clip)).wait(20)
    alerts = session.register.alerts()
    assert len(alerts) == len(result.alerts) == 2 and all(a["is_test"] and a["mode"] == "replay" for a in alerts)
    (loaded_row,) = session.register.audit_rows(event="config_loaded")
    replayed = Path(json.loads(loaded_row["details"])["path"])
    assert replayed.parent == tmp_path / "runs" and alerts[0]["config_sha256"] == load_config(replayed).sha256


def test_focusing_on_one_rule_disables_the_camera_s_other_rules(site):
    loaded, _, _ = site
    focused = focus_on_rule(loaded.config, "cam-01", "lawn-intrusion")
    assert {r.id: r.enabled for r in focused.camera("cam-01").rules} == {
        "lawn-intrusion": True,
        "path-wrong-way": False,
    }
    assert focus_on_rule(loaded.config, "cam-01", None) == loaded.config
    with pytest.raises(KeyError):
        focus_on_rule(loaded.config, "cam-01", "nope")


def test_a_higher_threshold_rerun_is_compared_with_the_first_run(tmp_path, site):
    loaded, clip, labels = site
    events = read_labels(labels)
    session = session_with(tmp_path, two_visits)
    first = session.start(request(loaded, clip), events).wait(20)
    stricter = loaded.config.model_copy(deep=True)
    data = stricter.model_dump(mode="json")
    data["cameras"][0]["rules"][0]["min_dwell_s"] = 1.1  # the second visit is tracked 1.0 s: no longer an alert
    stricter = type(loaded.config).model_validate(data)
    rerun = ReplayRequest(stricter, "cam-01", clip, "lawn-intrusion", "r1*", loaded.base_dir)
    second = session.start(rerun, events).wait(20)

    assert [round(a.t_s, 1) for a in second.alerts] == [1.4]
    assert len(second.scores["zone_intrusion"].false_alert_times_s) == 0
    page = comparison_html(first, second)
    assert "~ rules[lawn-intrusion].min_dwell_s: 1.0 -&gt; 1.1" in page
    assert page.count("class='alert found'") == 2 and page.count("class='alert false'") == 1
    # zone_intrusion, A -> B: alerts, found, missed, false
    assert "<td>2 → 1</td><td>1 → 1</td><td>1 → 1</td><td>1 → 0</td>" in page
    assert page.count("class='event positive'") == 2  # the two windows of clip.avi's intrusions


def test_the_timeline_draws_one_tick_per_alert_at_its_time(tmp_path, site):
    loaded, clip, labels = site
    result = session_with(tmp_path, two_visits).start(request(loaded, clip), read_labels(labels)).wait(20)
    svg = timeline_svg([result], width=760)
    assert svg.count("class='alert ") == 2
    assert "data-t='1.20'" in svg and "data-t='5.80'" in svg


def test_cancel_stops_the_runner_before_the_end_of_the_clip(tmp_path, site):
    loaded, clip, _ = site
    reached, release = threading.Event(), threading.Event()

    def slow(call: int):
        if call == 5:
            reached.set()
            release.wait(10)
        return []

    session = session_with(tmp_path, slow)
    job = session.start(request(loaded, clip))
    assert reached.wait(10) and session.busy
    with pytest.raises(RuntimeError):
        session.start(request(loaded, clip))  # one replay at a time
    session.cancel()
    release.set()
    result = job.wait(10)
    assert not job.running and result.state == "cancelled" and result.stop_reason == "stopped"
    assert 5 < result.frames < result.expected_frames == 30 and result.progress < 1.0


def test_a_missing_clip_or_labels_file_is_one_clear_error(tmp_path, site):
    loaded, _, _ = site
    session = session_with(tmp_path, two_visits)
    with pytest.raises(SourceError, match="nope.avi"):
        session.start(request(loaded, tmp_path / "nope.avi"))
    bad = tmp_path / "bad.csv"
    bad.write_text("clip,start\nx,1\n")
    with pytest.raises(SourceError, match="bad.csv"):
        read_labels(bad)
    assert read_labels(None) == [] and session.results == []


def test_the_app_runs_the_edited_threshold_and_fills_timeline_scores_and_comparison(tmp_path, site):
    loaded, clip, labels = site
    zones = loaded.base_dir.parent
    app = TuningApp(
        zones,
        tmp_path / "tuning.db",
        tmp_path / "clips",
        labels,
        tmp_path / "runs",
        pool_factory=lambda config, base_dir: FakePool(ScriptedDetector(two_visits)),
    )
    assert app.rule_picker.value == "lawn-intrusion" and app.clip_picker.value == str(clip)
    assert app.rule_view.inputs["zone"].options == (("—", None), ("lawn", "lawn"), ("path", "path"))
    app.run_button.click()
    app.session._job.wait(20)
    assert "class='alert found'" in app.timeline.value and "vigie-scores" in app.scores.value
    app.rule_view.inputs["min_dwell_s"].value = "-2"
    assert "doit être ≥ 0" in app.rule_view.errors["min_dwell_s"].value and app.run_button.disabled
    app.rule_view.inputs["min_dwell_s"].value = "1,1"
    assert not app.run_button.disabled
    app.run_button.click()
    app.session._job.wait(20)
    assert [r.request.label for r in app.session.results] == ["r1 lawn-intrusion", "r1* lawn-intrusion"]
    app.compare_button.click()
    assert "min_dwell_s: 1.0 -&gt; 1.1" in app.comparison.value
    assert SiteFolder(zones, "test-site").revisions() == []  # tuning never exports


# -- issue 19 --------------------------------------------------------------------------------------------
def two_camera_site(tmp_path) -> Path:
    """zones/two-cams: cam-01 films clip.avi, cam-02 films salle.avi (both in the site folder)."""
    site_dir = tmp_path / "zones" / "two-cams"
    site_dir.mkdir(parents=True)
    data = config_dict([INTRUSION], source="clip.avi")
    second = {**data["cameras"][0], "id": "cam-02", "source": "salle.avi", "rules": []}
    data["site"], data["cameras"] = "two-cams", [data["cameras"][0], second]
    write_config(site_dir / "site.yaml", data)
    for name in ("clip.avi", "salle.avi"):
        make_video(site_dir / name, 4, fps=10, size=(64, 48))
    return tmp_path / "zones"


def tuning_app(tmp_path, zones, script=two_visits, labels=None) -> TuningApp:
    return TuningApp(
        zones,
        tmp_path / "tuning.db",
        tmp_path / "clips",
        labels,
        tmp_path / "runs",
        pool_factory=lambda config, base_dir: FakePool(ScriptedDetector(script)),
        audit_register_path=tmp_path / "vigie.db",
    )


def test_the_clip_follows_the_camera_and_each_camera_keeps_its_own_choice(tmp_path):
    zones = two_camera_site(tmp_path)
    app = tuning_app(tmp_path, zones)
    site_dir = zones / "two-cams"
    assert app.clip_picker.value == str(site_dir / "clip.avi")
    app.camera_picker.value = "cam-02"
    assert app.clip_picker.value == str(site_dir / "salle.avi")
    app.clip_picker.value = str(tmp_path / "chosen-for-cam-02.avi")
    app.camera_picker.value = "cam-01"
    assert app.clip_picker.value == str(site_dir / "clip.avi")
    app.camera_picker.value = "cam-02"
    assert app.clip_picker.value == str(tmp_path / "chosen-for-cam-02.avi")


def test_tuned_thresholds_are_saved_as_a_new_revision_through_the_export_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "design")
    zones = two_camera_site(tmp_path)
    app = tuning_app(tmp_path, zones)
    type_number(app.rule_view.inputs["min_dwell_s"], 2.5)
    app.actor.value = "Agent Réglage (DGPN)"
    app.save_button.click()
    assert "révision 2" in app.save_output.value, app.save_output.value
    folder = SiteFolder(zones, "two-cams")
    assert folder.current().config.camera("cam-01").rules[0].min_dwell_s == 2.5
    (row,) = Register(tmp_path / "vigie.db").audit_rows(event="config_exported")
    assert row["actor"] == "Agent Réglage (DGPN)" and json.loads(row["details"])["revision"] == 2
    assert app.config.revision == 2 and app.rule_form.values["min_dwell_s"] == 2.5
    app.save_button.click()  # the same thresholds again: no new revision
    assert "rien à exporter" in app.save_output.value and [r.number for r in folder.revisions()] == [1, 2]
    app.revision_picker.value = folder.revision_path(1)  # tuning from an older revision: the site moved on
    type_number(app.rule_view.inputs["min_dwell_s"], 3.0)
    app.save_button.click()
    assert (
        "vigie-conflict" in app.save_output.value
        and "durée minimale de présence (s) : 1.0 → 2.5" in app.save_output.value
    )
    assert [r.number for r in folder.revisions()] == [1, 2]


def test_a_cancelled_run_is_scored_on_what_it_replayed_only(tmp_path, site):
    loaded, clip, labels = site
    reached, release = threading.Event(), threading.Event()

    def stop_after_the_first_visit(call: int):
        if call == 12:  # t = 2.4 s: the first visit was found, the second (4.6 s) never replayed
            reached.set()
            release.wait(10)
        return two_visits(call)

    session = session_with(tmp_path, stop_after_the_first_visit)
    labels_text = "clip,event_type,polarity,start_s,end_s\nclip.avi,intrusion,positive,0.5,1.5\n"
    labels_text += "clip.avi,intrusion,positive,4.6,5.8\n"
    events = read_labels(_write(tmp_path / "two.csv", labels_text))
    job = session.start(request(loaded, clip), events)
    assert reached.wait(10)
    session.cancel()
    release.set()
    result = job.wait(10)
    assert result.state == "cancelled" and 2.0 <= result.replayed_s < 4.0
    score = result.scores["zone_intrusion"]
    assert len(score.found) == 1 and score.missed == []  # the 4.6 s visit was never replayed
    assert "annulé à" in scores_html(result)


def type_number(control, value: float) -> None:
    """What an agent types in a number field, whether it is a text box (locale-aware) or a number box."""
    control.value = str(value).replace(".", ",") if isinstance(control.value, str) else value


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_thresholds_box_scrolls_over_every_field_instead_of_squeezing_them(tmp_path):
    app = tuning_app(tmp_path, two_camera_site(tmp_path))
    assert app.form_box.layout.overflow == "hidden auto"  # ipywidgets 8 has no overflow_y: it was ignored
    assert app.rule_view.widget.layout.flex == "0 0 auto"
    assert set(app.rule_view.inputs) == {spec.name for spec in app.rule_form.specs}
