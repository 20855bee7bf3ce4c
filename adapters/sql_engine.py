"""Turn a database URL into a correctly configured SQLAlchemy engine, or a ConfigError that says why.

SQLite gets WAL (readers never block the writer), a busy timeout, and ``BEGIN IMMEDIATE`` for write
transactions: pysqlite's default defers BEGIN until the first write, so a read-then-write transaction
could interleave with another process and the "one transaction" promise of the store would be hollow.
PostgreSQL URLs are pinned to psycopg 3 (the driver we ship) and may be confined to one schema, which
is how tests and several MMATS environments share one server without seeing each other.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from adapters.secrets import redact
from mmats.errors import ConfigError

__all__ = ["READONLY", "begin_immediate", "make_engine", "mask_url", "normalise_url", "sqlite_url"]

# Execution option: ``conn.execution_options(**READONLY)`` opens a plain (deferred) SQLite transaction.
READONLY = {"mmats_readonly": True}

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SUPPORTED = ("sqlite", "postgresql")


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***, safe for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return redact(url)


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(path)}"


def normalise_url(url: str) -> URL:
    """Parse and validate; ``postgresql://`` means psycopg 3, unknown schemes are a ConfigError."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {redact(url)!r} is not a valid URL "
                          "(expected sqlite:///path or postgresql+psycopg://user@host/db)") from None
    backend = u.get_backend_name()
    if backend not in _SUPPORTED:
        raise ConfigError(
            f"database URL scheme {u.drivername!r} is not supported; use sqlite:///path/mmats.db or "
            f"postgresql+psycopg://user@host:5432/db ({mask_url(u)})"
        )
    driver = u.drivername.partition("+")[2]
    allowed = {"postgresql": ("", "psycopg", "psycopg2"), "sqlite": ("", "pysqlite")}[backend]
    if driver not in allowed:
        raise ConfigError(f"database URL driver {u.drivername!r} is not supported; use "
                          f"{'postgresql+psycopg' if backend == 'postgresql' else 'sqlite'}:// ({mask_url(u)})")
    if backend == "postgresql":
        u = u.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    if backend == "sqlite" and u.database in (None, "", ":memory:"):
        raise ConfigError(f"database URL {mask_url(u)!r}: an in-memory SQLite database is not durable; give a file")
    return u


def make_engine(url: str | URL, *, schema: str | None = None, echo: bool = False) -> Engine:
    u = normalise_url(url) if isinstance(url, str) else url
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if u.get_backend_name() == "sqlite":
        assert u.database is not None
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        if schema is not None:
            raise ConfigError("a database schema is a PostgreSQL feature; SQLite uses one file per store")
        engine = create_engine(u, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _sqlite_events(engine)
        return engine
    if schema is not None:
        if not _SCHEMA_RE.match(schema):
            raise ConfigError(f"database schema {schema!r} must match {_SCHEMA_RE.pattern}")
        kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
    kwargs["pool_pre_ping"] = True
    if os.environ.get("MMATS_DB_NULLPOOL"):
        kwargs["poolclass"] = NullPool
    return create_engine(u, **kwargs)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("mmats_readonly", False):
            conn.exec_driver_sql("BEGIN")
        else:
            begin_immediate(conn.connection.driver_connection)


def begin_immediate(raw: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Take the write lock, polling every millisecond at most.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between tries, so with three processes
    committing a few hundred times a second (router, gatekeeper, portfolio) a writer could sleep tens of
    milliseconds for a lock held for one; the kill switch's path waits for such writers. Statements
    inside the transaction keep the normal busy timeout."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + wait_s
        pause = 0.0001
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.001)
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
