"""The fields and checks every rule's config shares; each kind's module adds its own thresholds."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, get_args

from pydantic import Field

from runner.config.base import Frozen, Slug

if TYPE_CHECKING:
    from runner.config.site import Camera


MIN_TRACKED_DETECT_FPS = 2.5  # the fewest fresh detections a second for a rule reading predicted tracks


class RuleConfig(Frozen):
    """Fields every rule has. Subclasses add `kind: Literal[...]` and their own thresholds."""

    kind: str
    id: Slug
    enabled: bool = Field(True, description="A disabled rule is kept in the config but not evaluated.")
    cooldown_s: float = Field(
        10.0,
        ge=0.0,
        le=86400.0,
        description="Minimum time in seconds between two alerts of this rule for the same subject (track or zone).",
    )
    process_fps: float | None = Field(
        None,
        ge=0.2,
        le=30.0,
        description="Frames per second this rule is evaluated on; empty = what its kind needs (abandoned_object and "
        "crowd_density 1 (5 with `foreground`), zone_intrusion, wrong_way and person_down 5, crowd_movement 10, fire "
        "and weapon every frame "
        "of the camera), never more than the camera's `process_fps`. The camera analyses frames at the highest rate "
        "its rules need; the others run on a subset of those frames.",
    )
    model: Slug | None = Field(
        None,
        description="The model (a key of `models:`) that serves this rule's labels on its camera, for all its rules, "
        "instead of the default routing. On a person_down rule, naming the detector (e.g. coco) gives the cascade: "
        "persons from the detector, keypoints from the pose model on their crops (for people too small for it).",
    )

    # Frames per second a kind needs (None: every frame of its camera). A still bag or a crowd's level changes over
    # seconds; a walker crosses a zone in a few; a fall, a surge and a flame's flicker need more.
    NEEDED_FPS: ClassVar[float | None] = None

    # Whether the kind's rule stays sound on frames where the tracker predicted the tracks' boxes (no detector ran):
    # true for kinds that read only tracks' positions; they then need fresh detections at `detect_fps` only.
    READS_PREDICTED_TRACKS: ClassVar[bool] = False

    # Rule kinds that read body keypoints of their labels (a pose model's 17 COCO keypoints).
    KEYPOINT_KINDS: ClassVar[frozenset[str]] = frozenset({"person_down"})

    @classmethod
    def kind_name(cls) -> str:
        """The `kind` tag of this config class (its `Literal[...]`), the key of the config's discriminated union.

        Returns:
            The tag, e.g. "zone_intrusion".
        """
        return get_args(cls.model_fields["kind"].annotation)[0]

    def rate_fps(self, camera_fps: float) -> float:
        """Frames per second this rule is evaluated on, on a camera analysing at most `camera_fps`.

        Args:
            camera_fps: the camera's `process_fps`.

        Returns:
            `process_fps`, else the kind's need, at most `camera_fps`.
        """
        wanted = self.process_fps if self.process_fps is not None else self.needed_fps()
        return camera_fps if wanted is None else min(wanted, camera_fps)

    def detect_fps(self, camera_fps: float) -> float:
        """Fresh detections per second this rule needs when the tracker predicts the frames between them.

        Every other of its frames, but never below `MIN_TRACKED_DETECT_FPS` (ByteTrack matches a box with the
        prediction of a track by overlap: at 2.5 fps a walker moves about a body width between two detections),
        for a kind that reads predicted tracks; kinds override it.

        Args:
            camera_fps: the camera's `process_fps`.

        Returns:
            Frames per second, at most `rate_fps`; `rate_fps` itself for a kind that needs a detection on each of
            its frames.
        """
        rate = self.rate_fps(camera_fps)
        if not self.READS_PREDICTED_TRACKS:
            return rate
        return max(rate / 2.0, min(rate, MIN_TRACKED_DETECT_FPS))

    def needed_fps(self) -> float | None:
        """Frames per second this rule's kind needs with its settings.

        Returns:
            `NEEDED_FPS`; kinds whose settings change it override this; None: every frame of the camera.
        """
        return self.NEEDED_FPS

    def zone_refs(self) -> dict[str, str]:
        """Field path -> zone id, for every zone this rule reads (`zone`, `exclude_zones[i]`), checked
        against the camera's zones.

        Returns:
            The references, by field path; empty when the rule names no zone.
        """
        zone = getattr(self, "zone", None)
        refs = {"zone": zone} if zone else {}
        refs.update({f"exclude_zones[{i}]": z for i, z in enumerate(getattr(self, "exclude_zones", None) or ())})
        return refs

    def line_refs(self) -> dict[str, str]:
        """Field path -> line id, for the tripwire this rule reads (`line`), checked against the camera's lines.

        Returns:
            {"line": its id}, or empty when the rule names no line.
        """
        line = getattr(self, "line", None)
        return {"line": line} if line else {}

    def required_labels(self) -> frozenset[str]:
        """Detector class names this rule needs; the runner loads the models that provide them.

        Returns:
            The rule's `labels` (empty when its kind has none); kinds override it to add more.
        """
        return frozenset(getattr(self, "labels", ()))

    def keypoint_labels(self) -> frozenset[str]:
        """Labels whose detections this rule reads keypoints of (a pose model, run on their crops when a
        plain detector finds them).

        Returns:
            The rule's `labels` for a kind of `KEYPOINT_KINDS`, else an empty set.
        """
        return frozenset(getattr(self, "labels", ())) if self.kind in self.KEYPOINT_KINDS else frozenset()

    def optional_labels(self) -> frozenset[str]:
        """Labels used when some configured model provides them, ignored otherwise.

        Returns:
            An empty set here; kinds with an optional cue override it.
        """
        return frozenset()

    def camera_problems(self, camera: Camera) -> list[tuple[str, str]]:
        """Checks that need the camera (a zone's direction, a calibration).

        Args:
            camera: the camera this rule is configured on (its zones and references are already checked).

        Returns:
            (field, message) pairs; empty when the rule fits the camera.
        """
        return []
