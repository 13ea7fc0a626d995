"""Frozen base model and field types shared by the site config and every rule's config.

Coordinates are normalised to the image (0..1, origin top-left, y down) so that a config drawn on
a snapshot stays valid when the stream's resolution changes.
"""

import re
from collections.abc import Iterable
from typing import Annotated, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo

from runner.core.geometry import segments_intersect

# C0/C1 control characters (NUL, tab, line breaks, ESC...) and the invisible bidi overrides: in a path
# they make open() raise ValueError at run time; in a name or label they forge lines in logs and messages.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _no_control_characters(text: str) -> str:
    if _CONTROL_CHARACTERS.search(text):
        raise ValueError("must not contain control characters (NUL, tab, line break, escape, bidi override...)")
    return text


NoControlCharacters = AfterValidator(_no_control_characters)
"""Add to every free-text field: `Annotated[str, StringConstraints(...), NoControlCharacters]`."""

NormCoord = Annotated[float, Field(ge=0.0, le=1.0)]
NormPoint = tuple[NormCoord, NormCoord]


def crossing_edges(polygon: list[NormPoint]) -> tuple[int, int] | None:
    """The first two edges of a polygon that cross each other, if any (a bow-tie, a figure of eight).

    Args:
        polygon: the vertices in drawing order; edge i runs from vertex i to vertex i+1 (the last back to 0).

    Returns:
        (i, j), the numbers of the first crossing edges (i < j), or None for a simple polygon.
    """
    count = len(polygon)
    edges = [(polygon[i], polygon[(i + 1) % count]) for i in range(count)]
    for i in range(count):
        for j in range(i + 2, count):
            if i == 0 and j == count - 1:
                continue  # the closing edge and the first one share vertex 0
            if segments_intersect(*edges[i], *edges[j]):
                return i, j
    return None


def _simple_polygon(polygon: list[NormPoint], info: ValidationInfo) -> list[NormPoint]:
    """A self-intersecting polygon's area is not what it looks like (a bow-tie's halves cancel out, so
    densities per m2 and "inside" tests go wrong): refused, naming the zone (or the camera's mask)."""
    crossing = crossing_edges(polygon)
    if crossing is None:
        return polygon
    i, j = crossing
    count = len(polygon)
    owner = f"'{info.data['id']}'" if info.data.get("id") else "(whose id is invalid)"
    what = f"zone {owner}" if info.field_name == "polygon" else f"a privacy mask of camera {owner}"
    raise ValueError(
        f"{what} is not a simple polygon: edge {i + 1} (points {i + 1}-{(i + 1) % count + 1}) crosses edge {j + 1} "
        f"(points {j + 1}-{(j + 1) % count + 1}); list the points in order around the outline"
    )


Polygon = Annotated[list[NormPoint], Field(min_length=3, max_length=256), AfterValidator(_simple_polygon)]
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"),
    Field(description="Identifier: lower-case letters, digits, '-' and '_' (at most 63 characters)."),
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64), NoControlCharacters]
Labels = Annotated[
    list[Label],
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


class HasId(Protocol):
    """Anything named by an `id` in the config: a camera, a zone, a line, a rule."""

    @property
    def id(self) -> str: ...


Identified = TypeVar("Identified", bound=HasId)


def by_id(items: Iterable[Identified], item_id: str) -> Identified:
    """The item whose `id` is `item_id` (the config checks every reference at load).

    Args:
        items: zones, lines, cameras or rules.
        item_id: the id looked for.

    Returns:
        The first item with that id.

    Raises:
        KeyError: none has it (the message is the id).
    """
    found = next((item for item in items if item.id == item_id), None)
    if found is None:
        raise KeyError(item_id)
    return found
