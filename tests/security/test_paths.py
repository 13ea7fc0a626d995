"""Paths that come from configs, alerts, the database or users stay inside their folder: snapshots
under the media folder, exports under the export root, config revisions under zones/<site>/."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from runner.config.loading import parse_config
from runner.core.access import Principal
from runner.core.errors import ConfigError
from runner.register import Register, iso
from tests.helpers import alert_record, config_dict, tiny_jpeg
from workbench import register_data as rd
from workbench.export import ConfigExporter, ExportError, SiteFolder

HOSTILE_NAMES = [
    "../escape",
    "../../../../tmp/vigie-escape",
    "/etc/vigie-escape",
    "a/../../b",
    "..",
    ".",
    "",
    "cam\x00-01",
    "cam/01",
    "cam\\..\\01",
    ".hidden",
    "cam-01\n",
]
DESIGNER = Principal("Agent Martin", "design")
ANALYST = Principal("analyste-3", "analyst")


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tmp/inner/ holds the register and its media; anything that appears in tmp/ outside inner/ escaped."""
    (tmp_path / "inner").mkdir()
    return tmp_path


# -- snapshots -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["camera_id", "uid"])
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_camera_id_or_uid_never_writes_outside_the_media_folder(sandbox, field, name):
    with Register(sandbox / "inner" / "vigie.db") as register:
        stored = register.add_alert(alert_record(**{field: name}), tiny_jpeg())
        # The alert is kept (evidence is never lost), without its image, and says why.
        assert stored.snapshot is None and stored.snapshot_note.startswith("snapshot not saved: unsafe ")
        assert register.alert(stored.id)["snapshot_note"] == stored.snapshot_note
        assert register.verify().ok
    outside = {p for p in _files(sandbox) if "inner" not in p.relative_to(sandbox).parts}
    assert outside == set()
    assert not Path("/etc/vigie-escape.jpg").exists() and not Path("/tmp/vigie-escape.jpg").exists()


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../x", "cam\x00", "CAM 01", ".."])
@pytest.mark.parametrize(
    ("where", "data"),
    [
        ("cameras[0].id", lambda name: config_dict(id=name)),
        ("site", lambda name: {**config_dict(), "site": name}),
        ("cameras[0].rules[0]", lambda name: config_dict([{"kind": "zone_intrusion", "id": name, "zone": "lawn"}])),
    ],
)
def test_config_ids_used_in_file_names_are_plain_slugs(name, where, data):
    with pytest.raises(ConfigError) as refused:
        parse_config(yaml.safe_dump(data(name)), "site.yaml")
    assert any(problem.startswith(where) for problem in refused.value.problems), refused.value.problems


def _tamper_snapshot(register: Register, alert_id: int, snapshot: str) -> None:
    conn = sqlite3.connect(register.db_path)
    conn.execute("UPDATE alerts SET snapshot = ? WHERE id = ?", (snapshot, alert_id))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("pointer", ["../../victim.txt", "{victim}", "cam-01/../../../victim.txt", "link/victim.txt"])
def test_a_snapshot_column_edited_in_the_database_cannot_make_the_purge_delete_elsewhere(sandbox, pointer):
    victim = sandbox / "victim.txt"
    victim.write_text("not the register's")
    old = datetime.now(UTC) - timedelta(days=60)
    with Register(sandbox / "inner" / "vigie.db") as register:
        stored = register.add_alert(alert_record(ts_utc=iso(old)), tiny_jpeg())
        register.media_dir.joinpath("link").symlink_to(sandbox, target_is_directory=True)
        _tamper_snapshot(register, stored.id, pointer.format(victim=victim))
        assert register.snapshot_file(register.alert(stored.id)) is None  # the apps never show it either
        assert not register.verify().ok  # the edit itself is tampering (the alert's digest covers the column)
        register.purge(media_days=30, alert_days=365)
    assert victim.read_text() == "not the register's"


def test_the_orphan_sweep_does_not_follow_a_symlink_out_of_the_media_folder(sandbox):
    outside = sandbox / "outside"
    outside.mkdir()
    precious = outside / "old.jpg"
    precious.write_bytes(b"x")
    long_ago = (datetime.now(UTC) - timedelta(days=90)).timestamp()
    os.utime(precious, (long_ago, long_ago))
    with Register(sandbox / "inner" / "vigie.db") as register:
        register.media_dir.mkdir(parents=True, exist_ok=True)
        register.media_dir.joinpath("cam-01").symlink_to(outside, target_is_directory=True)
        register.purge(media_days=30, alert_days=365)
    assert precious.exists()


# -- statistics exports ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "folder",
    [
        "../escape",
        "../../escape",
        "/tmp/vigie-export-escape",
        "a/../../escape",
        "..",
        ".",
        "",
        "a\x00b",
        "link/escape",
        "link",
    ],
)
def test_a_hostile_export_folder_is_refused_and_nothing_is_written(sandbox, folder):
    root = sandbox / "inner" / "exports"
    root.mkdir(parents=True)
    root.joinpath("link").symlink_to(sandbox, target_is_directory=True)
    Register(sandbox / "inner" / "vigie.db").close()
    tables = {"alerts": pl.DataFrame({"a": [1]})}
    with pytest.raises(ValueError):
        rd.export_statistics(tables, root, folder, "csv", by=ANALYST, db_path=sandbox / "inner" / "vigie.db")
    assert _files(sandbox) == {sandbox / "inner" / "vigie.db"} | {
        p for p in _files(sandbox) if p.name.startswith("vigie.db-")
    }
    assert not Path("/tmp/vigie-export-escape").exists()
    with Register(sandbox / "inner" / "vigie.db", create=False) as register:
        assert register.audit_rows(event="statistics_exported") == []


@pytest.mark.parametrize("name", ["../alerts", "a/b", "", "x\x00"])
def test_a_hostile_table_name_is_refused(sandbox, name):
    with pytest.raises(ValueError, match="table name"):
        rd.export_tables({name: pl.DataFrame({"a": [1]})}, sandbox / "exports", "ok", "csv")
    assert not list((sandbox / "exports").rglob("*.csv"))


# -- config revisions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("site", ["../escape", "a/b", "..", ".", "", "x\x00", "/abs"])
def test_a_site_folder_name_cannot_leave_the_zones_folder(sandbox, site):
    with pytest.raises(ExportError, match="plain folder name"):
        SiteFolder(sandbox / "inner" / "zones", site)


def test_a_draft_with_a_hostile_site_id_is_refused_with_its_field_path(sandbox):
    exporter = ConfigExporter(sandbox / "inner" / "zones", Register(sandbox / "inner" / "vigie.db"))
    with pytest.raises(ExportError) as refused:
        exporter.export({**config_dict(), "site": "../../escape"}, DESIGNER)
    assert [path for path, _ in refused.value.problems] == ["site"]
    assert {p.name for p in _files(sandbox)} <= {"vigie.db", "vigie.db-wal", "vigie.db-shm"}


def test_a_site_folder_symlinked_out_of_zones_is_refused(sandbox):
    zones = sandbox / "inner" / "zones"
    zones.mkdir()
    elsewhere = sandbox / "elsewhere"
    elsewhere.mkdir()
    zones.joinpath("test-site").symlink_to(elsewhere, target_is_directory=True)
    exporter = ConfigExporter(zones, Register(sandbox / "inner" / "vigie.db"))
    with pytest.raises(ExportError, match="leads outside"):
        exporter.export(config_dict(), DESIGNER)
    assert list(elsewhere.iterdir()) == []
