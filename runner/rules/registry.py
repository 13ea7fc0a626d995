"""The explicit list of event rules. Adding a kind = its config in `runner.config.rules`, one module here + one line."""

from __future__ import annotations

from runner.config.rules.base import RuleConfig
from runner.config.site import Camera
from runner.rules.abandoned_object import AbandonedObjectRule
from runner.rules.base import CameraView, Rule
from runner.rules.crowd_density import CrowdDensityRule
from runner.rules.crowd_movement import CrowdMovementRule
from runner.rules.fire import FireRule
from runner.rules.person_down import PersonDownRule
from runner.rules.weapon import WeaponRule
from runner.rules.wrong_way import WrongWayRule
from runner.rules.zone_intrusion import ZoneIntrusionRule

RULES: dict[str, type[Rule]] = {
    rule.kind: rule
    for rule in (
        ZoneIntrusionRule,
        WrongWayRule,
        CrowdDensityRule,
        CrowdMovementRule,
        AbandonedObjectRule,
        FireRule,
        WeaponRule,
        PersonDownRule,
    )
}


def build_rule(config: RuleConfig, camera: Camera) -> Rule:
    """The rule of `config`'s kind, seeing only the narrow view of its camera.

    Args:
        config: one of the camera's rule configs.
        camera: the camera it is configured on.

    Returns:
        A fresh rule, with no state yet.
    """
    return RULES[config.kind](config, CameraView.of(camera, config))
