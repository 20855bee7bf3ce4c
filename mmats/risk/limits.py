"""Risk configuration: limits at four levels, per environment, with built-in profiles.

How a limit is found for an order (documented in docs/risk.md):
1. the environment's block (``environments.LIVE`` ...) overrides the base config key by key, so a
   backtest may be looser than live trading;
2. the ``profile`` preset supplies defaults for the global level and the kill switch, which explicit
   ``global`` / ``kill_switch`` keys override (a preset is a starting point, not a floor);
3. for each limit, every level that sets it (global, market, strategy, symbol) is a constraint and the
   tightest one wins: a strategy or symbol can only tighten what the account allows.
Invalid config raises ``ConfigError`` naming the field path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from mmats.errors import ConfigError
from mmats.model import Environment, MarketType
from mmats.risk.killswitch import KillSwitchState
from mmats.risk.sessions import SESSION_PRESETS, Window, parse_days, parse_hhmm

Fraction = Annotated[float, Field(gt=0, le=1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Pct = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # may exceed 1 (leveraged exposure)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Limits(_Strict):
    """One level's limits; ``None`` = not set at this level. Percentages are fractions (0.1 = 10 %)."""

    max_position_pct: Pct | None = None
    max_order_notional: PositiveFloat | None = None
    max_concentration_pct: Pct | None = None
    max_drawdown_pct: Fraction | None = None
    max_daily_loss: PositiveFloat | None = None
    max_daily_loss_pct: Fraction | None = None
    max_weekly_loss: PositiveFloat | None = None
    max_weekly_loss_pct: Fraction | None = None
    max_monthly_loss: PositiveFloat | None = None
    max_monthly_loss_pct: Fraction | None = None
    max_open_positions: Annotated[int, Field(ge=0)] | None = None
    max_leverage: PositiveFloat | None = None
    max_market_exposure_pct: Pct | None = None
    max_gross_exposure: PositiveFloat | None = None
    max_net_exposure_pct: Pct | None = None
    max_cluster_pct: Pct | None = None
    max_margin_utilisation: Fraction | None = None
    min_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    max_signals: Annotated[int, Field(ge=1)] | None = None
    signal_window_s: PositiveFloat | None = None


#: For these keys a *higher* value is tighter; for every other key a lower value is.
HIGHER_IS_TIGHTER = frozenset({"min_confidence", "signal_window_s"})
LIMIT_KEYS = tuple(Limits.model_fields)


class WindowSpec(_Strict):
    days: str | list[str] = "mon-fri"
    start: str = "00:00"
    end: str = "24:00"
    tz: str = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, v: str | list[str]) -> str | list[str]:
        parse_days(v)
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        parse_hhmm(v)
        return v

    @field_validator("end")
    @classmethod
    def _end(cls, v: str) -> str:
        parse_hhmm(v, allow_24=True)
        return v

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like America/New_York)") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> WindowSpec:
        if parse_hhmm(self.start) >= parse_hhmm(self.end, allow_24=True):
            raise ValueError(f"start {self.start} must be before end {self.end} (split overnight windows in two)")
        return self

    def window(self) -> Window:
        return Window(parse_days(self.days), parse_hhmm(self.start), parse_hhmm(self.end, allow_24=True), self.tz)


_DEFAULT_SESSIONS: dict[MarketType, str | list[WindowSpec]] = {
    MarketType.CRYPTO: "always", MarketType.FOREX: "forex", MarketType.STOCK: "us_equity"}


class TradingHours(_Strict):
    """``markets`` maps a market to a preset name (always, us_equity, us_equity_extended, forex) or windows."""

    enabled: bool = True
    allow_exits_outside: bool = True
    markets: dict[MarketType, str | list[WindowSpec]] = Field(default_factory=lambda: dict(_DEFAULT_SESSIONS))

    @field_validator("markets")
    @classmethod
    def _presets(cls, v: dict[MarketType, str | list[WindowSpec]]) -> dict[MarketType, str | list[WindowSpec]]:
        for spec in v.values():
            if isinstance(spec, str) and spec not in SESSION_PRESETS:
                raise ValueError(f"unknown session preset {spec!r} (known: {', '.join(SESSION_PRESETS)})")
        return v

    def windows(self, market: MarketType) -> tuple[str, tuple[Window, ...]]:
        spec = self.markets.get(market, "always")
        if isinstance(spec, str):
            return spec, SESSION_PRESETS[spec]
        return "custom", tuple(w.window() for w in spec)


class CorrelationConfig(_Strict):
    """Symbols whose return correlation exceeds ``threshold`` over the last ``window`` returns form a cluster."""

    threshold: Annotated[float, Field(gt=0, le=1)] = 0.8
    window: Annotated[int, Field(ge=5)] = 60
    min_observations: Annotated[int, Field(ge=3)] = 20


class OrderRateConfig(_Strict):
    """More than ``max_orders`` approved orders within ``window_s`` seconds is an anomaly."""

    max_orders: Annotated[int, Field(ge=1)] = 60
    window_s: PositiveFloat = 60.0


class KillSwitchConfig(_Strict):
    """Automatic triggers; each moves the switch *up* to the state named by its ``on_*`` key."""

    max_drawdown_pct: Fraction | None = None
    on_max_drawdown: KillSwitchState = KillSwitchState.HARD
    daily_loss_pct: Fraction | None = None
    daily_loss: PositiveFloat | None = None
    on_daily_loss: KillSwitchState = KillSwitchState.SOFT
    daily_loss_resets_next_day: bool = False
    max_consecutive_errors: Annotated[int, Field(ge=1)] | None = None
    on_errors: KillSwitchState = KillSwitchState.FREEZE
    stale_data_s: PositiveFloat | None = None
    on_stale_data: KillSwitchState = KillSwitchState.SOFT
    on_order_rate: KillSwitchState | None = KillSwitchState.SOFT

    @field_validator("on_max_drawdown", "on_daily_loss", "on_errors", "on_stale_data", "on_order_rate")
    @classmethod
    def _not_running(cls, v: KillSwitchState | None) -> KillSwitchState | None:
        if v is KillSwitchState.RUNNING:
            raise ValueError("a trigger must move the switch to SOFT, HARD or FREEZE")
        return v


class _SizingBase(_Strict):
    max_fraction: Annotated[float, Field(gt=0, le=100)] = 1.0
    leverage: Annotated[float, Field(gt=0, le=100)] = 1.0


class FixedFractionalSpec(_SizingBase):
    method: Literal["fixed_fractional"] = "fixed_fractional"
    fraction: Annotated[float, Field(gt=0, le=100)] = 0.1


class KellySpec(_SizingBase):
    method: Literal["kelly"]
    kelly_fraction: Fraction = 0.5
    cap: Annotated[float, Field(gt=0, le=100)] = 0.25
    min_trades: Annotated[int, Field(ge=1)] = 20
    fallback_fraction: Annotated[float, Field(ge=0, le=100)] = 0.02


class VolatilityTargetSpec(_SizingBase):
    method: Literal["volatility_target"]
    risk_fraction: Fraction = 0.01
    atr_multiple: PositiveFloat = 2.0
    atr_period: Annotated[int, Field(ge=1, le=10_000)] = 14


class RiskPerTradeSpec(_SizingBase):
    method: Literal["risk_per_trade"]
    risk_pct: Fraction = 0.02


SizingSpec = Annotated[
    FixedFractionalSpec | KellySpec | VolatilityTargetSpec | RiskPerTradeSpec, Field(discriminator="method")
]


class SizingConfig(_Strict):
    default: SizingSpec | None = None
    strategies: dict[str, SizingSpec] = Field(default_factory=dict)


class AggregationConfig(_Strict):
    mode: Literal["CONSENSUS", "WEIGHTED", "PRIORITY", "INDEPENDENT"] = "INDEPENDENT"
    consensus_threshold: Annotated[float, Field(ge=0, lt=1)] = 0.5
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    priorities: dict[str, int] = Field(default_factory=dict)
    min_net_exposure: Annotated[float, Field(ge=0, le=1)] = 0.05

    @field_validator("mode", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


Profile = Literal["conservative", "moderate", "aggressive"]


class _Levels(_Strict):
    profile: Profile | None = None
    global_: Limits = Field(default_factory=Limits, alias="global")
    markets: dict[MarketType, Limits] = Field(default_factory=dict)
    strategies: dict[str, Limits] = Field(default_factory=dict)
    symbols: dict[str, Limits] = Field(default_factory=dict)
    trading_hours: TradingHours | None = None
    correlation: CorrelationConfig | None = None
    order_rate: OrderRateConfig | None = None
    kill_switch: KillSwitchConfig = Field(default_factory=KillSwitchConfig)
    sizing: SizingConfig = Field(default_factory=SizingConfig)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    assets: dict[str, str] = Field(default_factory=dict)

    @field_validator("markets", mode="before")
    @classmethod
    def _lower_markets(cls, v: Any) -> Any:
        return {str(k).lower(): x for k, x in v.items()} if isinstance(v, Mapping) else v


class EnvironmentRisk(_Levels):
    """An environment's overrides: any key of the base config except ``environments``."""


class RiskConfig(_Levels):
    environments: dict[Environment, EnvironmentRisk] = Field(default_factory=dict)

    @field_validator("environments", mode="before")
    @classmethod
    def _upper_envs(cls, v: Any) -> Any:
        return {str(k).upper(): x for k, x in v.items()} if isinstance(v, Mapping) else v

    def for_environment(self, environment: Environment) -> EffectiveRisk:
        base = self.model_dump(by_alias=True, exclude_unset=True, exclude={"environments"})
        env = self.environments.get(environment)
        merged = _deep_merge(base, env.model_dump(by_alias=True, exclude_unset=True) if env else {})
        profile = merged.pop("profile", None)
        if profile is not None:
            preset = PROFILES[profile]
            merged["global"] = {**preset["global"], **merged.get("global", {})}
            merged["kill_switch"] = {**preset["kill_switch"], **merged.get("kill_switch", {})}
        levels = _Levels.model_validate(merged)
        return EffectiveRisk(environment, profile, levels)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


# ------------------------------------------------------------------------------------------ profiles

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "conservative": {
        "global": {
            "max_position_pct": 0.10, "max_concentration_pct": 0.20, "max_drawdown_pct": 0.10,
            "max_daily_loss_pct": 0.02, "max_weekly_loss_pct": 0.05, "max_monthly_loss_pct": 0.08,
            "max_open_positions": 5, "max_leverage": 1.0, "max_market_exposure_pct": 0.60,
            "max_net_exposure_pct": 1.0, "max_cluster_pct": 0.25, "min_confidence": 0.6,
            "max_signals": 10, "signal_window_s": 3600.0,
        },
        "kill_switch": {"max_drawdown_pct": 0.15, "daily_loss_pct": 0.03, "max_consecutive_errors": 3,
                        "stale_data_s": 120.0},
    },
    "moderate": {
        "global": {
            "max_position_pct": 0.25, "max_concentration_pct": 0.40, "max_drawdown_pct": 0.20,
            "max_daily_loss_pct": 0.04, "max_weekly_loss_pct": 0.08, "max_monthly_loss_pct": 0.15,
            "max_open_positions": 10, "max_leverage": 2.0, "max_market_exposure_pct": 1.5,
            "max_net_exposure_pct": 2.0, "max_cluster_pct": 0.50, "min_confidence": 0.5,
            "max_signals": 30, "signal_window_s": 3600.0,
        },
        "kill_switch": {"max_drawdown_pct": 0.25, "daily_loss_pct": 0.06, "max_consecutive_errors": 5,
                        "stale_data_s": 300.0},
    },
    "aggressive": {
        "global": {
            "max_position_pct": 0.60, "max_concentration_pct": 0.80, "max_drawdown_pct": 0.35,
            "max_daily_loss_pct": 0.08, "max_weekly_loss_pct": 0.15, "max_monthly_loss_pct": 0.25,
            "max_open_positions": 25, "max_leverage": 5.0, "max_market_exposure_pct": 4.0,
            "max_net_exposure_pct": 5.0, "max_cluster_pct": 1.0, "min_confidence": 0.3,
            "max_signals": 120, "signal_window_s": 3600.0,
        },
        "kill_switch": {"max_drawdown_pct": 0.40, "daily_loss_pct": 0.10, "max_consecutive_errors": 10,
                        "stale_data_s": 600.0},
    },
}


# ---------------------------------------------------------------------------------------- resolution


@dataclass(frozen=True, slots=True)
class EffectiveRisk:
    """The config of one environment after overrides and profile: what the gatekeeper runs on."""

    environment: Environment
    profile: str | None
    levels: _Levels

    def resolve(self, strategy_id: str | None, market: MarketType, symbol: str | None) -> ResolvedLimits:
        """Tightest of global, market, strategy and symbol, per limit key (a level given as None is left out:
        what the account holds of a symbol is netted across strategies, a market's exposure across symbols)."""
        lv = self.levels
        chain = [lv.global_, lv.markets.get(market), None if strategy_id is None else lv.strategies.get(strategy_id),
                 None if symbol is None else lv.symbols.get(symbol)]
        values: dict[str, float] = {}
        sources: dict[str, str] = {}
        names = ("global", f"market:{market.value}", f"strategy:{strategy_id}", f"symbol:{symbol}")
        for name, limits in zip(names, chain, strict=True):
            if limits is None:
                continue
            for key in LIMIT_KEYS:
                v = getattr(limits, key)
                if v is None:
                    continue
                cur = values.get(key)
                tighter = cur is None or (v > cur if key in HIGHER_IS_TIGHTER else v < cur)
                if tighter:
                    values[key] = float(v)
                    sources[key] = name
        return ResolvedLimits(values, sources)


@dataclass(frozen=True, slots=True)
class ResolvedLimits:
    values: dict[str, float]
    sources: dict[str, str]

    def get(self, key: str) -> float | None:
        return self.values.get(key)

    def value(self, key: str, default: float = math.inf) -> float:
        return self.values.get(key, default)


def parse_risk_config(raw: Mapping[str, Any] | RiskConfig | None, path: str = "risk") -> RiskConfig:
    """Validate a raw dict; the ``ConfigError`` reads ``risk.markets.stock.max_leverage: ...``."""
    if isinstance(raw, RiskConfig):
        return raw
    try:
        return RiskConfig.model_validate(dict(raw or {}))
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{path}.{loc}" if loc else path
        raise ConfigError(f"{where}: {err['msg']} (got {err.get('input')!r})") from None

