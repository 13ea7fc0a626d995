"""Zones and privacy masks must be simple polygons (a bow-tie's halves cancel out in its area, so density
thresholds and "inside" tests go wrong), refused at validation in one line naming the zone; `vigie validate`
resolves ${ENV} placeholders as `vigie run` does."""

from __future__ import annotations

import copy

import pytest

from runner.cli import main as vigie
from runner.config.base import crossing_edges
from runner.core.geometry import polygon_area
from tests.helpers import config_dict, write_config

BOW_TIE = [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]  # the square's corners in the wrong order
SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def test_crossing_edges_finds_a_bow_tie_and_accepts_simple_polygons():
    assert crossing_edges([tuple(p) for p in BOW_TIE]) == (0, 2)
    assert polygon_area(BOW_TIE) < polygon_area(SQUARE) / 100  # why it matters: the area is nearly zero
    assert crossing_edges([tuple(p) for p in SQUARE]) is None
    concave = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.5, 0.3), (0.1, 0.9)]  # an arrow head: simple, not convex
    assert crossing_edges(concave) is None


def _site(tmp_path, **camera):
    data = config_dict([], **camera)
    return write_config(tmp_path / "site.yaml", data)


def test_a_bow_tie_zone_is_refused_in_one_line_naming_the_zone(tmp_path, capsys):
    data = config_dict([])
    zones = copy.deepcopy(data["cameras"][0]["zones"])
    zones[0]["polygon"] = BOW_TIE
    path = write_config(tmp_path / "site.yaml", dict(data, cameras=[dict(data["cameras"][0], zones=zones)]))
    assert vigie(["validate", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"zone '{zones[0]['id']}' is not a simple polygon" in lines[0] and "crosses edge 3" in lines[0]


def test_a_self_intersecting_privacy_mask_is_refused(tmp_path, capsys):
    assert vigie(["validate", str(_site(tmp_path, privacy_masks=[BOW_TIE]))]) == 2
    assert "a privacy mask of camera 'cam-01' is not a simple polygon" in capsys.readouterr().err


def test_validate_refuses_an_undefined_environment_variable_like_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VIGIE_TEST_UNDEFINED", raising=False)
    path = _site(tmp_path, source="rtsp://cam:${VIGIE_TEST_UNDEFINED}@10.0.0.1/stream")
    assert vigie(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cameras[0].source" in err and "VIGIE_TEST_UNDEFINED is not set" in err
    monkeypatch.setenv("VIGIE_TEST_UNDEFINED", "s3cret")
    assert vigie(["validate", str(path)]) == 0


@pytest.mark.parametrize("polygon", [SQUARE, [[0.2, 0.2], [0.8, 0.2], [0.5, 0.9]]])
def test_simple_zones_still_validate(tmp_path, polygon):
    data = config_dict([])
    zones = copy.deepcopy(data["cameras"][0]["zones"])
    zones[0]["polygon"] = polygon
    path = write_config(tmp_path / "site.yaml", dict(data, cameras=[dict(data["cameras"][0], zones=zones)]))
    assert vigie(["validate", str(path)]) == 0
