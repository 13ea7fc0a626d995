"""Where the design-phase apps read and write: every path comes from an environment variable.

Voilà starts each notebook's kernel in the notebook's own folder (notebooks/), so relative defaults
are taken from the project root, not from the working directory; a relative value given in an
environment variable is taken as the user wrote it (relative to the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def register_path() -> Path:
    """The alert register and audit log (VIGIE_DB, default var/vigie.db).

    Returns:
        The SQLite file's path; the file may not exist yet.
    """
    return _path_from_env("VIGIE_DB", PROJECT_ROOT / "var" / "vigie.db")


def tuning_register_path() -> Path:
    """Register of tuning replays (VIGIE_TUNING_DB, default tuning.db beside VIGIE_DB).

    Tuning replays raise many test alerts per threshold tried; keeping them out of the register
    the operators and the dashboards read keeps those figures about real use.

    Returns:
        The SQLite file's path; the file may not exist yet.
    """
    return _path_from_env("VIGIE_TUNING_DB", register_path().parent / "tuning.db")


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
