"""The setup app warns when the measured person height leaves people under ~40 px at the model's input."""

from __future__ import annotations

import numpy as np

from runner.config.site import SiteConfig
from tests.helpers import config_dict
from workbench.setup_app import CameraSetup


def test_small_people_are_warned_about_with_the_size_they_have_at_the_input():
    setup = CameraSetup(SiteConfig.model_validate(config_dict()).model_dump(mode="json"))
    setup.set_snapshot(np.zeros((1080, 1920, 3), np.uint8))
    assert setup.person_size_warning() is None  # no person height measured
    setup.camera_form.values["person_height_px"] = 30.0  # 30 px of 1920 -> 20 px even at 1280
    warning = setup.person_size_warning()
    assert warning is not None and "30 px" in warning and "20 px" in warning and "person (1280 px)" in warning
    setup.camera_form.values["person_height_px"] = 80.0  # 80 px of 1920 -> 53 px at 1280: enough
    assert setup.person_size_warning() is None
