"""`python -m tests.cluster.node_child run SITE --db DB --node NAME ...`: the real `vigie run`, whose person
model is a detector of the test clips' bright square (`BrightSquareDetector`): no weights to load, so that
three nodes and their six cameras fit on a 2-core machine, and alerts that depend on the frames only.
"""

from __future__ import annotations

import sys

import numpy as np
import supervision as sv

from tests.helpers import FakePool, ScriptedDetector

# The tripwire `gate` (x = 0.3) with no cooldown: the square crossing it is an alert, once per loop of the clip.
CROSSING_RULE = {"kind": "zone_intrusion", "id": "gate-crossing", "line": "gate", "cooldown_s": 0.0}


class BrightSquareDetector(ScriptedDetector):
    """A 'person' wherever the frame is bright (the square `tests.helpers.make_video` draws): a detection that
    follows the pixels, so that every node finds the same alerts in the same frames."""

    def __init__(self) -> None:
        super().__init__(lambda call: [])

    def detect(self, images: list[np.ndarray], labels=None) -> list[sv.Detections]:
        """One detection per image: the box of its bright pixels, if any.

        Args:
            images: BGR frames.
            labels: ignored (the only label is person).

        Returns:
            The detections, one `sv.Detections` per image.
        """
        out = []
        for image in images:
            ys, xs = np.nonzero(image.min(axis=2) > 200)
            if len(xs) == 0:
                out.append(super().detect([image])[0])  # the script says nothing: no detection
                continue
            out.append(
                sv.Detections(
                    xyxy=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=float),
                    confidence=np.array([0.9]),
                    class_id=np.array([0]),
                    data={
                        "class_name": np.array(["person"], dtype=object),
                        "model": np.array(["person"], dtype=object),
                    },
                )
            )
        return out


def main(argv: list[str]) -> int:
    """Run `vigie` with the bright-square detector in place of the configured models.

    Args:
        argv: the `vigie` command line.

    Returns:
        Its exit code.
    """
    import runner.service.lifecycle as lifecycle
    from runner.cli import main as vigie

    lifecycle.ModelPool = lambda config, base_dir: FakePool(BrightSquareDetector())  # type: ignore[assignment,misc]
    return vigie(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
