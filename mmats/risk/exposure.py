"""What the rules measure, computed once per account snapshot in floats.

Converting a ``Decimal`` to float costs about 0.3 µs, so walking 50 positions would cost more than a
whole evaluation may take. ``AccountState`` is immutable, so the gatekeeper computes these aggregates
once per snapshot and reuses them for every intent evaluated against it; conversions are memoised by
object identity because successive snapshots share most of their Decimals.

Floats are exact enough to *compare* exposures against limits (relative error ~1e-16, far below a
lot); the final quantity goes back to ``Decimal`` and is rounded down to the lot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from mmats.model import AccountState, MarketType, PositionSnapshot

#: Yes/no thresholds (drawdown, period losses) trip this much *before* the configured value, so float
#: rounding can never let an order through that an exact Decimal check would find at the limit.
SAFETY = 1.0 - 1e-9

_SPLIT = re.compile(r"[/\-_:.]")


def base_asset(symbol: str, overrides: Mapping[str, str] | None = None) -> str:
    """The asset a symbol exposes you to: ``BTC/USDT`` and ``BTC-PERP`` are both BTC; a stock is itself."""
    if overrides and symbol in overrides:
        return overrides[symbol]
    return _SPLIT.split(symbol, 1)[0].upper() or symbol


class Exposure:
    """Per-symbol, per-market and per-asset aggregates of one account snapshot, marked at last prices."""

    __slots__ = ("account", "asset_gross", "equity", "gross", "market_gross", "net", "notional", "open_count",
                 "peak", "qty", "signed")

    def __init__(self, account: AccountState, asset_cache: dict[str, str],
                 overrides: Mapping[str, str] | None = None, memo: FloatMemo | None = None) -> None:
        self.account = account
        qty: dict[str, float] = {}
        signed: dict[str, float] = {}
        market_gross: dict[MarketType, float] = {}
        asset_gross: dict[str, float] = {}
        gross = net = 0.0
        count = 0
        qty_get = qty.get
        mkt_get = market_gross.get
        ast_get = asset_gross.get
        for p, q, s in (memo if memo is not None else FloatMemo()).open_positions(account.positions):
            a = s if s >= 0.0 else -s
            gross += a
            net += s
            sym = p.symbol
            prev = qty_get(sym)
            if prev is None:
                count += 1
                qty[sym] = q
                signed[sym] = s
            else:  # the same symbol twice (several sub-accounts): add up
                qty[sym] = prev + q
                signed[sym] += s
            market_gross[p.market] = mkt_get(p.market, 0.0) + a
            asset = asset_cache.get(sym)
            if asset is None:
                asset = asset_cache[sym] = base_asset(sym, overrides)
            asset_gross[asset] = ast_get(asset, 0.0) + a
        self.qty = qty
        self.notional = {k: (v if v >= 0.0 else -v) for k, v in signed.items()}
        self.signed = signed
        self.market_gross = market_gross
        self.asset_gross = asset_gross
        self.gross = gross
        self.net = net
        self.open_count = count
        self.equity = float(account.equity)
        self.peak = float(account.peak_equity)


class FloatMemo:
    """Float figures of the last position snapshot seen per symbol (the snapshot is kept alongside and
    compared by identity, so figures are never taken for another object)."""

    __slots__ = ("_last", "values")

    def __init__(self) -> None:
        self.values: dict[str, tuple[PositionSnapshot, float, float]] = {}
        # the last tuple of positions asked about and the answer (the gate and the signal path ask in turn)
        self._last: tuple[tuple[PositionSnapshot, ...], list[tuple[PositionSnapshot, float, float]]] | None = None

    def open_positions(self, positions: Iterable[PositionSnapshot]) -> list[tuple[PositionSnapshot, float, float]]:
        """Each open position with its float quantity and signed value in base currency, in order.

        Decimal -> float costs ~0.3 µs; successive snapshots mostly share the same position snapshots
        (the ledger and the re-marking reuse those of positions that did not move), so a symbol's figures
        are reused while its snapshot is the same object. The answer is shared by the callers that ask
        about the same tuple: read only."""
        last = self._last
        if last is not None and last[0] is positions:
            return last[1]
        cache = self.values
        out: list[tuple[PositionSnapshot, float, float]] = []
        for p in positions:
            e = cache.get(p.symbol)
            if e is None or e[0] is not p:
                dq = p.quantity
                if not dq:
                    continue
                fq = float(dq)
                v = fq * float(p.last_price)
                if p.fx_rate != 1:  # quoted in another currency than the account's base (mmats.fx)
                    v *= float(p.fx_rate)
                e = cache[p.symbol] = (p, fq, v)
            out.append(e)
        self._last = (positions, out) if type(positions) is tuple else None
        return out
