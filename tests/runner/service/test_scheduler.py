"""Detection scheduling: one inference per model per round across cameras, the detector thread up to two
rounds ahead of the rules, each camera's frames analysed in order, a failure kept with its camera's frame."""

from __future__ import annotations

import copy
import threading
from datetime import timedelta

import numpy as np
import pytest
import supervision as sv

from runner.service.lifecycle import Runner, RunOptions
from runner.service.scheduler import DetectionScheduler, only_labels
from runner.sources.capture import Frame
from tests.helpers import FakePool, ScriptedDetector, box_at
from tests.runner.service.helpers import (
    INSIDE,
    INTRUSION,
    PERSON_IN_LAWN,
    Site,
    two_cameras,
)


class BatchRecorder(ScriptedDetector):
    """Records the image widths and labels of every call; finds a person and a car in every image."""

    def __init__(self, fail_width: int | None = None):
        super().__init__(lambda i: [PERSON_IN_LAWN, (box_at(0.6, 0.8), "car", 0.9)], names={0: "person", 1: "car"})
        self.batches: list[tuple[list[int], frozenset]] = []
        self.fail_width = fail_width

    def detect(self, images, labels=None):
        self.batches.append(([image.shape[1] for image in images], frozenset(labels)))
        if any(image.shape[1] == self.fail_width for image in images):
            raise RuntimeError("cannot read this frame")
        return super().detect(images, labels)


def three_cameras(tmp_path, detector, rules=None):
    """cam-01 (640 px wide) and cam-02 (320) watch people, cam-03 (160) cars."""
    data = two_cameras()
    third = copy.deepcopy(data["cameras"][0])
    third.update(id="cam-03", source="clip3.avi", rules=[dict(INTRUSION, id="lawn-cars", labels=["car"])])
    data["cameras"].append(third)
    site = Site(
        tmp_path,
        data,
        clips={"clip.avi": (30, (640, 480)), "clip2.avi": (30, (320, 240)), "clip3.avi": (30, (160, 120))},
    )

    class LabelPool(FakePool):  # each camera asks the one model for its own rules' labels
        def plan(self, labels, optional=frozenset()):
            return {self.detector.name: frozenset(labels)}

    runner = Runner(site.loaded, site.register, RunOptions(mode="replay"), pool=LabelPool(detector))
    return site, runner


def _rounds(runner, pipelines, n, first=0, widths=(640, 320, 160)):
    seen = {cid: [] for cid in pipelines}
    for pipeline in pipelines.values():  # what each camera's rules were given, after the tracker
        original = pipeline.analyse

        def spy(frame, image, detected, original=original, cid=pipeline.camera.id):
            seen[cid].append(sorted(set(detected.to_track.data["class_name"])))
            return original(frame, image, detected)

        pipeline.analyse = spy
    for i in range(first, first + n):
        ready = [
            (p, Frame(cid, i, i / 5, INSIDE + timedelta(seconds=i / 5), np.full((w * 3 // 4, w, 3), 90, np.uint8)))
            for (cid, p), w in zip(pipelines.items(), widths)
        ]
        runner.scheduler.hand(ready)
    runner.scheduler.finish_detected()  # the last round's rules (the loop runs them when no frame is waiting)
    return seen


def test_one_inference_per_model_per_round_and_each_camera_keeps_its_labels(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    seen = _rounds(runner, pipelines, 4)
    assert detector.batches == [([640, 320, 160], frozenset({"person", "car"}))] * 4
    assert seen == {"cam-01": [["person"]] * 4, "cam-02": [["person"]] * 4, "cam-03": [["car"]] * 4}
    assert {cid: p.frames_processed for cid, p in pipelines.items()} == {"cam-01": 4, "cam-02": 4, "cam-03": 4}


def test_the_detector_runs_up_to_two_rounds_ahead_of_the_rules(tmp_path):
    """Round 0's rules wait until round 2's inference has started: with the detector held to one round
    ahead, round 2 would only be handed over once round 0's rules ended, and the wait would fail."""
    detected = [threading.Event() for _ in range(4)]

    class Signals(BatchRecorder):
        def start_detect(self, images, labels=None):
            found = super().detect(images, labels)
            detected[len(self.batches) - 1].set()
            return lambda: found

    detector = Signals()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    first = pipelines["cam-01"]
    analyse = first.analyse
    ahead_of_rules = []

    def analyse_after_two_more(frame, image, detected_frame):
        if frame.index == 0:
            ahead_of_rules.append(detected[2].wait(10.0))
        return analyse(frame, image, detected_frame)

    first.analyse = analyse_after_two_more
    seen = _rounds(runner, {"cam-01": first}, 3, widths=(640,))
    assert ahead_of_rules == [True] and len(seen["cam-01"]) == 3


def test_each_camera_is_warmed_up_once_per_frame_size_before_its_first_detection(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    _rounds(runner, pipelines, 3)
    assert sorted(detector.warmed) == [(120, 160, None), (240, 320, None), (480, 640, None)]  # no rule re-detects crops
    del detector.warmed[:]
    _rounds(runner, {"cam-01": pipelines["cam-01"]}, 1, first=3, widths=(320,))  # cam-01 reconnects at 320x240
    assert detector.warmed == [(240, 320, None)]


def test_the_rules_of_one_round_run_while_the_next_round_is_detected(tmp_path):
    """Round k's inference (detector thread) overlaps round k-1's tracking and rules (analysis thread):
    this detector's inference of a round ends, on the detector thread, only once the previous round's
    rules have started."""
    rules_started = [threading.Event() for _ in range(4)]
    order: list[str] = []

    class WaitsForRules(BatchRecorder):
        def start_detect(self, images, labels=None):
            round_index = len(self.batches)
            order.append(f"detect {round_index} on {threading.current_thread().name.split('_')[0]}")
            found = super().detect(images, labels)

            def collect():
                if round_index > 0:
                    assert rules_started[round_index - 1].wait(10.0), "rules of the previous round did not overlap"
                return found

            return collect

    detector = WaitsForRules()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    first = pipelines["cam-01"]
    analyse = first.analyse

    def analyse_and_signal(frame, image, detected):
        order.append(f"rules {frame.index}")
        rules_started[frame.index].set()
        return analyse(frame, image, detected)

    first.analyse = analyse_and_signal
    seen = _rounds(runner, {"cam-01": first}, 3, widths=(640,))
    # Had detection waited for the rules (or the rules for detection), the waits above would have failed
    # and the frames would be missing from `seen`.
    assert [o for o in order if o.startswith("detect")] == [f"detect {i} on detect" for i in range(3)]
    assert [o for o in order if o.startswith("rules")] == ["rules 0", "rules 1", "rules 2"]  # each camera in order
    assert len(seen["cam-01"]) == 3 and first.frames_processed == 3


def test_the_detector_starts_a_round_before_it_collects_the_previous_one(tmp_path):
    """The next round's inference starts while the previous round's may still run (so that the cores
    never wait for a round's last request), and each round is still collected, then ruled, in order."""
    events: list[str] = []

    class Recorder(BatchRecorder):
        def start_detect(self, images, labels=None):
            index = len(self.batches)
            events.append(f"start {index}")
            found = super().detect(images, labels)
            return lambda: (events.append(f"collect {index}"), found)[1]

    detector = Recorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    seen = _rounds(runner, {"cam-01": pipelines["cam-01"]}, 4, widths=(640,))
    assert events == ["start 0", "start 1", "collect 0", "start 2", "collect 1", "start 3", "collect 2", "collect 3"]
    assert len(seen["cam-01"]) == 4 and pipelines["cam-01"].frames_processed == 4


def test_a_paused_camera_s_detected_frame_is_never_analysed(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    ready = [
        (p, Frame(cid, 0, 0.0, INSIDE, np.full((w * 3 // 4, w, 3), 90, np.uint8)))
        for (cid, p), w in zip(pipelines.items(), (640, 320, 160))
    ]
    runner.scheduler.hand(ready)  # detected; rules pending
    runner.scheduler.drop_detected("cam-02")
    runner.scheduler.finish_detected()
    assert {cid: p.frames_processed for cid, p in pipelines.items()} == {"cam-01": 1, "cam-02": 0, "cam-03": 1}


def test_a_frame_the_model_refuses_costs_only_its_camera(tmp_path):
    detector = BatchRecorder(fail_width=320)
    site, runner = three_cameras(tmp_path, detector)
    pipelines, _ = runner._build(runner.cameras())
    seen = _rounds(runner, pipelines, 3)
    # Each round's batch fails, then each camera alone (when the round is collected): the error stays with cam-02.
    full = ([640, 320, 160], frozenset({"person", "car"}))
    alone = [([640], frozenset({"person"})), ([320], frozenset({"person"})), ([160], frozenset({"car"}))]
    assert detector.batches[0] == full and [b for b in detector.batches if b == full] == [full] * 3
    assert [b for b in detector.batches if b != full] == alone * 3
    assert seen == {"cam-01": [["person"]] * 3, "cam-02": [], "cam-03": [["car"]] * 3}
    (error,) = site.events("camera_error")
    assert error["camera_id"] == "cam-02" and "cannot read this frame" in error["details"]["error"]

    broken = pipelines["cam-01"]
    broken.prepare = lambda frame: (_ for _ in ()).throw(ValueError("bad frame"))  # a failure before detection
    detector.batches.clear()
    seen = _rounds(runner, pipelines, 1, first=3)
    assert detector.batches[0] == ([320, 160], frozenset({"person", "car"}))
    assert seen["cam-03"] == [["car"]]
    assert [e["camera_id"] for e in site.events("camera_error")] == ["cam-02", "cam-01"]


def test_three_cameras_replay_every_frame_with_batched_inference(tmp_path):
    detector = BatchRecorder()
    site, runner = three_cameras(tmp_path, detector)
    summary = runner.run()
    assert summary.frames == {"cam-01": 15, "cam-02": 15, "cam-03": 15} and summary.camera_errors == {}
    assert sum(len(widths) for widths, _ in detector.batches) == 45  # every frame once
    assert len(detector.batches) < 45  # and some rounds shared one call
    assert sorted(a.record.camera_id for a in summary.alerts) == ["cam-01", "cam-02", "cam-03"]
    assert set(summary.stage_s) == {"decode", "detect", "track", "rules", "store"}
    assert all(v > 0 for v in summary.stage_s.values()), summary.stage_s
    assert summary.frames_gated == {"cam-01": 0, "cam-02": 0, "cam-03": 0}


def test_pending_says_whether_a_round_waits_for_its_rules(tmp_path):
    site, runner = three_cameras(tmp_path, BatchRecorder())
    pipelines, _ = runner._build(runner.cameras())
    scheduler = runner.scheduler
    assert not scheduler.pending
    scheduler.hand([(pipelines["cam-01"], Frame("cam-01", 0, 0.0, INSIDE, np.full((480, 640, 3), 90, np.uint8)))])
    assert scheduler.pending and pipelines["cam-01"].frames_processed == 0  # one round ahead: its rules wait
    scheduler.finish_oldest()
    assert not scheduler.pending and pipelines["cam-01"].frames_processed == 1
    scheduler.shutdown()


def test_a_scheduler_reports_each_failed_frame_and_each_analysed_one(tmp_path):
    site, runner = three_cameras(tmp_path, BatchRecorder(fail_width=320))
    pipelines, _ = runner._build(runner.cameras())
    failed, analysed = [], []
    scheduler = DetectionScheduler(
        lambda cid, frame, exc: failed.append((cid, frame.index, str(exc))),
        lambda cid, frame: analysed.append((cid, frame.index)),
        rounds_ahead=0,
    )
    ready = [
        (p, Frame(cid, 0, 0.0, INSIDE, np.full((w * 3 // 4, w, 3), 90, np.uint8)))
        for (cid, p), w in zip(pipelines.items(), (640, 320, 160))
    ]
    scheduler.hand(ready)  # no round ahead: its rules run at once
    assert not scheduler.pending
    assert failed == [("cam-02", 0, "cannot read this frame")] and analysed == [("cam-01", 0), ("cam-03", 0)]
    scheduler.shutdown()


@pytest.mark.parametrize(
    ("names", "labels", "kept"),
    [
        (["person", "car", "person"], {"person"}, [0, 2]),
        (["person", "car"], {"car", "person"}, [0, 1]),
        (["car"], {"person"}, []),
    ],
)
def test_only_labels_keeps_the_classes_a_camera_asked_for(names, labels, kept):
    boxes = np.array([[i, i, i + 10, i + 10] for i in range(len(names))], dtype=np.float32)
    detections = sv.Detections(
        xyxy=boxes,
        confidence=np.full(len(names), 0.9),
        class_id=np.zeros(len(names), int),
        data={"class_name": np.array(names)},
    )
    assert only_labels(detections, frozenset(labels)).xyxy.tolist() == boxes[kept].tolist()


def test_only_labels_leaves_detections_without_class_names_as_they_are():
    empty = sv.Detections.empty()
    assert only_labels(empty, frozenset({"person"})) is empty
