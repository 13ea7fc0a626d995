"""Tiled inference (runner/inference/tiling.py): the tile grid, the merge, and the hook through the pipeline's
re-detection."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import supervision as sv

from runner.config.loading import LoadedConfig
from runner.inference.tiling import TileSettings, crop_detector, merge_nms, tile_grid, tiled_detect
from runner.pipeline.camera import CameraPipeline
from runner.sources.capture import Frame
from tests.helpers import FakePool, ScriptedDetector, site_config


def dets(boxes, conf=None, names=None) -> sv.Detections:
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    n = len(boxes)
    return sv.Detections(
        xyxy=boxes,
        confidence=np.asarray(conf if conf is not None else [0.9] * n, dtype=float),
        class_id=np.zeros(n, dtype=int),
        data={"class_name": np.asarray(names or ["person"] * n, dtype=object)},
    )


@pytest.mark.parametrize(
    ("region", "frame", "settings", "count"),
    [
        pytest.param((0, 0, 640, 360), (640, 360), TileSettings(scale=2.0, overlap_frac=0.25), 6, id="640x360-x2"),
        pytest.param((0, 0, 1280, 720), (1280, 720), TileSettings(scale=2.0, overlap_frac=0.25), 15, id="1280x720-x2"),
        pytest.param((0, 0, 1024, 768), (1024, 768), TileSettings(scale=4.0, overlap_frac=0.25), 63, id="1024x768-x4"),
        pytest.param((100, 100, 300, 250), (640, 480), TileSettings(scale=2.0), 1, id="region-smaller-than-a-tile"),
        pytest.param(
            (0, 0, 1024, 768), (1024, 768), TileSettings(scale=4.0, max_tiles=12), None, id="capped-tiles-grow"
        ),
        pytest.param((700, 0, 800, 100), (640, 480), TileSettings(), 0, id="region-outside-the-frame"),
    ],
)
def test_tile_grid_covers_the_region_with_overlap(region, frame, settings, count):
    tiles = tile_grid(region, frame, settings)
    if count is not None:
        assert len(tiles) == count
    else:
        assert 0 < len(tiles) <= settings.max_tiles
    if not tiles:
        return
    width, height = frame
    sides = {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in tiles}
    assert all(w == h for w, h in sides)  # square tiles
    side = next(iter(sides))[0]
    if count is not None and count > 1:
        assert side == min(round(settings.imgsz / settings.scale), width, height)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    # Every pixel of the region (clipped to the frame) is in some tile, with the overlap between neighbours.
    cover = np.zeros((height, width), dtype=int)
    for x0, y0, x1, y1 in tiles:
        cover[y0:y1, x0:x1] += 1
    rx0, ry0 = max(0, int(region[0])), max(0, int(region[1]))
    rx1, ry1 = min(width, int(region[2])), min(height, int(region[3]))
    assert (cover[ry0:ry1, rx0:rx1] >= 1).all()
    xs = sorted({x0 for x0, _, _, _ in tiles})
    if len(xs) > 1:
        assert max(b - a for a, b in zip(xs, xs[1:])) <= side * (1 - settings.overlap_frac) + 1


@pytest.mark.parametrize(
    ("boxes", "conf", "names", "kept"),
    [
        pytest.param([[0, 0, 10, 20], [0, 0, 10, 20]], [0.9, 0.8], None, [[0, 0, 10, 20]], id="exact-duplicate"),
        pytest.param(
            [[0, 0, 10, 20], [1, 1, 11, 21]], [0.7, 0.9], None, [[1, 1, 11, 21]], id="keeps-the-most-confident"
        ),
        # A person cut by a tile's edge (upper half) and the same person whole in the next tile.
        pytest.param(
            [[0, 0, 10, 20], [0, 0, 10, 10]], [0.6, 0.9], None, [[0, 0, 10, 10]], id="half-person-inside-whole"
        ),
        pytest.param([[0, 0, 10, 20], [20, 0, 30, 20]], None, None, [[0, 0, 10, 20], [20, 0, 30, 20]], id="two-people"),
        pytest.param(
            [[0, 0, 10, 20], [6, 0, 16, 20]], None, None, [[0, 0, 10, 20], [6, 0, 16, 20]], id="overlapping-people"
        ),
        pytest.param(
            [[0, 0, 10, 20], [0, 0, 10, 20]],
            None,
            ["person", "bicycle"],
            [[0, 0, 10, 20], [0, 0, 10, 20]],
            id="different-classes-kept",
        ),
    ],
)
def test_merge_nms(boxes, conf, names, kept):
    merged = merge_nms(
        [dets([b], [c], [n]) for b, c, n in zip(boxes, conf or [0.9] * len(boxes), names or ["person"] * len(boxes))]
    )
    assert sorted(merged.xyxy.tolist()) == sorted(kept)


def test_merge_nms_of_parts_with_different_fields():
    tracked = dets([[0, 0, 10, 20]])
    tracked.tracker_id = np.array([7])
    tracked.data["keypoints"] = np.zeros((1, 17, 3), dtype=np.float32)
    merged = merge_nms([tracked, dets([[40, 0, 50, 20]])])
    assert len(merged) == 2 and merged.data["class_name"].tolist() == ["person", "person"]


def test_tiled_detect_on_an_image_finds_people_in_every_tile_once():
    """A fake detector that 'sees' white squares on the crop it is given; the squares are placed across
    the frame, some on tile borders: each must be counted once."""
    image = np.zeros((360, 640, 3), dtype=np.uint8)
    squares = [(20 + 70 * k, 40 + 35 * (k % 8)) for k in range(9)]
    for x, y in squares:
        image[y : y + 30, x : x + 14] = 255

    def find_squares(images):
        out = []
        for crop in images:
            mask = crop[..., 0] > 0
            import cv2

            n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
            boxes = [[s[0], s[1], s[0] + s[2], s[1] + s[3]] for s in stats[1:]]
            out.append(dets(boxes) if boxes else dets(np.empty((0, 4))))
        return out

    merged, tiles = tiled_detect(crop_detector(find_squares, image), (640, 360), settings=TileSettings(scale=2.0))
    assert tiles == 6
    assert len(merged) == len(squares)
    found = sorted((int(x1), int(y1)) for x1, y1, _, _ in merged.xyxy)
    assert found == sorted(squares)


def test_the_pipeline_honours_a_density_rule_asking_for_tiles():
    """End to end: crowd_density with tiled_every_s runs the camera's model on crops through the
    pipeline's re-detection, at its own rate, and counts what the tiles found."""
    config = site_config(
        [
            {
                "kind": "crowd_density",
                "id": "lawn-density",
                "zone": "lawn",
                "max_count": 3,
                "sustain_s": 0.0,
                "tiled_every_s": 1.0,
                "tile_scale": 4.0,
                "cooldown_s": 0.0,
            }
        ]
    )
    sizes: list[tuple[int, int]] = []
    calls: list[int] = []

    class Detector(ScriptedDetector):
        def detect(self, images, labels=None):
            calls.append(len(images))
            sizes.extend(image.shape[:2] for image in images)
            return [
                super(Detector, self).detect([image], labels)[0]
                if image.shape[:2] != (480, 640)
                else ScriptedDetector(lambda i: [((0.1, 0.1, 0.15, 0.3), "person", 0.8)]).detect([image])[0]
                for image in images
            ]

    # The full frame shows one person, outside the lawn; on each tile of the lawn the detector finds
    # one small person in the tile's middle: a different person inside the lawn for each tile.
    detector = Detector(lambda i: [((0.45, 0.3, 0.55, 0.7), "person", 0.8)])
    pipe = CameraPipeline(
        LoadedConfig(config, __import__("pathlib").Path("s.yaml"), "0" * 64),
        config.cameras[0],
        FakePool(detector),
        None,
        mode="replay",
    )
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    start = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
    raised = []
    for i in range(6):  # 1 s at 5 fps
        raised += pipe.process(Frame("cam-01", i, i / 5.0, start, image))
    expected_tiles = len(tile_grid((320, 240, 640, 480), (640, 480), TileSettings(scale=4.0, overlap_frac=0.25)))
    assert expected_tiles == 6
    full_frames = sum(1 for s in sizes if s == (480, 640))
    crops = [s for s in sizes if s != (480, 640)]
    assert full_frames == 6 and len(crops) == 2 * expected_tiles  # passes at 0.0 s and 1.0 s only
    assert {c for c in crops} == {(160, 160)}
    assert calls.count(expected_tiles) == 2  # each pass's tiles in one batched call
    (alert,) = [r.record for r in raised]
    assert alert.details["method"] == "tiled" and alert.details["method_counts"]["tiled"] == expected_tiles


def test_a_model_of_any_input_size_counts_the_enlarged_zone_in_one_inference():
    """With a model that accepts any input size, the density pass is one inference on the zone's box
    enlarged `tile_scale` times (input side a multiple of 32), at the rule's rate, and its people count."""
    config = site_config(
        [
            {
                "kind": "crowd_density",
                "id": "lawn-density",
                "zone": "lawn",
                "max_count": 3,
                "sustain_s": 0.0,
                "tiled_every_s": 1.0,
                "tile_scale": 3.0,
                "cooldown_s": 0.0,
            }
        ],
        detect_margin_frac=None,  # the frame pass on the whole frame (imgsz None below), not on the lawn's crop
    )
    enlarged: list[tuple[tuple[int, int], int | None]] = []
    five_small_people = [((0.1 + 0.15 * k, 0.4, 0.15 + 0.15 * k, 0.6), "person", 0.8) for k in range(5)]

    class AnySizeDetector(ScriptedDetector):
        any_input_size = True

        def detect(self, images, labels=None, imgsz=None):
            if imgsz is None:  # the full frame: one person outside the lawn
                return super().detect(images, labels)
            enlarged.extend((image.shape[:2], imgsz) for image in images)
            return ScriptedDetector(lambda i: five_small_people).detect(images, labels)

    pipe = CameraPipeline(
        LoadedConfig(config, __import__("pathlib").Path("s.yaml"), "0" * 64),
        config.cameras[0],
        FakePool(AnySizeDetector(lambda i: [((0.1, 0.1, 0.15, 0.3), "person", 0.8)])),
        None,
        mode="replay",
    )
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    start = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
    raised = []
    for i in range(6):  # 1 s at 5 fps: passes at 0.0 s and 1.0 s
        raised += pipe.process(Frame("cam-01", i, i / 5.0, start, image))
    # The lawn is the bottom-right quarter (320x240 px); enlarged 3x: 960 px, already a multiple of 32.
    assert enlarged == [((240, 320), 960)] * 2
    (alert,) = [r.record for r in raised]
    assert alert.details["method"] == "tiled" and alert.details["method_counts"]["tiled"] == 5


@pytest.mark.parametrize(
    "any_input_size, tile_pass, expected",
    [
        # the frame, the square input of re-detected crops, and the lawn enlarged 3x
        (True, "enlarged", [(480, 640, None), (640, 640, None), (240, 320, 960)]),
        (True, "grid", [(480, 640, None), (640, 640, None)]),  # tiles are crops of the model's own size
        (False, "enlarged", [(480, 640, None), (640, 640, None)]),  # a fixed-size model keeps the grid
    ],
)
def test_warming_up_a_camera_compiles_its_frame_size_and_its_enlarged_passes(any_input_size, tile_pass, expected):
    config = site_config(
        [
            {
                "kind": "crowd_density",
                "id": "lawn-density",
                "zone": "lawn",
                "max_count": 3,
                "tiled_every_s": 1.0,
                "tile_scale": 3.0,
                "tile_pass": tile_pass,
            }
        ],
        detect_margin_frac=None,  # the whole frame's pass (the crop's shape: tests/runner/pipeline/test_zone_crops.py)
    )
    detector = ScriptedDetector(lambda i: [])
    detector.any_input_size = any_input_size
    pipe = CameraPipeline(
        LoadedConfig(config, __import__("pathlib").Path("s.yaml"), "0" * 64),
        config.cameras[0],
        FakePool(detector),
        None,
        mode="replay",
    )
    pipe.warm_up(480, 640)
    assert detector.warmed == expected and pipe.warm_shape == (480, 640) and detector.calls == 0


def test_crops_a_rule_re_detects_get_the_square_input_warmed_and_the_whole_frame_keeps_its_own():
    """person_down re-detects a lost person's spot turned upright (any aspect ratio): one square input,
    compiled at warm-up; an on-demand model's pass over the whole frame keeps the frame's rectangle."""
    config = site_config([{"kind": "person_down", "id": "lawn-down", "zone": "lawn"}])

    class CropRecorder(ScriptedDetector):
        def detect_crops(self, images, labels=None):
            self.cropped.append([image.shape[:2] for image in images])
            return self.detect(images, labels)

    detector = CropRecorder(lambda i: [])
    detector.cropped = []
    pipe = CameraPipeline(
        LoadedConfig(config, __import__("pathlib").Path("s.yaml"), "0" * 64),
        config.cameras[0],
        FakePool(detector),
        None,
        mode="replay",
    )
    pipe.warm_up(480, 640)
    assert detector.warmed == [(480, 640, None), (640, 640, None)]
    image = np.zeros((480, 640, 3), np.uint8)
    pipe._redetect(image, "person", (0.1, 0.1, 0.3, 0.6), rotate_deg=90, pad_frac=0.0)  # 128x240 px, turned
    pipe._redetect(image, "person", (0.0, 0.0, 1.0, 1.0), pad_frac=0.0)
    assert detector.cropped == [[(128, 240)]] and detector.calls == 2


def test_tiled_detect_uses_the_grid_when_the_enlarged_pass_cannot_run():
    """`detect_enlarged` answering None (fixed-size model, region too large) falls back to the tiles;
    a setting `enlarged=False` never asks it."""
    asked: list[tuple] = []

    def cannot(box, scale, max_side_px):
        asked.append((box, scale, max_side_px))
        return None

    def one_person(box):
        return sv.Detections(
            xyxy=np.array([[box[0] * 640 + 5, box[1] * 360 + 5, box[0] * 640 + 20, box[1] * 360 + 40]]),
            confidence=np.array([0.9]),
            class_id=np.array([0]),
            data={"class_name": np.array(["person"], dtype=object)},
        )

    settings = TileSettings(scale=2.0, max_enlarged_px=1000)
    merged, runs = tiled_detect(one_person, (640, 360), (0.0, 0.0, 1.0, 1.0), settings, detect_enlarged=cannot)
    assert asked == [((0.0, 0.0, 1.0, 1.0), 2.0, 1000)]
    assert runs == len(tile_grid((0, 0, 640, 360), (640, 360), settings)) > 1 and len(merged) == runs
    asked.clear()
    tiled_detect(one_person, (640, 360), settings=TileSettings(enlarged=False), detect_enlarged=cannot)
    assert asked == []


def test_tiled_detect_enlarged_merges_with_the_full_frame_pass():
    full = sv.Detections(
        xyxy=np.array([[10.0, 10.0, 50.0, 100.0]]),
        confidence=np.array([0.9]),
        class_id=np.array([0]),
        data={"class_name": np.array(["person"], dtype=object)},
    )
    found = sv.Detections(
        xyxy=np.array([[11.0, 10.0, 50.0, 99.0], [300.0, 200.0, 310.0, 230.0]]),
        confidence=np.array([0.8, 0.7]),
        class_id=np.array([0, 0]),
        data={"class_name": np.array(["person", "person"], dtype=object)},
    )
    merged, runs = tiled_detect(
        lambda box: pytest.fail("no tile expected"),
        (640, 360),
        (-0.1, 0.2, 1.2, 0.9),
        full_frame=full,
        detect_enlarged=lambda box, scale, side: found if box == (0.0, 0.2, 1.0, 0.9) else None,
    )
    assert runs == 1 and len(merged) == 2  # the same person once, plus the small one


def test_tiled_detect_batched_finds_the_same_as_one_call_per_tile():
    from runner.inference.crops import boxes_to_frame, make_crop

    image = np.zeros((360, 640, 3), dtype=np.uint8)
    for k in range(9):
        image[40 + 35 * (k % 8) : 70 + 35 * (k % 8), 20 + 70 * k : 34 + 70 * k] = 255
    calls: list[int] = []

    def find_squares(images):
        import cv2

        calls.append(len(images))
        out = []
        for crop in images:
            _, _, stats, _ = cv2.connectedComponentsWithStats((crop[..., 0] > 0).astype(np.uint8))
            boxes = [[s[0], s[1], s[0] + s[2], s[1] + s[3]] for s in stats[1:]]
            out.append(dets(boxes) if boxes else dets(np.empty((0, 4))))
        return out

    def all_tiles_at_once(boxes):
        crops = [make_crop(image, box, pad_frac=0.0) for box in boxes]
        found = find_squares([crop.image for crop in crops])
        for part, crop in zip(found, crops):
            if len(part):
                part.xyxy = boxes_to_frame(part.xyxy, crop)
        return found

    alone, tiles = tiled_detect(crop_detector(find_squares, image), (640, 360), settings=TileSettings(scale=2.0))
    assert tiles == 6 and calls == [1] * tiles
    calls.clear()
    batched, _ = tiled_detect(
        crop_detector(find_squares, image), (640, 360), settings=TileSettings(scale=2.0), detect_boxes=all_tiles_at_once
    )
    assert calls == [tiles] and len(batched) == len(alone) == 9
    assert np.array_equal(np.sort(alone.xyxy, axis=0), np.sort(batched.xyxy, axis=0))
