"""Load, validate, hash and dump site config files.

Every problem becomes one line `FILE: field.path[i].name: message`, so that the agent who drew
the zones can find the offending field without reading a traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runner.config.base import ConfigProblems
from runner.config.migrations import MigrationError, migrate
from runner.config.rules import RULE_CONFIGS_BY_KIND
from runner.config.site import SiteConfig
from runner.core.errors import ConfigError

MAX_CONFIG_BYTES = 5_000_000
_ENV_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# Control characters (and invisible bidi overrides) echoed from the file: escaped, so that every problem
# stays one line and nothing in a config can forge terminal output or log lines.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: str) -> str:
    """`text` with control characters written as escapes (`\\n`, `\\x00`, `\\u202e`).

    Args:
        text: any text echoed from a config file or a path.

    Returns:
        The text with every C0/C1 control character and invisible bidi mark escaped (one line, nothing forged).
    """
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


MAX_PROBLEMS_SHOWN = 40  # a list of 10**8 aliased points must not print 10**8 lines


def config_error(path: str, problems: list[str]) -> ConfigError:
    """A ConfigError whose file name and problems are printable, one line each, at most MAX_PROBLEMS_SHOWN + 1.

    Args:
        path: the config file's name (or a field's, for an ${ENV} problem).
        problems: one message per problem, `field.path: message` where a field is known.

    Returns:
        The error, to raise; beyond MAX_PROBLEMS_SHOWN problems a last line counts the rest.
    """
    shown = [printable(problem) for problem in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        shown.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
    return ConfigError(printable(path), shown)


@dataclass(frozen=True)
class LoadedConfig:
    config: SiteConfig
    path: Path
    sha256: str  # of the file's bytes: what an alert records as its config hash

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_config(path: str | Path) -> LoadedConfig:
    """Reads, validates and hashes a site config file.

    Args:
        path: the YAML file.

    Returns:
        The validated config, its path and the sha256 of the file's bytes.

    Raises:
        ConfigError: when the file is missing, unreadable, larger than MAX_CONFIG_BYTES or invalid (one line per
            problem, each naming its field).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise config_error(str(path), ["no such file"]) from None
    except IsADirectoryError:
        raise config_error(str(path), ["is a directory, not a YAML file"]) from None
    except OSError as exc:
        raise config_error(str(path), [f"cannot read: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise config_error(str(path), [f"file is larger than {MAX_CONFIG_BYTES} bytes"])
    config = parse_config(data, str(path))
    return LoadedConfig(config=config, path=path, sha256=hashlib.sha256(data).hexdigest())


MAX_NESTING_DEPTH = 64  # a real config nests ~8 levels (cameras[0].zones[0].polygon[0][0])


class _TooDeep(yaml.YAMLError):
    def __init__(self, field: str, mark: yaml.Mark):
        self.field, self.mark = field, mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last one)
    and nesting deeper than MAX_NESTING_DEPTH: PyYAML's composer recurses once per level, so a few
    thousand `[` would otherwise end in a RecursionError instead of a one-line message."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        path = self.__dict__.setdefault("_field_path", [])
        if isinstance(index, int):
            path.append(f"[{index}]")
        elif isinstance(index, yaml.ScalarNode):
            path.append(f".{index.value}")
        else:  # the document itself, or a mapping key
            path.append("" if parent is None else ".(key)")
        try:
            if len(path) > MAX_NESTING_DEPTH:
                shown = "".join(path[:8]).lstrip(".") + "..."  # where it starts going deep is what helps
                raise _TooDeep(shown, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            path.pop()

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's scalar constructors raise plain exceptions on values their resolver accepted:
        # `2025-02-30` (ValueError), an int of 5000 digits (ValueError), `!!bool maybe` (KeyError)...
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            kind = node.tag.rsplit(":", 1)[-1]
            value = node.value if isinstance(node.value, str) else ""
            shown = f"{value[:40]}..." if len(value) > 40 else value
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown!r} as {kind} ({_first_line(exc)})", node.start_mark
            ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).split("\n")[0] or type(exc).__name__
    return text[:120]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by explicit keys
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: let the default constructor report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (each key may appear once per mapping)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_config(data: bytes | str, name: str = "<config>") -> SiteConfig:
    """Parses and validates config YAML, migrating an older schema_version first.

    Args:
        data: the YAML, as bytes (UTF-8) or text.
        name: what the error messages call the source (the file's path).

    Returns:
        The validated config.

    Raises:
        ConfigError: on invalid YAML (duplicate keys, nesting deeper than MAX_NESTING_DEPTH, huge integers and
            control characters included), an unknown schema_version or any validation problem.
    """
    try:
        raw = yaml.load(data, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.reader.ReaderError as exc:
        if isinstance(exc.character, int) and exc.encoding == "unicode":  # decoded, but NUL, ESC... in the text
            raise config_error(
                name, [f"control character #x{exc.character:02x} at offset {exc.position}: not allowed in a YAML file"]
            ) from None
        if isinstance(exc.character, int) and exc.encoding:  # bytes that do not decode
            raise config_error(
                name, [f"not a UTF-8 text file (byte #x{exc.character:02x} at offset {exc.position})"]
            ) from None
        raise config_error(name, [f"invalid YAML: {exc.reason} (character at offset {exc.position})"]) from None
    except _TooDeep as exc:
        where = f"line {exc.mark.line + 1} column {exc.mark.column + 1}"
        raise config_error(name, [f"{exc.field}: nested deeper than {MAX_NESTING_DEPTH} levels ({where})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise config_error(name, [f"{where}invalid YAML: {problem}"]) from None
    except UnicodeDecodeError:
        raise config_error(name, ["not a UTF-8 text file"]) from None
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        OverflowError,
    ) as exc:  # a constructor outside construct_object
        raise config_error(name, [f"invalid YAML: {_first_line(exc)}"]) from None
    if raw is None:
        raise config_error(name, ["the file is empty (expected a mapping: schema_version, site, cameras...)"])
    if not isinstance(raw, dict):
        raise config_error(name, ["top level must be a mapping (schema_version, site, cameras...)"])
    if huge := _huge_integers(raw):
        raise config_error(name, huge)
    try:
        raw = migrate(raw)
    except MigrationError as exc:
        raise config_error(name, [str(exc)]) from None
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(name, format_validation_errors(exc)) from None


MAX_INTEGER_BITS = 128  # ~38 digits: more is never a setting, and str() of a 5000-digit int raises ValueError


def _huge_integers(node: Any, path: str = "", seen: set[int] | None = None) -> list[str]:
    """`path: ...` for every integer too large for any field, found before pydantic formats it in a message.

    Each list or mapping is visited once: YAML aliases share them, and `[*a, *a, ...]` nested eight deep
    (a "billion laughs") would otherwise take 10**8 steps."""
    if isinstance(node, int) and not isinstance(node, bool) and node.bit_length() > MAX_INTEGER_BITS:
        digits = int(node.bit_length() * 0.30103) + 1
        return [
            f"{path or '(top level)'}: must be a number of reasonable size (got an integer of about {digits} digits)"
        ]
    seen = set() if seen is None else seen
    if not isinstance(node, (dict, list)) or id(node) in seen:
        return []
    seen.add(id(node))
    items = node.items() if isinstance(node, dict) else enumerate(node)
    problems: list[str] = []
    for key, child in items:
        if isinstance(node, list):
            where = f"{path}[{key}]"
        else:
            huge_key = isinstance(key, int) and not isinstance(key, bool) and key.bit_length() > MAX_INTEGER_BITS
            where = _join(path, "(huge number)" if huge_key else str(key))
            if huge_key:
                problems.append(f"{where}: a key must not be a huge number")
        problems += _huge_integers(child, where, seen)
    return problems


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for every error in a pydantic ValidationError.

    Args:
        exc: the error from validating a config model.

    Returns:
        One (path, message) per problem, `cameras[0].zones[1].polygon` style; a cross-field validator's
        ConfigProblems are expanded into one pair each, under the validated node's path.
    """
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        path = _format_loc(error["loc"])
        nested = (error.get("ctx") or {}).get("error")
        if isinstance(nested, ConfigProblems):
            for rel, message in nested.problems:
                problems.append((_join(path, rel), message))
            continue
        problems.append((path, _message(error)))
    return problems


def format_validation_errors(exc: ValidationError) -> list[str]:
    """The problems of a ValidationError as printable lines.

    Args:
        exc: the error from validating a config model.

    Returns:
        `path: message` lines (a bare message where there is no path), duplicates dropped, in order.
    """
    lines, seen = [], set()
    for path, message in validation_problems(exc):
        line = f"{path}: {message}" if path else message
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _join(prefix: str, rel: str) -> str:
    if not rel:
        return prefix
    if not prefix:
        return rel
    return f"{prefix}{rel}" if rel.startswith("[") else f"{prefix}.{rel}"


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # Discriminated unions insert the tag ('zone_intrusion') after the list index: not a field.
        if part in RULE_CONFIGS_BY_KIND and i >= 2 and loc[i - 2] == "rules" and isinstance(loc[i - 1], int):
            continue
        if part in ("function-after[_parse_hhmm(), time]", "[key]"):
            continue
        out = _join(out, str(part))
    return out


_PATTERN_HINTS = {
    "^[a-z0-9][a-z0-9_-]{0,62}$": (
        "must be an identifier: lower-case letters, digits, '-' or '_' (at most 63 characters)"
    ),
    "^[0-9a-f]{64}$": "must be 64 lower-case hexadecimal digits (a sha256)",
}


def _message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt")))
        return f"must be {op} {bound:g}" if isinstance(bound, (int, float)) else f"must be {op} {bound}"
    if kind == "float_type" and isinstance(error.get("input"), int) and not isinstance(error.get("input"), bool):
        digits = int(error["input"].bit_length() * 0.30103) + 1  # str() of a 5000-digit int raises ValueError
        return f"must be a number of reasonable size (got an integer of about {digits} digits)"
    if kind == "finite_number":
        return "must be a finite number (not .nan or .inf)"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx['multiple_of']}"
    if kind == "string_pattern_mismatch":
        return _PATTERN_HINTS.get(str(ctx.get("pattern")), f"must match {ctx.get('pattern')}")
    if kind == "union_tag_invalid":
        return f"unknown rule kind {ctx.get('tag')!r} (known: {', '.join(RULE_CONFIGS_BY_KIND)})"
    if kind == "union_tag_not_found":
        return f"kind: required (one of {', '.join(RULE_CONFIGS_BY_KIND)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping (key: value pairs)"
    if kind in ("string_too_short", "string_too_long"):
        word, limit = (
            ("at least", ctx.get("min_length")) if kind == "string_too_short" else ("at most", ctx.get("max_length"))
        )
        return f"must have {word} {limit} character(s)"
    if kind == "timezone_aware":
        return "must include a time zone offset, e.g. 2025-05-13T08:00:00+02:00"
    if kind.startswith("datetime_"):  # datetime_parsing, datetime_from_date_parsing, datetime_type...
        return "must be a date and time with a time zone offset, e.g. 2025-05-13T08:00:00+02:00"
    if kind in ("too_short", "too_long"):
        limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        return (
            f"must have {word} {limit} item(s)"
            if error.get("input") is not None and not isinstance(error.get("input"), str)
            else f"must have {word} {limit} character(s)"
        )
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message.replace("Input should be", "must be").replace("Input should have", "must have")


def expand_env(text: str, field: str) -> str:
    """Replace ${VAR} placeholders from the environment; the error names the variable, never a value.

    Args:
        text: a config value (a source URL, a weights reference) that may hold ${VAR} placeholders.
        field: what an error names as its source (the config field's path).

    Returns:
        The text with every placeholder replaced by its variable's value.

    Raises:
        ConfigError: when a named variable is not set.
    """

    def substitute(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise config_error(field, [f"environment variable {match.group(1)} is not set"])
        return value

    return _ENV_PLACEHOLDER.sub(substitute, text)


# A URL's userinfo, by the URL grammar and its usual malformations: `scheme:` then 0 to 3 slashes (`rtsp:/`,
# `rtsp:` and `rtsp:///` are typos FFmpeg still reads), then `user[:password]@`. The password may itself hold
# '@', '/', '?' or ':' (unescaped by a careless config): the userinfo runs to the last '@' of the word.
_URL_USERINFO = re.compile(
    r"(?P<scheme>(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*:/{0,3})(?P<user>[^:/@\s'\"]*)(?P<password>:[^\s'\"]*)?@"
    r"(?=[^@\s]*(?:[\s'\"]|$))"
)
# A `name=value` parameter (query, fragment, matrix `;`, or free text): the name may be percent-encoded.
_PARAMETER = re.compile(r"(?P<name>(?<![a-zA-Z0-9%_.-])[a-zA-Z0-9%_.-]+)=(?P<value>[^&;#\s'\"]+)")
# Parameter names that say "secret": pass (password, passwd, passphrase), pwd, token, key (apikey, api_key),
# auth (authorization), sig (signature), secret, session (sessionid), cred (credential), jwt, bearer, ticket.
_SECRET_NAME = re.compile(r"(?i)pass|pwd|token|key|auth|sig|secret|session|cred|jwt|bearer|ticket")


def _redact_parameter(match: re.Match[str]) -> str:
    name = match.group("name")
    if _SECRET_NAME.search(urllib.parse.unquote(name)):
        return f"{name}=***"
    return match.group(0)


# Environment variables whose value is a credential, by name (VIGIE_TOKEN, CAM1_PASSWORD, STREAM_KEY...).
_SECRET_ENV_NAME = re.compile(r"(?i)(password|passwd|pwd|pass|token|secret|key|auth|credential|cred|signature|sig)")
_MIN_SECRET_CHARS = 4  # shorter values would mask ordinary text everywhere


def _secret_env_values() -> list[tuple[str, str]]:
    """(value, name) of every secret-named environment variable, longest value first."""
    found = [
        (value, name)
        for name, value in os.environ.items()
        if len(value) >= _MIN_SECRET_CHARS and _SECRET_ENV_NAME.search(name)
    ]
    return sorted(found, key=lambda item: -len(item[0]))


def redact(text: str) -> str:
    """Hide credentials embedded in a source URL, a weights reference or any message quoting one, before it is
    logged, stored, shown or raised. The one home of redaction: every log line, audit row, health line, status
    and error that may quote a source goes through it.

    By the URL grammar: the userinfo's password (`rtsp://user:pass@host/` -> `rtsp://user:***@host/`; a lone
    userinfo is often a token: `token@host` -> `***@host`), malformed URLs included (`rtsp:/u:p@h`, a password
    with '@', '/' or '?' in it); the value of every parameter whose name suggests a secret (`pass`, `password`,
    `pwd`, `token`, `key`, `apikey`, `auth`, `sig`, `signature`, `secret`, `session`, `credential`..., any case,
    percent-encoded or not) in a query, a fragment, `;` parameters or free text; and the value of a secret-named
    environment variable (`${CAM_PASSWORD}`, `${VIGIE_TOKEN}`...) put back as its placeholder wherever ${ENV}
    expansion put it: in a path no pattern would recognise it as a credential.

    Args:
        text: a source URL, path, weights reference or message, possibly with ${ENV} already expanded.

    Returns:
        The text with every credential it recognises masked.
    """
    for value, name in _secret_env_values():
        text = text.replace(value, f"${{{name}}}")

    def userinfo(m: re.Match[str]) -> str:
        if m.group("password") is not None:
            return f"{m.group('scheme')}{m.group('user')}:***@"
        return f"{m.group('scheme')}***@"  # a lone userinfo is often a token: hide it too

    text = _URL_USERINFO.sub(userinfo, text)
    return _PARAMETER.sub(_redact_parameter, text)


def dump_config(config: SiteConfig) -> str:
    """YAML text of a config, keys in model order, ready to be re-read by `parse_config` into an equal model.

    A `None` is left out only where it is the field's default: an explicit `null` that overrides a
    non-null default (crowd_density's `max_per_m2: null`) must survive the round trip.

    Args:
        config: the config to write.

    Returns:
        The YAML text (UTF-8 characters kept, lines folded at 120).
    """
    data = config.model_dump(mode="json")
    _drop_default_nones(config, data)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


def _drop_default_nones(value: Any, data: Any) -> None:
    if isinstance(value, BaseModel) and isinstance(data, dict):
        for name, field in type(value).model_fields.items():
            item = getattr(value, name)
            if item is None and field.default is None and name in data:
                del data[name]
            elif name in data:
                _drop_default_nones(item, data[name])
    elif isinstance(value, (list, tuple)) and isinstance(data, list):
        for item, dumped in zip(value, data):
            _drop_default_nones(item, dumped)
    elif isinstance(value, dict) and isinstance(data, dict):
        for key, item in value.items():
            if key in data:
                _drop_default_nones(item, data[key])
