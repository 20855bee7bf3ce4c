"""Initial schema: orders, fills, positions, signals, risk decisions, audit chain, equity, registry, config.

Written out by hand rather than generated from ``adapters.sql_schema`` at run time: a migration must
stay what it was when it shipped, whatever the models become later. ``tests/integration/test_storage.py``
checks that head and the models agree.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(asdecimal=True).with_variant(sa.Text(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                     autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "mmats_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(128), primary_key=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("price", _money()),
        sa.Column("stop_price", _money()),
        sa.Column("time_in_force", sa.String(8), nullable=False),
        sa.Column("strategy_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("signal_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("parent_id", sa.String(128)),
        sa.Column("oco_group", sa.String(128)),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("filled_quantity", _money(), nullable=False),
        sa.Column("avg_fill_price", _money()),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("venue_order_id", sa.String(128)),
        sa.Column("triggered", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_strategy", "orders", ["strategy_id"])
    op.create_table(
        "fills",
        _id(),
        sa.Column("fill_id", sa.String(128)),
        sa.Column("client_order_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("fee", _money(), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("liquidity", sa.String(8), nullable=False),
        sa.Column("strategy_id", sa.String(128), nullable=False, server_default=""),
        sa.UniqueConstraint("fill_id", name="uq_fills_fill_id"),
    )
    op.create_index("ix_fills_order", "fills", ["client_order_id"])
    op.create_index("ix_fills_ts", "fills", ["ts_ns"])
    op.create_table(
        "positions",
        sa.Column("strategy_id", sa.String(128), primary_key=True),
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("avg_price", _money(), nullable=False),
        sa.Column("realized_pnl", _money(), nullable=False),
        sa.Column("fees", _money(), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_price", _money(), nullable=False),
    )
    op.create_table(
        "signals",
        _id(),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("strategy_id", sa.String(128), nullable=False),
        sa.Column("signal_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_index("ix_signals_strategy_ts", "signals", ["strategy_id", "ts_ns"])
    op.create_index("ix_signals_ts", "signals", ["ts_ns"])
    op.create_table(
        "risk_decisions",
        _id(),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("strategy_id", sa.String(128), nullable=False),
        sa.Column("signal_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_index("ix_decisions_strategy_ts", "risk_decisions", ["strategy_id", "ts_ns"])
    op.create_index("ix_decisions_ts", "risk_decisions", ["ts_ns"])
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(128), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
    )
    op.create_table(
        "equity_snapshots",
        _id(),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("cash", _money(), nullable=False),
        sa.Column("equity", _money(), nullable=False),
        sa.Column("realized_pnl", _money(), nullable=False),
        sa.Column("unrealized_pnl", _money(), nullable=False),
        sa.Column("fees", _money(), nullable=False),
        sa.Column("peak_equity", _money(), nullable=False),
        sa.Column("gross_exposure", _money(), nullable=False),
        sa.Column("positions", sa.Text(), nullable=False),
    )
    op.create_index("ix_equity_ts", "equity_snapshots", ["ts_ns"])
    op.create_table(
        "strategies",
        sa.Column("strategy_id", sa.String(128), primary_key=True),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "config_versions",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
    )
    _audit_append_only()


def _audit_append_only() -> None:
    """The audit chain refuses UPDATE and DELETE in the database itself, not only in the store's API."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                "BEGIN SELECT RAISE(ABORT, 'audit chain is append-only'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION mmats_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit chain is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION mmats_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION mmats_audit_append_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_no_truncate ON audit")
        op.execute("DROP TRIGGER IF EXISTS audit_no_update_delete ON audit")
        op.execute("DROP FUNCTION IF EXISTS mmats_audit_append_only()")
    for name in ("config_versions", "strategies", "equity_snapshots", "audit", "risk_decisions", "signals",
                 "positions", "fills", "orders", "mmats_meta"):
        op.drop_table(name)
