"""The StateStore contract, run against the embedded SQLite store and the real Redis on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.secrets import redact
from adapters.state_store import RedisStateStore, SqliteStateStore, make_state_store
from mmats.errors import ConfigError, ValidationError
from mmats.model import Environment
from mmats.ports import StateStore
from mmats.risk.killswitch import KillSwitch
from tests.conftest import require

REDIS_URL = os.environ.get("MMATS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

Factory = Callable[..., StateStore]


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.services)])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory opening (and re-opening) one store; every test gets its own file or key prefix."""
    opened: list[StateStore] = []
    if request.param == "redis":
        require(_redis_up(), f"Redis not reachable at {redact(REDIS_URL)} (start it, or set MMATS_TEST_REDIS_URL)")
        prefix = f"mmats-test:{uuid.uuid4().hex[:12]}:"

        def factory(environment: Environment = Environment.PAPER) -> StateStore:
            s = RedisStateStore(REDIS_URL, environment=environment, prefix=prefix)
            opened.append(s)
            return s
    else:
        path = tmp_path / "state.db"

        def factory(environment: Environment = Environment.PAPER) -> StateStore:
            s = SqliteStateStore(path, environment=environment)
            opened.append(s)
            return s

    yield factory
    if request.param == "redis":
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{prefix}*"))
        if keys:
            r.delete(*keys)
        r.close()
    for s in opened:
        s.close()


def test_json_values_round_trip_and_survive_reopen(make: Factory) -> None:
    s = make()
    assert isinstance(s, StateStore)
    kill = {"state": "HARD", "reason": "drawdown 12% > 10%", "by": "operator",
            "since": "2024-05-01T12:00:00Z", "scope": ["crypto", "BTC/USDT"], "armed": True,
            "limits": {"max_dd": 0.1, "note": None}, "unicode": "stop ⛔"}
    assert s.get("kill_switch") is None
    s.set("kill_switch", kill)
    assert s.get("kill_switch") == kill
    s.set("kill_switch", {"state": "NONE"})
    assert s.get("kill_switch") == {"state": "NONE"}
    assert make().get("kill_switch") == {"state": "NONE"}  # another process/node sees it
    ks = KillSwitch()
    ks.engage("SOFT", "daily_loss", "daily loss 3.1% > 3%", 1_700_000_000_000_000_000)
    s.set("kill_switch", ks.to_dict())
    restored = KillSwitch.from_dict(make().get("kill_switch"))
    assert (restored.state, restored.trigger, restored.reason, restored.since_ns) == (
        ks.state, ks.trigger, ks.reason, ks.since_ns)
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        s.set("bad", {"qty": Decimal("1.5")})
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        s.set("bad", float("nan"))


def test_set_if_absent_ttl_and_delete(make: Factory) -> None:
    s = make()
    assert s.set_if_absent("idem:order-1", {"by": "a"}) is True
    assert s.set_if_absent("idem:order-1", {"by": "b"}) is False
    assert s.get("idem:order-1") == {"by": "a"}
    assert s.set_if_absent("throttle:BTC", 1, ttl_s=0.2) is True
    assert s.set_if_absent("throttle:BTC", 2, ttl_s=0.2) is False
    time.sleep(0.3)
    assert s.get("throttle:BTC") is None
    assert s.set_if_absent("throttle:BTC", 3, ttl_s=5) is True  # an expired key can be claimed again
    assert s.delete("idem:order-1") is True
    assert s.delete("idem:order-1") is False
    with pytest.raises(ValidationError, match="ttl_s"):
        s.set("x", 1, ttl_s=0)


def test_set_if_absent_has_exactly_one_winner_under_concurrency(make: Factory) -> None:
    stores = [make() for _ in range(4)]  # several clients, as several actors/nodes would have
    keys = [f"idem:sig-{i}" for i in range(25)]
    barrier = threading.Barrier(8)

    def claim(worker: int) -> list[str]:
        barrier.wait()
        store = stores[worker % len(stores)]
        return [k for k in keys if store.set_if_absent(k, {"worker": worker}, ttl_s=60)]

    with ThreadPoolExecutor(8) as pool:
        wins = [k for got in pool.map(claim, range(8)) for k in got]
    assert sorted(wins) == sorted(keys)  # every key claimed exactly once
    assert all(isinstance(stores[0].get(k)["worker"], int) for k in keys)


def test_compare_and_set(make: Factory) -> None:
    s = make()
    assert s.compare_and_set("mode", None, {"mode": "advisory"}) is True
    assert s.compare_and_set("mode", None, {"mode": "operator"}) is False
    assert s.compare_and_set("mode", {"mode": "operator"}, {"mode": "x"}) is False
    assert s.compare_and_set("mode", {"mode": "advisory"}, {"mode": "operator"}, ttl_s=0.2) is True
    assert s.get("mode") == {"mode": "operator"}
    time.sleep(0.3)
    assert s.get("mode") is None


def test_counters_are_exact_decimals(make: Factory) -> None:
    s = make()
    assert s.counter("loss:2024-05-01") == 0
    s.incr("loss:2024-05-01", Decimal("123456.78"))
    for _ in range(200):
        s.incr("loss:2024-05-01", Decimal("-0.07"))
    assert s.counter("loss:2024-05-01") == Decimal("123442.78")  # INCRBYFLOAT would drift here
    assert s.incr("orders:today") == 1
    assert s.incr("orders:today", 2) == 3
    with pytest.raises(ValidationError, match="no float money"):
        s.incr("loss:2024-05-01", 0.1)  # type: ignore[arg-type]
    s.set("not-a-counter", {"a": 1})
    with pytest.raises(ValidationError, match="not a counter"):
        s.incr("not-a-counter")


def test_counter_expiry_is_a_fixed_window(make: Factory) -> None:
    s = make()
    s.incr("throttle:orders", 1, ttl_s=0.4)
    time.sleep(0.2)
    assert s.incr("throttle:orders", 1, ttl_s=0.4) == 2  # later increments do not extend the window
    time.sleep(0.3)
    assert s.counter("throttle:orders") == 0
    assert s.incr("throttle:orders", 1, ttl_s=0.4) == 1


def test_concurrent_increments_lose_nothing(make: Factory) -> None:
    stores = [make() for _ in range(4)]

    def work(i: int) -> None:
        for _ in range(25):
            stores[i % 4].incr("loss:day", Decimal("0.01"))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert stores[0].counter("loss:day") == Decimal("1.00")


def test_keys_by_prefix(make: Factory) -> None:
    s = make()
    s.set("idem:a", 1)
    s.set("idem:b", 2)
    s.set("idem:gone", 3, ttl_s=0.1)
    s.incr("loss:x")
    s.set("weird*[key]?", 1)
    time.sleep(0.2)
    assert s.keys("idem:") == ["idem:a", "idem:b"]
    assert s.keys("weird*") == ["weird*[key]?"]
    assert s.keys() == ["idem:a", "idem:b", "loss:x", "weird*[key]?"]


def test_paper_state_refuses_to_open_as_live(make: Factory) -> None:
    make(Environment.PAPER).set("kill_switch", {"state": "NONE"})
    with pytest.raises(ConfigError, match="belongs to the PAPER environment"):
        make(Environment.LIVE)


def test_factory_defaults_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMATS_REDIS_URL", raising=False)
    paper = make_state_store(None, tmp_path)
    live = make_state_store(None, tmp_path, environment=Environment.LIVE)
    try:
        assert isinstance(paper, SqliteStateStore) and paper.path == tmp_path / "paper" / "state.db"
        assert isinstance(live, SqliteStateStore) and live.path == tmp_path / "live" / "state.db"
        paper.set("k", 1)
        assert live.get("k") is None
    finally:
        paper.close()
        live.close()
    explicit = make_state_store(f"sqlite:///{tmp_path}/x/state.db", tmp_path)
    assert isinstance(explicit, SqliteStateStore)
    explicit.close()
    with pytest.raises(ConfigError, match="'memcached' is not supported"):
        make_state_store("memcached://127.0.0.1:11211", tmp_path)


@pytest.mark.services
def test_redis_factory_and_password_never_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require(_redis_up(), f"Redis not reachable at {redact(REDIS_URL)}")
    monkeypatch.setenv("MMATS_REDIS_URL", REDIS_URL)
    prefix = f"mmats-test:{uuid.uuid4().hex[:12]}:"
    s = make_state_store(None, tmp_path, prefix=prefix)
    try:
        assert isinstance(s, RedisStateStore) and s.prefix == prefix
    finally:
        s.delete("__mmats_environment__")
        s.close()
    # the local Redis has no password (redis-py tolerates sending one): the store opens, never shows it
    s = RedisStateStore("redis://:Sup3rSecretPw@127.0.0.1:6379/0", prefix=prefix)
    try:
        assert "Sup3rSecretPw" not in repr(s) and "***" in repr(s)
    finally:
        s.delete("__mmats_environment__")
        s.close()
    with pytest.raises(ConfigError, match="cannot reach Redis") as exc:
        RedisStateStore("redis://:Sup3rSecretPw@127.0.0.1:1/0", prefix=prefix)
    assert "Sup3rSecretPw" not in str(exc.value)
