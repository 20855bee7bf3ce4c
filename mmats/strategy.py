"""The contract every strategy implements, and the context it sees on each bar.

The same strategy object runs in a backtest (one process, a million bars) and inside a Ray actor (live
bars one at a time). So the context is built for both: in a backtest ``bar`` and ``indicators`` are
cursors over precomputed arrays that the engine moves forward (no allocation per bar); live they are a
``Bar`` and a plain dict. Strategies only read them through the small API below.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol

from mmats.errors import StrategyError
from mmats.model import AccountState, Environment, MarketType, Order, Timeframe, TradeSignal


class BarLike(Protocol):
    """What a strategy may read of the current bar."""

    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...
    @property
    def ts(self) -> datetime: ...


class IndicatorsLike(Protocol):
    def __getitem__(self, name: str) -> float: ...
    def get(self, name: str, default: float = math.nan) -> float: ...


class StrategyContext:
    """Everything a strategy may know when it decides: the bar, its indicators, the account and time.

    ``account`` is computed lazily through a provider, so a strategy that never looks at it costs
    nothing; ``time`` is the bar's open time (UTC); decisions act from the *next* bar onwards.

    ``replaying``: the bar is past history replayed to rebuild the strategy's state when it starts live
    (a start, a restart, a hot replace). Whatever ``on_bar`` returns then is discarded, so a strategy
    whose decisions cost something outside its own state (a language model's call) skips them.
    """

    __slots__ = ("_account_provider", "bar", "environment", "indicators", "market", "replaying", "strategy_id",
                 "symbol")

    def __init__(
        self,
        bar: BarLike,
        indicators: IndicatorsLike,
        environment: Environment,
        symbol: str,
        market: MarketType,
        strategy_id: str,
        account_provider: Callable[[], AccountState],
        *,
        replaying: bool = False,
    ) -> None:
        self.bar = bar
        self.replaying = replaying
        self.indicators = indicators
        self.environment = environment
        self.symbol = symbol
        self.market = market
        self.strategy_id = strategy_id
        self._account_provider = account_provider

    @property
    def account(self) -> AccountState:
        return self._account_provider()

    @property
    def time(self) -> datetime:
        return self.bar.ts

    def position_quantity(self) -> float:
        """Signed quantity this account holds in the context's symbol (0.0 when flat)."""
        p = self.account.position(self.symbol)
        return 0.0 if p is None else float(p.quantity)


class IndicatorDict(dict[str, float]):
    """Live-side indicator mapping; ``get`` defaults to NaN like the backtest cursor."""

    def get(self, name: str, default: float = math.nan) -> float:  # type: ignore[override]
        return dict.get(self, name, default)


class IStrategy(ABC):
    """Base class of every strategy.

    Metadata are class attributes so a registry can list strategies without instantiating them.
    ``initialize`` receives the user's parameters (already parsed to numbers where they look like
    numbers) and must reject a bad one with ``StrategyError`` naming it.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1.0.0"
    author: ClassVar[str] = ""
    description: ClassVar[str] = ""
    markets_supported: ClassVar[tuple[MarketType, ...]] = (MarketType.CRYPTO, MarketType.FOREX, MarketType.STOCK)
    timeframes_supported: ClassVar[tuple[Timeframe, ...]] = tuple(Timeframe)

    #: ``on_bar`` waits on something outside the process (a model, a service): a live host calls it for
    #: the symbols of one bar time at once, on threads (mmats.engine.strategy_host). Leave it False for a
    #: strategy that computes: threads would only add their cost.
    io_bound: ClassVar[bool] = False
    #: parameter name -> default value; only these names are accepted by ``initialize``.
    default_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self) -> None:
        self.params: dict[str, Any] = dict(self.default_params)
        self.strategy_id: str = self.name

    def initialize(self, config: Mapping[str, Any]) -> None:
        """Accept parameters; unknown names or wrong types fail here, before any bar is seen."""
        for key, value in config.items():
            if key not in self.default_params:
                known = ", ".join(sorted(self.default_params)) or "none"
                raise StrategyError(f"strategy {self.name}: unknown parameter {key!r} (known: {known})")
            default = self.default_params[key]
            self.params[key] = _coerce_param(self.name, key, value, default)
        self.validate_params()

    def validate_params(self) -> None:  # noqa: B027 - optional hook
        """Override to check relations between parameters (e.g. fast < slow)."""

    @abstractmethod
    def get_required_indicators(self) -> list[str]:
        """Indicator specs (``SMA_20``, ``RSI_14``...) the engine must compute before ``on_bar``."""

    def get_risk_parameters(self) -> dict[str, Any]:
        """Strategy-level risk limits and sizing (merged under the configured limits, tightest wins)."""
        return {}

    @abstractmethod
    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        """Decide on the bar that just closed. None: nothing to say; a HOLD: a decision to change nothing,
        journaled like any signal (the audit shows it) and never ordered."""

    def on_order_filled(self, order: Order) -> None:  # noqa: B027 - optional hook
        """Called when one of this strategy's orders is completely filled."""

    def on_order_rejected(self, order: Order, reason: str) -> None:  # noqa: B027 - optional hook
        """Called when the risk gatekeeper or the venue refuses one of this strategy's orders."""

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "author": self.author,
            "description": self.description,
            "markets_supported": [m.value for m in self.markets_supported],
            "timeframes_supported": [t.value for t in self.timeframes_supported],
            "params": dict(self.params),
        }


def _coerce_param(strategy: str, key: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(str(value)) if isinstance(value, str) else int(value)
        if isinstance(default, float):
            out = float(value)
            if not math.isfinite(out):
                raise ValueError(value)
            return out
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise StrategyError(f"strategy {strategy}: parameter {key}={value!r} is not a valid {kind}") from None
    return value

