"""The setup app says how the runner will see small people beyond the largest input size (the person rules'
region enlarged, and its cost) and warns when they stay under ~40 px at the model's input even so."""

from __future__ import annotations

import numpy as np
import pytest

from runner.config.site import SiteConfig
from tests.helpers import config_dict
from workbench.i18n import set_language
from workbench.setup_app import CameraSetup


@pytest.fixture
def language():
    yield set_language
    set_language(None)


INTRUSION = {"kind": "zone_intrusion", "id": "z", "zone": "lawn", "labels": ["person"]}  # lawn: lower right


def test_small_people_get_the_region_pass_with_its_cost_and_a_warning_when_still_small(language):
    setup = CameraSetup(SiteConfig.model_validate(config_dict()).model_dump(mode="json"))
    setup.set_snapshot(np.zeros((1080, 1920, 3), np.uint8))
    assert setup.person_size_warning() is None  # no person height measured
    setup.camera_form.values["person_height_px"] = 80.0  # 80 px of 1920 -> 40 px at 960: the input size is enough
    assert setup.person_size_warning() is None
    language("fr")
    setup.camera_form.values["person_height_px"] = 30.0  # 30 px of 1920 need 2560 px: beyond 1280
    assert setup.person_size_warning() == (
        "des personnes de 30 px : au-delà d'une entrée de 1280 px, le modèle person passe aussi sur la zone des "
        "règles de personnes (1920x1080 px), agrandie ×1,3 en une entrée de 2560 px, où elles font 40 px ; coût "
        "~16× une image à 640 px (3,9 Mpx par image)"
    )  # no rule yet: the whole frame
    setup.camera_form.values["person_height_px"] = 10.0  # 10 px need x4: more than the budget allows
    warning = setup.person_size_warning()
    assert warning is not None and "où elles font 18 px" in warning
    assert warning.endswith(
        "font 18 px à l'entrée du modèle person (3392 px) : sous ~40 px, beaucoup sont manquées "
        "(vue plus proche, ou zones des règles de personnes plus petites)"
    )


def test_the_region_pass_covers_only_the_zones_of_the_person_rules(language):
    setup = CameraSetup(SiteConfig.model_validate(config_dict([INTRUSION])).model_dump(mode="json"))
    setup.set_snapshot(np.zeros((1080, 1920, 3), np.uint8))
    language("en")
    setup.camera_form.values["person_height_px"] = 20.0  # the lawn grown by 20 px: 980x560 px, x2 fits
    assert setup.person_size_warning() == (
        "people of 20 px: beyond a 1280 px input, model person also runs on the person rules' region (980x560 px), "
        "enlarged x2 in one 1984 px input, where they are 40 px; cost ~10.3x a frame at 640 px (2.5 Mpx per frame)"
    )
