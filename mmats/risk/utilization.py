"""How close the account is to each configured limit: current value / limit, per limit and scope.

Measured with the gatekeeper's own tools, so the figures are the ones its rules compare: exposure from
``Exposure`` (the same aggregates the exposure rules read), limits from ``EffectiveRisk.resolve`` (the
same tightest-level-wins precedence), drawdown and period losses from the kill-switch monitor's equity
references (peak, start of the day) that ``MaxDrawdown`` and ``PeriodLoss`` use.

Scopes: a position limit is shown per held symbol (the account nets strategies per symbol, so the
strategy level is not part of it); a market limit per market held; everything else for the account
(the ``global`` level). Kill-switch thresholds are listed with level ``kill_switch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mmats.model import AccountState, MarketType
from mmats.risk.exposure import Exposure
from mmats.risk.limits import EffectiveRisk, KillSwitchConfig, Limits


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One limit: what it caps (``scope``), where its value comes from (``level``), and how much is used."""

    limit: str
    scope: str
    level: str
    limit_value: float
    current: float
    utilization_pct: float


@dataclass(frozen=True, slots=True)
class ExposureShare:
    name: str
    notional: float
    pct_of_equity: float


@dataclass(frozen=True, slots=True)
class Utilization:
    equity: float
    gross_exposure: float
    net_exposure: float
    items: tuple[LimitUse, ...]
    by_symbol: tuple[ExposureShare, ...]
    by_market: tuple[ExposureShare, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Items:
    def __init__(self) -> None:
        self.items: list[LimitUse] = []

    def add(self, key: str, scope: str, level: str, limit: float | None, current: float) -> None:
        """A limit that is not set (or not positive) is not shown: there is nothing to be close to."""
        if limit is None or not limit > 0:
            return
        self.items.append(LimitUse(key, scope, level, float(limit), round(current, 8),
                                   round(100 * current / limit, 2)))


def measure(account: AccountState | None, effective: EffectiveRisk, *, peak_equity: float | None = None,
            day_start_equity: float | None = None, assets: Mapping[str, str] | None = None) -> Utilization:
    """The utilisation of ``effective``'s limits by ``account`` (None: no account seen yet, all at 0).

    ``peak_equity`` and ``day_start_equity`` are the monitor's references; without them the account's own
    peak is used and the daily loss counts as 0.
    """
    exp = Exposure(account, {}, assets) if account is not None else None
    equity = exp.equity if exp is not None else 0.0
    per_equity = equity if equity > 0 else math.inf  # shares of a non-positive equity read as 0, not infinity
    glob: Limits = effective.levels.global_
    out = _Items()

    by_symbol: list[ExposureShare] = []
    markets: dict[MarketType, float] = {}
    if exp is not None:
        for symbol, signed in exp.signed.items():
            notional = abs(signed)
            share = notional / equity if equity > 0 else 0.0
            by_symbol.append(ExposureShare(symbol, round(signed, 2), round(share, 6)))
            market = _market_of(account, symbol)
            resolved = effective.resolve(None, market, symbol)
            out.add("max_position_pct", f"symbol:{symbol}", resolved.sources.get("max_position_pct", "global"),
                    resolved.get("max_position_pct"), share)
        markets = dict(exp.market_gross)
    if not by_symbol:  # flat: the position limit is still there, at 0 %
        out.add("max_position_pct", "any symbol", "global", glob.max_position_pct, 0.0)

    gross = exp.gross if exp is not None else 0.0
    net = exp.net if exp is not None else 0.0
    peak = max(exp.peak if exp is not None else 0.0, peak_equity or 0.0)
    drawdown = max(0.0, 1.0 - equity / peak) if peak > 0 else 0.0
    day_start = day_start_equity if day_start_equity is not None and math.isfinite(day_start_equity) else None
    daily_loss = max(0.0, day_start - equity) if day_start is not None else 0.0
    loss_base = abs(day_start) if day_start else per_equity  # PeriodLoss: a share of the day's start

    out.add("max_open_positions", "account", "global", glob.max_open_positions,
            float(exp.open_count) if exp is not None else 0.0)
    out.add("max_leverage", "account", "global", glob.max_leverage, gross / per_equity)
    out.add("max_gross_exposure", "account", "global", glob.max_gross_exposure, gross)
    out.add("max_net_exposure_pct", "account", "global", glob.max_net_exposure_pct, abs(net) / per_equity)
    out.add("max_drawdown_pct", "account", "global", glob.max_drawdown_pct, drawdown)
    out.add("max_margin_utilisation", "account", "global", glob.max_margin_utilisation,
            float(account.margin_used) / per_equity if account is not None else 0.0)
    out.add("max_daily_loss", "account", "global", glob.max_daily_loss, daily_loss)
    out.add("max_daily_loss_pct", "account", "global", glob.max_daily_loss_pct, daily_loss / loss_base)
    for market, notional in sorted(markets.items(), key=lambda kv: kv[0].value):
        resolved = effective.resolve(None, market, None)
        out.add("max_market_exposure_pct", f"market:{market.value}",
                resolved.sources.get("max_market_exposure_pct", "global"),
                resolved.get("max_market_exposure_pct"), notional / per_equity)
    ks: KillSwitchConfig = effective.levels.kill_switch
    out.add("kill_switch.max_drawdown_pct", "account", "kill_switch", ks.max_drawdown_pct, drawdown)
    out.add("kill_switch.daily_loss_pct", "account", "kill_switch", ks.daily_loss_pct, daily_loss / loss_base)
    out.add("kill_switch.daily_loss", "account", "kill_switch", ks.daily_loss, daily_loss)

    by_market = tuple(ExposureShare(m.value, round(v, 2), round(v / equity, 6) if equity > 0 else 0.0)
                      for m, v in sorted(markets.items(), key=lambda kv: kv[0].value))
    return Utilization(equity, round(gross, 2), round(net, 2), tuple(out.items), tuple(by_symbol), by_market)


def _market_of(account: AccountState | None, symbol: str) -> MarketType:
    p = account.position(symbol) if account is not None else None
    return p.market if p is not None else MarketType.CRYPTO
