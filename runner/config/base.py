"""Frozen base model and field types shared by the site config and every rule's config.

Coordinates are normalised to the image (0..1, origin top-left, y down) so that a config drawn on
a snapshot stays valid when the stream's resolution changes.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NormCoord = Annotated[float, Field(ge=0.0, le=1.0)]
NormPoint = tuple[NormCoord, NormCoord]
Polygon = Annotated[list[NormPoint], Field(min_length=3, max_length=256)]
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"),
    Field(description="Identifier: lower-case letters, digits, '-' and '_' (at most 63 characters)."),
]
Labels = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
    Field(min_length=1, max_length=64),
]


class Frozen(BaseModel):
    """Immutable, strict config node: unknown keys are errors, attributes cannot be reassigned.

    Equality is by value. (Not hashable in general: list and dict fields are not.)
    """

    # allow_inf_nan=False: YAML's .nan / .inf would slip through bounds-free fields (a zone's direction,
    # calibration metres) and poison the geometry downstream.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


class ConfigProblems(ValueError):
    """Raised by cross-field validators: each problem is (relative field path, message).

    `runner.config.loading` turns them into `absolute.path: message` lines.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))

