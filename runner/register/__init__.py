"""The register: alerts, decisions, the audit chain, snapshots and retention, behind `Register`.

Callers import from here: `from runner.register import Register, iso`. The parts, for a reader:
`backend` (`--db`: an SQLite file or a PostgreSQL URL) → `schema` (DDL, opening, upgrades) → `database`
(the shared connection and transactions) → `media` (snapshot files) → `audit` (hash chain, anchor file,
verify) → `records` (alerts, decisions, control, health) → `retention` (purge and its schedule) → `register`
(the facade); `copy` (`vigie register copy`).
"""

from runner.register.audit import VerifyReport, anchor_path_for, audit_hash, read_anchor
from runner.register.clock import iso, utc_now
from runner.register.database import REGISTER_HEALTH, STORAGE_HEALTH
from runner.register.database import STORAGE_HEALTH_KEYS as _STORAGE_ROWS
from runner.register.records import StoredAlert
from runner.register.register import Register
from runner.register.retention import RETENTION_HEALTH
from runner.register.schema import DEFAULT_DB, GENESIS_HASH, SCHEMA_VERSION

# The register's own health rows, which are no cameras: its file, the media folder, and the purge (`clock`).
STORAGE_HEALTH_KEYS = (*_STORAGE_ROWS, RETENTION_HEALTH)

__all__ = [
    "DEFAULT_DB",
    "GENESIS_HASH",
    "REGISTER_HEALTH",
    "SCHEMA_VERSION",
    "STORAGE_HEALTH",
    "STORAGE_HEALTH_KEYS",
    "Register",
    "StoredAlert",
    "VerifyReport",
    "anchor_path_for",
    "audit_hash",
    "iso",
    "read_anchor",
    "utc_now",
]
