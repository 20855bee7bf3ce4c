"""State every node must see at once: kill switch, throttles, idempotency keys, daily loss counters.

Two implementations of ``mmats.ports.StateStore`` with the same observable behaviour:

- ``SqliteStateStore``: the embedded default. A SQLite file in WAL mode, so it survives a restart and
  needs no server; every read-modify-write runs inside ``BEGIN IMMEDIATE`` so processes on one machine
  (several Ray actors) serialise correctly, not only threads.
- ``RedisStateStore``: for a multi-node cluster, via ``MMATS_REDIS_URL``. ``SET NX PX`` for
  idempotency keys, a Lua script for compare-and-set, and an optimistic ``WATCH``/``MULTI`` loop for
  counters (see ``RedisStateStore.incr`` for why not ``INCRBYFLOAT``).

Values are JSON (canonical: sorted keys, compact), counters are exact ``Decimal`` strings. TTLs are in
seconds; a counter's TTL is set when the counter is created and not refreshed by later increments, which
is what a fixed window (a trading day, a throttle period) needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.secrets import redact
from adapters.sql_engine import begin_immediate
from mmats.errors import ConfigError, ValidationError
from mmats.model import Environment

__all__ = ["RedisStateStore", "SqliteStateStore", "default_home", "make_state_store"]

_ENV_KEY = "__mmats_environment__"


def default_home() -> Path:
    """``$MMATS_HOME`` or ``./var``: the one root under which every embedded file lives."""
    return Path(os.environ.get("MMATS_HOME") or "var")


def _dumps(key: str, value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"state key {key!r}: value is not JSON-serialisable ({exc})") from None


def _loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def _check_key(key: str) -> None:
    if not key or not isinstance(key, str):
        raise ValidationError(f"state key must be a non-empty string, got {key!r}")


def _check_ttl(ttl_s: float | None) -> None:
    if ttl_s is not None and not ttl_s > 0:
        raise ValidationError(f"ttl_s must be > 0 seconds or None, got {ttl_s!r}")


def _decimal(key: str, amount: int | Decimal) -> Decimal:
    if isinstance(amount, float | bool):
        raise ValidationError(f"counter {key!r}: amount must be int or Decimal (no float money), got {amount!r}")
    d = Decimal(amount)
    if not d.is_finite():
        raise ValidationError(f"counter {key!r}: amount must be finite, got {amount!r}")
    return d


def _parse_counter(key: str, raw: str | bytes | None) -> Decimal:
    if raw is None:
        return Decimal(0)
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"state key {key!r} holds {text[:40]!r}, not a counter") from None
    if not value.is_finite():
        raise ValidationError(f"state key {key!r} holds {text[:40]!r}, not a counter")
    return value


def _env_check(found: str | None, environment: Environment, where: str) -> None:
    if found is not None and found != environment.value:
        raise ConfigError(
            f"state store {where} belongs to the {found} environment; refusing to open it for "
            f"{environment.value} (PAPER and LIVE never share state)"
        )


class SqliteStateStore:
    """Embedded, durable state store in one SQLite file (WAL), safe across threads and local processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        environment: Environment = Environment.PAPER,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.environment = Environment(environment)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)"
            )
            c.execute("CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at)")
            row = c.execute("SELECT value FROM kv WHERE key = ?", (_ENV_KEY,)).fetchone()
            _env_check(None if row is None else _loads(row[0]), self.environment, str(self.path))
            if row is None:
                c.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (_ENV_KEY, _dumps(_ENV_KEY, environment.value)))

    def __repr__(self) -> str:
        return f"SqliteStateStore({str(self.path)!r}, environment={self.environment.value})"

    # -- connection handling -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("state store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # One connection per thread: sqlite3 connections are not thread-safe, and per-thread
            # connections make the file lock (not a Python lock) the arbiter, as it is across processes.
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        begin_immediate(conn, self._busy_timeout_s)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._conns_lock:
            for c in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            self._conns.clear()
        self._closed = True

    # -- helpers ---------------------------------------------------------------------------------------
    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self._clock() + ttl_s

    def _live_value(self, c: sqlite3.Connection, key: str) -> str | None:
        row = c.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value, expires_at = row
        if expires_at is not None and expires_at <= self._clock():
            c.execute("DELETE FROM kv WHERE key = ?", (key,))
            return None
        return str(value)

    def _put(self, c: sqlite3.Connection, key: str, text: str, expires_at: float | None) -> None:
        c.execute(
            "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (key, text, expires_at),
        )

    # -- StateStore ------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        _check_key(key)
        row = self._conn().execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return None
        return _loads(row[0])

    def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        _check_key(key)
        _check_ttl(ttl_s)
        text = _dumps(key, value)
        with self._tx() as c:
            self._put(c, key, text, self._expiry(ttl_s))

    def set_if_absent(self, key: str, value: Any, ttl_s: float | None = None) -> bool:
        _check_key(key)
        _check_ttl(ttl_s)
        text = _dumps(key, value)
        with self._tx() as c:
            if self._live_value(c, key) is not None:
                return False
            self._put(c, key, text, self._expiry(ttl_s))
            return True

    def compare_and_set(self, key: str, expected: Any, value: Any, ttl_s: float | None = None) -> bool:
        _check_key(key)
        _check_ttl(ttl_s)
        want = None if expected is None else _dumps(key, expected)
        text = _dumps(key, value)
        with self._tx() as c:
            current = self._live_value(c, key)
            if current != want:
                return False
            self._put(c, key, text, self._expiry(ttl_s))
            return True

    def incr(self, key: str, amount: int | Decimal = 1, ttl_s: float | None = None) -> Decimal:
        _check_key(key)
        _check_ttl(ttl_s)
        delta = _decimal(key, amount)
        with self._tx() as c:
            row = c.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None or (row[1] is not None and row[1] <= self._clock()):
                new, expires_at = delta, self._expiry(ttl_s)
            else:
                new, expires_at = _parse_counter(key, row[0]) + delta, row[1]
            self._put(c, key, str(new), expires_at)
            return new

    def counter(self, key: str) -> Decimal:
        _check_key(key)
        row = self._conn().execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return Decimal(0)
        return _parse_counter(key, row[0])

    def delete(self, key: str) -> bool:
        _check_key(key)
        with self._tx() as c:
            live = self._live_value(c, key) is not None
            c.execute("DELETE FROM kv WHERE key = ?", (key,))
            return live

    def keys(self, prefix: str = "") -> list[str]:
        rows = self._conn().execute(
            "SELECT key FROM kv WHERE substr(key, 1, ?) = ? AND (expires_at IS NULL OR expires_at > ?) "
            "AND key != ? ORDER BY key",
            (len(prefix), prefix, self._clock(), _ENV_KEY),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def purge_expired(self) -> int:
        """Drop expired rows; reads already ignore them, this only reclaims space."""
        with self._tx() as c:
            cur = c.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (self._clock(),))
            return int(cur.rowcount)


_CAS_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
else
  if cur ~= ARGV[2] then return 0 end
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""


class RedisStateStore:
    """Redis-backed state store; every key lives under ``prefix`` so environments and test runs never mix."""

    def __init__(
        self,
        url: str,
        *,
        environment: Environment = Environment.PAPER,
        prefix: str | None = None,
        client: Any = None,
    ) -> None:
        import redis

        self.environment = Environment(environment)
        self.prefix = prefix if prefix is not None else f"mmats:{self.environment.value.lower()}:"
        self._url_masked = redact(url)
        try:
            self._r = client if client is not None else redis.Redis.from_url(url, decode_responses=True)
        except ValueError as exc:
            raise ConfigError(f"MMATS_REDIS_URL {self._url_masked!r} is invalid: {redact(str(exc))}") from None
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot reach Redis at {self._url_masked}: {redact(str(exc))}") from None
        self._cas = self._r.register_script(_CAS_SCRIPT)
        env_key = self.prefix + _ENV_KEY
        self._r.set(env_key, self.environment.value, nx=True)
        found = self._r.get(env_key)
        where = f"{self._url_masked} prefix {self.prefix!r}"
        _env_check(None if found is None else str(found), self.environment, where)

    def __repr__(self) -> str:
        return f"RedisStateStore({self._url_masked!r}, prefix={self.prefix!r}, environment={self.environment.value})"

    def close(self) -> None:
        self._r.close()

    @staticmethod
    def _px(ttl_s: float | None) -> int | None:
        return None if ttl_s is None else max(1, round(ttl_s * 1000))

    def get(self, key: str) -> Any:
        _check_key(key)
        return _loads(self._r.get(self.prefix + key))

    def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        _check_key(key)
        _check_ttl(ttl_s)
        self._r.set(self.prefix + key, _dumps(key, value), px=self._px(ttl_s))

    def set_if_absent(self, key: str, value: Any, ttl_s: float | None = None) -> bool:
        _check_key(key)
        _check_ttl(ttl_s)
        return bool(self._r.set(self.prefix + key, _dumps(key, value), nx=True, px=self._px(ttl_s)))

    def compare_and_set(self, key: str, expected: Any, value: Any, ttl_s: float | None = None) -> bool:
        _check_key(key)
        _check_ttl(ttl_s)
        px = self._px(ttl_s)
        args = ["0" if expected is None else "1", "" if expected is None else _dumps(key, expected),
                _dumps(key, value), "" if px is None else str(px)]
        return bool(self._cas(keys=[self.prefix + key], args=args))

    def incr(self, key: str, amount: int | Decimal = 1, ttl_s: float | None = None) -> Decimal:
        """Exact Decimal increment with an optimistic ``WATCH``/``MULTI`` retry loop.

        ``INCRBYFLOAT`` computes in long double and prints 17 decimals: a thousand ``-0.07`` steps from
        123456.78 leave 123386.78999999999971493, and a daily-loss limit must not drift like that.
        """
        import redis

        _check_key(key)
        _check_ttl(ttl_s)
        delta = _decimal(key, amount)
        full = self.prefix + key
        px = self._px(ttl_s)
        while True:
            with self._r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(full)
                    raw = pipe.get(full)
                    new = _parse_counter(key, raw) + delta
                    pipe.multi()
                    if raw is None:
                        pipe.set(full, str(new), px=px)
                    else:
                        pipe.set(full, str(new), keepttl=True)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    def counter(self, key: str) -> Decimal:
        _check_key(key)
        return _parse_counter(key, self._r.get(self.prefix + key))

    def delete(self, key: str) -> bool:
        _check_key(key)
        return bool(self._r.delete(self.prefix + key))

    def keys(self, prefix: str = "") -> list[str]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix + prefix) + "*"
        n = len(self.prefix)
        found = {k[n:] for k in self._r.scan_iter(match=pattern, count=500)}
        found.discard(_ENV_KEY)
        return sorted(found)


def make_state_store(
    url: str | None,
    home: str | os.PathLike[str] | None = None,
    *,
    environment: Environment = Environment.PAPER,
    prefix: str | None = None,
) -> SqliteStateStore | RedisStateStore:
    """Pick the state store from a URL: ``redis://``/``rediss://``/``unix://`` -> Redis, ``sqlite:///path``
    -> that file, ``None`` -> ``$MMATS_REDIS_URL`` if set, else ``<home>/<env>/state.db``.

    The environment is part of the default file name and Redis prefix, and is checked at open, so a PAPER
    process pointed at LIVE state fails loudly instead of sharing kill-switch or idempotency keys.
    """
    environment = Environment(environment)
    if url is None:
        url = os.environ.get("MMATS_REDIS_URL") or None
    if url is None:
        root = Path(home) if home is not None else default_home()
        return SqliteStateStore(root / environment.value.lower() / "state.db", environment=environment)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisStateStore(url, environment=environment, prefix=prefix)
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path:
            raise ConfigError(f"state store URL {redact(url)!r}: sqlite needs a file path (sqlite:///path/state.db)")
        return SqliteStateStore(path, environment=environment)
    raise ConfigError(
        f"state store URL scheme {scheme or '(none)'!r} is not supported; use redis://, rediss://, unix:// or sqlite:///"
    )
