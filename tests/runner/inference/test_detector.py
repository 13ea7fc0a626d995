"""runner.inference.detector: what `Detector` does above its backend (any `DetectorBackend`): the images it
runs together, the labels it asks for, the sizes it refuses, the warm-up it does once per size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from runner.config.site import ModelSpec
from runner.core.fields import CLASS_NAME
from runner.inference.backends import DetectorBackend, classes_to_run
from runner.inference.detector import Detector
from runner.inference.modelref import ResolvedModel


class RecordingBackend:
    """A backend that finds one box per wanted class in each image and records its calls."""

    names = {0: "person", 1: "car", 2: "dog"}

    def __init__(self, max_batch: int | None, any_input_size: bool = True):
        self.max_batch = max_batch
        self.any_input_size = any_input_size
        self.has_keypoints = False
        self.calls: list[tuple[list[int], list[int] | None, int | None, bool]] = []
        self.warmed: list[tuple[int, int, int | None]] = []

    def warm_up(self, height: int, width: int, imgsz: int | None = None) -> None:
        self.warmed.append((height, width, imgsz))

    def start_predict(self, images, class_ids_per_image, imgsz=None, square=False):
        self.calls.append(
            ([int(image[0, 0, 0]) for image in images], classes_to_run(class_ids_per_image), imgsz, square)
        )

        def found() -> list[sv.Detections]:
            out = []
            for ids in class_ids_per_image:
                class_id = np.array(sorted(self.names if ids is None else ids), dtype=int)
                out.append(
                    sv.Detections(
                        xyxy=np.zeros((len(class_id), 4)),
                        class_id=class_id,
                        data={CLASS_NAME: np.array([self.names[i] for i in class_id], dtype=object)},
                    )
                )
            return out

        return found


def detector_over(backend: RecordingBackend) -> Detector:
    spec = ModelSpec(weights="m.pt", imgsz=320)
    resolved = ResolvedModel("m", "m.pt", Path("m.pt"), "pt", "path", "0" * 64)
    return Detector(name="m", spec=spec, resolved=resolved, model=backend)


def image(tag: int, height: int = 4, width: int = 6) -> np.ndarray:
    return np.full((height, width, 3), tag, np.uint8)


def test_a_recording_backend_is_a_detector_backend():
    assert isinstance(RecordingBackend(None), DetectorBackend)


def test_a_batch_limited_backend_gets_one_shape_per_call_at_most_max_batch_images():
    backend = RecordingBackend(max_batch=2)
    images = [image(0), image(1, 8), image(2), image(3), image(4, 8)]
    found = detector_over(backend).detect_many(images, [None, {"car"}, {"dog"}, {"person"}, {"bird"}])
    # 4x6 images: 0, 2 then 3; 8x6: 1 alone (4 wants no class this model has: not run)
    assert [call[0] for call in backend.calls] == [[0, 2], [3], [1]]
    assert [call[1] for call in backend.calls] == [None, [0], [1]]
    assert [set(f.data[CLASS_NAME]) for f in found[:4]] == [{"person", "car", "dog"}, {"car"}, {"dog"}, {"person"}]
    assert len(found[4]) == 0 and CLASS_NAME in found[4].data


def test_a_backend_without_batch_limit_gets_every_image_in_one_call():
    backend = RecordingBackend(max_batch=None)
    detector_over(backend).detect_crops([image(0), image(1, 8), image(2)], ["dog", "car"])
    assert backend.calls == [([0, 1, 2], [1, 2], None, True)]


def test_a_fixed_size_backend_refuses_another_input_size_and_warms_each_size_once():
    fixed = detector_over(RecordingBackend(max_batch=None, any_input_size=False))
    with pytest.raises(ValueError, match="fixed input size"):
        fixed.detect([image(0)], imgsz=640)
    with pytest.raises(ValueError, match="fixed input size"):
        fixed.warm_up([(4, 6)], imgsz=640)
    fixed.warm_up([(4, 6), (8, 6), (4, 6)])
    fixed.warm_up([(4, 6)], imgsz=320)  # the configured size: already warm
    assert fixed.model.warmed == [(4, 6, None), (8, 6, None)]
