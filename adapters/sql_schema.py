"""SQLAlchemy Core tables of the system of record (the migrations create exactly these; a test checks it).

Money is exact: PostgreSQL ``NUMERIC`` without precision (keeps the scale it was given), SQLite ``TEXT``
holding ``str(Decimal)``, since SQLite's only numeric types are int64 and float64. Times are UTC
nanoseconds in ``BIGINT``. JSON payloads are stored as text we serialise ourselves, so what the audit
chain hashed is byte-for-byte what is read back.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["SCHEMA_VERSION", "Money", "metadata"]

SCHEMA_VERSION = "0001"


class Money(TypeDecorator[Decimal]):
    """Exact Decimal on every backend; refuses floats so no binary rounding sneaks into the ledger."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal | int) or isinstance(value, bool):
            raise TypeError(f"money column needs Decimal, got {type(value).__name__} {value!r}")
        d = Decimal(value)
        if not d.is_finite():
            raise ValueError(f"money column needs a finite Decimal, got {value!r}")
        return str(d) if dialect.name == "sqlite" else d

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


def _id() -> Column[int]:
    # SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
    return Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)


metadata = MetaData()

meta = Table(
    "mmats_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(128), primary_key=True),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("price", Money),
    Column("stop_price", Money),
    Column("time_in_force", String(8), nullable=False),
    Column("strategy_id", String(128), nullable=False, server_default=""),
    Column("signal_id", String(128), nullable=False, server_default=""),
    Column("parent_id", String(128)),
    Column("oco_group", String(128)),
    Column("reduce_only", Boolean, nullable=False),
    Column("status", String(24), nullable=False),
    Column("filled_quantity", Money, nullable=False),
    Column("avg_fill_price", Money),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    Column("reject_reason", Text, nullable=False, server_default=""),
    Column("venue_order_id", String(128)),
    Column("triggered", Boolean, nullable=False),
    Index("ix_orders_status", "status"),
    Index("ix_orders_strategy", "strategy_id"),
)

fills = Table(
    "fills",
    metadata,
    _id(),
    Column("fill_id", String(128)),  # NULL when the venue gave none (NULLs never collide in UNIQUE)
    Column("client_order_id", String(128), nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("price", Money, nullable=False),
    Column("fee", Money, nullable=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("liquidity", String(8), nullable=False),
    Column("strategy_id", String(128), nullable=False, server_default=""),
    UniqueConstraint("fill_id", name="uq_fills_fill_id"),
    Index("ix_fills_order", "client_order_id"),
    Index("ix_fills_ts", "ts_ns"),
)

positions = Table(
    "positions",
    metadata,
    Column("strategy_id", String(128), primary_key=True),
    Column("symbol", String(64), primary_key=True),
    Column("market", String(16), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("avg_price", Money, nullable=False),
    Column("realized_pnl", Money, nullable=False),
    Column("fees", Money, nullable=False),
    Column("opened_ns", BigInteger, nullable=False),
    Column("last_price", Money, nullable=False),
)

signals = Table(
    "signals",
    metadata,
    _id(),
    Column("ts_ns", BigInteger, nullable=False),
    Column("strategy_id", String(128), nullable=False),
    Column("signal_id", String(128), nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("action", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_signals_strategy_ts", "strategy_id", "ts_ns"),
    Index("ix_signals_ts", "ts_ns"),
)

risk_decisions = Table(
    "risk_decisions",
    metadata,
    _id(),
    Column("ts_ns", BigInteger, nullable=False),
    Column("strategy_id", String(128), nullable=False),
    Column("signal_id", String(128), nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_decisions_strategy_ts", "strategy_id", "ts_ns"),
    Index("ix_decisions_ts", "ts_ns"),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(128), nullable=False),
    Column("hash", String(128), nullable=False),
)

equity_snapshots = Table(
    "equity_snapshots",
    metadata,
    _id(),
    Column("ts_ns", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    Column("cash", Money, nullable=False),
    Column("equity", Money, nullable=False),
    Column("realized_pnl", Money, nullable=False),
    Column("unrealized_pnl", Money, nullable=False),
    Column("fees", Money, nullable=False),
    Column("peak_equity", Money, nullable=False),
    Column("gross_exposure", Money, nullable=False),
    Column("positions", Text, nullable=False),
    Index("ix_equity_ts", "ts_ns"),
)

strategies = Table(
    "strategies",
    metadata,
    Column("strategy_id", String(128), primary_key=True),
    Column("ref", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    Column("spec", Text, nullable=False, server_default="{}"),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("author", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("content", Text, nullable=False),
)
