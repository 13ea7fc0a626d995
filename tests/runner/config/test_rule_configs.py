"""The rules' config models live in `runner.config.rules`: the site config builds its union of kinds from them
without loading a single rule implementation, and the registry's rules point back at them."""

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from runner.config.rules import RULE_CONFIGS, RULE_CONFIGS_BY_KIND, RuleConfig, TimeWindow, ZoneIntrusionConfig
from runner.config.rules.time_windows import is_active
from runner.rules.registry import RULES

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "module", ["runner.config", "runner.config.site", "runner.config.loading", "runner.config.reference"]
)
def test_loading_and_validating_a_config_loads_no_rule_implementation(module):
    script = f"import sys, {module}\nprint(sorted(m for m in sys.modules if m.startswith('runner.rules')))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_every_kind_has_one_config_and_one_rule_in_the_same_order():
    assert list(RULE_CONFIGS_BY_KIND) == list(RULES)  # error messages and the docs list kinds in this order
    assert tuple(RULE_CONFIGS_BY_KIND.values()) == RULE_CONFIGS
    for kind, rule in RULES.items():
        assert rule.config_model is RULE_CONFIGS_BY_KIND[kind]
        assert rule.config_model.kind_name() == kind
        assert rule.config_model.__module__ == f"runner.config.rules.{kind}"


def test_a_config_module_opens_with_its_rule_modules_summary():
    """docs/config_reference.md takes each kind's one-line summary from the config module."""
    for kind, rule in RULES.items():
        config_doc = sys.modules[RULE_CONFIGS_BY_KIND[kind].__module__].__doc__ or ""
        rule_doc = sys.modules[rule.__module__].__doc__ or ""
        assert config_doc.strip().split("\n\n")[0] == rule_doc.strip().split("\n\n")[0]


def test_rule_configs_are_plain_data():
    for config in RULE_CONFIGS:
        assert issubclass(config, RuleConfig)
    config = ZoneIntrusionConfig(kind="zone_intrusion", id="lawn-intrusion", zone="lawn")
    with pytest.raises(ValidationError):
        config.min_dwell_s = 3.0  # frozen


@pytest.mark.parametrize(
    ("start", "end", "hour", "active"),
    [
        ("08:00", "18:00", 12, True),
        ("08:00", "18:00", 18, False),
        ("22:00", "06:00", 23, True),
        ("22:00", "06:00", 7, False),
    ],
)
def test_active_hours_wrap_past_midnight(start, end, hour, active):
    window = TimeWindow(start=start, end=end)
    assert is_active([window], datetime(2025, 5, 13, hour, 0)) is active
    assert is_active([], datetime(2025, 5, 13, hour, 0)) is True


def test_an_unquoted_time_read_as_minutes_by_yaml_is_a_time_of_day():
    assert TimeWindow(start=22 * 60, end=6 * 60).start.hour == 22
