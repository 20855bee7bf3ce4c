"""Opening the system of record from inside an actor: SQL storage, its audit journal, the state store.

Each actor process opens its own connections (they cannot be pickled into actor arguments); they all
point at the same database and state store, chosen by environment and home (docs/persistence.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.sql_store import SqlJournal, SqlStorage, make_storage
from adapters.state_store import make_state_store
from mmats.model import Environment, iso


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


def signal_export_rows(storage: SqlStorage) -> list[dict[str, Any]]:
    """Signals joined with their risk decision (by strategy and signal id), oldest first."""
    decisions = {(d.strategy_id, d.signal_id): d for d in storage.list_risk_decisions()}
    out = []
    for rec in storage.list_signals():
        s = rec.signal
        d = decisions.get((s.strategy_id, s.signal_id))
        out.append({"time": iso(rec.ts_ns), "strategy_id": s.strategy_id, "symbol": s.symbol,
                    "action": s.action.value, "position_size": s.position_size, "confidence": s.confidence,
                    "price": s.metadata.get("bar_price"),
                    "reasoning": s.reasoning, "signal_id": s.signal_id,
                    "decision": d.status if d else None,
                    "decision_reasons": [r.get("message") or r.get("rule", "") for r in d.payload.get("reasons", [])]
                    if d else []})
    return out


def recent_records(storage: SqlStorage, n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The last ``n`` signals and decisions in the gatekeeper's in-memory shapes (its live views)."""
    signals = [{"time": iso(r.ts_ns), "strategy_id": r.signal.strategy_id, "symbol": r.signal.symbol,
                "action": r.signal.action.value, "position_size": r.signal.position_size,
                "confidence": r.signal.confidence, "price": r.signal.metadata.get("bar_price"),
                "reasoning": r.signal.reasoning} for r in storage.list_signals(last=n)]
    decisions = [d.to_dict() for d in storage.list_risk_decisions(last=n)]
    return signals, decisions
