"""The weapon model Vigie ships (models/weapon-yolo11n): its files are the ones its card names (sha256), the card's
`models:` entry loads through the runner's resolution and detects on a synthetic frame, and a site that declares it
runs it only where a weapon rule is enabled."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from runner.config.loading import parse_config
from runner.inference.detector import ModelPool
from runner.inference.modelref import file_sha256, weights_sha256
from tests.conftest import ROOT

MODEL_DIR = ROOT / "models" / "weapon-yolo11n"
CARD = MODEL_DIR / "MODEL_CARD.md"
WEIGHTS = MODEL_DIR / "weapon-yolo11n_int8_openvino_model"
FILE_ROW = re.compile(r"^\|\s*`([\w.-]+)`\s*\|\s*`([0-9a-f]{64})`\s*\|", re.MULTILINE)
MODELS_BLOCK = re.compile(r"```yaml\n(models:\n.*?)```", re.DOTALL)


def card_models_entry() -> dict:
    """The `models:` block users copy from the card."""
    match = MODELS_BLOCK.search(CARD.read_text(encoding="utf-8"))
    assert match, "MODEL_CARD.md has no ```yaml models: block"
    return yaml.safe_load(match.group(1))["models"]


def site_with(rule_enabled: bool) -> str:
    """A one-camera site declaring the card's model, with a weapon rule on it, enabled or not."""
    rule = {"kind": "weapon", "id": "door-weapon", "labels": ["weapon"], "enabled": rule_enabled}
    return yaml.safe_dump(
        {
            "schema_version": 1,
            "site": "weapon-model-test",
            "revision": 1,
            "phase": "design",
            "models": card_models_entry(),
            "cameras": [{"id": "door", "source": "0", "rules": [rule]}],
        },
        sort_keys=False,
    )


def test_the_shipped_files_are_those_of_the_card():
    rows = dict(FILE_ROW.findall(CARD.read_text(encoding="utf-8")))

    assert set(rows) == {"weapon-yolo11n.xml", "weapon-yolo11n.bin", "metadata.yaml"}
    assert {name: file_sha256(WEIGHTS / name) for name in rows} == rows
    assert sorted(p.name for p in WEIGHTS.iterdir()) == sorted(rows)  # nothing else in the folder
    assert card_models_entry()["weapon"]["sha256"] == weights_sha256(WEIGHTS)


def test_the_cards_models_entry_loads_and_runs_on_a_frame():
    config = parse_config(site_with(rule_enabled=True))
    pool = ModelPool(config, ROOT)  # the entry's path is relative to the repository root

    detector = pool.get("weapon")  # resolution verifies the entry's sha256 against the folder
    frame = np.full((480, 640, 3), 90, dtype=np.uint8)
    frame[200:260, 300:420] = 20  # a dark bar on a grey wall: nothing the model should call a weapon
    (detections,) = detector.detect([frame])

    assert detector.names == {0: "weapon"}
    assert detector.backend == "openvino"
    assert len(detections) == 0


@pytest.mark.parametrize(("enabled", "plan"), [(False, {}), (True, {"weapon": frozenset({"weapon"})})])
def test_the_model_runs_only_where_a_weapon_rule_is_enabled(enabled, plan):
    config = parse_config(site_with(rule_enabled=enabled))
    camera = config.cameras[0]
    pool = ModelPool(config, ROOT)

    assert pool.plan(camera.required_labels(), camera.optional_labels()) == plan
    assert pool.loaded() == {}  # the `classes` hint: planning never loads the weights
