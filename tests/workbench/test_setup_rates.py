"""The setup app says when a camera will analyse fewer frames than its `process_fps` allows, and why: the rate each
of its rules needs."""

from __future__ import annotations

import pytest

from runner.config.site import SiteConfig
from tests.helpers import config_dict
from workbench.i18n import set_language
from workbench.setup_app import CameraSetup

INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn"}
BAGS = {"kind": "abandoned_object", "id": "lawn-bags", "zone": "lawn"}
DENSITY = {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn", "max_count": 10}


@pytest.fixture
def language():
    yield set_language
    set_language(None)


def _setup(rules, **camera) -> CameraSetup:
    return CameraSetup(SiteConfig.model_validate(config_dict(rules, **camera)).model_dump(mode="json"))


def test_a_camera_whose_rules_need_fewer_frames_says_so_in_french(language):
    language("fr")
    setup = _setup([BAGS, DENSITY], process_fps=5)
    assert setup.rate_note() == (
        "caméra analysée à 1 image(s)/s sur les 5 permises : ses règles n'en demandent pas plus "
        "(lawn-bags 1, lawn-density 1)"
    )
    language("en")
    setup.camera_form.values["process_fps"] = 2.5
    assert setup.rate_note() == (
        "camera analysed at 1 frame(s)/s of the 2.5 allowed: its rules need no more (lawn-bags 1, lawn-density 1)"
    )


def test_no_note_when_a_rule_needs_every_frame_allowed_or_the_draft_is_invalid(language):
    language("en")
    assert _setup([BAGS, INTRUSION], process_fps=5).rate_note() is None  # intrusion needs 5
    setup = _setup([BAGS], process_fps=5)
    setup.camera_form.values["process_fps"] = 0  # out of bounds: the form shows that problem instead
    assert setup.rate_note() is None


def test_a_camera_whose_zones_leave_most_of_the_image_says_where_its_detector_looks(language):
    language("fr")
    setup = _setup([INTRUSION])  # the lawn, the lower right quarter: grown by 0.2 (0.4 above), 0.7 x 0.9 of it
    assert setup.crop_note() == (
        "le détecteur ne regarde que le rectangle autour des zones, 63 % de l'image (marge 0,2) : un objet hors de "
        "ce rectangle n'est ni détecté ni suivi ; videz « Marge autour des zones » pour voir toute l'image"
    )
    setup.camera_form.values["detect_margin_frac"] = None
    assert setup.crop_note() is None  # the whole image
    setup.camera_form.values["detect_margin_frac"] = 0.35  # 0.85 x 1.0: too little spared, the whole image
    assert setup.crop_note() is None
    whole_image_rule = {"kind": "crowd_movement", "id": "moves"}  # no zone: the detector sees the whole image
    assert _setup([INTRUSION, whole_image_rule]).crop_note() is None


def test_a_camera_whose_tracker_predicts_between_detections_says_how_often_it_detects(language):
    language("fr")
    setup = _setup([INTRUSION], tracking={"predict_between_detections": True})
    assert setup.prediction_note() == (
        "le détecteur tourne sur 2,5 des 5 image(s)/s analysées : entre deux détections, le suivi prédit la position "
        "des pistes, dès qu'elles sont toutes confirmées ; décochez « Prédire entre deux détections » pour détecter à "
        "chaque image"
    )
    setup.camera_form.values["tracking"] = {"predict_between_detections": False}
    assert setup.prediction_note() is None
    falls = {"kind": "person_down", "id": "falls", "zone": "lawn"}  # keypoints on every frame: no prediction
    assert _setup([INTRUSION, falls], tracking={"predict_between_detections": True}).prediction_note() is None
