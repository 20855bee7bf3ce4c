"""The ports: what the kernel and the actors need from the outside world, as pure Protocols.

Adapters (``adapters/``) implement them against SQLite/PostgreSQL, Redis, venues and chat services;
tests and the backtest implement them in memory. Keeping them here, free of any driver import, is what
lets the actors swap the embedded defaults for servers (and PAPER for LIVE) without touching the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from mmats.audit import AuditRecord, Journal
from mmats.execution.venue import VenueClient
from mmats.model import (
    AccountState,
    Bar,
    Environment,
    Fill,
    Order,
    Position,
    Timeframe,
    TradeSignal,
    iso,
)
from mmats.risk.decision import RiskDecision

__all__ = [
    "AuditRecord",
    "Broker",
    "ConfigVersion",
    "DecisionRecord",
    "Journal",
    "MarketData",
    "Notifier",
    "SignalRecord",
    "StateStore",
    "Storage",
    "StorageConflict",
    "StrategyRecord",
]


# --------------------------------------------------------------------------------------------------
# State store: small values every node must see at once
# --------------------------------------------------------------------------------------------------
@runtime_checkable
class StateStore(Protocol):
    """Durable key/value state shared by every node: kill switch, throttles, idempotency keys, counters.

    Values are JSON (dict/list/str/int/float/bool/None); ``None`` from ``get`` means absent or expired.
    TTLs are seconds. Counters are exact ``Decimal`` (money) and keep the TTL they were created with, so
    a daily loss counter created with ``ttl_s`` = seconds-to-midnight resets at midnight whatever happens.
    """

    environment: Environment

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, ttl_s: float | None = None) -> None: ...

    def set_if_absent(self, key: str, value: Any, ttl_s: float | None = None) -> bool:
        """Claim ``key``; True for exactly one of any number of concurrent callers (idempotency keys)."""
        ...

    def compare_and_set(self, key: str, expected: Any, value: Any, ttl_s: float | None = None) -> bool:
        """Write ``value`` only if the current value equals ``expected`` (``None`` = absent)."""
        ...

    def incr(self, key: str, amount: int | Decimal = 1, ttl_s: float | None = None) -> Decimal:
        """Add ``amount`` atomically and return the new total; ``ttl_s`` applies only when created."""
        ...

    def counter(self, key: str) -> Decimal:
        """Current counter value, 0 when absent or expired."""
        ...

    def delete(self, key: str) -> bool: ...

    def keys(self, prefix: str = "") -> list[str]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Storage: the system of record
# --------------------------------------------------------------------------------------------------
class StorageConflict(Exception):
    """A write lost a race or did not extend what is stored (audit seq/prev_hash, registry version).

    Not user input and not a bug: the caller re-reads and retries (or gives up loudly).
    """


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """A signal as recorded (advisory mode exports these), with when it was received."""

    ts_ns: int
    signal: TradeSignal

    def to_dict(self) -> dict[str, Any]:
        s = self.signal
        return {
            "time": iso(self.ts_ns),
            "strategy_id": s.strategy_id,
            "signal_id": s.signal_id,
            "symbol": s.symbol,
            "action": s.action.value,
            "position_size": s.position_size,
            "confidence": s.confidence,
            "stop_loss": s.stop_loss,
            "take_profit": s.take_profit,
            "time_horizon": s.time_horizon.value,
            "max_slippage_bps": s.max_slippage_bps,
            "max_notional": s.max_notional,
            "reasoning": s.reasoning,
            "metadata": dict(s.metadata),
        }


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A risk decision as recorded: the indexed fields plus the full ``RiskDecision.to_dict`` payload."""

    ts_ns: int
    strategy_id: str
    signal_id: str
    symbol: str
    status: str
    payload: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"time": iso(self.ts_ns), **dict(self.payload)}


@dataclass(frozen=True, slots=True)
class StrategyRecord:
    """One registered strategy instance; ``version`` grows by one on every change (optimistic locking)."""

    strategy_id: str
    ref: str
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    version: int = 0
    updated_ns: int = 0
    # Everything else it was started with (symbols, market, allocation, timeframe) and where it came
    # from ("config" or "runtime"): what a restart needs to bring it back as it was.
    spec: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy_id": self.strategy_id, "ref": self.ref, "params": dict(self.params),
                "enabled": self.enabled, "version": self.version, "updated": iso(self.updated_ns),
                "spec": dict(self.spec)}


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """An immutable configuration version: who changed what, when and why; rollback re-saves an old one."""

    version: int
    ts_ns: int
    author: str
    comment: str
    content: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "time": iso(self.ts_ns), "author": self.author,
                "comment": self.comment, "content": dict(self.content)}


class Storage(Protocol):
    """The system of record: orders, fills, positions, signals, decisions, audit chain, equity, registry.

    A fill, the resulting position and the order's new fill state commit together in ``record_fill`` or
    not at all; a crash between them would otherwise leave positions that no fill explains.
    """

    environment: Environment

    # orders
    def save_order(self, order: Order) -> None:
        """Insert or update by ``client_order_id``."""
        ...

    def get_order(self, client_order_id: str) -> Order | None: ...

    def list_orders(self, *, open_only: bool = False, strategy_id: str | None = None) -> list[Order]: ...

    def open_orders(self) -> list[Order]: ...

    # fills + positions
    def record_fill(self, fill: Fill, position: Position, order: Order | None = None) -> bool:
        """Store the fill, the position after it and (optionally) the order, atomically.

        Returns False (and changes nothing) when a fill with the same non-empty ``fill_id`` is already
        stored, so replaying fills after a crash is harmless.
        """
        ...

    def list_fills(self, *, client_order_id: str | None = None, since_ns: int | None = None) -> list[Fill]: ...

    def save_position(self, position: Position) -> None: ...

    def get_position(self, symbol: str, strategy_id: str = "") -> Position | None: ...

    def list_positions(self, *, include_flat: bool = False) -> list[Position]: ...

    # signals and risk decisions
    def save_signal(self, signal: TradeSignal, ts_ns: int) -> None: ...

    def list_signals(self, *, strategy_id: str | None = None, since_ns: int | None = None,
                     limit: int | None = None) -> list[SignalRecord]: ...

    def save_risk_decision(self, decision: RiskDecision, ts_ns: int) -> None: ...

    def list_risk_decisions(self, *, strategy_id: str | None = None, since_ns: int | None = None,
                            limit: int | None = None) -> list[DecisionRecord]: ...

    # audit chain (append-only)
    def append_audit(self, record: AuditRecord) -> None:
        """Append one record; refuses a record that does not extend the stored chain (seq, prev_hash)."""
        ...

    def audit_records(self, *, from_seq: int = 0) -> Iterator[AuditRecord]: ...

    def last_audit_record(self) -> AuditRecord | None: ...

    # equity
    def save_equity_snapshot(self, account: AccountState) -> None: ...

    def equity_snapshots(self, *, since_ns: int | None = None, limit: int | None = None) -> list[AccountState]: ...

    # strategy registry
    def save_strategy(self, record: StrategyRecord) -> StrategyRecord:
        """Upsert; ``record.version`` must equal the stored version (0 for a new id). Returns the new row."""
        ...

    def get_strategy(self, strategy_id: str) -> StrategyRecord | None: ...

    def list_strategies(self, *, enabled_only: bool = False) -> list[StrategyRecord]: ...

    def delete_strategy(self, strategy_id: str) -> bool: ...

    # configuration versions
    def save_config_version(self, content: Mapping[str, Any], author: str, comment: str = "",
                            ts_ns: int | None = None) -> ConfigVersion: ...

    def get_config_version(self, version: int | None = None) -> ConfigVersion | None:
        """A given version, or the latest when ``version`` is None."""
        ...

    def list_config_versions(self) -> list[ConfigVersion]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Market data, broker, notifier
# --------------------------------------------------------------------------------------------------
class MarketData(Protocol):
    """A source of bars for one venue: a replay file, or a venue's closed candles (``adapters/*_market_data.py``)."""

    def subscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None: ...

    def unsubscribe(self, symbols: Sequence[str], timeframe: Timeframe) -> None: ...

    def latest_bars(self, symbol: str, timeframe: Timeframe, limit: int = 1) -> list[Bar]:
        """The last ``limit`` *closed* bars, oldest first (never the forming bar: no look-ahead)."""
        ...


#: The Broker port: a live venue account as the kernel's live execution needs it (``mmats/execution/venue.py`` holds
#: the contract and its typed reports, next to the safety rules written once for every venue).
Broker = VenueClient


class Notifier(Protocol):
    """Chat/webhook/e-mail alerts. ``level`` is ``info``, ``warning`` or ``critical``."""

    def send(self, level: str, text: str) -> None: ...

