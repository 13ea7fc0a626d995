"""Vigie's weapon model (models/weapon-yolo11n) on real clips of ../shared/data (skipped when absent), through the
production runner, pinning what bench/weapon_eval.py measured (models/weapon-yolo11n/MODEL_CARD.md):

- with the rule settings chosen on the tuning half (confidence 0.75, 5 of 8 frames) it raises nothing, neither on
  the pistol close-up (a miss) nor on a clip without a weapon;
- with loose settings (confidence 0.25, 2 of 3) it finds the pistol close-up, and takes a woman meditating on the
  floor for a weapon (a false alert): the trade-off the card reports.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from runner.config.loading import LoadedConfig, parse_config
from runner.register import Register
from runner.service.lifecycle import Runner, RunOptions
from runner.tools.evaluation import load_labels, score_clip

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "models" / "weapon-yolo11n" / "MODEL_CARD.md"
pytestmark = [pytest.mark.data, pytest.mark.slow]
BOX = {"min_box_area_frac": 0.001, "max_box_area_frac": 0.2}
CHOSEN = {"min_confidence": 0.75, "min_hit_frames": 5, "window_frames": 8, **BOX}
LOOSE = {"min_confidence": 0.25, "min_hit_frames": 2, "window_frames": 3, **BOX}
CLIPS = {
    "pistol": "weapon_sentryvision_pistol_closeup.mp4",
    "meditation": "NEG_person_down_aishwarya_floor_meditation_sitting.mp4",
}


def site(shared_data: Path) -> LoadedConfig:
    """One camera per clip, the card's `models:` entry, a chosen and a loose weapon rule on each camera."""
    models = yaml.safe_load(re.search(r"```yaml\n(models:\n.*?)```", CARD.read_text(), re.DOTALL).group(1))
    cameras = [
        {
            "id": camera_id,
            "source": str(shared_data / "clips" / clip),
            "process_fps": 5,
            "rules": [
                {"kind": "weapon", "id": f"{camera_id}-{name}", "labels": ["weapon"], "extra_labels": [], **rule}
                for name, rule in (("chosen", CHOSEN), ("loose", LOOSE))
            ],
        }
        for camera_id, clip in CLIPS.items()
    ]
    data = {"schema_version": 1, "site": "weapon-model", "revision": 1, "phase": "design", **models, "cameras": cameras}
    return LoadedConfig(parse_config(yaml.safe_dump(data, sort_keys=False)), ROOT / "site.yaml", "0" * 64)


@pytest.fixture(scope="module")
def alert_times(shared_data, tmp_path_factory) -> dict[str, list[float]]:
    if not (ROOT / "models" / "weapon-yolo11n").is_dir():
        pytest.skip("models/weapon-yolo11n is absent")
    loaded = site(shared_data)
    with Register(tmp_path_factory.mktemp("weapon-model") / "alerts.db") as register:
        summary = Runner(loaded, register, RunOptions(mode="replay")).run()
    assert not summary.camera_errors
    times: dict[str, list[float]] = {f"{c}-{n}": [] for c in CLIPS for n in ("chosen", "loose")}
    for alert in summary.alerts:
        times[alert.record.rule_id].append(alert.record.t_s)
    return times


def test_the_chosen_settings_raise_nothing(alert_times):
    assert alert_times["pistol-chosen"] == []
    assert alert_times["meditation-chosen"] == []


def test_loose_settings_find_the_pistol_and_alert_falsely_on_a_clip_without_weapon(alert_times, shared_data):
    labels = [e for e in load_labels(shared_data / "labels" / "events.csv") if e.kind == "weapon"]

    pistol = score_clip(alert_times["pistol-loose"], [e for e in labels if e.clip == CLIPS["pistol"]])
    assert len(pistol.found) == 1 and not pistol.false_alert_times_s
    assert len(alert_times["meditation-loose"]) >= 1  # no weapon in that clip: every alert is false
