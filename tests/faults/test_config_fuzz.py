"""Property-based fuzzing of the site-config loader (hypothesis).

Starting from valid configs (the demo site, the evaluation sites and a config that uses every rule kind),
hypothesis applies mutations: deleted keys, values of another type (None, bools, huge numbers, NaN, inf,
negative, empty / very long / unicode / NUL strings, lists, mappings, deep nesting), duplicated ids, broken
references, bad polygons, unknown keys, and text-level damage (YAML syntax errors, truncation, non-mapping
top levels, binary garbage). The property: loading through the real entry points either accepts the file,
or raises a `ConfigError` whose every line is `FILE: field.path: message`; never another exception. An
accepted config must survive `dump_config` -> `parse_config` unchanged. A sample also goes through the
`vigie validate` command in a subprocess: exit 0 or 2, and no traceback.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.config.loading import dump_config, load_config, parse_config
from runner.core.errors import ConfigError
from tests.conftest import ROOT
from tests.helpers import config_dict

SITE_FILES = sorted((ROOT / "zones").glob("*/site.yaml"))
CALIBRATION = {
    "image": [[0.1, 0.5], [0.9, 0.5], [1.0, 1.0], [0.0, 1.0]],
    "world_m": [[0, 0], [20, 0], [20, 10], [0, 10]],
}
EVERY_RULE = [
    {
        "kind": "zone_intrusion",
        "id": "lawn-intrusion",
        "zone": "lawn",
        "active_hours": [{"start": "22:00", "end": "06:00"}],
    },
    {"kind": "zone_intrusion", "id": "gate-crossing", "line": "gate", "crossing": "left_to_right"},
    {"kind": "wrong_way", "id": "path-wrong-way", "zone": "path"},
    {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn", "max_per_m2": 2.5},
    {"kind": "crowd_movement", "id": "move", "zone": "lawn"},
    {"kind": "abandoned_object", "id": "left", "exclude_zones": ["path"]},
    {"kind": "fire", "id": "fire"},
    {"kind": "weapon", "id": "weapon"},
    {"kind": "person_down", "id": "down", "exclude_zones": ["path"]},
]


def _every_rule_config() -> dict[str, Any]:
    data = config_dict(EVERY_RULE, calibration=CALIBRATION, privacy_masks=[[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]])
    data["phase"] = "operational"
    data["authorization"] = {
        "order_ref": "AP-2025-0412",
        "valid_from": "2025-05-13T08:00:00+02:00",
        "valid_to": "2025-05-24T23:59:00+02:00",
        "cameras": ["cam-01"],
    }
    data["retention"] = {"media_days": 7, "alert_days": 90, "purge_every_s": 600}
    data["models"]["fire"] = {"weights": "fire.pt", "track": False, "max_fps": 2, "classes": ["fire", "smoke"]}
    return data


SEEDS: dict[str, dict[str, Any]] = {
    **{f"{p.parent.name}/site.yaml": yaml.safe_load(p.read_text()) for p in SITE_FILES},
    "every-rule": _every_rule_config(),
}
NAME = "fuzzed/site.yaml"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")  # C0, C1, line separators, bidi overrides

# -- values a careless editor (or an attacker) may put anywhere ------------------------------------
ODD_STRINGS = [
    "",
    " ",
    "x" * 5000,
    "\x00",
    "a\x00b",
    "two\nlines",
    "tab\there",
    "\r",
    "é",
    "カメラ",
    "🔥" * 50,
    "${VIGIE_FUZZ_UNSET}",
    "null",
    "~",
    "2025-13-45T25:61:00",
    "../../../etc/passwd",
    "rtsp://user:s3cret@10.0.0.1/x",
    "-1",
    "1e999",
    "\u202e",
]
ODD_NUMBERS = [0, -1, -0.0, 1, 2**63, -(2**63), 10**400, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, 0.5]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from(ODD_STRINGS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
odd_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.dictionaries(st.text(max_size=8), scalars, max_size=4),
    st.integers(min_value=20, max_value=120).map(lambda depth: _nested(depth)),  # deeper: as text, below
    st.just([]),
    st.just({}),
)
BAD_POLYGONS = [
    [],
    [[0.1, 0.1]],
    [[0.1, 0.1], [0.9, 0.9]],  # fewer than 3 points
    [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]],  # self-intersecting (bow tie)
    [[-0.1, 0.0], [1.0, 0.0], [1.0, 1.0]],
    [[0.0, 0.0], [1.5, 0.0], [1.0, 1.0]],  # outside 0..1
    [[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]],
    [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]],  # degenerate
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]],
    [[0.0], [1.0], [1.0]],
    [["a", "b"], [1, 0], [1, 1]],
    [[0.0, 0.0], [1.0, 0.0], [math.nan, 1.0]],
    [[0.0, 0.0], [1.0, 0.0], [math.inf, 1.0]],
    [[i / 300, (i % 2) * 0.5] for i in range(300)],  # more points than allowed
    "0,0 1,0 1,1",
    {"x": 0, "y": 0},
]
# Raw YAML scalars that safe_dump would never write: PyYAML resolves them, then its constructors may fail.
RAW_SCALARS = [
    "2025-02-30",
    "2025-02-28 25:00:00",
    "2025-05-13T08:00:00+99:00",
    "9" * 5000,
    "0x" + "f" * 5000,
    "!!bool maybe",
    "!!int x",
    "!!float x",
    "!!timestamp x",
    "!!map [1]",
    "!!seq {a: 1}",
    "!!str [1]",
    ".nan",
    "-.inf",
    "1:99:99",
    "0b102",
    "0o19",
    "~",
    "!!binary aGk=",
    "!!binary x",
    "!!set {a}",
    "*undefined",
    "&a",
    "{a: 1",
    "[1, 2",
    "!!python/object/apply:os.system [id]",
    "!custom x",
    "<<: {a: 1}",
]
REFERENCE_KEYS = ("zone", "line", "kind", "timezone", "start", "end", "id", "source", "name", "weights")
YAML_DAMAGE = [
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\t",
    "&a ",
    "*nope ",
    "!!python/object:os.system ",
    "%TAG ! x\n",
    "? ",
    "|",
    ">",
    "'",
    '"',
    "#",
    "\n  -",
    "<<: *x\n",
    "\x00",
    "\x85",
    "\ufeff",
    "@",
    "`",
    "---\n",
    "...\n",
]


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# -- navigation in the raw mapping ----------------------------------------------------------------
Path_ = tuple[str | int, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append(prefix + (key,))
        out += _paths(child, prefix + (key,))
    return out


def _get(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


def _field_path(path: Path_) -> str:
    """The path as the loader prints it: `cameras[0].zones[1].polygon`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- mutations: each edits `data` in place and returns the path whose type it changed (or None) ---------
@st.composite
def tree_mutation(draw, data: dict[str, Any]) -> str | None:
    paths = _paths(data)
    # Coordinates are most of the paths: half the draws pick among the other fields, so that ids, names,
    # references and thresholds get their share.
    fields = [p for p in paths if not any(k in p[:-1] for k in ("polygon", "privacy_masks", "image", "world_m"))]
    path = draw(st.sampled_from(fields if draw(st.booleans()) else paths))
    *parent_path, last = path
    parent = _get(data, tuple(parent_path))
    old = parent[last]
    op = draw(
        st.sampled_from(
            [
                "delete",
                "replace",
                "replace",
                "replace",
                "duplicate",
                "unknown-key",
                "reference",
                "reference",
                "polygon",
                "number",
                "string",
            ]
        )
    )
    if op == "delete":
        del parent[last]
        return None
    if op == "duplicate" and isinstance(parent, list):  # a duplicated zone / camera / rule: duplicate ids
        parent.append(copy.deepcopy(old))
        return None
    if op == "unknown-key" and isinstance(old, dict):
        old[draw(st.text(min_size=1, max_size=12))] = draw(scalars)
        return None
    if op == "reference":  # a dangling or odd zone / line / camera reference, rule kind, time zone or time of day
        refs = [
            p
            for p in paths
            if isinstance(_get(data, p), str)
            and (p[-1] in REFERENCE_KEYS or (isinstance(p[-1], int) and p[-2] in ("exclude_zones", "cameras")))
        ]
        if refs:
            target = draw(st.sampled_from(refs))
            base = draw(
                st.sampled_from(
                    [
                        "nowhere",
                        "lawn",
                        "path",
                        "gate",
                        "cam-01",
                        "Bad Id",
                        "x" * 64,
                        "zone_intrusion",
                        "Europe/Paris",
                        "Europe",
                        "22:00",
                        _get(data, target),
                    ]
                )
            )
            _get(data, target[:-1])[target[-1]] = base + draw(
                st.sampled_from(["", "", "\n", "\x00", "\x1b[31m", "\u202e", "\r\n"])
            )
            return None
    if op == "string" and isinstance(old, str):  # same type, odd content
        parent[last] = draw(st.one_of(st.sampled_from(ODD_STRINGS), st.text(max_size=20), st.just(old + "\n")))
        return None
    if op == "polygon":
        polygons = [p for p in paths if p and p[-1] in ("polygon", "image", "world_m", "start", "end", "direction")]
        polygons += [
            p + (i,)
            for p in paths
            if p and p[-1] == "privacy_masks" and isinstance(_get(data, p), list)
            for i in range(len(_get(data, p)))
        ]
        if polygons:
            target = draw(st.sampled_from(polygons))
            _get(data, target[:-1])[target[-1]] = copy.deepcopy(draw(st.sampled_from(BAD_POLYGONS)))
            return None
    if op == "number" and isinstance(old, (int, float)) and not isinstance(old, bool):
        near = [old * 10**6, -old] + ([old + 0.5] if isinstance(old, float) or abs(old) < 2**1000 else [])
        parent[last] = draw(st.sampled_from(ODD_NUMBERS + near))
        return None
    new = copy.deepcopy(draw(odd_values))  # st.just({}) hands out one shared object: never edit it in place
    parent[last] = new
    return _field_path(path) if type(new) is not type(old) and not (_is_number(new) and _is_number(old)) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@st.composite
def mutated_document(draw) -> tuple[str, dict[str, Any], list[str]]:
    seed = draw(st.sampled_from(sorted(SEEDS)))
    data = copy.deepcopy(SEEDS[seed])
    retyped = [draw(tree_mutation(data)) for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3])))]
    # Where is a retyped value reported? Only clear with one mutation: a second one may delete it, or
    # break schema_version, which is checked (and reported) before any other field.
    return seed, data, [p for p in retyped if p] if len(retyped) == 1 else []


@st.composite
def damaged_text(draw) -> bytes:
    seed = draw(st.sampled_from(sorted(SEEDS)))
    text = yaml.safe_dump(SEEDS[seed], sort_keys=False, allow_unicode=True).encode()
    kind = draw(
        st.sampled_from(
            [
                "insert",
                "insert",
                "scalar",
                "scalar",
                "scalar",
                "scalar",
                "truncate",
                "top-level",
                "garbage",
                "flip-bytes",
                "deep",
            ]
        )
    )
    if kind == "scalar":  # one `key: value` line gets a raw YAML value
        lines = text.split(b"\n")
        keyed = [i for i, line in enumerate(lines) if b": " in line]
        i = draw(st.sampled_from(keyed))
        lines[i] = lines[i].split(b": ", 1)[0] + b": " + draw(st.sampled_from(RAW_SCALARS)).encode()
        return b"\n".join(lines)
    if kind == "insert":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.one_of(st.sampled_from(YAML_DAMAGE), st.text(max_size=4))).encode()
        return text[:at] + junk + text[at:]
    if kind == "deep":  # nesting deeper than Python's recursion limit
        at = draw(st.integers(0, len(text)))
        depth = draw(st.integers(200, 5000))
        return text[:at] + draw(st.sampled_from([b"[", b"{a: ", b"- "])) * depth + text[at:]
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "top-level":
        return yaml.safe_dump(draw(st.one_of(scalars, st.lists(scalars, max_size=3)))).encode()
    if kind == "garbage":
        return draw(st.binary(max_size=2000))
    positions = draw(st.lists(st.integers(0, len(text) - 1), min_size=1, max_size=8))
    flipped = bytearray(text)
    for pos in positions:
        flipped[pos] = draw(st.integers(0, 255))
    return bytes(flipped)


# -- the property ---------------------------------------------------------------------------------------
def check_outcome(load, retyped: list[str] = ()) -> None:
    """`load()` accepts the config (and it round-trips) or raises a ConfigError naming file and field."""
    try:
        config = load()
    except ConfigError as exc:
        lines = str(exc).split("\n")
        assert exc.problems and len(lines) == len(exc.problems), str(exc)
        for line, problem in zip(lines, exc.problems):
            assert line == f"{exc.path}: {problem}" and exc.path.endswith(NAME), line
            assert problem.strip() and "\n" not in problem and "Traceback" not in problem, problem
        for field in retyped:  # a value of the wrong type is reported at its own path (or a parent's)
            assert any(_names_field(problem, field) for problem in exc.problems), (field, exc.problems)
        return
    odd = [text for text in _strings(config.model_dump()) if CONTROL.search(text)]
    assert not odd, f"accepted control characters: {odd!r}"  # they break paths, logs and one-line messages
    again = parse_config(dump_config(config), "dumped.yaml")
    assert again == config


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _names_field(problem: str, field: str) -> bool:
    ancestors = [field]
    while any(sep in ancestors[-1] for sep in ".["):
        ancestors.append(ancestors[-1][: max(ancestors[-1].rfind("."), ancestors[-1].rfind("["))])
    return any(
        problem.startswith(f"{a}: ") or problem.startswith(f"{a}.") or problem.startswith(f"{a}[") for a in ancestors
    )


def test_every_seed_is_valid() -> None:
    for name, data in SEEDS.items():
        assert parse_config(yaml.safe_dump(data), name).site, name
    assert len(SEEDS) >= 3


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "fuzzed"
    folder.mkdir()
    return folder


@pytest.mark.slow
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_document())
def test_mutated_config_is_accepted_or_rejected_with_a_field_path(fuzz_dir: Path, case) -> None:
    _seed, data, retyped = case
    path = fuzz_dir / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    check_outcome(lambda: load_config(path).config, retyped)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_text())
def test_damaged_file_is_accepted_or_rejected_in_one_line_per_problem(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "site.yaml"
    path.write_bytes(data)
    check_outcome(lambda: load_config(path).config)


# -- hand-picked inputs of every family, through parse_config and the real command line ---------------------
def _with(seed: str, edit) -> str:
    data = copy.deepcopy(SEEDS[seed])
    edit(data)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _bomb(levels: int = 8) -> str:
    """YAML aliases that expand to 10**levels items (\"billion laughs\") in a few hundred bytes."""
    return (
        "  bomb0: &b0 [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9], [0.5, 0.5], [0.2, 0.2], [0.3, 0.3], "
        "[0.4, 0.4], [0.6, 0.6], [0.7, 0.7]]\n"
        + "".join(f"  bomb{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]\n" for i in range(1, levels + 1))
    )


# name -> (file content, a substring of the one expected problem line, or None when the file is valid)
SAMPLES: dict[str, tuple[bytes | str, str | None]] = {
    "valid": (_with("every-rule", lambda d: None), None),
    "deep-nesting-flow": (
        "[" * 5000 + "]" * 5000,
        "[0][0][0][0][0][0][0]...: nested deeper than 64 levels (line 1 column 65)",
    ),
    "deep-nesting-block": (
        "".join(" " * i + f"k{i}:\n" for i in range(1000)) + " " * 1000 + "v\n",
        "k0.k1.k2.k3.k4.k5.k6...: nested deeper than 64 levels",
    ),
    "deep-nesting-in-field": (
        _with("every-rule", lambda d: d["cameras"][0].update(name="DEEP")).replace(
            "name: DEEP", "name: " + "{k: [" * 1500 + "x" + "]}" * 1500
        ),
        "cameras[0].name.k[0].k[0]...: nested deeper",
    ),
    "binary": (bytes(range(256)) * 4, "not a UTF-8 text file (byte #x80 at offset 128)"),
    "non-mapping": ("- just\n- a list\n", "top level must be a mapping"),
    "syntax-error": ("schema_version: 1\nsite: [unclosed\n", "line 3 column 1: invalid YAML"),
    "nan-coordinate": (
        _with("every-rule", lambda d: d["cameras"][0]["zones"][0].update(polygon=[[0, 0], [1, 0], [math.nan, 1]])),
        "cameras[0].zones[0].polygon[2][0]: must be a finite number",
    ),
    "huge-integer": (
        _with("every-rule", lambda d: d["cameras"][0].update(process_fps=10**400)),
        "cameras[0].process_fps: must be a number of reasonable size (got an integer of about 401 digits)",
    ),
    "duplicate-camera": (
        _with("every-rule", lambda d: d["cameras"].append(copy.deepcopy(d["cameras"][0]))),
        "cameras[1].id: duplicate camera id 'cam-01'",
    ),
    "impossible-date": (
        _with("every-rule", lambda d: d["authorization"].update(valid_from="DATE")).replace(
            "DATE", "2025-02-30 08:00:00+02:00"
        ),
        "invalid YAML: cannot read '2025-02-30 08:00:00+02:00' as timestamp",
    ),
    "int-literal-of-5000-digits": (
        _with("every-rule", lambda d: d.update(revision="REV")).replace("REV", "9" * 5000),
        "invalid YAML: cannot read '99999",
    ),
    "bool-tag-on-a-word": (
        _with("every-rule", lambda d: d.update(revision="REV")).replace("REV", "!!bool maybe"),
        "invalid YAML: cannot read 'maybe' as bool",
    ),
    "nul-byte-in-the-file": (
        _with("every-rule", lambda d: None).replace("site: test-site", "site: test\x00site"),
        "control character #x00 at offset",
    ),
    "timezone-folder": (
        _with("every-rule", lambda d: d.update(timezone="Europe")),
        "timezone: unknown time zone 'Europe'",
    ),
    "timezone-too-long": (_with("every-rule", lambda d: d.update(timezone="Europe/" + "x" * 300)), "timezone: unknown"),
    "nul-in-source": (
        _with("every-rule", lambda d: d["cameras"][0].update(source="clip\x00.avi")),
        "cameras[0].source: must not contain control characters",
    ),
    "line-break-in-name": (
        _with("every-rule", lambda d: d["cameras"][0].update(name="a\nFAKE: valid")),
        "cameras[0].name: must not contain control characters",
    ),
    "line-break-in-reference": (
        _with("every-rule", lambda d: d["cameras"][0]["rules"][0].update(zone="lawn\nx")),
        "cameras[0].rules[0].zone: unknown zone 'lawn\\nx'",
    ),
    "dangling-zone": (
        _with("every-rule", lambda d: d["cameras"][0]["rules"][0].update(zone="nowhere")),
        "cameras[0].rules[0].zone: unknown zone 'nowhere' (zones: lawn, path)",
    ),
    "alias-bomb-in-field": (
        _with("every-rule", lambda d: d["cameras"][0].update(privacy_masks="BOMB"))
        .replace("privacy_masks: BOMB", "privacy_masks: *b8")
        .replace("schema_version: 1\n", "schema_version: 1\nx-anchors:\n" + _bomb()),
        "... and 61 more problem(s)",
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_hand_picked_bad_inputs(fuzz_dir: Path, name: str) -> None:
    path = fuzz_dir / "site.yaml"
    data, expected = SAMPLES[name]
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    check_outcome(lambda: load_config(path).config)
    if expected is None:
        assert load_config(path).config.cameras
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


CLI_SAMPLE = ["valid", "deep-nesting-flow", "binary", "timezone-folder", "nul-in-source", "alias-bomb-in-field"]


@pytest.mark.slow  # six interpreters starting at once: ~10-15 s on two busy cores
def test_vigie_validate_never_prints_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "fuzzed"
    folder.mkdir()
    runs = {}
    for name in CLI_SAMPLE:  # in parallel: each run pays the interpreter's start-up
        data = SAMPLES[name][0]
        path = folder / f"{name}.yaml"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        runs[name] = (
            path,
            subprocess.Popen(
                [sys.executable, "-m", "runner.cli", "validate", str(path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    for name, (path, proc) in runs.items():
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in out + err, (name, err)
        if name == "valid":
            assert proc.returncode == 0 and out.startswith(f"{path}: valid"), (out, err)
            continue
        assert proc.returncode == 2, (name, proc.returncode, err)
        lines = err.rstrip("\n").split("\n")
        assert lines and all(line.startswith(f"{path}: ") for line in lines), (name, err)
