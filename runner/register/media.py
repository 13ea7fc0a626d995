"""Snapshot files: where each goes under the media folder, written atomically, found again safely.

A snapshot is written (temp file + fsync + rename + fsync of its folder) *before* the alert row that
names it. No path read from the database may lead outside the media folder: a snapshot column edited
in the database must not make the purge delete, nor the apps show, a file elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runner.core.alerts import AlertRecord
from runner.register import clock

log = logging.getLogger(__name__)

# A camera id, day or uid used as a snapshot path part: no separator, no '..', no NUL, not hidden.
SAFE_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
# A temp file is never referenced: one this old was left by a killed writer, whatever the retention.
TEMP_FILE_MAX_AGE = timedelta(hours=1)


class MediaStore:
    """The media folder of one register."""

    def __init__(self, media_dir: Path):
        """Snapshots under one media folder.

        Args:
            media_dir: the folder of the snapshots (created on the first write).
        """
        self.media_dir = media_dir

    def snapshot_path(self, record: AlertRecord) -> Path:
        """media/<camera>/<day>/<uid>.jpg; every part a plain name, so none can lead out of the media folder.

        Args:
            record: the alert the snapshot belongs to.

        Returns:
            The path relative to the media folder.

        Raises:
            OSError: a part is not a plain file name.
        """
        return _alert_media_path(record.camera_id, record.ts_utc, record.uid, "jpg")

    def clip_path(self, camera_id: str, ts_utc: str, uid: str, extension: str) -> Path:
        """media/<camera>/<day>/<uid>.<extension>: an alert's clip, beside its snapshot (purged with it).

        Args:
            camera_id: the alert's camera.
            ts_utc: the alert's time stamp (its day names the folder).
            uid: the alert's uid.
            extension: the clip's file extension, without the dot.

        Returns:
            The path relative to the media folder.

        Raises:
            OSError: a part is not a plain file name, or the extension is that of a snapshot.
        """
        if extension in ("jpg", "tmp") or not extension.isalnum():
            raise OSError(f"unsafe clip extension: {extension[:20]!r}")
        return _alert_media_path(camera_id, ts_utc, uid, extension)

    def write_snapshot(self, relative: Path, data: bytes) -> None:
        """Write the file durably: temp file, fsync, rename, then fsync of its folder.

        Args:
            relative: the path from `snapshot_path`.
            data: the JPEG bytes.

        Raises:
            OSError: the file could not be written (a partial temp file is removed).
        """
        target = (self.media_dir / relative).resolve()
        if self.media_dir.resolve() not in target.parents:
            raise OSError(f"snapshot path escapes the media folder: {relative}")
        target.parent.mkdir(parents=True, exist_ok=True)  # also recreates a media folder deleted meanwhile
        temp = target.with_suffix(".tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except OSError:
            temp.unlink(missing_ok=True)  # a partial file on a full disk only takes more room
            raise
        # The rename is durable only once its folder is: the alert row that names the file comes next.
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def discard(self, relative: str) -> None:
        """Delete a snapshot that no row names (its alert could not be stored); a failure is left to the
        orphan sweep of the retention purge.

        Args:
            relative: the path from `snapshot_path`, as stored.
        """
        try:
            (self.media_dir / relative).unlink(missing_ok=True)
        except OSError:
            pass  # left for the orphan sweep of the retention purge

    def delete(self, relative: str, why: str) -> bool | None:
        """Delete one media file named by its stored path, never outside the media folder.

        Args:
            relative: the path as stored (snapshot, clip).
            why: what deletes it, for the log line of a failure ("purge", "rights erasure").

        Returns:
            True when deleted now; False when there was nothing to delete (already gone, or a path leading
            outside the media folder, which is never touched); None when it could not be deleted (logged:
            the caller retries later).
        """
        path = self.media_path(relative)
        if path is None:
            log.warning("%s: %r leads outside the media folder; not deleted", why, relative[:80])
            return False
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False  # deleted before a crash, or by hand
        except OSError as exc:
            log.error("%s: cannot delete %s: %s (retried later)", why, path, exc.strerror or exc)
            return None

    def media_path(self, relative: str) -> Path | None:
        """media_dir / relative, or None when it would lead outside the media folder ('..', absolute,
        NUL, a symlink out).

        Args:
            relative: a snapshot path as stored in the database.

        Returns:
            The file's path, or None.
        """
        try:
            root = self.media_dir.resolve()
            target = (self.media_dir / relative).resolve()
        except (OSError, ValueError):  # ValueError: embedded NUL
            return None
        return self.media_dir / relative if target.is_relative_to(root) and target != root else None

    def snapshot_problem(self, alert: sqlite3.Row) -> str | None:
        """What is wrong with an alert's snapshot file, for `verify`.

        Args:
            alert: the alert's row.

        Returns:
            The problem (outside the media folder, missing, altered), or None when the file is intact
            or there is none to check (never saved, or purged).
        """
        if not alert["snapshot"] or alert["media_purged_utc"]:
            return None
        path = self.media_path(alert["snapshot"])
        if path is None:
            return f"snapshot path {alert['snapshot'][:80]!r} leads outside the media folder"
        try:
            data = path.read_bytes()
        except OSError:
            return f"snapshot {alert['snapshot']} is missing (deleted outside the retention purge)"
        if hashlib.sha256(data).hexdigest() != alert["snapshot_sha256"]:
            return f"snapshot {alert['snapshot']} was altered"
        return None

    def clip_problem(self, alert: sqlite3.Row, clip: sqlite3.Row | None) -> str | None:
        """What is wrong with an alert's clip file, for `verify` (its row holds the sha256 the writer computed).

        Args:
            alert: the alert's row.
            clip: its `alert_clips` row, or None when it has no clip.

        Returns:
            The problem (outside the media folder, missing, altered), or None when the file is intact or there
            is none to check (no clip, or media purged).
        """
        if clip is None or alert["media_purged_utc"]:
            return None
        path = self.media_path(clip["path"])
        if path is None:
            return f"clip path {clip['path'][:80]!r} leads outside the media folder"
        try:
            data = path.read_bytes()
        except OSError:
            return f"clip {clip['path']} is missing (deleted outside the retention purge)"
        if hashlib.sha256(data).hexdigest() != clip["sha256"]:
            return f"clip {clip['path']} was altered"
        return None

    def sweep_orphans(self, cutoff: datetime, referenced: Collection[str]) -> int:
        """Delete media files older than the cutoff that no alert references (crash leftovers).

        Args:
            cutoff: files modified before it go; temp files go after `TEMP_FILE_MAX_AGE` at most.
            referenced: every snapshot path the alerts name (relative, POSIX).

        Returns:
            How many files were deleted.
        """
        temp_cutoff = max(cutoff, clock.utc_now() - TEMP_FILE_MAX_AGE)
        removed = 0
        for path in self.media_dir.rglob("*"):
            if not path.is_file():
                continue
            relative = path.relative_to(self.media_dir).as_posix()
            if relative in referenced:
                continue
            # A clip lives and dies with its alert's snapshot: kept while the snapshot is there, gone with it.
            snapshot = path.with_suffix(".jpg")
            is_clip = path.suffix not in (".jpg", ".tmp")
            if is_clip and snapshot.is_file():
                continue
            try:
                if (
                    is_clip and snapshot.relative_to(self.media_dir).as_posix() in referenced
                ) or datetime.fromtimestamp(path.stat().st_mtime, UTC) < (
                    temp_cutoff if path.suffix == ".tmp" else cutoff
                ):
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def remove_empty_folders(self) -> None:
        """Remove the empty camera and day folders, deepest first."""
        if not self.media_dir.is_dir():
            return
        for folder in sorted(
            (p for p in self.media_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                continue


def _alert_media_path(camera_id: str, ts_utc: str, uid: str, extension: str) -> Path:
    """<camera>/<day>/<uid>.<extension>, every part a plain name, so none can lead out of the media folder."""
    parts = (camera_id, ts_utc[:10], uid)
    for label, part in zip(("camera id", "alert day", "alert uid"), parts, strict=True):
        if not isinstance(part, str) or not SAFE_FILE_PART.fullmatch(part):
            raise OSError(f"unsafe {label} for a file name: {str(part)[:60]!r}")
    return Path(parts[0]) / parts[1] / f"{parts[2]}.{extension}"
