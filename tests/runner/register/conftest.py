"""Fixtures of the register's tests: a fresh register, and a second raw connection to its database.

The register is an SQLite file; a module that sets `RUN_ON_BOTH_BACKENDS = True` runs each test that uses it
on SQLite and on a fresh PostgreSQL database too (a real server: those variants are marked `postgres`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from runner.register import Register
from runner.register.backend import PgConnection, parse_target

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if getattr(metafunc.module, "RUN_ON_BOTH_BACKENDS", False) and "register_target" in metafunc.fixturenames:
        metafunc.parametrize("register_target", BACKENDS, indirect=True)


@pytest.fixture
def register_target(request, tmp_path) -> str:
    """Where the test's register lives: a file in tmp_path, or a fresh PostgreSQL database (indirect param)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "vigie.db")


@pytest.fixture
def register(register_target, tmp_path):
    with Register(register_target, tmp_path / "media") as reg:
        yield reg


class _TamperingConnection(PgConnection):
    """PostgreSQL's raw connection for the tests, which drop triggers in SQLite's words (no `ON audit`)."""

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.upper().startswith("DROP TRIGGER") and " ON " not in sql.upper():
            sql += " ON audit"
        return super().execute(sql, params)


def _raw(reg: Register) -> Any:
    """A second connection, as an attacker with file (or database) access, or the test, would open it."""
    if reg.target.is_postgres:
        return _TamperingConnection(parse_target(reg.target), read_only=False)
    conn = sqlite3.connect(reg.db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture
def raw() -> Callable[[Register], Any]:
    return _raw
