"""``SqlStorage``: the system of record on SQLite (embedded default) or PostgreSQL (``MMATS_DATABASE_URL``).

Why it is built this way:

- Opening a store migrates it to the newest schema first (``adapters.migrations.upgrade_to_head``), so
  no code path ever runs against an old schema.
- The database remembers which environment it belongs to (``mmats_meta.environment``), written on first
  open and checked on every later one: a PAPER process pointed at the LIVE database stops with a
  ConfigError before reading a single order.
- ``record_fill`` writes the fill, the position after it and the order's fill state in one transaction:
  after a crash either all three are there or none is, so positions are always explained by fills.
- The audit table is append-only twice over: this class has no method that updates or deletes audit
  rows, and database triggers refuse UPDATE/DELETE (and TRUNCATE on PostgreSQL) from anyone else.
- The database URL is only ever shown with its password masked.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, Table, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from adapters import sql_schema as t
from adapters.migrations import upgrade_to_head
from adapters.secrets import redact
from adapters.sql_engine import READONLY, make_engine, mask_url, normalise_url, sqlite_url
from adapters.state_store import default_home
from mmats.audit import (
    AuditRecord,
    EncodedItem,
    VerifyResult,
    canonical_json,
    chain_encoded,
    encode_item,
    verify_records,
)
from mmats.errors import ConfigError
from mmats.model import (
    AccountState,
    Environment,
    Fill,
    Liquidity,
    MarketType,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionSnapshot,
    Side,
    SignalAction,
    TimeHorizon,
    TimeInForce,
    TradeSignal,
)
from mmats.ports import ConfigVersion, DecisionRecord, SignalRecord, StorageConflict, StrategyRecord
from mmats.risk.decision import RiskDecision

__all__ = ["SqlJournal", "SqlStorage", "TradeState", "make_storage", "upgrade_to_head"]

_TERMINAL = [s.value for s in OrderStatus if s.is_terminal]
# Rows written beside an audit batch: table name -> rows from ``signal_row`` / ``decision_row``.
RecordRows = Mapping[str, list[dict[str, Any]]]
# Built once: an executemany with them needs no statement per row.
_RECORD_INSERTS = {"signals": insert(t.signals), "risk_decisions": insert(t.risk_decisions)}
_FILL_INSERT = insert(t.fills)
_AUDIT_INSERT = insert(t.audit)
_AUDIT_TAIL_LINK = select(t.audit.c.seq, t.audit.c.hash).order_by(t.audit.c.seq.desc()).limit(1)


class TradeState(NamedTuple):
    """Fills with the positions and orders they leave (states after the whole batch)."""

    fills: list[Fill]
    positions: list[Position]
    orders: list[Order]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    # Signal metadata comes from user strategies: keep what is exact, stringify the rest rather than
    # lose the record of a signal over a numpy scalar.
    if isinstance(value, Decimal):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class SqlStorage:
    """The ``mmats.ports.Storage`` implementation. One instance per process; thread-safe."""

    def __init__(
        self,
        url: str | None = None,
        *,
        environment: Environment,
        home: str | os.PathLike[str] | None = None,
        schema: str | None = None,
    ) -> None:
        self.environment = Environment(environment)
        if url is None:
            url = os.environ.get("MMATS_DATABASE_URL") or None
        if url is None:
            root = Path(home) if home is not None else default_home()
            url = sqlite_url(root / self.environment.value.lower() / "mmats.db")
        self._url = normalise_url(url)
        self.schema = schema
        self.engine = make_engine(self._url, schema=schema)
        self._audit_lock = threading.Lock()
        try:
            upgrade_to_head(self.engine, schema=schema)
            self._claim_environment()
        except (OperationalError, DBAPIError) as exc:
            self.engine.dispose()
            raise ConfigError(f"cannot open database {self.url}: {redact(str(exc.orig))}") from None
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL with the password masked (the only form that ever leaves this object)."""
        return mask_url(self._url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        where = f", schema={self.schema!r}" if self.schema else ""
        return f"SqlStorage({self.url!r}{where}, environment={self.environment.value})"

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing ------------------------------------------------------------------------------------
    def _read(self) -> Any:
        conn = self.engine.connect()
        conn.execution_options(**READONLY)
        return conn

    def _claim_environment(self) -> None:
        with self.engine.begin() as c:
            row = c.execute(select(t.meta.c.value).where(t.meta.c.key == "environment")).first()
            if row is None:
                c.execute(insert(t.meta).values(key="environment", value=self.environment.value))
                c.execute(insert(t.meta).values(key="created_ns", value=str(time.time_ns())))
                return
            found = row[0]
        if found != self.environment.value:
            raise ConfigError(
                f"database {self.url} belongs to the {found} environment; refusing to open it for "
                f"{self.environment.value} (PAPER and LIVE use separate databases)"
            )

    def _upsert_stmt(self, table: Table, keys: list[str], columns: tuple[str, ...]) -> Any:
        """One INSERT .. ON CONFLICT UPDATE per (table, columns), built once: constructing it costs about
        1 ms in SQLAlchemy, more than the write itself, and the router writes thousands of orders a minute."""
        cache: dict[tuple[str, tuple[str, ...]], Any] = self.__dict__.setdefault("_upserts", {})
        stmt = cache.get((table.name, columns))
        if stmt is None:
            ins = pg.insert if self.dialect == "postgresql" else sqlite_dialect.insert
            base = ins(table)
            stmt = cache[(table.name, columns)] = base.on_conflict_do_update(
                index_elements=keys, set_={k: base.excluded[k] for k in columns if k not in keys})
        return stmt

    def _upsert(self, c: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> None:
        self._upsert_many(c, table, [values], keys)

    def _upsert_many(self, c: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
        if rows:
            c.execute(self._upsert_stmt(table, keys, tuple(rows[0])), rows)

    # -- orders --------------------------------------------------------------------------------------
    @staticmethod
    def _order_values(o: Order) -> dict[str, Any]:
        return {
            "client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side.value,
            "order_type": o.order_type.value, "quantity": o.quantity, "price": o.price,
            "stop_price": o.stop_price, "time_in_force": o.time_in_force.value, "strategy_id": o.strategy_id,
            "signal_id": o.signal_id, "parent_id": o.parent_id, "oco_group": o.oco_group,
            "reduce_only": o.reduce_only, "status": o.status.value, "filled_quantity": o.filled_quantity,
            "avg_fill_price": o.avg_fill_price, "created_ns": o.created_ns, "updated_ns": o.updated_ns,
            "reject_reason": o.reject_reason, "venue_order_id": o.venue_order_id, "triggered": o.triggered,
        }

    @staticmethod
    def _order(r: Row[Any]) -> Order:
        return Order(
            client_order_id=r.client_order_id, symbol=r.symbol, side=Side(r.side), quantity=r.quantity,
            order_type=OrderType(r.order_type), price=r.price, stop_price=r.stop_price,
            time_in_force=TimeInForce(r.time_in_force), strategy_id=r.strategy_id, signal_id=r.signal_id,
            parent_id=r.parent_id, oco_group=r.oco_group, reduce_only=bool(r.reduce_only),
            status=OrderStatus(r.status), filled_quantity=r.filled_quantity, avg_fill_price=r.avg_fill_price,
            created_ns=int(r.created_ns), updated_ns=int(r.updated_ns), reject_reason=r.reject_reason,
            venue_order_id=r.venue_order_id, triggered=bool(r.triggered),
        )

    def _write_order(self, c: Connection, order: Order) -> None:
        self._upsert(c, t.orders, self._order_values(order), ["client_order_id"])

    def save_order(self, order: Order) -> None:
        with self.engine.begin() as c:
            self._write_order(c, order)

    def save_orders(self, orders: list[Order]) -> None:
        """Several orders in one transaction (the last state of each wins)."""
        rows = {o.client_order_id: self._order_values(o) for o in orders}
        with self.engine.begin() as c:
            self._upsert_many(c, t.orders, list(rows.values()), ["client_order_id"])

    def get_order(self, client_order_id: str) -> Order | None:
        with self._read() as c:
            r = c.execute(select(t.orders).where(t.orders.c.client_order_id == client_order_id)).first()
        return None if r is None else self._order(r)

    def list_orders(self, *, open_only: bool = False, strategy_id: str | None = None) -> list[Order]:
        q = select(t.orders).order_by(t.orders.c.created_ns, t.orders.c.client_order_id)
        if open_only:
            q = q.where(t.orders.c.status.not_in(_TERMINAL))
        if strategy_id is not None:
            q = q.where(t.orders.c.strategy_id == strategy_id)
        with self._read() as c:
            return [self._order(r) for r in c.execute(q)]

    def open_orders(self) -> list[Order]:
        return self.list_orders(open_only=True)

    # -- fills and positions -------------------------------------------------------------------------
    @staticmethod
    def _position_values(p: Position) -> dict[str, Any]:
        return {
            "strategy_id": p.strategy_id, "symbol": p.symbol, "market": p.market.value, "quantity": p.quantity,
            "avg_price": p.avg_price, "realized_pnl": p.realized_pnl, "fees": p.fees, "opened_ns": p.opened_ns,
            "last_price": p.last_price,
        }

    @staticmethod
    def _position(r: Row[Any]) -> Position:
        return Position(
            symbol=r.symbol, market=MarketType(r.market), quantity=r.quantity, avg_price=r.avg_price,
            realized_pnl=r.realized_pnl, fees=r.fees, opened_ns=int(r.opened_ns), last_price=r.last_price,
            strategy_id=r.strategy_id,
        )

    def _write_position(self, c: Connection, position: Position) -> None:
        self._upsert(c, t.positions, self._position_values(position), ["strategy_id", "symbol"])

    @staticmethod
    def _fill_values(fill: Fill) -> dict[str, Any]:
        return {
            "fill_id": fill.fill_id or None, "client_order_id": fill.client_order_id, "symbol": fill.symbol,
            "side": fill.side.value, "quantity": fill.quantity, "price": fill.price, "fee": fill.fee,
            "ts_ns": fill.ts_ns, "liquidity": fill.liquidity.value, "strategy_id": fill.strategy_id,
        }

    def _write_fills(self, c: Connection, fills: list[Fill]) -> None:
        """One prepared INSERT for the whole batch: a statement built per fill (``.values(...)``) cost
        the router more than the write (42% of its time at 1,000 bars/s, sampled with py-spy)."""
        if fills:
            c.execute(_FILL_INSERT, [self._fill_values(f) for f in fills])

    def record_fill(self, fill: Fill, position: Position, order: Order | None = None) -> bool:
        try:
            with self.engine.begin() as c:
                if fill.fill_id and c.execute(
                    select(t.fills.c.id).where(t.fills.c.fill_id == fill.fill_id)
                ).first() is not None:
                    return False
                self._write_fills(c, [fill])
                self._write_position(c, position)
                if order is not None:
                    self._write_order(c, order)
        except IntegrityError:
            # A concurrent writer stored the same fill_id between our check and insert: it won, we no-op.
            if fill.fill_id and self._fill_exists(fill.fill_id):
                return False
            raise
        return True

    def record_fills(self, fills: list[Fill], positions: list[Position], orders: list[Order]) -> int:
        """A batch of fills with the positions and orders they leave, in ONE transaction (all or none).

        Fills already stored (same ``fill_id``: a replay after a restart) are skipped; returns how many
        were new. ``positions`` and ``orders`` are the states after the whole batch."""
        if not fills and not orders:
            return 0
        try:
            return self._record_fills(fills, positions, orders)
        except IntegrityError:
            # Another writer stored one of these fill ids between our check and insert (a restart race):
            # nothing of this batch was committed; redo it fill by fill, each of which tolerates the race.
            by_symbol = {p.symbol: p for p in positions}
            by_order = {o.client_order_id: o for o in orders}
            stored = sum(self.record_fill(f, by_symbol[f.symbol], by_order.get(f.client_order_id)) for f in fills)
            self.save_orders(orders)
            return stored

    def _record_fills(self, fills: list[Fill], positions: list[Position], orders: list[Order]) -> int:
        with self.engine.begin() as c:
            return self._write_trade_state(c, TradeState(fills, positions, orders))

    def _write_trade_state(self, c: Connection, state: TradeState, *, skip_known: bool = True) -> int:
        """Fills not stored yet, then the positions and orders they leave; returns how many fills were new.

        ``skip_known`` False inserts every fill without asking first: a fill id already stored then fails
        the whole transaction (IntegrityError) and the caller redoes it with the check. The journal's
        writers take that path: a fill stored twice is a replay after a restart, rare, and the check is
        a query inside the database's write lock on every batch."""
        ids = [f.fill_id for f in state.fills if f.fill_id] if skip_known else []
        known = set()
        if ids:
            known = {r[0] for r in c.execute(select(t.fills.c.fill_id).where(t.fills.c.fill_id.in_(ids)))}
        new = [f for f in state.fills if not f.fill_id or f.fill_id not in known]
        self._write_fills(c, new)
        pos_rows = {(p.strategy_id, p.symbol): self._position_values(p) for p in state.positions}
        self._upsert_many(c, t.positions, list(pos_rows.values()), ["strategy_id", "symbol"])
        order_rows = {o.client_order_id: self._order_values(o) for o in state.orders}
        self._upsert_many(c, t.orders, list(order_rows.values()), ["client_order_id"])
        return len(new)

    def _fill_exists(self, fill_id: str) -> bool:
        with self._read() as c:
            return c.execute(select(t.fills.c.id).where(t.fills.c.fill_id == fill_id)).first() is not None

    def list_fills(self, *, client_order_id: str | None = None, since_ns: int | None = None) -> list[Fill]:
        q = select(t.fills).order_by(t.fills.c.id)
        if client_order_id is not None:
            q = q.where(t.fills.c.client_order_id == client_order_id)
        if since_ns is not None:
            q = q.where(t.fills.c.ts_ns >= since_ns)
        with self._read() as c:
            return [
                Fill(client_order_id=r.client_order_id, symbol=r.symbol, side=Side(r.side), quantity=r.quantity,
                     price=r.price, fee=r.fee, ts_ns=int(r.ts_ns), liquidity=Liquidity(r.liquidity),
                     strategy_id=r.strategy_id, fill_id=r.fill_id or "")
                for r in c.execute(q)
            ]

    def save_position(self, position: Position) -> None:
        with self.engine.begin() as c:
            self._write_position(c, position)

    def get_position(self, symbol: str, strategy_id: str = "") -> Position | None:
        q = select(t.positions).where(t.positions.c.symbol == symbol, t.positions.c.strategy_id == strategy_id)
        with self._read() as c:
            r = c.execute(q).first()
        return None if r is None else self._position(r)

    def list_positions(self, *, include_flat: bool = False) -> list[Position]:
        with self._read() as c:
            rows = c.execute(select(t.positions).order_by(t.positions.c.strategy_id, t.positions.c.symbol)).all()
        out = [self._position(r) for r in rows]
        return out if include_flat else [p for p in out if not p.is_flat]

    # -- signals and risk decisions ------------------------------------------------------------------
    @staticmethod
    def signal_row(signal: TradeSignal, ts_ns: int) -> dict[str, Any]:
        payload = SignalRecord(ts_ns, signal).to_dict()
        payload.pop("time")
        return {"ts_ns": ts_ns, "strategy_id": signal.strategy_id, "signal_id": signal.signal_id,
                "symbol": signal.symbol, "action": signal.action.value, "payload": _json(payload)}

    def save_signal(self, signal: TradeSignal, ts_ns: int) -> None:
        with self.engine.begin() as c:
            c.execute(insert(t.signals).values(**self.signal_row(signal, ts_ns)))

    def list_signals(self, *, strategy_id: str | None = None, since_ns: int | None = None,
                     limit: int | None = None, last: int | None = None) -> list[SignalRecord]:
        """Oldest first; ``limit`` keeps the first N, ``last`` the newest N (still oldest first)."""
        if last is not None:
            q = select(t.signals).order_by(t.signals.c.ts_ns.desc(), t.signals.c.id.desc()).limit(last)
        else:
            q = select(t.signals).order_by(t.signals.c.ts_ns, t.signals.c.id)
        if strategy_id is not None:
            q = q.where(t.signals.c.strategy_id == strategy_id)
        if since_ns is not None:
            q = q.where(t.signals.c.ts_ns >= since_ns)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as c:
            rows = c.execute(q).all()
        if last is not None:
            rows.reverse()
        out = []
        for r in rows:
            p = json.loads(r.payload)
            sig = TradeSignal(
                action=SignalAction(p["action"]), symbol=p["symbol"], position_size=p["position_size"],
                stop_loss=p["stop_loss"], take_profit=p["take_profit"], confidence=p["confidence"],
                reasoning=p["reasoning"], metadata=p["metadata"], strategy_id=p["strategy_id"],
                signal_id=p["signal_id"], max_slippage_bps=p["max_slippage_bps"], max_notional=p["max_notional"],
                time_horizon=TimeHorizon(p["time_horizon"]),
            )
            out.append(SignalRecord(int(r.ts_ns), sig))
        return out

    @staticmethod
    def decision_row(decision: RiskDecision, ts_ns: int, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``payload``: ``decision.to_dict()`` when the caller already has it."""
        d = decision.to_dict() if payload is None else payload
        return {"ts_ns": ts_ns, "strategy_id": d["strategy_id"], "signal_id": d["signal_id"], "symbol": d["symbol"],
                "status": d["status"], "quantity": decision.quantity, "payload": _json(d)}

    def save_risk_decision(self, decision: RiskDecision, ts_ns: int) -> None:
        with self.engine.begin() as c:
            c.execute(insert(t.risk_decisions).values(**self.decision_row(decision, ts_ns)))

    def list_risk_decisions(self, *, strategy_id: str | None = None, since_ns: int | None = None,
                            limit: int | None = None, last: int | None = None) -> list[DecisionRecord]:
        """Oldest first; ``limit`` keeps the first N, ``last`` the newest N (still oldest first)."""
        if last is not None:
            q = select(t.risk_decisions).order_by(t.risk_decisions.c.ts_ns.desc(),
                                                  t.risk_decisions.c.id.desc()).limit(last)
        else:
            q = select(t.risk_decisions).order_by(t.risk_decisions.c.ts_ns, t.risk_decisions.c.id)
        if strategy_id is not None:
            q = q.where(t.risk_decisions.c.strategy_id == strategy_id)
        if since_ns is not None:
            q = q.where(t.risk_decisions.c.ts_ns >= since_ns)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as c:
            rows = c.execute(q).all()
        if last is not None:
            rows.reverse()
        return [DecisionRecord(int(r.ts_ns), r.strategy_id, r.signal_id, r.symbol, r.status, json.loads(r.payload))
                for r in rows]

    # -- audit chain ---------------------------------------------------------------------------------
    @staticmethod
    def _audit(r: Row[Any]) -> AuditRecord:
        return AuditRecord(int(r.seq), int(r.ts_ns), r.kind, json.loads(r.payload), r.prev_hash, r.hash)

    @staticmethod
    def _audit_tail_link(c: Connection) -> tuple[int, str] | None:
        """(seq, hash) of the chain's last record: all a writer chains onto (the payload stays unread)."""
        r = c.execute(_AUDIT_TAIL_LINK).first()
        return None if r is None else (int(r[0]), str(r[1]))

    def _audit_tail(self, c: Connection) -> AuditRecord | None:
        r = c.execute(select(t.audit).order_by(t.audit.c.seq.desc()).limit(1)).first()
        return None if r is None else self._audit(r)

    @staticmethod
    def _insert_audit(c: Connection, records: list[AuditRecord], texts: list[str]) -> None:
        """Insert a contiguous run of records (``texts``: their payloads' canonical JSON); a seq already
        taken (a concurrent writer) is a conflict."""
        try:
            c.execute(_AUDIT_INSERT, [
                {"seq": r.seq, "ts_ns": r.ts_ns, "kind": r.kind, "payload": text_,
                 "prev_hash": r.prev_hash, "hash": r.hash} for r, text_ in zip(records, texts, strict=True)
            ])
        except IntegrityError:
            raise StorageConflict(f"audit seq {records[0].seq} was appended concurrently by another writer") from None

    def append_audit(self, record: AuditRecord) -> None:
        with self.engine.begin() as c:
            last = self._audit_tail_link(c)
            if last is not None and (record.seq != last[0] + 1 or record.prev_hash != last[1]):
                raise StorageConflict(
                    f"audit record seq={record.seq} does not extend the stored chain "
                    f"(last seq={last[0]}); re-read the tail and rebuild the record"
                )
            self._insert_audit(c, [record], [canonical_json(record.payload)])

    def extend_audit(self, items: list[tuple[str, Mapping[str, Any], int]], rows: RecordRows | None = None,
                     state: TradeState | None = None) -> list[AuditRecord]:
        """Chain ``items`` onto the stored tail and append them, with ``rows`` and ``state``, in ONE
        transaction; returns the records as stored.

        The chain is built inside the transaction, after the write lock is taken (SQLite's BEGIN
        IMMEDIATE; a transaction-scoped advisory lock on PostgreSQL), so concurrent writers (router,
        gatekeeper, portfolio) queue for the lock instead of losing a race and redoing the whole batch.
        Under load those redone batches were most of the gatekeeper's time, and the kill switch waits
        for the gatekeeper."""
        # Encoded before the transaction: on SQLite it holds the one write lock every writer queues for.
        encoded: list[EncodedItem] = [encode_item(kind, payload, ts_ns) for kind, payload, ts_ns in items]
        with self.engine.begin() as c:
            for name, values in (rows or {}).items():  # a bad row is a bug: it propagates, nothing commits
                if values:
                    c.execute(_RECORD_INSERTS[name], values)
            if state is not None:
                self._write_trade_state(c, state, skip_known=False)  # SqlJournal.append_many redoes a replay
            # The chain's tail last, so writers hold the audit lock only for the tail read, the insert
            # and the commit (on PostgreSQL the rows above are written concurrently).
            if self.dialect == "postgresql":
                c.execute(text("SELECT pg_advisory_xact_lock(hashtext('mmats_audit:' || current_schema()))"))
            link = self._audit_tail_link(c)
            chain: list[AuditRecord] = []
            for item in encoded:
                rec = chain_encoded(link, item)
                chain.append(rec)
                link = (rec.seq, rec.hash)
            # a conflict only with a writer that does not take the lock
            self._insert_audit(c, chain, [item.text for item in encoded])
        return chain

    def audit_records(self, *, from_seq: int = 0) -> Iterator[AuditRecord]:
        """Records in chain order, read in pages so a long chain never sits in memory at once."""
        page = 1000
        next_seq = from_seq
        while True:
            q = select(t.audit).where(t.audit.c.seq >= next_seq).order_by(t.audit.c.seq).limit(page)
            with self._read() as c:
                rows = c.execute(q).all()
            for r in rows:
                yield self._audit(r)
            if len(rows) < page:
                return
            next_seq = int(rows[-1].seq) + 1

    def last_audit_record(self) -> AuditRecord | None:
        with self._read() as c:
            return self._audit_tail(c)

    def verify_audit(self) -> VerifyResult:
        """Re-hash the stored chain from seq 1 (what ``mmats audit verify`` reports for a database)."""
        return verify_records(self.audit_records())

    def audit_count(self) -> int:
        with self._read() as c:
            return int(c.execute(select(func.count()).select_from(t.audit)).scalar_one())

    # -- equity --------------------------------------------------------------------------------------
    def save_equity_snapshot(self, account: AccountState) -> None:
        positions = [
            {"symbol": p.symbol, "market": p.market.value, "quantity": str(p.quantity),
             "avg_price": str(p.avg_price), "last_price": str(p.last_price),
             "unrealized_pnl": str(p.unrealized_pnl), "realized_pnl": str(p.realized_pnl)}
            for p in account.positions
        ]
        with self.engine.begin() as c:
            c.execute(insert(t.equity_snapshots).values(
                ts_ns=account.ts_ns, currency=account.currency, cash=account.cash, equity=account.equity,
                realized_pnl=account.realized_pnl, unrealized_pnl=account.unrealized_pnl, fees=account.fees,
                peak_equity=account.peak_equity, gross_exposure=account.gross_exposure, positions=_json(positions),
            ))

    def equity_snapshots(self, *, since_ns: int | None = None, limit: int | None = None) -> list[AccountState]:
        """Oldest first; with ``limit``, the *latest* ``limit`` snapshots (what a dashboard wants)."""
        q = select(t.equity_snapshots)
        if since_ns is not None:
            q = q.where(t.equity_snapshots.c.ts_ns >= since_ns)
        if limit is not None:
            q = q.order_by(t.equity_snapshots.c.ts_ns.desc(), t.equity_snapshots.c.id.desc()).limit(limit)
        else:
            q = q.order_by(t.equity_snapshots.c.ts_ns, t.equity_snapshots.c.id)
        with self._read() as c:
            rows = c.execute(q).all()
        if limit is not None:
            rows.reverse()
        return [
            AccountState(
                ts_ns=int(r.ts_ns), currency=r.currency, cash=r.cash, equity=r.equity,
                positions=tuple(
                    PositionSnapshot(p["symbol"], MarketType(p["market"]), Decimal(p["quantity"]),
                                     Decimal(p["avg_price"]), Decimal(p["last_price"]),
                                     Decimal(p["unrealized_pnl"]), Decimal(p["realized_pnl"]))
                    for p in json.loads(r.positions)
                ),
                realized_pnl=r.realized_pnl, unrealized_pnl=r.unrealized_pnl, fees=r.fees,
                peak_equity=r.peak_equity, gross_exposure=r.gross_exposure,
            )
            for r in rows
        ]

    # -- strategy registry ---------------------------------------------------------------------------
    @staticmethod
    def _strategy(r: Row[Any]) -> StrategyRecord:
        return StrategyRecord(strategy_id=r.strategy_id, ref=r.ref, params=json.loads(r.params),
                              enabled=bool(r.enabled), version=int(r.version), updated_ns=int(r.updated_ns),
                              spec=json.loads(r.spec or "{}"))

    def save_strategy(self, record: StrategyRecord) -> StrategyRecord:
        now = time.time_ns()
        values = {"ref": record.ref, "params": _json(dict(record.params)), "enabled": record.enabled,
                  "updated_ns": now, "spec": _json(dict(record.spec))}
        try:
            with self.engine.begin() as c:
                cur = c.execute(select(t.strategies.c.version).where(
                    t.strategies.c.strategy_id == record.strategy_id)).first()
                stored = 0 if cur is None else int(cur[0])
                if record.version != stored:
                    raise StorageConflict(
                        f"strategy {record.strategy_id!r}: stored version is {stored}, the update was based on "
                        f"{record.version}; re-read and retry"
                    )
                if cur is None:
                    c.execute(insert(t.strategies).values(strategy_id=record.strategy_id, version=1, **values))
                else:
                    res = c.execute(update(t.strategies).where(
                        t.strategies.c.strategy_id == record.strategy_id, t.strategies.c.version == stored,
                    ).values(version=stored + 1, **values))
                    if res.rowcount != 1:
                        raise StorageConflict(f"strategy {record.strategy_id!r} changed concurrently; retry")
        except IntegrityError:
            raise StorageConflict(f"strategy {record.strategy_id!r} was registered concurrently; retry") from None
        return StrategyRecord(record.strategy_id, record.ref, dict(record.params), record.enabled, stored + 1, now,
                              dict(record.spec))

    def get_strategy(self, strategy_id: str) -> StrategyRecord | None:
        with self._read() as c:
            r = c.execute(select(t.strategies).where(t.strategies.c.strategy_id == strategy_id)).first()
        return None if r is None else self._strategy(r)

    def list_strategies(self, *, enabled_only: bool = False) -> list[StrategyRecord]:
        q = select(t.strategies).order_by(t.strategies.c.strategy_id)
        if enabled_only:
            q = q.where(t.strategies.c.enabled.is_(True))
        with self._read() as c:
            return [self._strategy(r) for r in c.execute(q)]

    def delete_strategy(self, strategy_id: str) -> bool:
        with self.engine.begin() as c:
            res = c.execute(delete(t.strategies).where(t.strategies.c.strategy_id == strategy_id))
            return bool(res.rowcount)

    # -- configuration versions ----------------------------------------------------------------------
    @staticmethod
    def _config(r: Row[Any]) -> ConfigVersion:
        return ConfigVersion(version=int(r.version), ts_ns=int(r.ts_ns), author=r.author, comment=r.comment,
                             content=json.loads(r.content))

    def save_config_version(self, content: Mapping[str, Any], author: str, comment: str = "",
                            ts_ns: int | None = None) -> ConfigVersion:
        if not author:
            raise ConfigError("a config version needs an author (who made the change)")
        ts = time.time_ns() if ts_ns is None else ts_ns
        body = _json(dict(content))
        for _ in range(5):
            try:
                with self.engine.begin() as c:
                    top = c.execute(select(func.max(t.config_versions.c.version))).scalar()
                    version = int(top or 0) + 1
                    c.execute(insert(t.config_versions).values(version=version, ts_ns=ts, author=author,
                                                               comment=comment, content=body))
                return ConfigVersion(version, ts, author, comment, json.loads(body))
            except IntegrityError:
                continue  # another writer took this number: take the next one
        raise StorageConflict("could not allocate a config version number after 5 attempts")

    def get_config_version(self, version: int | None = None) -> ConfigVersion | None:
        q = select(t.config_versions)
        q = (q.order_by(t.config_versions.c.version.desc()).limit(1) if version is None
             else q.where(t.config_versions.c.version == version))
        with self._read() as c:
            r = c.execute(q).first()
        return None if r is None else self._config(r)

    def list_config_versions(self) -> list[ConfigVersion]:
        with self._read() as c:
            return [self._config(r) for r in c.execute(select(t.config_versions).order_by(t.config_versions.c.version))]


class SqlJournal:
    """The ``mmats.audit.Journal`` of the actor runtime: each record is committed to the store before
    ``append`` returns, so "written before it takes effect" holds across crashes.

    Several processes may append to one database (router, gatekeeper, portfolio): each batch is chained
    onto the stored tail inside its own transaction (``SqlStorage.extend_audit``), so the chain stays
    linear and verifiable whoever writes.
    """

    def __init__(self, storage: SqlStorage, *, max_retries: int = 50) -> None:
        self.storage = storage
        self._max_retries = max_retries
        self._lock = threading.Lock()
        self._last = storage.last_audit_record()

    @property
    def last(self) -> AuditRecord | None:
        return self._last

    def append(self, kind: str, payload: Mapping[str, Any], ts_ns: int) -> AuditRecord:
        return self.append_many([(kind, payload, ts_ns)])[0]

    def append_many(self, items: list[tuple[str, Mapping[str, Any], int]], rows: RecordRows | None = None,
                    state: TradeState | None = None) -> list[AuditRecord]:
        """Journal several records with one commit, still one linear chain (``rows``, ``state``: see
        ``SqlStorage.extend_audit``)."""
        if not items:
            if state is not None:
                self.storage.record_fills(*state)
            return []
        if state is not None:
            try:
                return self._append_many(items, rows, state)
            except IntegrityError:
                # A fill id stored by another writer meanwhile (a restart race): nothing of the batch
                # committed. Journal it, then store the state with the path that tolerates the race.
                chain = self._append_many(items, rows, None)
                self.storage.record_fills(*state)
                return chain
        return self._append_many(items, rows, None)

    def _append_many(self, items: list[tuple[str, Mapping[str, Any], int]], rows: RecordRows | None,
                     state: TradeState | None) -> list[AuditRecord]:
        with self._lock:
            for _ in range(self._max_retries):
                try:
                    chain = self.storage.extend_audit(items, rows, state)
                except StorageConflict:
                    continue
                self._last = chain[-1]
                return chain
        raise StorageConflict(f"audit batch of {len(items)} lost the race {self._max_retries} times in a row")

    def records(self) -> Iterator[AuditRecord]:
        return self.storage.audit_records()

    def verify(self) -> VerifyResult:
        return self.storage.verify_audit()


def make_storage(
    environment: Environment,
    url: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    schema: str | None = None,
) -> SqlStorage:
    """``url`` > ``$MMATS_DATABASE_URL`` > ``<home>/<env>/mmats.db`` (home = ``$MMATS_HOME`` or ``./var``)."""
    return SqlStorage(url, environment=environment, home=home, schema=schema)
