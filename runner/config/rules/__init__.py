"""Every rule's config model, one module per kind, listed here explicitly.

The site config (`runner.config.site`) builds its discriminated union of rules from `RULE_CONFIGS`
without importing any rule implementation: configs are plain data, and `runner.rules` (the behaviour)
imports them, never the other way round. Adding a kind = one module here + one line in `RULE_CONFIGS`,
and its rule in `runner.rules.registry`.
"""

from runner.config.rules.abandoned_object import AbandonedObjectConfig
from runner.config.rules.base import RuleConfig
from runner.config.rules.crowd_density import CrowdDensityConfig
from runner.config.rules.crowd_movement import CrowdMovementConfig
from runner.config.rules.fire import FireConfig
from runner.config.rules.person_down import PersonDownConfig
from runner.config.rules.time_windows import TimeWindow
from runner.config.rules.weapon import WeaponConfig
from runner.config.rules.wrong_way import WrongWayConfig
from runner.config.rules.zone_intrusion import ZoneIntrusionConfig

# The order is the one error messages list the known kinds in, and the one of docs/config_reference.md.
RULE_CONFIGS: tuple[type[RuleConfig], ...] = (
    ZoneIntrusionConfig,
    WrongWayConfig,
    CrowdDensityConfig,
    CrowdMovementConfig,
    AbandonedObjectConfig,
    FireConfig,
    WeaponConfig,
    PersonDownConfig,
)

RULE_CONFIGS_BY_KIND: dict[str, type[RuleConfig]] = {config.kind_name(): config for config in RULE_CONFIGS}
"""`kind` tag -> config model, in `RULE_CONFIGS` order."""

__all__ = [
    "RULE_CONFIGS",
    "RULE_CONFIGS_BY_KIND",
    "AbandonedObjectConfig",
    "CrowdDensityConfig",
    "CrowdMovementConfig",
    "FireConfig",
    "PersonDownConfig",
    "RuleConfig",
    "TimeWindow",
    "WeaponConfig",
    "WrongWayConfig",
    "ZoneIntrusionConfig",
]
