"""The media folder on its own: snapshot paths, atomic writes, paths read back safely, the orphan sweep."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.register.media import MediaStore
from tests.helpers import alert_record

NOW = datetime.now(UTC)


@pytest.fixture
def media(tmp_path) -> MediaStore:
    return MediaStore(tmp_path / "media")


def _aged(path: Path, age: timedelta) -> Path:
    moment = (NOW - age).timestamp()
    os.utime(path, (moment, moment))
    return path


def test_snapshot_path_is_camera_day_uid(media):
    record = alert_record(camera_id="cam-07", uid="abc123", ts_utc="2025-03-04T05:06:07.000+00:00")
    assert media.snapshot_path(record) == Path("cam-07") / "2025-03-04" / "abc123.jpg"


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [("camera_id", "../out", "camera id"), ("uid", ".hidden", "alert uid"), ("ts_utc", "../../2025", "alert day")],
)
def test_snapshot_path_refuses_unsafe_parts(media, field, value, label):
    with pytest.raises(OSError, match=f"unsafe {label} for a file name"):
        media.snapshot_path(alert_record(**{field: value}))


def test_write_snapshot_leaves_the_file_and_no_temp(media):
    relative = Path("cam-01") / "2025-01-01" / "x.jpg"
    media.write_snapshot(relative, b"jpeg")
    assert (media.media_dir / relative).read_bytes() == b"jpeg"
    assert [p.name for p in media.media_dir.rglob("*") if p.is_file()] == ["x.jpg"]


def test_write_snapshot_refuses_a_path_out_of_the_folder(media):
    with pytest.raises(OSError, match="escapes the media folder"):
        media.write_snapshot(Path("..") / "x.jpg", b"jpeg")


def test_discard_ignores_a_missing_file(media):
    media.write_snapshot(Path("a") / "x.jpg", b"jpeg")
    media.discard("a/x.jpg")
    media.discard("a/x.jpg")
    assert not (media.media_dir / "a" / "x.jpg").exists()


def test_media_path_stays_inside_the_folder(media, tmp_path):
    media.media_dir.mkdir()
    (media.media_dir / "out").symlink_to(tmp_path)
    assert media.media_path("cam-01/x.jpg") == media.media_dir / "cam-01" / "x.jpg"
    for hostile in ("../x.jpg", "/etc/passwd", "cam\x00.jpg", "out/x.jpg", ".", ""):
        assert media.media_path(hostile) is None, hostile


def test_snapshot_problem(media):
    media.write_snapshot(Path("a") / "x.jpg", b"jpeg")
    row = {"snapshot": "a/x.jpg", "media_purged_utc": None, "snapshot_sha256": hashlib.sha256(b"jpeg").hexdigest()}
    assert media.snapshot_problem(row) is None
    assert media.snapshot_problem({**row, "media_purged_utc": "2025-01-01"}) is None
    assert media.snapshot_problem({**row, "snapshot": None}) is None
    assert (
        media.snapshot_problem({**row, "snapshot": "../x.jpg"})
        == "snapshot path '../x.jpg' leads outside the media folder"
    )
    assert media.snapshot_problem({**row, "snapshot_sha256": "0" * 64}) == "snapshot a/x.jpg was altered"
    (media.media_dir / "a" / "x.jpg").unlink()
    assert media.snapshot_problem(row) == "snapshot a/x.jpg is missing (deleted outside the retention purge)"


def test_sweep_orphans_keeps_referenced_and_young_files(media):
    folder = media.media_dir / "cam-01"
    folder.mkdir(parents=True)
    ages = {
        "kept.jpg": timedelta(days=40),  # old, but an alert names it
        "young.jpg": timedelta(days=1),
        "old.jpg": timedelta(days=40),
        "old.tmp": timedelta(hours=2),  # temp files go after an hour, whatever the cutoff
        "young.tmp": timedelta(minutes=5),
    }
    for name, age in ages.items():
        (folder / name).write_bytes(b"x")
        _aged(folder / name, age)
    removed = media.sweep_orphans(NOW - timedelta(days=30), {"cam-01/kept.jpg"})
    assert removed == 2
    assert sorted(p.name for p in folder.iterdir()) == ["kept.jpg", "young.jpg", "young.tmp"]


def test_remove_empty_folders(media):
    (media.media_dir / "cam-01" / "2025-01-01").mkdir(parents=True)
    media.write_snapshot(Path("cam-02") / "2025-01-01" / "x.jpg", b"jpeg")
    media.remove_empty_folders()
    assert sorted(p.relative_to(media.media_dir).as_posix() for p in media.media_dir.rglob("*")) == [
        "cam-02",
        "cam-02/2025-01-01",
        "cam-02/2025-01-01/x.jpg",
    ]
