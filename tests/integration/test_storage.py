"""The Storage contract, run against the embedded SQLite file and the real PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from adapters.migrations import current_revision, head_revision, upgrade_to_head
from adapters.sql_engine import make_engine, mask_url
from adapters.sql_schema import metadata
from adapters.sql_store import SqlJournal, SqlStorage, make_storage
from mmats.audit import AuditRecord, chain_record, verify_records
from mmats.errors import ConfigError
from mmats.model import (
    AccountState,
    Environment,
    Fill,
    Instrument,
    MarketType,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionSnapshot,
    Side,
    SignalAction,
    TradeSignal,
)
from mmats.ports import StorageConflict, StrategyRecord
from mmats.risk.decision import DecisionStatus, OrderIntent, RiskDecision, RiskReason
from mmats.risk.killswitch import KillSwitch
from tests.conftest import require

PG_URL = os.environ.get("MMATS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = {"mmats_meta", "orders", "fills", "positions", "signals", "risk_decisions", "audit",
          "equity_snapshots", "strategies", "config_versions", "alembic_version"}

Open = Callable[..., SqlStorage]


def _pg_up() -> bool:
    try:
        engine = make_engine(PG_URL)
        with engine.connect() as c:
            c.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


class Target:
    """Where one test's database lives: a SQLite file, or a throw-away PostgreSQL schema."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.schema = f"mmats_test_{uuid.uuid4().hex[:10]}" if kind == "postgres" else None
        self.url = PG_URL if kind == "postgres" else f"sqlite:///{tmp_path / 'mmats.db'}"
        self.opened: list[SqlStorage] = []

    def open(self, environment: Environment = Environment.PAPER) -> SqlStorage:
        s = SqlStorage(self.url, environment=environment, schema=self.schema)
        self.opened.append(s)
        return s

    def engine(self) -> Any:
        return make_engine(self.url, schema=self.schema)

    def cleanup(self) -> None:
        for s in self.opened:
            s.close()
        if self.schema:
            engine = make_engine(PG_URL)
            with engine.begin() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "postgres":
        require(_pg_up(), f"PostgreSQL not reachable at {mask_url(PG_URL)} (start it, or set MMATS_TEST_DATABASE_URL)")
    tg = Target(request.param, tmp_path)
    yield tg
    tg.cleanup()


@pytest.fixture
def store(target: Target) -> SqlStorage:
    return target.open()


def _order(coid: str = "s1-sig1", **kw: Any) -> Order:
    base: dict[str, Any] = {"client_order_id": coid, "symbol": "BTC/USDT", "side": Side.BUY,
                            "quantity": Decimal("0.123456"), "order_type": OrderType.LIMIT,
                            "price": Decimal("64000.10"), "strategy_id": "s1", "signal_id": "sig1",
                            "created_ns": 1_700_000_000_000_000_000, "updated_ns": 1_700_000_000_000_000_000}
    base.update(kw)
    return Order(**base)


def _fill(coid: str = "s1-sig1", fill_id: str = "f1", qty: str = "0.123456") -> Fill:
    return Fill(coid, "BTC/USDT", Side.BUY, Decimal(qty), Decimal("64000.10"), Decimal("0.0000123456"),
                1_700_000_000_500_000_000, strategy_id="s1", fill_id=fill_id)


def _position(qty: str = "0.123456") -> Position:
    return Position("BTC/USDT", MarketType.CRYPTO, Decimal(qty), Decimal("64000.10"), Decimal(0),
                    Decimal("0.0000123456"), 1_700_000_000_500_000_000, Decimal("64000.10"), "s1")


# -- migrations ---------------------------------------------------------------------------------------
def test_migrations_create_the_schema_and_are_idempotent(target: Target) -> None:
    engine = target.engine()
    try:
        assert upgrade_to_head(engine, schema=target.schema) == head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert current_revision(engine) == head_revision()
        assert upgrade_to_head(engine, schema=target.schema) == head_revision()  # second run: no-op
        assert current_revision(engine) == head_revision()
        with engine.connect() as c:  # the hand-written migration and the models agree
            assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata) == []
        s = target.open()  # opening a store on a migrated database is fine, and migrates nothing
        assert s.get_order("nope") is None
    finally:
        engine.dispose()


# -- orders, fills, positions -------------------------------------------------------------------------
def test_order_fill_and_position_commit_together(store: SqlStorage) -> None:
    order = _order()
    store.save_order(order)
    assert store.open_orders() == [order]
    order.status = OrderStatus.FILLED
    order.filled_quantity = order.quantity
    order.avg_fill_price = Decimal("64000.10")
    assert store.record_fill(_fill(), _position(), order) is True
    assert store.get_order(order.client_order_id) == order
    assert store.open_orders() == []
    assert store.list_fills(client_order_id=order.client_order_id) == [_fill()]
    assert store.get_position("BTC/USDT", "s1") == _position()
    # a replayed fill (recovery after a crash) changes nothing
    assert store.record_fill(_fill(), _position("9"), order) is False
    assert store.get_position("BTC/USDT", "s1") == _position()
    assert len(store.list_fills()) == 1
    # fills without a venue id are all kept
    assert store.record_fill(replace(_fill(), fill_id=""), _position("0.2")) is True
    assert store.record_fill(replace(_fill(), fill_id=""), _position("0.3")) is True
    assert [f.fill_id for f in store.list_fills()] == ["f1", "", ""]
    assert store.get_position("BTC/USDT", "s1") == _position("0.3")


def test_a_batch_of_fills_commits_with_its_positions_and_orders_or_not_at_all(
    store: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _order("s1-a"), _order("s1-b", side=Side.SELL)
    store.save_orders([a, b])
    assert {o.client_order_id for o in store.open_orders()} == {"s1-a", "s1-b"}
    filled = [replace(a, status=OrderStatus.FILLED, filled_quantity=a.quantity),
              replace(b, status=OrderStatus.FILLED, filled_quantity=b.quantity)]
    fills = [_fill("s1-a", "fa"), _fill("s1-b", "fb")]

    def boom(*_: Any) -> None:
        raise RuntimeError("disk full")

    real = store._upsert_many
    monkeypatch.setattr(store, "_upsert_many",
                        lambda c, table, rows, keys: boom() if table.name == "orders" else real(c, table, rows, keys))
    with pytest.raises(RuntimeError, match="disk full"):
        store.record_fills(fills, [_position("0")], filled)
    monkeypatch.undo()
    assert store.list_fills() == [] and store.get_position("BTC/USDT", "s1") is None
    assert len(store.open_orders()) == 2
    assert store.record_fills(fills, [_position("0")], filled) == 2
    assert [f.fill_id for f in store.list_fills()] == ["fa", "fb"] and store.open_orders() == []
    assert store.get_position("BTC/USDT", "s1") == _position("0")
    # a replayed batch (a restarted router re-reporting) stores nothing twice
    assert store.record_fills([*fills, _fill("s1-a", "fc")], [_position("0.5")], filled) == 1
    assert [f.fill_id for f in store.list_fills()] == ["fa", "fb", "fc"]
    assert store.get_position("BTC/USDT", "s1") == _position("0.5")


def test_duplicate_fill_from_concurrent_writers_is_stored_once(target: Target) -> None:
    stores = [target.open() for _ in range(3)]  # three processes' worth of connections
    barrier = threading.Barrier(6)

    def record(i: int) -> bool:
        barrier.wait()
        return stores[i % 3].record_fill(_fill(), _position())

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(record, range(6)))
    assert results.count(True) == 1
    assert len(stores[0].list_fills()) == 1


def test_failure_mid_transaction_leaves_neither_fill_nor_position(
    store: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = _order()
    store.save_order(order)
    store.save_position(_position("0.5"))
    filled = replace(order, status=OrderStatus.FILLED, filled_quantity=order.quantity)

    def boom(*_: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_write_order", boom)  # fill and position already written in this tx
    with pytest.raises(RuntimeError, match="disk full"):
        store.record_fill(_fill(), _position("0.623456"), filled)
    monkeypatch.undo()
    assert store.list_fills() == []
    assert store.get_position("BTC/USDT", "s1") == _position("0.5")
    assert store.get_order(order.client_order_id) == order
    assert store.record_fill(_fill(), _position("0.623456"), filled) is True  # retry succeeds


def test_decimal_values_round_trip_exactly(store: SqlStorage) -> None:
    awkward = [Decimal("0.1"), Decimal("0.10"), Decimal("0.000000000000000001"), Decimal("123456789012345.123456789"),
               Decimal("1E-8"), Decimal("99999999999999999999.99999999")]
    for i, q in enumerate(awkward):
        store.save_order(_order(f"o{i}", quantity=q, price=q + 1, avg_fill_price=q))
    for i, q in enumerate(awkward):
        got = store.get_order(f"o{i}")
        assert got is not None
        assert got.quantity == q and got.price == q + 1 and got.avg_fill_price == q
        assert str(got.quantity) == str(q)  # same scale, not merely equal
    pos = Position("EUR/USD", MarketType.FOREX, Decimal("-100000"), Decimal("1.08765"), Decimal("-12.34567"),
                   Decimal("0.7"), 1, Decimal("1.08766"))
    store.save_position(pos)
    assert store.get_position("EUR/USD") == pos
    assert str(store.list_positions()[0].realized_pnl) == "-12.34567"
    with pytest.raises(StatementError, match="money column needs Decimal"):
        store.save_position(replace(pos, last_price=1.1))  # type: ignore[arg-type]


def test_positions_listing_skips_flat_unless_asked(store: SqlStorage) -> None:
    store.save_position(_position())
    store.save_position(Position("ETH/USDT", MarketType.CRYPTO, strategy_id="s1"))
    assert [p.symbol for p in store.list_positions()] == ["BTC/USDT"]
    assert [p.symbol for p in store.list_positions(include_flat=True)] == ["BTC/USDT", "ETH/USDT"]


# -- signals, decisions, equity, registry, config ------------------------------------------------------
def test_signals_and_risk_decisions(store: SqlStorage) -> None:
    sig = TradeSignal(SignalAction.BUY, "BTC/USDT", 0.5, stop_loss=60000.0, confidence=0.8,
                      reasoning="fast SMA crossed", metadata={"sma_fast": 64010.5, "tags": ["x"]},
                      strategy_id="s1", signal_id="sig1")
    store.save_signal(sig, 10)
    store.save_signal(replace(sig, strategy_id="s2", signal_id="sig2"), 20)
    recs = store.list_signals()
    assert [r.signal for r in recs] == [sig, replace(sig, strategy_id="s2", signal_id="sig2")]
    assert store.list_signals(strategy_id="s2")[0].ts_ns == 20
    assert [r.ts_ns for r in store.list_signals(last=1)] == [20]
    assert [r.ts_ns for r in store.list_signals(limit=1)] == [10]
    assert recs[0].to_dict()["time"] == "1970-01-01T00:00:00Z" or recs[0].to_dict()["action"] == "BUY"
    inst = Instrument("BTC/USDT", MarketType.CRYPTO, "USDT", 2, 6, Decimal("0.000001"), Decimal(5))
    intent = OrderIntent("s1", "sig1", inst, Side.BUY, Decimal("0.5"), Decimal("64000.10"), 10)
    dec = RiskDecision(DecisionStatus.RESIZED, intent, Decimal("0.25"),
                       (RiskReason("MaxPositionPct", 0.1, 0.2, "position above 10%"),))
    store.save_risk_decision(dec, 11)
    [d] = store.list_risk_decisions(strategy_id="s1")
    assert store.list_risk_decisions(last=5) == [d]
    assert (d.ts_ns, d.status, d.symbol) == (11, "RESIZED", "BTC/USDT")
    assert d.payload == dec.to_dict() and d.to_dict()["quantity"] == "0.25"


def test_equity_snapshots(store: SqlStorage) -> None:
    pos = PositionSnapshot("BTC/USDT", MarketType.CRYPTO, Decimal("0.1"), Decimal("60000"), Decimal("61000.5"),
                           Decimal("100.05"), Decimal("0"))
    for i in range(3):
        store.save_equity_snapshot(AccountState(i, "USDT", Decimal("10000.12345678"), Decimal(10100 + i), (pos,),
                                                peak_equity=Decimal(10102), gross_exposure=Decimal("6100.05")))
    snaps = store.equity_snapshots()
    assert [s.equity for s in snaps] == [Decimal(10100), Decimal(10101), Decimal(10102)]
    assert snaps[0].positions == (pos,) and snaps[0].cash == Decimal("10000.12345678")
    assert [s.ts_ns for s in store.equity_snapshots(limit=2)] == [1, 2]
    assert [s.ts_ns for s in store.equity_snapshots(since_ns=2)] == [2]


def test_strategy_registry_versions(store: SqlStorage) -> None:
    rec = store.save_strategy(StrategyRecord("sma-btc", "strategies/sma_cross.py:SmaCross",
                                             {"fast": 10, "slow": 30, "symbol": "BTC/USDT"}))
    assert rec.version == 1 and store.get_strategy("sma-btc") == rec
    off = store.save_strategy(replace(rec, enabled=False))
    assert off.version == 2 and not off.enabled
    with pytest.raises(StorageConflict, match="stored version is 2"):
        store.save_strategy(replace(rec, params={"fast": 5}))  # based on a stale read
    store.save_strategy(StrategyRecord("rsi-eth", "rsi_reversion", {}))
    assert [r.strategy_id for r in store.list_strategies()] == ["rsi-eth", "sma-btc"]
    assert [r.strategy_id for r in store.list_strategies(enabled_only=True)] == ["rsi-eth"]
    assert store.delete_strategy("rsi-eth") and not store.delete_strategy("rsi-eth")
    spec = {"symbols": ["BTC/USDT"], "market": "crypto", "allocation": 0.5, "timeframe": "5m", "origin": "runtime"}
    full = store.save_strategy(replace(off, spec=spec))
    assert store.get_strategy("sma-btc") == full and full.spec == spec and full.version == 3


def test_signals_and_decisions_land_with_their_audit_records_in_one_commit(store: SqlStorage) -> None:
    """The gatekeeper's batch: chain records and the queryable rows together, or neither."""
    from adapters.sql_store import SqlJournal

    journal = SqlJournal(store)
    sig = TradeSignal(SignalAction.BUY, "BTC/USDT", 0.5, strategy_id="s1", signal_id="a1")
    inst = Instrument("BTC/USDT", MarketType.CRYPTO, "USDT", 2, 6, Decimal("0.000001"), Decimal(5))
    dec = RiskDecision(DecisionStatus.APPROVED, OrderIntent("s1", "a1", inst, Side.BUY, Decimal("0.5"),
                                                             Decimal("64000.10"), 10), Decimal("0.5"), ())
    rows = {"signals": [store.signal_row(sig, 10)], "risk_decisions": [store.decision_row(dec, 10)]}
    journal.append_many([("signal", {"signal_id": "a1"}, 10), ("risk_decision", dec.to_dict(), 10)], rows)
    assert [r.signal for r in store.list_signals()] == [sig]
    assert store.list_risk_decisions()[0].payload == dec.to_dict()
    before = store.audit_count()
    bad = {"signals": [{**store.signal_row(sig, 11), "action": None}]}  # violates NOT NULL
    with pytest.raises(IntegrityError):
        journal.append_many([("signal", {"signal_id": "a2"}, 11)], bad)
    assert store.audit_count() == before and len(store.list_signals()) == 1  # nothing half-written


def test_the_routers_batch_lands_with_its_audit_records_in_one_commit(
    store: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fills, their positions and orders, and the chain records of the batch: together, or none of it;
    a fill already stored (a restarted router re-reporting) is still journaled and stored once."""
    from adapters.sql_store import SqlJournal, TradeState

    journal = SqlJournal(store)
    a = _order("s1-a")
    filled = replace(a, status=OrderStatus.FILLED, filled_quantity=a.quantity)
    fill = _fill("s1-a", "fa")
    items = [("order", filled.to_dict(), 10), ("fill", fill.to_dict(), fill.ts_ns)]
    real = store._upsert_many

    def failing(c: Any, table: Any, rows: Any, keys: Any) -> None:
        if table.name == "positions":
            raise RuntimeError("disk full")
        real(c, table, rows, keys)

    monkeypatch.setattr(store, "_upsert_many", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        journal.append_many(items, state=TradeState([fill], [_position("0")], [filled]))
    monkeypatch.undo()
    assert store.audit_count() == 0 and store.list_fills() == [] and store.list_orders() == []
    journal = SqlJournal(store)  # what a restarted process sees: the tail as stored
    journal.append_many(items, state=TradeState([fill], [_position("0")], [filled]))
    assert store.audit_count() == 2 and [f.fill_id for f in store.list_fills()] == ["fa"]
    assert store.get_order("s1-a") == filled and store.get_position("BTC/USDT", "s1") == _position("0")
    # The same fill again, with a new one: the chain records both, the table gains only the new fill.
    again = [fill, _fill("s1-a", "fb")]
    journal.append_many([("fill", f.to_dict(), f.ts_ns) for f in again],
                        state=TradeState(again, [_position("0.5")], [filled]))
    assert store.audit_count() == 4 and [f.fill_id for f in store.list_fills()] == ["fa", "fb"]
    assert store.get_position("BTC/USDT", "s1") == _position("0.5") and store.verify_audit().ok


def test_config_versions_and_rollback_reads(store: SqlStorage) -> None:
    v1 = store.save_config_version({"risk": {"max_dd": 0.1}}, "alice", "initial")
    v2 = store.save_config_version({"risk": {"max_dd": 0.2}}, "bob", "loosen")
    assert (v1.version, v2.version) == (1, 2)
    assert store.get_config_version() == v2
    old = store.get_config_version(1)
    assert old is not None and old.content == {"risk": {"max_dd": 0.1}} and old.author == "alice"
    v3 = store.save_config_version(old.content, "alice", "rollback to v1")  # a rollback is a new version
    assert [v.version for v in store.list_config_versions()] == [1, 2, 3]
    assert v3.content == v1.content
    with pytest.raises(ConfigError, match="author"):
        store.save_config_version({}, "")


# -- PAPER / LIVE, URLs, defaults ---------------------------------------------------------------------
def test_paper_store_refuses_a_live_database(target: Target) -> None:
    target.open(Environment.LIVE).save_order(_order())
    with pytest.raises(ConfigError, match="belongs to the LIVE environment; refusing to open it for PAPER"):
        target.open(Environment.PAPER)
    assert target.open(Environment.LIVE).get_order("s1-sig1") is not None


def test_default_paths_separate_environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMATS_DATABASE_URL", raising=False)
    paper = make_storage(Environment.PAPER, home=tmp_path)
    live = make_storage(Environment.LIVE, home=tmp_path)
    try:
        assert (tmp_path / "paper" / "mmats.db").is_file() and (tmp_path / "live" / "mmats.db").is_file()
        paper.save_order(_order())
        assert live.get_order("s1-sig1") is None
    finally:
        paper.close()
        live.close()
    monkeypatch.setenv("MMATS_HOME", str(tmp_path / "home"))
    s = make_storage(Environment.PAPER)
    s.close()
    assert (tmp_path / "home" / "paper" / "mmats.db").is_file()


def test_bad_urls_are_clear_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scheme 'mysql' is not supported"):
        SqlStorage("mysql://root:hunter22@localhost/db", environment=Environment.PAPER)
    with pytest.raises(ConfigError, match="driver 'postgresql\\+asyncpg' is not supported"):
        SqlStorage("postgresql+asyncpg://u@h/db", environment=Environment.PAPER)
    with pytest.raises(ConfigError, match="in-memory"):
        SqlStorage("sqlite://", environment=Environment.PAPER)
    with pytest.raises(ConfigError, match="not a valid URL"):
        SqlStorage("::nonsense::", environment=Environment.PAPER)
    with pytest.raises(ConfigError, match="schema is a PostgreSQL feature"):
        SqlStorage(f"sqlite:///{tmp_path}/x.db", environment=Environment.PAPER, schema="x")


def test_database_password_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError) as exc:
        SqlStorage("mysql://root:hunter22@localhost/db", environment=Environment.PAPER)
    assert "hunter22" not in str(exc.value)
    with pytest.raises(ConfigError, match="cannot open database") as exc:  # nothing listens on port 1
        SqlStorage("postgresql://trader:hunter22@127.0.0.1:1/mmats", environment=Environment.PAPER)
    assert "hunter22" not in str(exc.value) and "***" in str(exc.value)
    assert "hunter22" not in caplog.text


@pytest.mark.services
def test_postgres_password_masked_in_repr() -> None:
    require(_pg_up(), f"PostgreSQL not reachable at {mask_url(PG_URL)}")
    schema = f"mmats_test_{uuid.uuid4().hex[:10]}"
    s = SqlStorage("postgresql://postgres:hunter22@127.0.0.1:5432/test", environment=Environment.PAPER,
                   schema=schema)  # trust auth ignores the password
    try:
        assert "hunter22" not in repr(s) and "hunter22" not in s.url and "***" in s.url
        assert s.engine.dialect.driver == "psycopg"
    finally:
        s.close()
        engine = make_engine(PG_URL)
        with engine.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


# -- audit chain --------------------------------------------------------------------------------------
def _append_chain(store: SqlStorage, n: int) -> list[AuditRecord]:
    journal = SqlJournal(store)
    kinds = ["signal", "risk_decision", "order", "fill", "kill_switch"]
    payload = {"qty": Decimal("0.10"), "note": "ünïcode ✓", "nested": {"b": [1, 2.5]}}
    return [journal.append(kinds[i % 5], {"i": i, **payload}, 1_700_000_000_000_000_000 + i) for i in range(n)]


def test_audit_chain_append_read_back_and_verify(target: Target, store: SqlStorage) -> None:
    written = _append_chain(store, 30)
    read = list(store.audit_records())
    assert read == written
    assert read[0].payload["qty"] == "0.10"  # canonical form: Decimal as its exact text
    result = verify_records(store.audit_records())
    assert result.ok and result.records == 30 and result.head_hash == written[-1].hash
    assert list(store.audit_records(from_seq=29)) == written[-2:]
    # a restarted process continues the same chain
    again = SqlJournal(target.open())
    assert again.last == written[-1]
    again.append("config", {"changed": "risk.max_dd"}, 1_800_000_000_000_000_000)
    assert again.verify().ok and again.verify().records == 31
    # the kernel's kill switch journals through it before taking effect
    ks = KillSwitch(journal=again)
    ks.engage("HARD", "manual", "operator pressed the button", 1_800_000_000_000_000_001)
    last = store.last_audit_record()
    assert last is not None and last.kind == "kill_switch" and last.payload["state"] == "HARD"
    assert store.verify_audit().ok


def test_audit_store_refuses_records_that_do_not_extend_the_chain(store: SqlStorage) -> None:
    written = _append_chain(store, 3)
    forged = chain_record(written[0], "order", {"forged": True}, 1)  # seq 2 again, on top of record 1
    with pytest.raises(StorageConflict, match="does not extend the stored chain"):
        store.append_audit(forged)
    stale = chain_record(written[-1], "order", {"x": 1}, 1)
    store.append_audit(stale)
    with pytest.raises(StorageConflict):
        store.append_audit(stale)  # the same record twice
    assert not any(hasattr(store, f"{verb}_audit") for verb in ("update", "delete", "remove", "replace"))
    assert store.verify_audit().ok


def test_audit_rows_cannot_be_changed_in_the_database(target: Target, store: SqlStorage) -> None:
    _append_chain(store, 3)
    engine = target.engine()
    try:
        for sql in ("UPDATE audit SET kind = 'x' WHERE seq = 2", "DELETE FROM audit WHERE seq = 3"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
                c.execute(text(sql))
        if target.kind == "postgres":
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
                c.execute(text("TRUNCATE audit"))
    finally:
        engine.dispose()
    assert store.audit_count() == 3 and store.verify_audit().ok


def test_concurrent_journals_keep_one_linear_chain(target: Target) -> None:
    journals = [SqlJournal(target.open()) for _ in range(3)]  # e.g. router, gatekeeper, portfolio
    barrier = threading.Barrier(6)

    def work(i: int) -> None:
        barrier.wait()
        for k in range(8):
            journals[i % 3].append("order", {"writer": i, "k": k}, 1_700_000_000_000_000_000 + k)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))
    result = journals[0].verify()
    assert result.ok and result.records == 48
    payloads = {(r.payload["writer"], r.payload["k"]) for r in journals[0].records()}
    assert len(payloads) == 48  # nothing lost, nothing doubled
