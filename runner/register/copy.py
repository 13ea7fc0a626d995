"""`vigie register copy SRC DST`: a register moved whole into an empty one (a design-phase SQLite file into the
site's PostgreSQL database, typically; any backend to any), the audit chain intact.

Every table is copied with its ids, in one read snapshot of SRC and one write transaction on DST, so that DST
holds all of it or nothing; `vigie audit verify --db DST` then passes as it did on SRC. PostgreSQL's identity
sequences are moved past the copied ids. DST's anchor file (SQLite) witnesses the rows written after the copy.
The media folder's files are copied too when DST's folder is another one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from runner.core.errors import StoreError
from runner.register.register import Register

# Copied first, in this order (foreign keys point to them); every other table of SRC follows, by name.
_PARENT_TABLES = ("meta", "users", "alerts")
# Never copied: the engines' and Alembic's own bookkeeping (DST has its own), and DST's anchor start.
_SKIPPED_TABLES = {"alembic_version", "sqlite_sequence"}
_SKIPPED_META = {"anchor_from_row"}
# Tables whose rows say the register is in use (DST must have none of them).
_CONTENT_TABLES = ("audit", "alerts", "decisions", "users")
_CHUNK_ROWS = 1000


def copy_register(
    source: str | Path, destination: str | Path, *, source_media: Path | None = None, media: Path | None = None
) -> dict[str, int]:
    """Copy every table of SOURCE into the empty register DESTINATION (created when missing), ids kept.

    Args:
        source: the register to copy (SQLite file or PostgreSQL URL); only read.
        destination: the empty register to fill (its tables are created first when it has none).
        source_media: SOURCE's media folder (default: its default).
        media: DESTINATION's media folder (default: its default); SOURCE's files are copied into it.

    Returns:
        Table name -> rows copied, plus "media_files" (files copied).

    Raises:
        StoreError: DESTINATION is not empty, or SOURCE is the same register (one line each).
    """
    with Register(source, source_media, create=False, read_only=True) as src, Register(destination, media) as dst:
        if src.target.display == dst.target.display:
            raise StoreError(f"register copy: {src.target.display} is both the source and the destination")
        _refuse_non_empty(dst)
        counts = _copy_tables(src, dst)
        counts["media_files"] = _copy_media(src.media_dir, dst.media_dir)
    return counts


def _refuse_non_empty(dst: Register) -> None:
    found = {table: dst.database.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in _CONTENT_TABLES}
    held = ", ".join(f"{count} {table} row(s)" for table, count in found.items() if count)
    if held:
        raise StoreError(f"register {dst.target.display} is not empty ({held}): copy refused; pass an empty one")


def _tables(register: Register) -> list[str]:
    if register.target.is_postgres:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    names = {row[0] for row in register.database.query(sql)} - _SKIPPED_TABLES
    return [t for t in _PARENT_TABLES if t in names] + sorted(names - set(_PARENT_TABLES))


def _columns(conn: Any, table: str) -> list[str]:
    cursor = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    cursor.fetchall()
    return [getattr(column, "name", None) or column[0] for column in cursor.description]


def _copy_tables(src: Register, dst: Register) -> dict[str, int]:
    """One read snapshot of SRC, one write transaction on DST (all or nothing)."""
    counts: dict[str, int] = {}
    dst_tables = set(_tables(dst))
    with src.database.lock, dst.database.transaction() as out:
        source = src.database.conn
        source.execute("BEGIN")
        try:
            for table in _tables(src):
                if table not in dst_tables:
                    raise StoreError(f"register {dst.target.display}: no table {table} (an older Vigie?)")
                counts[table] = _copy_table(source, out, table)
        finally:
            source.execute("COMMIT")
        # DST's anchor file (SQLite) starts with the first row written after the copy.
        out.execute(
            "UPDATE meta SET value = CAST((SELECT COALESCE(MAX(id), 0) + 1 FROM audit) AS TEXT) "
            "WHERE key = 'anchor_from_row'"
        )
        if dst.target.is_postgres:
            _move_identity_sequences(out)
    return counts


def _copy_table(source: Any, out: Any, table: str) -> int:
    columns = [c for c in _columns(source, table) if c in set(_columns(out, table))]
    names = ", ".join(columns)
    if table == "meta":
        insert = f"INSERT INTO meta({names}) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    else:
        insert = f"INSERT INTO {table}({names}) VALUES ({', '.join('?' * len(columns))})"
    cursor = source.execute(f"SELECT {names} FROM {table} ORDER BY 1")
    copied = 0
    while rows := cursor.fetchmany(_CHUNK_ROWS):
        values = [tuple(row) for row in rows if not (table == "meta" and row[0] in _SKIPPED_META)]
        if values:
            out.executemany(insert, values)
        copied += len(values)
    return copied


def _move_identity_sequences(out: Any) -> None:
    """Explicit ids do not move PostgreSQL's identity sequences: the next alert must get an unused id."""
    identities = out.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in identities:
        out.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
            f"(SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), false)"
        )


def _copy_media(source: Path, destination: Path) -> int:
    """SOURCE's snapshot and clip files into DST's folder (same relative paths), unless it is the same folder."""
    if not source.is_dir() or (destination.exists() and source.resolve() == destination.resolve()):
        return 0
    copied = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied += 1
    return copied
