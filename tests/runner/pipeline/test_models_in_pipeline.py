"""Which models a camera runs, how often, which detections bypass the tracker, and re-detection crops."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
import yaml

from runner.config.loading import parse_config
from runner.core.errors import ModelError
from runner.inference.crops import boxes_to_frame, make_crop, points_to_frame
from runner.inference.detector import ModelPool, load_custom_layers
from runner.pipeline.camera import CameraPipeline
from runner.rules.base import FrameContext, Rule
from runner.sources.capture import Frame
from tests.helpers import HEIGHT, WIDTH, ScriptedDetector, box_at, config_dict

START = datetime(2025, 5, 13, 10, 0, tzinfo=UTC)


def config_with_models(models: dict, rules: list[dict]):
    data = config_dict(rules)
    data["models"] = models
    return parse_config(yaml.safe_dump(data, sort_keys=False))  # model order matters


class ScriptedPool(ModelPool):
    """A real ModelPool (planning logic under test) whose models are scripted detectors."""

    def __init__(self, config, detectors: dict[str, ScriptedDetector]):
        super().__init__(config)
        self.detectors = detectors
        self.loads: list[str] = []

    def get(self, name):
        self.loads.append(name)
        return self.detectors[name]


def scripted(name: str, names: dict[int, str], script=lambda i: []) -> ScriptedDetector:
    return ScriptedDetector(script, names=names, name=name)


# -- planning ----------------------------------------------------------------------------------------
PERSON_RULE = {"kind": "zone_intrusion", "id": "z", "zone": "lawn", "labels": ["person", "car"]}


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["coco", "pose"], {"coco": {"person", "car"}}),
        (["pose", "coco"], {"pose": {"person"}, "coco": {"car"}}),
    ],
)
def test_each_label_goes_to_the_first_model_that_provides_it(order, expected):
    specs = {"coco": {"weights": "coco.pt"}, "pose": {"weights": "pose.pt"}}
    config = config_with_models({name: specs[name] for name in order}, [PERSON_RULE])
    pool = ScriptedPool(
        config, {"coco": scripted("coco", {0: "person", 2: "car"}), "pose": scripted("pose", {0: "person"})}
    )
    plan = pool.plan(frozenset({"person", "car"}))
    assert {k: set(v) for k, v in plan.items()} == expected


def test_optional_labels_are_taken_when_provided_and_ignored_otherwise():
    config = config_with_models({"coco": {"weights": "coco.pt"}, "fall": {"weights": "fall.pt"}}, [PERSON_RULE])
    pool = ScriptedPool(
        config, {"coco": scripted("coco", {0: "person"}), "fall": scripted("fall", {0: "Normal", 1: "Fall"})}
    )
    plan = pool.plan(frozenset({"person"}), frozenset({"Fall", "smoke"}))
    assert {k: set(v) for k, v in plan.items()} == {"coco": {"person"}, "fall": {"Fall"}}


def test_a_missing_required_label_names_the_label_and_what_models_offer():
    config = config_with_models({"coco": {"weights": "coco.pt"}}, [PERSON_RULE])
    pool = ScriptedPool(config, {"coco": scripted("coco", {0: "person"})})
    with pytest.raises(ModelError, match=r"no configured model detects \['knife'\] \(models: coco: person\)"):
        pool.plan(frozenset({"person", "knife"}))


def test_a_classes_hint_plans_without_loading_unneeded_models():
    models = {
        "fire": {"weights": "missing-fire.pt", "classes": ["fire", "smoke"], "track": False},
        "coco": {"weights": "coco.pt", "classes": ["person", "car"]},
    }
    config = config_with_models(models, [PERSON_RULE])
    pool = ScriptedPool(config, {"coco": scripted("coco", {0: "person", 1: "car"})})
    assert {k: set(v) for k, v in pool.plan(frozenset({"person"})).items()} == {"coco": {"person"}}
    assert pool.loads == []  # neither model was loaded to decide


def test_cadence_is_refused_for_tracked_models():
    from runner.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"models.coco.max_fps: only untracked models"):
        config_with_models({"coco": {"weights": "coco.pt", "max_fps": 2}}, [PERSON_RULE])


# -- cadence and untracked models in the pipeline ----------------------------------------------------
class Spy(Rule):
    """Records what a rule would see."""

    kind = "zone_intrusion"

    def __init__(self):
        self.seen: list[FrameContext] = []

    def update(self, ctx):
        self.seen.append(ctx)
        return []

    def state_size(self):
        return 0


def test_untracked_models_bypass_the_tracker_and_run_at_their_own_rate():
    rule = {"kind": "zone_intrusion", "id": "z", "zone": "lawn", "labels": ["person", "fire"]}
    models = {"coco": {"weights": "coco.pt"}, "flames": {"weights": "flames.pt", "track": False, "max_fps": 2.0}}
    config = config_with_models(models, [rule])
    person = lambda i: [(box_at(0.2 + 0.01 * i, 0.9), "person", 0.9)]  # noqa: E731
    flame = lambda i: [(box_at(0.7, 0.9, 0.2, 0.2), "fire", 0.8)]  # noqa: E731
    pool = ScriptedPool(
        config, {"coco": scripted("coco", {0: "person"}, person), "flames": scripted("flames", {0: "fire"}, flame)}
    )
    from pathlib import Path

    from runner.config.loading import LoadedConfig

    pipe = CameraPipeline(
        LoadedConfig(config, Path("site.yaml"), "0" * 64), config.cameras[0], pool, None, mode="replay"
    )
    spy = Spy()
    pipe.rules = [spy]
    for i in range(11):  # 5 fps for 2 s
        t = i / 5
        pipe.process(Frame("cam-01", i, t, START + timedelta(seconds=t), np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    ran_flames = [round(ctx.t_s, 1) for ctx in spy.seen if "flames" in ctx.models_run]
    assert ran_flames == [0.0, 0.6, 1.0, 1.6, 2.0]  # every 0.5 s at most, on the frames available
    assert all("coco" in ctx.models_run for ctx in spy.seen)
    last = spy.seen[-1]
    names = list(last.class_names)
    fire_ids = [int(t) for t, n in zip(last.track_ids, names) if n == "fire"]
    person_ids = [int(t) for t, n in zip(last.track_ids, names) if n == "person"]
    assert fire_ids == [-1] and person_ids and person_ids[0] >= 0
    assert len(last.tracks) == 1  # only the person is in the track history


# -- custom layers -----------------------------------------------------------------------------------
def test_custom_layers_are_published_on_main(tmp_path):
    layers = tmp_path / "my_layers.py"
    layers.write_text("class VigieTestBlock:\n    pass\n")
    load_custom_layers("m", str(layers))
    import __main__

    assert getattr(__main__, "VigieTestBlock").__name__ == "VigieTestBlock"
    assert "my_layers" not in sys.modules


def test_missing_custom_layers_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"model 'm': custom_layers file '.*nope.py' not found"):
        load_custom_layers("m", str(tmp_path / "nope.py"))


# -- crops -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rotate_deg", [0, 90, 180, 270])
def test_boxes_and_points_found_in_a_rotated_crop_map_back_to_the_frame(rotate_deg):
    frame = np.zeros((200, 300, 3), np.uint8)
    cv2.rectangle(frame, (100, 50), (159, 69), (255, 255, 255), -1)  # a lying "person": wide box
    crop = make_crop(frame, (90 / 300, 40 / 200, 170 / 300, 80 / 200), pad_frac=0.25, rotate_deg=rotate_deg)
    ys, xs = np.nonzero(cv2.cvtColor(crop.image, cv2.COLOR_BGR2GRAY))
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=float)
    assert boxes_to_frame(found, crop).tolist() == [[100.0, 50.0, 160.0, 70.0]]
    corner = np.array([[xs.min(), ys.min()]], dtype=float)
    back = points_to_frame(corner, crop)[0]
    assert back[0] in (100.0, 160.0) and back[1] in (50.0, 70.0)


def test_redetect_runs_the_labels_model_on_a_rotated_crop():
    config = config_with_models(
        {"coco": {"weights": "coco.pt"}}, [{"kind": "zone_intrusion", "id": "z", "zone": "lawn"}]
    )
    sizes: list[tuple[int, int]] = []

    class CropDetector(ScriptedDetector):
        def detect(self, images, labels=None):
            sizes.extend(image.shape[:2] for image in images)
            return super().detect(images, labels)

    # In the crop the detector sees a box covering its left half.
    detector = CropDetector(lambda i: [((0.0, 0.0, 0.5, 1.0), "person", 0.8)], names={0: "person"}, name="coco")
    from pathlib import Path

    from runner.config.loading import LoadedConfig

    pipe = CameraPipeline(
        LoadedConfig(config, Path("s.yaml"), "0" * 64),
        config.cameras[0],
        ScriptedPool(config, {"coco": detector}),
        None,
    )
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    found = pipe._redetect(image, "person", (0.25, 0.5, 0.5, 0.6), rotate_deg=90, pad_frac=0.0)
    assert sizes == [(160, 48)]  # the 160x48 px region, turned on its side
    assert found.tracker_id.tolist() == [-1]
    x1, y1, x2, y2 = found.xyxy[0]
    # The left half of the rotated crop is the region's bottom half in the frame.
    assert (x1, x2) == (160.0, 320.0) and (y1, y2) == (264.0, 288.0)


def test_redetect_of_a_label_no_model_provides_finds_nothing():
    # person_down's fall_labels are optional: with no fall model configured, its whole-frame and crop
    # passes must find nothing rather than fail the rule (and with it the camera's falls).
    config = config_with_models(
        {"coco": {"weights": "coco.pt"}}, [{"kind": "zone_intrusion", "id": "z", "zone": "lawn"}]
    )
    detector = scripted("coco", {0: "person"}, lambda i: [((0.0, 0.0, 0.5, 1.0), "person", 0.8)])
    from pathlib import Path

    from runner.config.loading import LoadedConfig

    pipe = CameraPipeline(
        LoadedConfig(config, Path("s.yaml"), "0" * 64),
        config.cameras[0],
        ScriptedPool(config, {"coco": detector}),
        None,
    )
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    whole = pipe._redetect(image, "Fall", (0.0, 0.0, 1.0, 1.0), pad_frac=0.0)
    crops = pipe._redetect_many(image, "Fall", [(0.1, 0.1, 0.3, 0.6), (0.5, 0.5, 0.7, 0.9)], rotate_deg=90)
    assert [len(found) for found in [whole, *crops]] == [0, 0, 0]
    assert detector.calls == 0
