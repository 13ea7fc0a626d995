"""The explicit list of event rules. Adding a kind = one module + one line here."""

from __future__ import annotations

from runner.rules.abandoned_object import AbandonedObjectRule
from runner.rules.base import Rule
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

RULE_CONFIGS = tuple(rule.config_model for rule in RULES.values())


def build_rule(config, camera) -> Rule:
    return RULES[config.kind](config, camera)
