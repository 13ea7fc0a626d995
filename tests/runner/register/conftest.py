"""Fixtures of the register's tests: a fresh register, and a second raw connection to its file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from runner.register import Register


@pytest.fixture
def register(tmp_path):
    with Register(tmp_path / "vigie.db") as reg:
        yield reg


def _raw(reg: Register) -> sqlite3.Connection:
    """A second connection, as an attacker with file access (or the test) would open it."""
    conn = sqlite3.connect(reg.db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture
def raw() -> Callable[[Register], sqlite3.Connection]:
    return _raw
