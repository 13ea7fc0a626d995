"""Snapshot labels in the operators' language, accents drawn (not OpenCV's '?' boxes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runner.pipeline.snapshots import _font, draw_label, render_snapshot, snapshot_label


@pytest.mark.parametrize(
    ("lang", "expected"), [("fr", "Départ de feu 0,87"), ("en", "Fire start 0.87"), ("xx", "Départ de feu 0,87")]
)
def test_the_label_speaks_the_interface_language(monkeypatch, lang, expected):
    monkeypatch.setenv("VIGIE_LANG", lang)
    assert snapshot_label("fire", 0.871) == expected


def test_every_kind_has_a_french_name():
    from runner.config.rules import RULE_CONFIGS_BY_KIND

    for kind in RULE_CONFIGS_BY_KIND:
        assert not snapshot_label(kind, 1.0).startswith(kind), kind


def test_an_accented_letter_is_drawn_as_itself():
    """é and e differ by their accent's pixels: a font without the glyph would draw a box for é."""
    e, e_acute = (_font(24).getmask(text) for text in ("e", "é"))
    assert np.asarray(e_acute).sum() > np.asarray(e).sum()
    assert _font(24).getbbox("é")[1] < _font(24).getbbox("e")[1]  # the accent rises above the x-height


def test_the_label_band_stays_inside_the_image_at_any_corner():
    for corner in [(0, 0), (630, 350), (-5, 400), (300, 10)]:
        canvas = np.full((360, 640, 3), 90, np.uint8)
        draw_label(canvas, "Personne au sol 0,91", corner, 14)
        assert (canvas != 90).any()


def test_the_snapshot_carries_the_label_above_the_box(monkeypatch):
    monkeypatch.setenv("VIGIE_LANG", "fr")
    image = np.full((360, 640, 3), 90, np.uint8)
    jpeg = render_snapshot(image, (0.3, 0.4, 0.6, 0.9), snapshot_label("fire", 0.87))
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    band = decoded[110:140, 192:380]  # above the box's top edge (y = 144)
    assert (band.max(axis=2) < 40).mean() > 0.3  # the dark band
    assert ((band[:, :, 2] > 150) & (band[:, :, 0] < 100)).any()  # the red letters
