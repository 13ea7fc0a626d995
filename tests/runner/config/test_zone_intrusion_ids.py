"""A zone-intrusion rule names exactly one zone or one line; an empty id counts as none (refused at validation)."""

from __future__ import annotations

import pytest

from runner.core.errors import ConfigError
from tests.helpers import site_config


@pytest.mark.parametrize(
    "ids",
    [{"zone": ""}, {"line": ""}, {"zone": "", "line": ""}, {}],
    ids=["empty-zone", "empty-line", "both-empty", "neither"],
)
def test_an_intrusion_rule_without_a_zone_or_line_id_is_refused(ids):
    rule = {"kind": "zone_intrusion", "id": "no-target", **ids}
    with pytest.raises(ConfigError, match="give exactly one of 'zone' or 'line'"):
        site_config([rule])


def test_an_empty_line_beside_a_real_zone_is_fine():
    config = site_config([{"kind": "zone_intrusion", "id": "lawn", "zone": "lawn", "line": ""}])
    assert config.cameras[0].rules[0].zone == "lawn"
