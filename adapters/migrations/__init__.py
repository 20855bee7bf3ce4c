"""Alembic migrations of the SQL store, runnable without an ``alembic.ini``.

``upgrade_to_head`` is what ``SqlStorage`` calls at open, so a fresh database gets the schema and an old
one is brought forward before any query touches it. It holds a lock while migrating (a PostgreSQL
advisory lock; SQLite's ``BEGIN IMMEDIATE``) so two processes opening the store at once cannot both
run the same DDL. Developers add revisions with the alembic CLI:
``alembic -c <(printf '[alembic]\\nscript_location=adapters/migrations\\n') revision -m "..."``
or programmatically via ``alembic_config()``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade_to_head"]

_HERE = Path(__file__).resolve().parent
_LOCK_ID = 0x4D4D415453  # "MMATS": the advisory lock key guarding migrations on PostgreSQL


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    return rev


def upgrade_to_head(url: str | URL | Engine, *, schema: str | None = None) -> str:
    """Bring the database at ``url`` to the newest revision (a no-op when already there); returns it."""
    from adapters.sql_engine import make_engine

    owned = not isinstance(url, Engine)
    engine = make_engine(url, schema=schema) if not isinstance(url, Engine) else url
    try:
        if engine.dialect.name == "postgresql" and schema is not None:
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        cfg = alembic_config()
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return head_revision()
    finally:
        if owned:
            engine.dispose()
