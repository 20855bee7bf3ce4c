"""Alembic environment: uses the connection handed over by ``upgrade_to_head`` (or a URL for the CLI)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from adapters.sql_schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from adapters.sql_engine import make_engine

    url = config.get_main_option("sqlalchemy.url") or os.environ.get("MMATS_DATABASE_URL")
    if not url:
        raise SystemExit("set sqlalchemy.url or MMATS_DATABASE_URL")
    engine = make_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
