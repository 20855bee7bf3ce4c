"""Opening the system of record from inside an actor: SQL storage, its audit journal, the state store.

Each actor process opens its own connections (they cannot be pickled into actor arguments); they all
point at the same database and state store, chosen by environment and home (docs/persistence.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.sql_store import SqlJournal, SqlStorage, make_storage
from adapters.state_store import make_state_store
from mmats.model import Environment, TradeSignal, iso


@dataclass
class Stores:
    storage: SqlStorage
    journal: SqlJournal
    state: Any


def open_stores(persist: dict[str, Any]) -> Stores:
    env = Environment(persist.get("environment", "PAPER"))
    storage = make_storage(env, persist.get("database_url"), home=persist.get("home"))
    state = make_state_store(persist.get("redis_url"), persist.get("home"), environment=env,
                             prefix=persist.get("redis_prefix"))
    return Stores(storage, SqlJournal(storage), state)


def signal_view(strategy_id: str, signal: TradeSignal, price: float | None) -> dict[str, Any]:
    """One signal as the audit chain, the live views and the export show it (without its time), with the
    strategy's own ``metadata`` when it has any (``bar_price`` is the gatekeeper's, shown as ``price``)."""
    view = {"strategy_id": strategy_id, "symbol": signal.symbol, "action": signal.action.value,
            "position_size": signal.position_size, "confidence": signal.confidence, "price": price,
            "reasoning": signal.reasoning}
    meta = {k: v for k, v in signal.metadata.items() if k != "bar_price"} if signal.metadata else None
    if meta:
        view["metadata"] = meta
    return view


def with_decision(row: dict[str, Any], decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """``row`` plus the status and reasons of its risk decision (a ``RiskDecision.to_dict`` payload)."""
    if decision is None:
        return {**row, "decision": None, "decision_reasons": []}
    return {**row, "decision": decision.get("status"),
            "decision_reasons": [r.get("message") or r.get("rule", "") for r in decision.get("reasons", [])]}


def signal_export_rows(storage: SqlStorage) -> list[dict[str, Any]]:
    """Signals joined with their risk decision (by strategy and signal id), oldest first."""
    decisions = {(d.strategy_id, d.signal_id): d.payload for d in storage.list_risk_decisions()}
    out = []
    for rec in storage.list_signals():
        s = rec.signal
        row = {"time": iso(rec.ts_ns), **signal_view(s.strategy_id, s, s.metadata.get("bar_price")),
               "signal_id": s.signal_id}
        out.append(with_decision(row, decisions.get((s.strategy_id, s.signal_id))))
    return out


def recent_records(storage: SqlStorage, n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The last ``n`` signals and decisions in the gatekeeper's in-memory shapes (its live views), and
    the signals' idempotency keys (``signal:<strategy>:<signal id>``)."""
    rows = storage.list_signals(last=n)
    signals = [{"time": iso(r.ts_ns), **signal_view(r.signal.strategy_id, r.signal, r.signal.metadata.get("bar_price"))}
               for r in rows]
    decisions = [d.to_dict() for d in storage.list_risk_decisions(last=n)]
    return signals, decisions, [f"signal:{r.signal.strategy_id}:{r.signal.signal_id}" for r in rows]
