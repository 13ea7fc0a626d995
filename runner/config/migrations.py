"""Explicit, ordered migrations of the raw YAML mapping from older schema versions.

`MIGRATIONS[n]` upgrades a version-n mapping to version n+1. There is only version 1 so far;
the mechanism (and its test) is here so that the first format change has a place to go.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

CURRENT_SCHEMA_VERSION = 1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class MigrationError(ValueError):
    """A config's schema_version cannot be brought to the current one (one line, for a ConfigError)."""


def migrate(raw: dict[str, Any], current: int = CURRENT_SCHEMA_VERSION) -> dict[str, Any]:
    """Upgrades a raw config mapping to the current schema version, one registered step at a time.

    Args:
        raw: the YAML's top-level mapping; left untouched when a migration runs (each step gets a deep copy).
        current: the version to reach (a parameter for tests).

    Returns:
        A mapping at version `current`: `raw` itself when it is already there.

    Raises:
        MigrationError: when schema_version is missing, not a positive integer, newer than `current`, or has no
            migration.
    """
    version = raw.get("schema_version")
    if version is None:
        raise MigrationError("schema_version: required (this runner reads version %d)" % current)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MigrationError(f"schema_version: must be a positive integer, got {version!r}")
    if version > current:
        raise MigrationError(f"schema_version: {version} is newer than this runner reads ({current}); upgrade Vigie")
    while version < current:
        if version not in MIGRATIONS:
            raise MigrationError(f"schema_version: no migration from version {version}")
        # A deep copy: a migration may edit nested mappings without touching the caller's data.
        upgraded = MIGRATIONS[version](copy.deepcopy(raw))
        if not isinstance(upgraded, dict):
            raise MigrationError(f"schema_version: migration from version {version} returned no mapping")
        raw = upgraded
        version += 1
        raw["schema_version"] = version
    return raw
