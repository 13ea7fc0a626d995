"""Markdown reference of the site config, generated from the pydantic models themselves.

`python -m runner.config.reference > docs/config_reference.md` — a test checks the file is current,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import sys

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from runner.config.outputs import MqttOutput, Outputs, WebhookOutput
from runner.config.rules import RULE_CONFIGS_BY_KIND
from runner.config.site import (
    Authorization,
    Calibration,
    Camera,
    Line,
    ModelSpec,
    MotionGate,
    Retention,
    SiteConfig,
    Tracking,
    Zone,
)

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Site (top level)", SiteConfig),
    ("authorization", Authorization),
    ("retention", Retention),
    ("models.<name>", ModelSpec),
    ("cameras[]", Camera),
    ("cameras[].zones[]", Zone),
    ("cameras[].lines[]", Line),
    ("cameras[].calibration", Calibration),
    ("cameras[].tracking", Tracking),
    ("cameras[].motion_gate", MotionGate),
    ("outputs", Outputs),
    ("outputs.mqtt", MqttOutput),
    ("outputs.webhooks[]", WebhookOutput),
]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined:
        return "—"
    if isinstance(value, BaseModel):
        return "(defaults)"
    return f"`{value!r}`" if value is not None else "—"


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("multiple_of", "multiple of")):
            if getattr(meta, name, None) is not None:
                parts.append(f"{symbol} {getattr(meta, name)}")
    return ", ".join(parts)


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| field | default | bounds | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_default(field)} | {_bounds(field)} | {description} |")
    return lines


def render() -> str:
    """The config reference (docs/config_reference.md) generated from the models.

    Returns:
        Markdown: one table per section, then one per rule kind in RULE_CONFIGS order.
    """
    out = [
        "# Site config reference",
        "",
        "Generated from the pydantic models by `python -m runner.config.reference`; do not edit by hand.",
        "Coordinates are normalised to the image (0–1, origin top-left); durations are in seconds.",
        "",
    ]
    for title, model in SECTIONS:
        out += [f"## {title}", "", *_table(model), ""]
    out += [
        "## Rules (`cameras[].rules[]`)",
        "",
        "Every rule has `kind`, `id`, `enabled` and `cooldown_s`; the other fields depend on its kind.",
        "",
    ]
    for kind, config_model in RULE_CONFIGS_BY_KIND.items():
        # The first paragraph of the config module's docstring: the same summary its rule module opens with.
        doc = (sys.modules[config_model.__module__].__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out += [f"### `{kind}`", "", doc, "", *_table(config_model, skip=("kind",)), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
