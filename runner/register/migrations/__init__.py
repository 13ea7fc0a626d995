"""Alembic's scripts for the register: `env.py`, and one revision per schema step in `versions/`.

Each revision runs its step's DDL from `runner.register.schema` (the one source of the register's DDL) on
the register's engine; `schema.upgrade_with_alembic` runs them, with a configuration built in code.
"""

from __future__ import annotations

from typing import Any

_DOWNGRADE_REFUSED = "the register is never downgraded: an older Vigie refuses a newer register"


def upgrade_step(step: int) -> None:
    """Apply one schema step on the connection Alembic migrates (its DDL for that connection's engine); on
    SQLite, PRAGMA user_version follows, so that an older Vigie still refuses a newer file.

    Args:
        step: the schema step (1 = the base schema).
    """
    from alembic import op  # noqa: PLC0415

    from runner.register.schema import step_statements  # noqa: PLC0415

    bind: Any = op.get_bind()
    dialect = bind.dialect.name
    for statement in step_statements(step, "postgresql" if dialect == "postgresql" else "sqlite"):
        bind.exec_driver_sql(statement)
    if dialect == "sqlite":
        bind.exec_driver_sql(f"PRAGMA user_version = {int(step)}")


def refuse_downgrade() -> None:
    """A register is never downgraded.

    Raises:
        NotImplementedError: always.
    """
    raise NotImplementedError(_DOWNGRADE_REFUSED)
