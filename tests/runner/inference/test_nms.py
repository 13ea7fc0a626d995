"""runner.inference.nms: one greedy loop, two rules (torchvision's IoU rule for the engine, IoU or containment
per class for the tiles' merge), each keeping exactly what its caller kept before it moved here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.inference.nms import greedy_keep, intersection_areas, nms, nms_with_containment


def test_nms_keeps_what_torchvision_keeps():
    from torchvision.ops import nms as torch_nms

    rng = np.random.default_rng(7)
    corners = rng.uniform(0, 600, (400, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 120, (400, 2)).astype(np.float32)], axis=1)
    scores = rng.uniform(0.1, 1.0, 400).astype(np.float32)
    for threshold in (0.3, 0.5, 0.7):
        expected = torch_nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
        assert np.array_equal(nms(boxes, scores, threshold), expected)


def test_greedy_keep_goes_by_decreasing_score_and_equal_scores_by_index():
    scores = np.array([0.5, 0.9, 0.5, 0.7])
    seen = []

    def nothing_suppressed(best, rest):
        seen.append((int(best), [int(i) for i in rest]))
        return np.zeros(len(rest), dtype=bool)

    assert greedy_keep(scores, nothing_suppressed).tolist() == [1, 3, 0, 2]
    assert seen[0] == (1, [3, 0, 2])  # each kept box is offered the boxes still in play after it
    assert greedy_keep(scores, lambda best, rest: np.ones(len(rest), dtype=bool)).tolist() == [1]
    assert greedy_keep(np.array([]), nothing_suppressed).dtype == np.int64


def test_intersection_areas():
    others = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    assert intersection_areas(np.array([0, 0, 10, 10], dtype=float), others).tolist() == [25.0, 0.0, 100.0]


@pytest.mark.parametrize(
    "boxes, classes, kept",
    [
        ([[0, 0, 10, 20], [1, 0, 11, 20]], ["a", "a"], [0]),  # IoU 0.82: a duplicate
        ([[0, 0, 10, 20], [1, 0, 11, 20]], ["a", "b"], [0, 1]),  # another class is never suppressed
        ([[0, 0, 10, 20], [0, 0, 10, 9]], ["a", "a"], [0]),  # IoU 0.45 but wholly inside: the cut half
        ([[0, 0, 10, 20], [8, 0, 18, 20]], ["a", "a"], [0, 1]),  # neighbours touching
    ],
)
def test_nms_with_containment(boxes, classes, kept):
    scores = np.array([0.9, 0.8])
    found = nms_with_containment(np.array(boxes, dtype=float), scores, np.array(classes), 0.5, 0.8)
    assert found.tolist() == kept


def test_nms_with_containment_returns_indices_in_their_original_order():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 10, 10], [100, 0, 110, 10]], dtype=float)
    scores = np.array([0.2, 0.9, 0.95, 0.5])
    assert nms_with_containment(boxes, scores, np.array(["a"] * 4), 0.5, 0.8).tolist() == [1, 2, 3]
