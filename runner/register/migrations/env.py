"""Alembic's environment for the register: one connection to the register named in the configuration's
`target` attribute (a `backend.DbTarget`), every pending step in ONE transaction taken under the upgrade
lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so that of several processes opening an older
register at once, one upgrades it and the others find it done (Alembic reads the version inside that lock)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, event, pool, text

from runner.register.backend import MIGRATE_LOCK_KEY, DbTarget


def _engine_url(target: DbTarget) -> str:
    if target.is_postgres:
        return "postgresql+psycopg://" + target.url.split("://", 1)[1]
    return f"sqlite:///{target.path}"


def run_migrations_online() -> None:
    """Upgrade the register (Alembic calls this)."""
    target: DbTarget = context.config.attributes["target"]
    engine = create_engine(_engine_url(target), poolclass=pool.NullPool)
    if not target.is_postgres:
        # pysqlite's own transaction handling off, so that the transaction starts with BEGIN IMMEDIATE.
        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _write_lock_first(connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.connect() as connection:
            # transactional_ddl: Alembic takes SQLite for a database without transactional DDL and would commit
            # after each step, letting another opener in between (it then applies a step already applied).
            context.configure(connection=connection, transactional_ddl=True, transaction_per_migration=False)
            with context.begin_transaction():
                if target.is_postgres:
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
                context.run_migrations()
    finally:
        engine.dispose()


if getattr(context, "config", None) is not None:  # run by Alembic (not merely imported, as the layering test does)
    run_migrations_online()
