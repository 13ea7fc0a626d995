"""Rules on real footage (../shared/data, skipped when absent), scored against its event labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.loading import load_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.tools.evaluation import load_labels, score_clip

ROOT = Path(__file__).resolve().parents[2]
EVAL_SITE = ROOT / "zones" / "eval" / "site.yaml"
pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture()
def eval_site(shared_data, monkeypatch):
    if not (shared_data / "models" / "yolo11n_int8_openvino_model").is_dir():
        pytest.skip("COCO OpenVINO model absent from the shared data")
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    return load_config(EVAL_SITE)


def replay(loaded, camera_id: str, tmp_path: Path):
    with Register(tmp_path / "vigie.db") as register:
        summary = Runner(loaded, register, RunOptions(mode="replay", camera_ids=[camera_id])).run()
        assert not summary.camera_errors
        assert register.verify().ok
        return [a.record for a in summary.alerts]


def test_zone_intrusion_finds_the_six_table_visits_and_nothing_else(eval_site, shared_data, tmp_path):
    clip = "intrusion_intel_one_by_one_person_room.mp4"
    labels = [
        e for e in load_labels(shared_data / "labels" / "events.csv") if e.clip == clip and e.kind == "zone_intrusion"
    ]
    assert len(labels) == 6

    alerts = replay(eval_site, "room", tmp_path)

    assert {a.kind for a in alerts} <= {"zone_intrusion"}
    score = score_clip([a.t_s for a in alerts], labels, tolerance_s=1.0)
    assert [e.start_s for e in score.missed] == []
    assert score.false_alert_times_s == []
    assert len(alerts) == 6  # one alert per visit, not one per frame or per track fragment


def _right_of_median(bbox) -> bool:
    """The highway's median strip runs from about (0.70, 0.12) to (0.25, 0.95) in this view."""
    x, y = (bbox[0] + bbox[2]) / 2, bbox[3]
    median_x = 0.70 - 0.45 * (y - 0.12) / 0.83
    return x > median_x


def test_wrong_way_flags_only_the_opposite_carriageway(eval_site, tmp_path):
    alerts = replay(eval_site, "highway", tmp_path)

    assert alerts, "the opposite carriageway's traffic should be flagged"
    on_wrong_side = [a for a in alerts if not _right_of_median(a.bbox)]
    assert on_wrong_side == [], f"alerts on the allowed carriageway: {[(a.t_s, a.bbox) for a in on_wrong_side]}"
    # About 25 vehicles drive away from the camera on the right carriageway in these 30 s.
    assert len(alerts) >= 15
    assert len({a.track_id for a in alerts}) == len(alerts)  # one alert per vehicle
    assert all(a.details["angle_deg"] > 120 for a in alerts)
