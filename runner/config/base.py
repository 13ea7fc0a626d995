"""Frozen base model and field types shared by the site config and every rule's config.

Coordinates are normalised to the image (0..1, origin top-left, y down) so that a config drawn on
a snapshot stays valid when the stream's resolution changes.
"""

import re
from collections.abc import Iterable
from typing import Annotated, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

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
Polygon = Annotated[list[NormPoint], Field(min_length=3, max_length=256)]
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
