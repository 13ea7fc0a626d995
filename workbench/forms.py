"""Forms generated from pydantic config models: every rule kind the registry lists gets one.

`field_specs(model)` reads the model's JSON schema (types, bounds, enums, descriptions); nothing
here knows a rule kind by name. A field is shown as a zone or line picker when its JSON schema
says `"x-vigie-ref": "zone" | "line"` or, failing that, by the config's naming convention
(`zone`, `line`, `*_zone`, `*_line`, and `zones` / `*_zones` / `lines` / `*_lines` for lists).

`ModelForm` is the state of one form (values in, config data out) and is tested without a
browser; `ModelFormView` is its thin ipywidgets face. Widgets never clamp a value: the runner's
validation decides, and its message is shown next to the field, in the agent's language.

Numbers are typed in text boxes and read by `parse_decimal` (`1,5` and `1.5` are 1.5; anything else
is refused at the field). Not ipywidgets' FloatText / IntText: they render an `<input type="number">`
whose key handler deletes `e`, `,`, `.` and spaces as they are typed (IntText) and whose value the
browser re-reads in its own locale, so a French agent's `1,5` reached the config as 15 and `0,45`
as 45.

Labels and help come from `workbench.config_text` (French titles and descriptions of every config
field); the config key stays in the label's tooltip.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import yaml
from pydantic import BaseModel

from runner.core.access import login_from_env
from runner.rules.registry import RULES
from workbench.config_text import choice_label, field_help, field_title, place, problem_message
from workbench.export import list_sites
from workbench.i18n import add_messages, language, t

NUMBER, INTEGER, BOOLEAN, CHOICE, TEXT, TAGS, YAML = "number", "integer", "boolean", "choice", "text", "tags", "yaml"
ZONE, LINE, ZONES, LINES = "zone", "line", "zones", "lines"
NONE_LABEL = "—"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldSpec:
    """One field of a form, as the model's JSON schema describes it."""

    name: str
    widget: str
    description: str = ""
    title: str = ""
    required: bool = False
    nullable: bool = False
    default: Any = MISSING
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    choices: tuple[Any, ...] = ()
    min_items: int | None = None
    max_items: int | None = None

    def bounds_text(self) -> str:
        """'0 ≤ … ≤ 3600', '> 0', '≤ 10' or ''.

        Returns:
            The field's bounds as the help text shows them; '' when it has none.
        """
        low = (
            f"{_num(self.minimum)} ≤ "
            if self.minimum is not None
            else (f"{_num(self.exclusive_minimum)} < " if self.exclusive_minimum is not None else "")
        )
        high = (
            f" ≤ {_num(self.maximum)}"
            if self.maximum is not None
            else (f" < {_num(self.exclusive_maximum)}" if self.exclusive_maximum is not None else "")
        )
        if not low and not high:
            return ""
        if low and high:
            return f"{low}…{high}"
        return (
            f"≥ {_num(self.minimum)}"
            if self.minimum is not None
            else (f"> {_num(self.exclusive_minimum)}" if low else high.strip())
        )

    def help_text(self) -> str:
        """What is shown under the field's input.

        Returns:
            The description, the bounds in brackets and a note when an empty input means None.
        """
        parts = [self.description] if self.description else []
        if self.bounds_text():
            parts.append(f"[{self.bounds_text()}]")
        if self.nullable:
            parts.append(t("form.empty_is_none"))
        return " ".join(parts)


def _num(value: float | None) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:g}".replace(".", ",") if language() == "fr" else f"{value:g}"


# -- schema -> specs --------------------------------------------------------------------------------
def field_specs(model: type[BaseModel], exclude: Iterable[str] = ()) -> list[FieldSpec]:
    """Specs of the model's fields in declaration order; `const` fields (a rule's `kind`) are left out.

    Args:
        model: a pydantic config model (a rule's, `Camera`, `SiteConfig`...).
        exclude: names of fields to leave out.

    Returns:
        One spec per field, read from the model's JSON schema.
    """
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", []))
    excluded = set(exclude)
    specs = []
    for name, prop in schema.get("properties", {}).items():
        if name in excluded or "const" in prop:
            continue
        spec = _spec(name, prop, name in required, definitions)
        # The agent's words for the field, in the current language (the schema's description is English).
        specs.append(dataclasses.replace(spec, title=field_title(model, name), description=field_help(model, name)))
    return specs


def _resolve(prop: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if ref:
        resolved = dict(definitions.get(ref.rsplit("/", 1)[-1], {}))
        resolved.update({k: v for k, v in prop.items() if k != "$ref"})
        return resolved
    return dict(prop)


def _spec(name: str, prop: Mapping[str, Any], required: bool, definitions: Mapping[str, Any]) -> FieldSpec:
    nullable = False
    body = _resolve(prop, definitions)
    options = body.get("anyOf") or body.get("oneOf")
    if options:
        kept = [_resolve(o, definitions) for o in options if o.get("type") != "null"]
        nullable = len(kept) < len(options)
        if len(kept) == 1:  # X | None: describe X, keep the outer description, default, bounds
            body = {**kept[0], **{k: v for k, v in body.items() if k not in ("anyOf", "oneOf")}}
    return FieldSpec(
        name=name,
        widget=_widget_for(name, body),
        description=str(body.get("description", "")),
        required=required,
        nullable=nullable,
        default=body.get("default", MISSING),
        minimum=body.get("minimum"),
        maximum=body.get("maximum"),
        exclusive_minimum=body.get("exclusiveMinimum"),
        exclusive_maximum=body.get("exclusiveMaximum"),
        multiple_of=body.get("multipleOf"),
        choices=tuple(body.get("enum", ())),
        min_items=body.get("minItems"),
        max_items=body.get("maxItems"),
    )


def _widget_for(name: str, body: Mapping[str, Any]) -> str:
    ref = body.get("x-vigie-ref")
    kind: Any = body.get("type")  # a JSON schema type name; None when the schema gives none
    if kind == "array":
        items = body.get("items", {})
        ref = ref or items.get("x-vigie-ref")
        if ref in (ZONE, LINE) or (items.get("type") == "string" and re.search(r"(^|_)(zones|lines)$", name)):
            return ZONES if (ref == ZONE or name.endswith("zones")) else LINES
        if items.get("type") == "string" and "enum" not in items:
            return TAGS
        return YAML
    if "enum" in body:
        return CHOICE
    if ref in (ZONE, LINE):
        return ref
    if kind == "string" and re.search(r"(^|_)(zone|line)$", name):
        return ZONE if name.endswith("zone") else LINE
    return {"number": NUMBER, "integer": INTEGER, "boolean": BOOLEAN, "string": TEXT}.get(kind, YAML)


# -- rules ------------------------------------------------------------------------------------------
def rule_models() -> dict[str, type[BaseModel]]:
    """kind -> config model, for every rule the registry lists (new kinds appear here by themselves).

    Returns:
        The rule kinds in the registry's order, each with its pydantic config model.
    """
    return {kind: rule.config_model for kind, rule in RULES.items()}


def new_rule(kind: str, rule_id: str, zone: str | None = None, line: str | None = None) -> dict[str, Any]:
    """A rule of `kind` with every default filled in, attached to `zone` or `line` when the rule has such a field.

    Args:
        kind: a rule kind the registry lists.
        rule_id: the new rule's id.
        zone: the zone id to put in the rule's first zone field, if any.
        line: the line id to put in the rule's first line field, used only when `zone` is None.

    Returns:
        The rule as plain config data; a required field without a default holds a blank value that
        the validation names.

    Raises:
        ValueError: an unknown kind.
    """
    models = rule_models()
    if kind not in models:
        raise ValueError(t("form.unknown_kind", kind=kind, kinds=", ".join(models)))
    rule: dict[str, Any] = {"kind": kind, "id": rule_id}
    # The target goes into the first zone (or line) field; a rule taking either gets the one given.
    target = {ZONE: zone, LINE: line if zone is None else None}
    for spec in field_specs(models[kind]):
        if spec.name == "id":
            continue
        if target.get(spec.widget) is not None:
            rule[spec.name] = target.pop(spec.widget)
        elif spec.default is not MISSING:
            rule[spec.name] = spec.default
        else:
            rule[spec.name] = _blank(spec)
    return rule


def _blank(spec: FieldSpec) -> Any:
    """The value of a required field nobody filled in yet: validation will name it."""
    return {TAGS: [], ZONES: [], LINES: [], BOOLEAN: False}.get(spec.widget, None if spec.widget != TEXT else "")


# -- form state -------------------------------------------------------------------------------------
@dataclass
class ModelForm:
    """Values of one config node being edited; `values` is what goes into the config."""

    model: type[BaseModel]
    values: dict[str, Any]
    exclude: tuple[str, ...] = ()
    specs: list[FieldSpec] = field(init=False)
    input_errors: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.values = dict(self.values)
        self.specs = field_specs(self.model, self.exclude)

    def spec(self, name: str) -> FieldSpec:
        """The spec of one field of the form.

        Args:
            name: the field's name.

        Returns:
            Its spec.

        Raises:
            KeyError: the form has no such field.
        """
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def set(self, name: str, raw: Any) -> None:
        """Store what the widget holds, converted to config data where it can be; anything else is
        stored as typed so that the validation message says what is wrong with it.

        Unreadable YAML and text that is not a number (`parse_decimal`) are not stored: the message
        goes to `input_errors` and the previous value stays.

        Args:
            name: the field's name.
            raw: the widget's value (text, number, bool, list of tags...).

        Raises:
            KeyError: the form has no such field.
        """
        spec = self.spec(name)
        self.input_errors.pop(name, None)
        if spec.widget == YAML:
            try:
                self.values[name] = yaml.safe_load(raw) if isinstance(raw, str) else raw
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = t("form.yaml_line", line=mark.line + 1) if mark else ""
                self.input_errors[name] = t("form.bad_yaml", where=where)
            return
        if spec.widget in (NUMBER, INTEGER) and isinstance(raw, str):
            try:
                self.values[name] = parse_decimal(raw, integer=spec.widget == INTEGER, nullable=spec.nullable)
            except ValueError as exc:
                # Refused at the field, as unreadable YAML: the previous value stays, and the apps count
                # `input_errors` among the problems that block an export or a run.
                self.input_errors[name] = str(exc)
            return
        if spec.widget in (TAGS, ZONES, LINES):
            self.values[name] = [str(v) for v in raw or []]
            return
        if spec.nullable and raw in ("", None):
            self.values[name] = None
            return
        self.values[name] = raw

    def display_value(self, name: str) -> Any:
        """The field's value as its widget holds it.

        Args:
            name: the field's name.

        Returns:
            Flow-style YAML text for a YAML field, text for a number shown in a text box (optional or
            not a number yet), else the value itself.

        Raises:
            KeyError: the form has no such field.
        """
        value = self.values.get(name)
        spec = self.spec(name)
        if spec.widget == YAML:
            return (
                ""
                if value is None
                else yaml.safe_dump(value, default_flow_style=True, width=80, sort_keys=False).strip()
            )
        if spec.widget in (NUMBER, INTEGER):
            return format_decimal(value)
        return value


# A decimal number as people type it: a comma or a point before the decimals, an optional sign and
# exponent; no thousands separator (is `1.500` one and a half or fifteen hundred? refused, not guessed).
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")

add_messages(
    {
        "fr": {
            "form.not_a_number": "« {text} » : nombre attendu (ex. 1,5 ou 1.5)",
            "form.not_an_integer": "« {text} » : nombre entier attendu",
            "form.number_required": "nombre attendu",
            "form.yaml_line": " (ligne {line})",
        },
        "en": {
            "form.not_a_number": "'{text}': a number is expected (e.g. 1.5 or 1,5)",
            "form.not_an_integer": "'{text}': a whole number is expected",
            "form.number_required": "a number is expected",
            "form.yaml_line": " (line {line})",
        },
    }
)


def parse_decimal(text: str, *, integer: bool = False, nullable: bool = True) -> float | int | None:
    """A number typed by an agent: `1,5` and `1.5` are 1.5, `0,45` is 0.45, anything else is refused.

    Args:
        text: what the field holds.
        integer: the field takes whole numbers only (`3`, `3,0`); the result is then an int.
        nullable: an empty field means None; when False it is refused.

    Returns:
        The number, or None for an empty optional field.

    Raises:
        ValueError: the text is not a number (the message, in the agent's language, quotes it).
    """
    stripped = text.strip()
    if not stripped:
        if nullable:
            return None
        raise ValueError(t("form.number_required"))
    if not _DECIMAL.fullmatch(stripped):
        raise ValueError(t("form.not_an_integer" if integer else "form.not_a_number", text=stripped[:40]))
    number = float(stripped.replace(",", "."))
    if not integer:
        return number
    if not number.is_integer():
        raise ValueError(t("form.not_an_integer", text=stripped[:40]))
    return int(number)


def format_decimal(value: Any) -> str:
    """A number as the agent's locale writes it (1,5 in French, 1.5 in English); '' for None.

    Args:
        value: a number, None, or text already typed (returned as it is).

    Returns:
        The text for a number field.
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    text = repr(value)
    text = text.removesuffix(".0") if "e" not in text else text
    return text.replace(".", ",") if language() == "fr" else text


def field_problems(problems: Iterable[tuple[str, str]], prefix: str) -> tuple[dict[str, str], list[str]]:
    """Split (path, message) problems under `prefix` into {field: message} and node-level messages,
    in the agent's language.

    `cameras[0].rules[1].active_hours[0].start` under `cameras[0].rules[1]` belongs to `active_hours`
    (shown next to it as "plage 1, début : …").

    Args:
        problems: (field path, message) pairs, as `validation_problems` gives them.
        prefix: the node's path ('' for the root); problems elsewhere are left out.

    Returns:
        ({field name: its messages joined by '; '}, messages about the node itself).
    """
    by_field: dict[str, str] = {}
    general: list[str] = []
    for path, message in problems:
        message = problem_message(message)
        if path == prefix:
            general.append(message)
            continue
        if prefix and not path.startswith(prefix + "."):
            continue
        rest = path[len(prefix) + 1 :] if prefix else path
        name = re.split(r"[.\[]", rest, maxsplit=1)[0]
        detail = rest[len(name) :].lstrip(".")
        text = f"{_detail_place(name, rest)}{t('problem.separator')}{message}" if detail else message
        by_field[name] = f"{by_field[name]}; {text}" if name in by_field else text
    return by_field, general


def _detail_place(name: str, path: str) -> str:
    """Where in a field the problem is, in words: "plage 1, début" for `active_hours[0].start`,
    "point 1 (x)" for `world_m[0][0]` (shown next to the field, whose title is not repeated)."""
    words, head = place(path), place(name)
    if words.startswith(head + ", "):
        words = words[len(head) + 2 :]
    return words[:1].lower() + words[1:]


# -- the widgets ------------------------------------------------------------------------------------
def on_user_change(control: widgets.Widget, callback: Callable[[Any], None]) -> None:
    """Call `callback(new value)` when the value changes, except while `replace_options` runs.

    Args:
        control: an ipywidgets input.
        callback: called with the new value.
    """

    def handler(change: Mapping[str, Any]) -> None:
        if not getattr(change["owner"], "_vigie_muted", False):
            callback(change["new"])

    control.observe(handler, names="value")


def replace_options(control: widgets.Widget, options: list, value: Any) -> None:
    """New choices and value for a selection widget, without the intermediate values (the first
    option, None) reaching its observers as if the user had picked them.

    Args:
        control: a selection widget (Dropdown, Select...).
        options: its new options, values or (label, value) pairs.
        value: the value to select among them.
    """
    control._vigie_muted = True
    try:
        control.options = options
        control.value = value
    finally:
        control._vigie_muted = False


RefOptions = Callable[[str], list[str]]  # "zone" | "line" -> ids currently drawn


class ModelFormView:
    """ipywidgets rows for a ModelForm: label, input, help text (description + bounds), error."""

    def __init__(self, form: ModelForm, on_change: Callable[[], None], ref_options: RefOptions | None = None):
        self.form = form
        self.on_change = on_change
        self.ref_options = ref_options or (lambda kind: [])
        self.inputs: dict[str, widgets.Widget] = {}
        self.errors: dict[str, widgets.HTML] = {}
        self.general = widgets.HTML()
        rows = [self._row(spec) for spec in form.specs]
        self.widget = widgets.VBox([self.general, *rows], layout=widgets.Layout(width="100%"))

    def _row(self, spec: FieldSpec) -> widgets.Widget:
        control = self._control(spec)
        control.add_class(f"vigie-field-{spec.name}")
        self.inputs[spec.name] = control
        on_user_change(control, functools.partial(self._changed, spec.name))
        self.errors[spec.name] = error = widgets.HTML(layout=widgets.Layout(margin="0 0 0 12px"))
        error.add_class("vigie-field-error")
        # The agent's words; the config key in the tooltip, for whoever reads the YAML beside it.
        label = widgets.HTML(
            f"<span title='{_escape(spec.name)}'>{_escape(spec.title or spec.name)}</span>",
            layout=widgets.Layout(width="170px"),
        )
        label.add_class("vigie-field-label")
        help_text = widgets.HTML(
            f"<small style='color:#666'>{_escape(spec.help_text())}</small>",
            layout=widgets.Layout(margin="0 0 0 170px"),
        )
        # flex 0 0 auto: inside a height-limited scrolling box, rows must scroll, not shrink to nothing.
        return widgets.VBox(
            [widgets.HBox([label, control, error], layout=widgets.Layout(flex="0 0 auto")), help_text],
            layout=widgets.Layout(margin="0 0 4px 0", flex="0 0 auto"),
        )

    def _control(self, spec: FieldSpec) -> widgets.Widget:
        value = self.form.display_value(spec.name)
        width = widgets.Layout(width="260px")
        if spec.widget == BOOLEAN:
            return widgets.Checkbox(value=bool(value), indent=False, layout=width)
        if spec.widget == CHOICE:
            options = ([(NONE_LABEL, None)] if spec.nullable else []) + [
                (choice_label(spec.name, c), c) for c in spec.choices
            ]
            return widgets.Dropdown(
                options=options, value=value if value in dict(options).values() else None, layout=width
            )
        if spec.widget in (ZONE, LINE):
            return widgets.Dropdown(options=self._ref_choices(spec, value), value=value, layout=width)
        if spec.widget in (TAGS, ZONES, LINES):
            allowed = self.ref_options(ZONE if spec.widget == ZONES else LINE) if spec.widget != TAGS else []
            return widgets.TagsInput(
                value=list(value or []), allowed_tags=allowed, allow_duplicates=False, layout=width
            )
        if spec.widget == YAML:
            return widgets.Textarea(value=value, rows=2, layout=width)
        number = spec.widget in (NUMBER, INTEGER)
        return widgets.Text(
            value="" if value is None else str(value),
            placeholder=t("form.empty_placeholder") if spec.nullable else "",
            # A number is read when the agent leaves the field (or presses Enter), not at each key:
            # "1," or "-" on the way to "1,5" or "-2" are not mistakes to report.
            continuous_update=not number,
            layout=width,
        )

    def _ref_choices(self, spec: FieldSpec, value: Any) -> list[tuple[str, Any]]:
        ids = self.ref_options(spec.widget)
        choices: list[tuple[str, Any]] = [(NONE_LABEL, None)] if spec.nullable or value is None else []
        choices += [(i, i) for i in ids]
        if value is not None and value not in ids:  # keep a dangling reference visible: its error says why
            choices.append((f"{value} (?)", value))
        return choices

    def refresh_refs(self) -> None:
        """Zones or lines were drawn, renamed or deleted: update the pickers' choices."""
        for spec in self.form.specs:
            control = self.inputs[spec.name]
            value = self.form.values.get(spec.name)
            if spec.widget in (ZONE, LINE):
                replace_options(control, self._ref_choices(spec, value), value)
            elif spec.widget in (ZONES, LINES):
                control.allowed_tags = self.ref_options(ZONE if spec.widget == ZONES else LINE)

    def _changed(self, name: str, value: Any) -> None:
        self.form.set(name, value)
        self.on_change()

    def show_problems(self, by_field: Mapping[str, str], general: Iterable[str] = ()) -> None:
        """Show validation messages next to their fields (with unreadable inputs) and above the form.

        Args:
            by_field: field name -> message, from `field_problems`; fields not named are cleared.
            general: messages about the node itself.
        """
        merged = {**by_field, **self.form.input_errors}
        for name, label in self.errors.items():
            message = merged.get(name, "")
            label.value = f"<span style='color:#c62828'>⚠ {_escape(message)}</span>" if message else ""
        general = list(general)
        self.general.value = "".join(f"<div style='color:#c62828'>⚠ {_escape(m)}</div>" for m in general)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")


def open_first_site(app: Any, zones_dir: Path, site: str | None) -> None:
    """Fill `app.site_picker` with the sites of `zones_dir` and open `site` (else the first one);
    with no site at all, say so in the app's status line. Shared by the setup and tuning apps.

    Args:
        app: the app, with `site_picker`, `_status(message, error=)` and `_open_site(site)`.
        zones_dir: the folder of the site folders.
        site: the site to open; None (or a site not found there) opens the first one.
    """
    sites = list_sites(zones_dir)
    if not sites:
        app._status(t("setup.no_site", zones=zones_dir), error=True)
        return
    chosen = site if site in sites else sites[0]
    replace_options(app.site_picker, sites, chosen)
    app._open_site(chosen)


def actor_field(css_class: str) -> widgets.Text:
    """The "who exports" name box of the setup and tuning apps: hidden and filled with the login on a page
    opened by a named login (workbench/auth.py), typed on a page opened with a token.

    Args:
        css_class: the class the browser tests find it by.

    Returns:
        The text widget.
    """
    actor = widgets.Text(description=t("export.actor"), placeholder=t("export.actor_placeholder"))
    actor.add_class(css_class)
    if login := login_from_env():
        actor.value, actor.disabled, actor.layout.display = login, True, "none"
    return actor
