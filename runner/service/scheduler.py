"""Detection scheduling: the analysis loop's rounds (the next frame of every camera that has one) detected
on one detector thread, each model run once per round on the images of every camera that needs it, then
tracked and ruled on the analysis thread, camera by camera, in order.

The detector thread plans each camera's detection (privacy masks, motion gate) and runs each model once on
the images of all the cameras that need it (one batched inference instead of one per camera). The analysis
thread tracks and runs the rules of a round up to `ROUNDS_AHEAD` rounds behind the detector.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import supervision as sv

from runner.core.fields import CLASS_NAME
from runner.pipeline.camera import (
    SETTLED_LAG_FRAMES,
    CameraPipeline,
    DetectionPlan,
    FrameDetections,
    FrameInput,
    PlannedModel,
    detect_one,
)
from runner.sources.capture import Frame

log = logging.getLogger(__name__)
# Rounds the detector thread may run ahead of the rules. With one, the two threads go in lockstep and
# each round costs the longer of its detection and the previous round's rules; a second round queued
# keeps the detector busy through a round whose rules run long (a density pass, alerts), and the rules
# busy through a round whose detection runs long. Each round ahead holds one frame per camera.
ROUNDS_AHEAD = 2


@dataclass
class _Job:
    """One camera's frame in an analysis round (image, plan, outputs: filled on the detector thread)."""

    pipeline: CameraPipeline
    frame: Frame
    image: np.ndarray | None = None
    plan: DetectionPlan | None = None
    outputs: dict[str, sv.Detections] = field(default_factory=dict)
    detected: FrameDetections | None = None
    error: Exception | None = None

    def masked_image(self) -> np.ndarray:
        """The image detection runs on (set by `prepare` before the job's models are started)."""
        assert self.image is not None, "a job is detected only once prepared"
        return self.image


@dataclass
class _Inference:
    """One model's inference over a round's images, started; `collect()` waits for its detections."""

    name: str
    members: list[tuple[_Job, PlannedModel, FrameInput]]
    labels: frozenset[str]
    collect: Callable[[], list[sv.Detections]]
    start_s: float  # time spent starting it (letterbox, queueing), counted with the frames' detection


@dataclass(eq=False)
class _Round:
    """A round handed to the detector thread: its jobs are the analysis thread's again once `detection` is set."""

    jobs: list[_Job]
    detection: Future = field(default_factory=Future)
    inferences: list[_Inference] = field(default_factory=list)  # detector thread: started, not collected yet
    failure: BaseException | None = None  # detector thread: starting the round failed as a whole
    collect_asked: bool = False  # analysis thread: asked the detector thread to collect it without a next round


def _raiser(exc: Exception) -> Callable[[], list[sv.Detections]]:
    def collect() -> list[sv.Detections]:
        raise exc

    return collect


class DetectionScheduler:
    """Rounds handed to the detector thread, then tracked and ruled on the analysis thread, oldest first.

    Every public method is called from the analysis thread; the detector thread only runs `_detect_step`
    and `_collect_started`. One camera's failure stays with its frame: `on_failed` reports it when the
    frame's rules would have run, and the other cameras of the round go on.
    """

    def __init__(
        self,
        on_failed: Callable[[str, Frame, Exception], None],
        on_analysed: Callable[[str, Frame], None] | None = None,
        *,
        rounds_ahead: int = ROUNDS_AHEAD,
    ):
        """A scheduler with no round yet (its detector thread starts with the first round).

        Args:
            on_failed: called (camera id, frame, exception) on the analysis thread when a frame's detection,
                tracking or rules failed.
            on_analysed: called (camera id, frame) on the analysis thread after each analysed frame.
            rounds_ahead: rounds the detector may run ahead of the rules.
        """
        if not 0 <= rounds_ahead < SETTLED_LAG_FRAMES:
            # A camera's plan reads its tracker's state SETTLED_LAG_FRAMES frames back: that frame must be analysed.
            raise ValueError(f"rounds_ahead must be 0 to {SETTLED_LAG_FRAMES - 1}, not {rounds_ahead}")
        self.on_failed = on_failed
        self.on_analysed = on_analysed
        self.rounds_ahead = rounds_ahead
        # Rounds are planned and detected here, in order, while the analysis thread tracks and rules earlier ones.
        self._detect_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect")
        self._rounds: deque[_Round] = deque()  # handed to the detector, waiting for tracking and rules, oldest first
        self._last_handed: _Round | None = None
        self._started: _Round | None = None  # detector thread: the round whose inference runs, not collected yet

    @property
    def pending(self) -> bool:
        """Whether a round handed to the detector still waits for its tracking and rules."""
        return bool(self._rounds)

    def shutdown(self) -> None:
        """Wait for the detector thread's work in progress, then end it."""
        self._detect_thread.shutdown(wait=True)

    # -- on the analysis thread ------------------------------------------------------------------
    def hand(self, ready: list[tuple[CameraPipeline, Frame]]) -> None:
        """Hand this round to the detector thread, then run the rules of the rounds it is too far ahead of.

        Detection (masks, motion gate, inference) runs on the detector thread (OpenVINO and PyTorch release
        the GIL), so the analysis thread's tracking and rules of round k overlap the detection of rounds
        k+1 and k+2: on 2 cores neither waits for the other. The detector thread takes rounds in order, and
        starts a round's inference before it collects the previous round's (`_detect_step`): the requests
        of round k+1 take the cores as soon as round k's last requests end, instead of one core idling
        while the last request of each round runs alone. A camera's plan never needs its previous frame's
        outputs or rules, so the order of each camera's frames is unchanged.

        Args:
            ready: the round, one (pipeline, frame) per camera at most.
        """
        handed = _Round([_Job(pipeline, frame) for pipeline, frame in ready])
        self._rounds.append(handed)
        self._last_handed = handed
        self._detect_thread.submit(self._detect_step, handed)
        while len(self._rounds) > self.rounds_ahead:
            self.finish_oldest()

    def finish_oldest(self) -> None:
        """Wait for the oldest round's detection, then track and run its rules."""
        oldest = self._rounds.popleft()
        self._wait_detection(oldest)
        self._analyse_jobs(oldest.jobs)

    def finish_detected(self, cameras: set[str] | None = None) -> None:
        """Track and run the rules on every round handed to the detector, once detected.

        Args:
            cameras: only these cameras' frames (the others keep waiting for their turn); None: all.
        """
        waiting, self._rounds = self._rounds, deque()
        for pending in waiting:  # round by round: a later round's detection may wait for an earlier one's rules
            self._wait_detection(pending)
            chosen = [cameras is None or job.pipeline.camera.id in cameras for job in pending.jobs]
            self._analyse_jobs([job for job, mine in zip(pending.jobs, chosen) if mine])
            pending.jobs = [job for job, mine in zip(pending.jobs, chosen) if not mine]
            if pending.jobs:
                self._rounds.append(pending)

    def drop_detected(self, camera_id: str) -> None:
        """Forget a camera's frames handed to the detector (the camera was paused: nothing more is analysed).
        Their detection is waited for first: the camera is reset next, and its plan must not run beside.

        Args:
            camera_id: the camera whose frames are forgotten.
        """
        for pending in self._rounds:
            self._wait_detection(pending)
            pending.jobs = [job for job in pending.jobs if job.pipeline.camera.id != camera_id]

    def _wait_detection(self, pending: _Round) -> None:
        if pending is self._last_handed and not pending.collect_asked:
            # No round follows it: the detector thread collects it now rather than after a next round's start.
            pending.collect_asked = True
            self._detect_thread.submit(self._collect_started)
        try:
            pending.detection.result()
        except Exception as exc:  # the detector thread keeps errors with their frames; anything else, with all of them
            for job in pending.jobs:
                job.error = job.error or exc

    def _analyse_jobs(self, jobs: list[_Job]) -> None:
        for job in jobs:
            try:  # one camera's bad frame never stops the others
                if job.error is not None:
                    raise job.error
                # Without an error, the detector thread prepared and combined the frame.
                assert job.image is not None and job.detected is not None
                job.pipeline.analyse(job.frame, job.image, job.detected)
                if self.on_analysed is not None:
                    self.on_analysed(job.pipeline.camera.id, job.frame)
            except Exception as exc:
                self.on_failed(job.pipeline.camera.id, job.frame, exc)

    # -- on the detector thread ------------------------------------------------------------------
    def _detect_step(self, handed: _Round) -> None:
        """Start this round's inference, then collect the previous round's (its requests ran meanwhile)."""
        try:
            self._start_detection(handed)
        finally:
            previous, self._started = self._started, handed
            if previous is not None:
                self._collect_detection(previous)

    def _collect_started(self) -> None:
        if self._started is not None:
            started, self._started = self._started, None
            self._collect_detection(started)

    def _start_detection(self, handed: _Round) -> None:
        """Each camera's masks and plan, then one inference started per model over the images of every
        camera that runs it this round, asked for the union of their labels. An error stays with its
        camera's frame, reported when its rules' turn comes."""
        try:
            for job in handed.jobs:
                if job.pipeline.warm_shape != job.frame.image.shape[:2]:  # a camera's first frame, or a new size
                    self._warm_up(job.pipeline, *job.frame.image.shape[:2])
                try:
                    started = time.perf_counter()
                    job.image = job.pipeline.prepare(job.frame)
                    job.plan = job.pipeline.plan(job.image, job.frame.t_s)
                    job.pipeline.record_stage_s("detect", time.perf_counter() - started)
                except Exception as exc:
                    job.error = exc
            # One inference per model and input size (a camera with small people runs its person model larger, a
            # crop around the zones smaller).
            by_model: dict[tuple[str, int | None], list[tuple[_Job, PlannedModel, FrameInput]]] = {}
            for job in handed.jobs:
                if job.error is not None:
                    continue
                assert job.plan is not None  # planned without an error
                for model in job.plan.run:
                    given = model.frame_input(job.masked_image())
                    by_model.setdefault((model.name, given.imgsz), []).append((job, model, given))
            for (name, imgsz), members in by_model.items():
                handed.inferences.append(self._start_inference(name, members, imgsz))
        except Exception as exc:  # not a camera's fault: every frame of the round carries it
            handed.failure = exc

    @staticmethod
    def _start_inference(
        name: str, members: list[tuple[_Job, PlannedModel, FrameInput]], imgsz: int | None = None
    ) -> _Inference:
        labels = frozenset().union(*(model.labels for _, model, _ in members))
        started = time.perf_counter()
        try:
            images = [given.image for _, _, given in members]
            detector = members[0][1].detector
            collect = (
                detector.start_detect(images, labels)
                if imgsz is None
                else detector.start_detect(images, labels, imgsz=imgsz)
            )
        except Exception as exc:
            collect = _raiser(exc)
        return _Inference(name, members, labels, collect, time.perf_counter() - started)

    def _collect_detection(self, started: _Round) -> None:
        """Wait for the round's inferences and combine each camera's detections; the round is then the
        analysis thread's."""
        try:
            if started.failure is not None:
                raise started.failure
            for inference in started.inferences:
                self._collect_inference(inference)
            for job in started.jobs:
                if job.error is None:
                    try:
                        job.detected = job.pipeline.combine(job.outputs, job.frame.t_s, job.plan, job.image)
                    except Exception as exc:
                        job.error = exc
            started.detection.set_result(None)
        except BaseException as exc:
            started.detection.set_exception(exc)

    def _collect_inference(self, inference: _Inference) -> None:
        """Each camera keeps only its own labels; when the batch fails, one call per camera finds whose
        frame the model refuses, and the error stays with it."""
        members = inference.members
        started = time.perf_counter()
        outputs: Sequence[sv.Detections | None]
        try:
            outputs = inference.collect()
            if len(outputs) != len(members):
                raise RuntimeError(f"model {inference.name} returned {len(outputs)} results for {len(members)} images")
        except Exception as exc:
            if len(members) == 1:
                members[0][0].error = exc
                outputs = [None]
            else:
                outputs = [self._detect_alone(job, model) for job, model, _ in members]
                members = [(job, model, FrameInput(job.masked_image(), None, None)) for job, model, _ in members]
        share_s = (inference.start_s + time.perf_counter() - started) / len(members)
        for (job, model, given), output in zip(members, outputs):
            job.pipeline.record_stage_s("detect", share_s)
            if output is not None:
                output = given.to_frame(output)
                job.outputs[inference.name] = (
                    output if model.labels == inference.labels else only_labels(output, model.labels)
                )

    @staticmethod
    def _warm_up(pipeline: CameraPipeline, height: int, width: int) -> None:
        try:
            pipeline.warm_up(height, width)
        except Exception as exc:  # the frames still run: each shape is then compiled when first needed
            log.warning("camera %s: warming up the models for %dx%d failed: %s", pipeline.camera.id, width, height, exc)

    @staticmethod
    def _detect_alone(job: _Job, model: PlannedModel) -> sv.Detections | None:
        try:
            return detect_one(model, job.masked_image())
        except Exception as exc:
            job.error = exc
            return None


def only_labels(detections: sv.Detections, labels: frozenset[str]) -> sv.Detections:
    """The detections whose class is one of `labels` (a batched call asked for several cameras' labels).

    Args:
        detections: one image's detections, with a `class_name` column.
        labels: the class names to keep.

    Returns:
        The detections of those classes (the same object when there is nothing to filter).
    """
    names = detections.data.get(CLASS_NAME) if detections.data else None
    if names is None or len(detections) == 0:
        return detections
    # A boolean mask selects a `sv.Detections` (its stubs' return type covers every kind of index).
    return cast(sv.Detections, detections[np.array([str(n) in labels for n in names], dtype=bool)])
