"""The fire rule on real footage (../shared/data, skipped when absent), scored against its event labels.

The evaluation site zones/eval-fire/site.yaml runs the flame model of fire-detector==1.0.3 at 320 px
and 3 fps on cameras processed at 6 fps, with the rule's defaults on every camera.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import yaml

from runner.config.loading import LoadedConfig, load_config, parse_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.tools.evaluation import load_labels, score_clip

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "zones" / "eval-fire" / "site.yaml"
pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture()
def fire_site(shared_data, monkeypatch):
    pytest.importorskip("fire_detector", reason="the fire-detector wheel (flame model) is not installed")
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    return load_config(SITE)


def replay(loaded, camera_id: str, tmp_path: Path):
    with Register(tmp_path / f"{camera_id}.db") as register:
        summary = Runner(loaded, register, RunOptions(mode="replay", camera_ids=[camera_id])).run()
        assert not summary.camera_errors
        assert summary.frames[camera_id] > 0
        return [a.record for a in summary.alerts]


def labels_of(shared_data: Path, clip: str):
    return [e for e in load_labels(shared_data / "labels" / "events.csv") if e.clip == clip and e.kind == "fire"]


# camera, clip, most seconds from the labelled start of the flames to the alert (issue 18: at most 3 s; measured
# 1.67, 2.00, 2.72, 1.40. The news clip cuts to a close-up 0.5 s after the flames appear, where the model boxes a
# taller fire: growth in place, no longer taken for a light driving in, which used to delay the alert to 3.41 s)
@pytest.mark.parametrize(
    ("camera_id", "clip", "max_delay_s"),
    [
        ("kitchen", "fire_emoykim_test2_kitchen_sink_fire.mp4", 3.0),
        ("bonfire", "fire_emoykim_test5_bonfire_closeup.mp4", 3.0),
        ("nvr-motorbike", "fire_l0kxh_petrol_station_nvr_motorbike_fire_start.mp4", 3.0),
        ("cgtn-minibus", "fire_l0kxh_cgtn_petrol_station_minibus_fire_news.mp4", 3.0),
    ],
)
def test_visible_flames_alert_once_soon_after_their_labelled_start(
    fire_site, shared_data, tmp_path, camera_id, clip, max_delay_s
):
    labels = labels_of(shared_data, clip)
    assert [e.polarity for e in labels] == ["positive"]

    alerts = replay(fire_site, camera_id, tmp_path)

    score = score_clip([a.t_s for a in alerts], labels)
    assert score.missed == [] and score.false_alert_times_s == []
    assert len(alerts) == 1  # one alert per fire, not one per frame or per flame
    assert alerts[0].details["confirmed_by"] in ("flicker", "growth")
    assert alerts[0].t_s - labels[0].start_s <= max_delay_s


def _neon_site_at(imgsz: int) -> LoadedConfig:
    """The evaluation site with the model at `imgsz` and, on the neon camera, a control rule that
    trusts persistence alone (confirm_by_flicker: false)."""
    data = yaml.safe_load(SITE.read_text())
    data["models"]["fire"]["imgsz"] = imgsz
    neon = next(c for c in data["cameras"] if c["id"] == "neon")
    neon["rules"].append({"kind": "fire", "id": "neon-persistence-only", "confirm_by_flicker": False})
    return LoadedConfig(parse_config(yaml.safe_dump(data, sort_keys=False)), SITE, "0" * 64)


def test_the_night_neon_sign_is_rejected_by_the_flicker_check(shared_data, monkeypatch, tmp_path):
    """At 640 px the flame model calls the sign "fire" on most frames and persistence alone alerts;
    the flicker check (the same rule with its defaults) does not. (At the site's 320 px the model's
    confidence already stays too low on this clip for persistence: see the negatives below.)"""
    pytest.importorskip("fire_detector")
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    clip = "fire_emoykim_test7_NEGATIVE_lasvegas_sign_night.mp4"
    assert [e.polarity for e in labels_of(shared_data, clip)] == ["negative"]

    alerts = replay(_neon_site_at(640), "neon", tmp_path)

    assert [a.t_s for a in alerts if a.rule_id == "neon-fire"] == []
    control = [a for a in alerts if a.rule_id == "neon-persistence-only"]
    assert control, "the control rule should show that the model alone takes the sign for a fire at 640 px"


@pytest.mark.parametrize("camera_id", ["neon", "doorbell-night", "rain", "highway", "ambulance", "sunset", "church"])
def test_no_fire_alert_on_clips_without_fire(fire_site, tmp_path, camera_id):
    """The night neon sign with the site's own settings, a night doorbell camera facing street lamps,
    a rainy street with red and orange signs, a highway with a red car, a night street filmed from a
    moving car with an ambulance's beacons, a time-lapse sunset with sun glare, a church with golden
    altar lighting and candles. (The 80 s PETS clip is in the docs/quality.md's table: too long for
    the test budget.)"""
    assert replay(fire_site, camera_id, tmp_path) == []


def _one_frame_per_second(clip: Path, out: Path) -> Path:
    """A copy of `clip` keeping one frame per second, played at 1 fps (a time-lapse of the same scene)."""
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    writer = None
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % round(fps) == 0:
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 1.0, size)
            writer.write(frame)
        index += 1
    capture.release()
    assert writer is not None
    writer.release()
    return out


def test_a_fire_filmed_at_one_frame_per_second_still_alerts(shared_data, monkeypatch, tmp_path):
    """The outdoor fire start kept at one frame per second: flicker cannot be measured, so the rule
    decides from the frames' actual interval and confirms the region by its persistence over its last
    6 frames, its pixels changing between them."""
    pytest.importorskip("fire_detector")
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    slow = _one_frame_per_second(
        shared_data / "clips" / "fire_emoykim_test1_outdoor_fire_start.mp4", tmp_path / "s.mp4"
    )
    data = yaml.safe_load(SITE.read_text())
    outdoor = next(c for c in data["cameras"] if c["id"] == "outdoor")
    outdoor["source"] = str(slow)
    loaded = LoadedConfig(parse_config(yaml.safe_dump(data, sort_keys=False)), SITE, "0" * 64)

    alerts = replay(loaded, "outdoor", tmp_path)

    assert [a.details["confirmed_by"] for a in alerts] == ["persistence"]
    assert alerts[0].t_s <= 6.0
