"""Where the design-phase apps read and write: every path comes from an environment variable.

Voilà starts each notebook's kernel in the notebook's own folder (notebooks/), so relative defaults
are taken from the project root, not from the working directory; a relative value given in an
environment variable is taken as the user wrote it (relative to the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.core.errors import StoreError
from runner.register.backend import parse_target

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _path_from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else default


def zones_dir() -> Path:
    """Exported site configs, one folder per site (VIGIE_ZONES_DIR, default zones/).

    Returns:
        The folder holding one `<site>/site.yaml` folder per site; it may not exist yet.
    """
    return _path_from_env("VIGIE_ZONES_DIR", PROJECT_ROOT / "zones")


def register_path() -> Path | str:
    """The alert register and audit log (VIGIE_DB, default var/vigie.db).

    Returns:
        The SQLite file's path (the file may not exist yet), or a `postgresql://` URL as it was given (a
        Path would fold its `//`); `runner.register.backend.parse_target` reads both.
    """
    value = os.environ.get("VIGIE_DB", "").strip()
    if is_database_url(value):
        return value
    return _path_from_env("VIGIE_DB", PROJECT_ROOT / "var" / "vigie.db")


def is_database_url(location: str | Path) -> bool:
    """Whether a register location is a database URL (PostgreSQL) rather than an SQLite file.

    Args:
        location: a `--db` / VIGIE_DB value.

    Returns:
        True for a `postgresql://` (or `postgres://`) URL.
    """
    if isinstance(location, Path):
        return False
    try:
        return parse_target(location).is_postgres
    except StoreError:  # only a URL fails to parse (a ${VAR} not set): the error is the opening's to report
        return True


def beside_register(name: str, location: str | Path | None = None) -> Path:
    """A file or folder kept beside the SQLite register, or in var/ when the register is a PostgreSQL database.

    Args:
        name: its name.
        location: the register (a file or a URL); None for `register_path()`.

    Returns:
        Its path.
    """
    location = register_path() if location is None else location
    return PROJECT_ROOT / "var" / name if is_database_url(location) else Path(location).parent / name


def tuning_register_path() -> Path:
    """Register of tuning replays (VIGIE_TUNING_DB, default tuning.db beside VIGIE_DB).

    Tuning replays raise many test alerts per threshold tried; keeping them out of the register
    the operators and the dashboards read keeps those figures about real use.

    Returns:
        The SQLite file's path; the file may not exist yet.
    """
    return _path_from_env("VIGIE_TUNING_DB", beside_register("tuning.db"))


def shared_data_dir() -> Path:
    """Recorded data shared beside the project (VIGIE_SHARED_DATA, default ../shared/data).

    Returns:
        The folder that the clip and label defaults below are taken from.
    """
    return _path_from_env("VIGIE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")


def clips_dir() -> Path:
    """Recorded clips offered for tuning (VIGIE_CLIPS_DIR, default $VIGIE_SHARED_DATA/clips).

    Returns:
        The folder whose video files the tuning app lists; it may not exist.
    """
    return _path_from_env("VIGIE_CLIPS_DIR", shared_data_dir() / "clips")


def labels_csv() -> Path:
    """Expected events for the tuning scores (VIGIE_LABELS, default $VIGIE_SHARED_DATA/labels/events.csv).

    Returns:
        The CSV file's path; the tuning app starts without labels when it is not a file.
    """
    return _path_from_env("VIGIE_LABELS", shared_data_dir() / "labels" / "events.csv")
