"""Where the register lives: an SQLite file (the embedded default) or a PostgreSQL database (several nodes).

`DbTarget` is what `--db` / `VIGIE_DB` names: a path, or `postgresql://user@host:port/name` (`postgres://`
too), `${ENV}` placeholders expanded; its `display` never shows a password. `PgConnection` gives a psycopg 3
connection the small sqlite3 surface the register's modules use (`execute` -> a cursor with fetchone,
fetchall, rowcount and iteration; rows read as `row["col"]`, `row[0]`, `dict(row)`), so that every register
statement is written once, in the SQL both engines accept, with `?` and `:name` placeholders:

- `?` -> `%s`, `:name` -> `%(name)s`, a literal `%` -> `%%`, `json_extract(col, '$.key')` -> `(col::jsonb ->>
  'key')`; string literals are left alone; each statement is translated once (cached).
- `BEGIN IMMEDIATE` (a write transaction) -> `BEGIN` plus `pg_advisory_xact_lock(WRITE_LOCK_KEY)`: every
  writer of every node takes the same lock, held to COMMIT, so the audit chain stays one line.
- `BEGIN` (a read snapshot: verify, checkpoints) -> `BEGIN ISOLATION LEVEL REPEATABLE READ`.

psycopg is imported only when a PostgreSQL register is opened: every `vigie` command imports the register.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from runner.config.loading import expand_env, redact
from runner.core.errors import ConfigError, StoreError

SQLITE, POSTGRESQL = "sqlite", "postgresql"
_PG_SCHEMES = ("postgresql://", "postgres://")
# pg_advisory_xact_lock keys (any two fixed 64-bit numbers): one for every write, one for schema upgrades.
WRITE_LOCK_KEY = 0x56494749_45000001  # "VIGIE" + 1
MIGRATE_LOCK_KEY = 0x56494749_45000002
_CONNECT_TIMEOUT_S = 10
_DEFAULT_PG_MEDIA = Path("var/media")

# The error classes of both engines; psycopg's joins once a PostgreSQL register is opened.
_database_errors: tuple[type[BaseException], ...] = (sqlite3.DatabaseError,)


def database_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a failed statement raises on the engines loaded so far (for `except`).

    Returns:
        sqlite3.DatabaseError, plus psycopg.Error once a PostgreSQL register was opened.
    """
    return _database_errors


@dataclass(frozen=True)
class DbTarget:
    """One register location, parsed from a `--db` value.

    Attributes:
        dialect: "sqlite" or "postgresql".
        url: the PostgreSQL URL with ${ENV} expanded (holds the password when the URL has one: never print it);
            "" for SQLite.
        path: the SQLite file; None for PostgreSQL.
        display: what messages and logs show: the file, or the URL with its password and secrets redacted.
        name: a short name for file names derived from the register (checkpoints, anchor): the file's name, or
            the database's.
    """

    dialect: str
    url: str
    path: Path | None
    display: str
    name: str

    @property
    def is_postgres(self) -> bool:
        """Whether the register is a PostgreSQL database.

        Returns:
            True for PostgreSQL, False for an SQLite file.
        """
        return self.dialect == POSTGRESQL

    def default_media_dir(self) -> Path:
        """The media folder when none is given: `media` beside an SQLite file, `var/media` for PostgreSQL.

        Returns:
            The folder.
        """
        return self.path.parent / "media" if self.path is not None else _DEFAULT_PG_MEDIA


def parse_target(value: str | Path | DbTarget) -> DbTarget:
    """Parse a `--db` value: a PostgreSQL URL, or else an SQLite file path.

    Args:
        value: a path, a `postgresql://` / `postgres://` URL (${ENV} placeholders allowed), or a DbTarget.

    Returns:
        The target.

    Raises:
        StoreError: a URL that names no database, or a ${ENV} variable that is not set (one line, no password).
    """
    if isinstance(value, DbTarget):
        return value
    text = str(value)
    for scheme in _PG_SCHEMES:  # a URL that went through Path() lost a slash: postgresql:/user@host/name
        single = scheme[:-1]
        if text.startswith(single) and not text.startswith(scheme):
            text = scheme + text[len(single) :]
    if not text.startswith(_PG_SCHEMES):
        path = Path(text)
        return DbTarget(SQLITE, "", path, str(path), path.name)
    try:
        url = expand_env(text, "--db")
    except ConfigError as exc:
        raise StoreError(f"register {redact(text)}: {exc}") from None
    display = redact(url)
    database = unquote(urlsplit(url).path.lstrip("/"))
    if not database or "/" in database:
        raise StoreError(f"register {display}: the URL names no database (postgresql://user@host:port/name)")
    return DbTarget(POSTGRESQL, url, None, display, database)


# -- SQL translation: one statement text for both engines -------------------------------------------------
_JSON_EXTRACT = re.compile(r"json_extract\(\s*(\w+)\s*,\s*'\$\.(\w+)'\s*\)")
# String literals and quoted names are skipped; `?`, `:name` (not a `::` cast) and `%` are rewritten.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|(?<![:\w]):([A-Za-z_]\w*)|%")


@lru_cache(maxsize=1024)
def to_postgres(sql: str, with_params: bool = True) -> str:
    """Translate one register statement from its SQLite spelling to PostgreSQL's (see the module's doc).

    Args:
        sql: a statement with `?` or `:name` placeholders.
        with_params: whether parameters come with it (without, psycopg sends the text as is: `%` stays `%`).

    Returns:
        The statement with psycopg's placeholders.
    """
    sql = _JSON_EXTRACT.sub(r"(\1::jsonb ->> '\2')", sql)

    def rewrite(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%" if with_params else "%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return token.replace("%", "%%") if with_params else token  # a literal: psycopg reads `%` even there

    return _TOKEN.sub(rewrite, sql)


def _pg_value(value: Any) -> Any:
    """Booleans are stored as INTEGER 0/1 on both engines (psycopg would send a boolean)."""
    return int(value) if isinstance(value, bool) else value


def _pg_params(params: Any) -> Any:
    if isinstance(params, dict):
        return {key: _pg_value(value) for key, value in params.items()}
    return [_pg_value(value) for value in params]


class Row:
    """A result row read like sqlite3.Row: `row["col"]`, `row[0]`, `row.keys()`, `dict(row)`, unpacking."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: tuple, index: dict[str, int]):
        """Wrap one row.

        Args:
            values: the row's values.
            index: column name -> position.
        """
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        """The column names, in order.

        Returns:
            The names.
        """
        return list(self._index)

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and self._values == other._values and self._index == other._index

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    if cursor.description is None:
        return tuple
    index = {column.name: position for position, column in enumerate(cursor.description)}
    return lambda values: Row(tuple(values), index)


class PgConnection:
    """A psycopg 3 connection (autocommit, explicit BEGIN/COMMIT as with SQLite) behind the sqlite3 surface.

    A connection lost with the server (restart, network) is opened again at the next statement outside a
    transaction; the statement that met the loss fails as any database error does.
    """

    dialect = POSTGRESQL

    def __init__(self, target: DbTarget, *, read_only: bool):
        """Connect (10 s timeout). libpq reads PGPASSWORD and ~/.pgpass when the URL has no password.

        Args:
            target: a PostgreSQL target.
            read_only: open a read-only session (listing, verifying).
        """
        self.target = target
        self.read_only = read_only
        self._in_transaction = False
        self._lock = threading.RLock()
        try:
            self._raw = self._connect()
        except database_errors() as exc:
            raise StoreError(f"register {target.display}: cannot connect ({_first_line(exc)})") from None

    def _connect(self) -> Any:
        """A new server connection; a failure raises psycopg's error (a reconnection fails as a statement)."""
        global _database_errors
        import psycopg  # noqa: PLC0415 (only PostgreSQL registers pay its import)

        _database_errors = (sqlite3.DatabaseError, psycopg.Error)
        options = "-c default_transaction_read_only=on" if self.read_only else ""
        return psycopg.connect(
            self.target.url,
            autocommit=True,
            row_factory=_row_factory,
            connect_timeout=_CONNECT_TIMEOUT_S,
            options=options,
            application_name="vigie",
        )

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or broken.

        Returns:
            True when the next statement needs a new connection.
        """
        return bool(self._raw.closed or self._raw.broken)

    def execute(self, sql: str, params: Any = ()) -> Any:
        """Run one statement, translated (see the module's doc).

        Args:
            sql: the statement, in the register's SQLite spelling.
            params: positional (`?`) or named (`:name`) parameters.

        Returns:
            The cursor (fetchone, fetchall, rowcount, iteration; rows as `Row`).
        """
        with self._lock:
            if self.closed and not self._in_transaction:
                self._raw = self._connect()
            statement = sql.strip().rstrip(";").strip().upper()
            if statement == "BEGIN IMMEDIATE":
                cursor = self._raw.execute("BEGIN")
                self._in_transaction = True
                self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
                return cursor
            if statement == "BEGIN":
                self._in_transaction = True
                return self._raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            if statement in ("COMMIT", "ROLLBACK"):
                self._in_transaction = False
                if self.closed:
                    raise _closed_error()
            if not params:
                return self._raw.execute(to_postgres(sql, with_params=False))
            return self._raw.execute(to_postgres(sql), _pg_params(params))

    def executemany(self, sql: str, seq_of_params: Any) -> Any:
        """Run one statement once per parameter set.

        Args:
            sql: the statement, in the register's SQLite spelling.
            seq_of_params: its parameter sets.

        Returns:
            The cursor (rowcount: the rows the last run touched).
        """
        with self._lock:
            cursor = self._raw.cursor()
            cursor.executemany(to_postgres(sql), [_pg_params(params) for params in seq_of_params])
            return cursor

    def executescript(self, script: str) -> None:
        """Run several statements separated by `;` (DDL of the migrations, without string literals holding `;`).

        Args:
            script: the statements.
        """
        for statement in split_statements(script):
            self.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        self._raw.close()


def _closed_error() -> BaseException:
    import psycopg  # noqa: PLC0415

    return psycopg.OperationalError("the connection to the server was lost")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (sqlite3.complete_statement: triggers' BEGIN...END and
    dollar-free PostgreSQL DDL alike), blanks dropped.

    Args:
        script: the script.

    Returns:
        Its statements, each without surrounding blanks.

    Raises:
        ValueError: the script ends in the middle of a statement.
    """
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete statement in a register migration: {pending.strip()[:60]}")
    return statements


# -- DDL: the schema's SQLite scripts, as PostgreSQL runs them ---------------------------------------------
_DDL_REWRITES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT OR IGNORE INTO", re.I)

# The audit log's append-only guard on PostgreSQL: the same refusal as SQLite's triggers (schema._TRIGGERS).
PG_AUDIT_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION vigie_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.id <= CAST((SELECT value FROM meta WHERE key = 'audit_purge_upto') AS BIGINT) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit log is append-only';
END $$""",
    "DROP TRIGGER IF EXISTS audit_no_update ON audit",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION vigie_audit_append_only()",
    "DROP TRIGGER IF EXISTS audit_no_delete ON audit",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION vigie_audit_append_only()",
)


def postgres_ddl(script: str) -> list[str]:
    """The statements of one schema script (SQLite DDL) for PostgreSQL: column types translated, `INSERT OR
    IGNORE` as `ON CONFLICT DO NOTHING`; CREATE TRIGGER blocks dropped (PG_AUDIT_TRIGGERS stands for them).

    Args:
        script: a script of `schema` (the base schema or one MIGRATIONS step).

    Returns:
        Its statements for PostgreSQL.
    """
    statements = []
    for statement in split_statements(script):
        if statement.upper().startswith("CREATE TRIGGER"):
            continue
        for pattern, replacement in _DDL_REWRITES:
            statement = pattern.sub(replacement, statement)
        if _INSERT_OR_IGNORE.match(statement):
            statement = (
                _INSERT_OR_IGNORE.sub("INSERT INTO", statement).rstrip().rstrip(";") + " ON CONFLICT DO NOTHING;"
            )
        statements.append(statement)
    return statements


def sqlite_ddl(script: str) -> list[str]:
    """The statements of one schema script for SQLite (as written).

    Args:
        script: a script of `schema`.

    Returns:
        Its statements.
    """
    return split_statements(script)
