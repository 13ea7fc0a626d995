"""Registers as an older Vigie left them, for the upgrade tests (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from runner.register import Register, schema
from runner.register.backend import PgConnection, parse_target
from tests.helpers import alert_record, tiny_jpeg


def older_register(target: str, media: Path, version: int) -> int:
    """A register as a Vigie of schema `version` (before Alembic) left it, holding one alert: built with today's
    schema, then every later step's tables, indexes and columns dropped, the Alembic stamp removed (SQLite:
    user_version set back) or, on PostgreSQL, set back. Returns the alert's id."""
    with Register(target, media) as today:
        alert_id = today.add_alert(alert_record(), tiny_jpeg()).id
        postgres = today.target.is_postgres
    conn = PgConnection(parse_target(target), read_only=False) if postgres else sqlite3.connect(target)
    for step in sorted((s for s in schema.MIGRATIONS if s > version), reverse=True):
        script = schema.MIGRATIONS[step]
        for table, column in re.findall(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", script):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        for index in re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", script):
            conn.execute(f"DROP INDEX {index}")
        for table in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", script):
            conn.execute(f"DROP TABLE {table}")
    if postgres:
        conn.execute("UPDATE alembic_version SET version_num = ?", (schema.revision_id(version),))
    else:
        conn.execute("DROP TABLE alembic_version")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    conn.close()
    return alert_id
