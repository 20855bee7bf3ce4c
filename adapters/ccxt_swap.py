"""USDT-margined perpetual swaps through ccxt (Binance USDⓈ-M): the spot adapter plus what a swap adds.

A swap account differs from a spot one in four ways, and only those are overridden here: the leverage of
each symbol is set at the venue before its first order (and the instrument says it, so the gatekeeper's
margin check uses the venue's terms); an order that only closes is sent ``reduceOnly`` (the venue then
refuses it rather than open the opposite position if the position is already gone); positions are the
venue's own (signed contracts, not base balances); and funding payments are read back from the venue's
income history as ``mmats.margin.FundingPayment`` values, for the account to book. Order lookup, cancels,
fills, error translation and precision checks are the spot adapter's, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from adapters.ccxt_broker import PROFILES, CcxtVenue, ClientIdLookup, ExchangeProfile, TradePaging, _dec
from adapters.ccxt_client import make_exchange
from mmats.execution.venue import AccountCheck, RejectKind, VenueError, VenueOrder, VenuePosition
from mmats.margin import FundingPayment
from mmats.model import Environment, Instrument, InstrumentKind, Order, OrderType

_DAY_MS = 86_400_000


def _futures_account(exchange: Any) -> AccountCheck:
    """``GET /fapi/v2/account``: the futures account's ``canTrade``."""
    info = exchange.fapiPrivateV2GetAccount()
    can = str(info.get("canTrade")).lower() in ("true", "1")
    return AccountCheck(True, can, None, f"futures account canTrade={info.get('canTrade')}")


#: Binance USDⓈ-M: the spot row's lookups and error words, with the futures order types and account.
SWAP_PROFILES: dict[str, ExchangeProfile] = {
    "binance": replace(
        PROFILES["binance"],
        order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
        market_order_types=None,
        lookups=(ClientIdLookup("fetch_order", "origClientOrderId"),),
        trade_paging=TradePaging("from_id", 1000, 7 * _DAY_MS),
        account=_futures_account,
        reject_patterns=(("-2022", RejectKind.INVALID_SIZE), ("-4028", RejectKind.INVALID_SIZE),
                         *PROFILES["binance"].reject_patterns),
        notes={"market": "USDⓈ-M perpetual swaps, one-way mode, cross margin",
               "reduce-only": "orders that only close are sent reduceOnly=true",
               "leverage": "POST /fapi/v1/leverage per symbol before its first order"},
    ),
}


class CcxtSwapVenue(CcxtVenue):
    """Perpetual swaps ``BASE/QUOTE:SETTLE`` (ccxt's notation, e.g. ``BTC/USDT:USDT``) on one account."""

    def __init__(self, exchange: Any, *, name: str, environment: Environment, symbols: Sequence[str],
                 leverage: Mapping[str, int], profile: ExchangeProfile | None = None) -> None:
        exchange_id = str(exchange.id)
        if profile is None and exchange_id not in SWAP_PROFILES:
            raise ValueError(f"ccxt exchange {exchange_id!r}: perpetual swaps are supported on "
                             f"{', '.join(sorted(SWAP_PROFILES))}")
        super().__init__(exchange, name=name, environment=environment, symbols=symbols,
                         profile=profile or SWAP_PROFILES[exchange_id])
        missing = [s for s in symbols if s not in leverage]
        if missing:
            raise ValueError(f"{name}: no leverage for {missing} (a swap's leverage is set before its first order)")
        self.leverage = {s: int(leverage[s]) for s in symbols}
        self._leverage_set: set[str] = set()

    @staticmethod
    def _bases_of(symbols: Sequence[str]) -> dict[str, str]:
        for symbol in symbols:
            if symbol.count("/") != 1 or ":" not in symbol:
                raise ValueError(f"{symbol!r}: a ccxt perpetual swap symbol is BASE/QUOTE:SETTLE (e.g. BTC/USDT:USDT)")
        return {}  # positions are the venue's own, not base balances

    @classmethod
    def connect_swap(cls, exchange_id: str, *, api_key: str, secret: str, environment: Environment,
                     symbols: Sequence[str], leverage: Mapping[str, int], api_base: str | None = None,
                     timeout_ms: int = 10_000, name: str | None = None) -> CcxtSwapVenue:
        """The exchange's client set to its linear (USDT-margined) swap markets."""
        if exchange_id not in SWAP_PROFILES:
            raise ValueError(f"ccxt exchange {exchange_id!r}: perpetual swaps are supported on "
                             f"{', '.join(sorted(SWAP_PROFILES))}")
        exchange = make_exchange(exchange_id, api_key=api_key, secret=secret, api_base=api_base,
                                 timeout_ms=timeout_ms,
                                 options={"defaultType": "future", "defaultSubType": "linear",
                                          "fetchMarkets": {"types": ["linear"]}})
        if environment is Environment.PAPER and api_base is None:
            exchange.set_sandbox_mode(True)
        return cls(exchange, name=name or exchange_id, environment=environment, symbols=symbols, leverage=leverage)

    # ------------------------------------------------------------------------------ VenueClient

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        """The venue's precisions, held as perpetuals at the leverage this venue sets."""
        spot_like = super().instruments(symbols)
        return {s: replace(i, kind=InstrumentKind.PERPETUAL, leverage=float(self.leverage[s]), initial_margin=None,
                           maintenance_margin=None, shortable=None) for s, i in spot_like.items()}

    def place(self, order: Order, children: Sequence[Order] = ()) -> VenueOrder:
        if order.symbol not in self.leverage:
            raise VenueError(f"{self.name}: {order.symbol} is not one of this venue's swaps", retryable=False,
                             kind=RejectKind.INVALID_SYMBOL)
        if order.symbol not in self._leverage_set:
            self._call(self.exchange.set_leverage, self.leverage[order.symbol], order.symbol)
            self._leverage_set.add(order.symbol)
        if not order.reduce_only:
            return super().place(order, children)
        # reduceOnly rides along with the spot adapter's own parameters
        create = self.exchange.create_order

        def reduce_only(symbol: str, kind: str, side: str, amount: Any, price: Any = None,
                        params: dict[str, Any] | None = None) -> Any:
            return create(symbol, kind, side, amount, price, {**(params or {}), "reduceOnly": True})

        self.exchange.create_order = reduce_only
        try:
            return super().place(order, children)
        finally:
            self.exchange.create_order = create

    def positions(self) -> list[VenuePosition]:
        """The venue's open positions on the configured swaps (signed: short is negative)."""
        rows = self._call(self.exchange.fetch_positions, self.symbols)
        out = []
        for row in rows:
            symbol = str(row.get("symbol") or "")
            contracts = _dec(row.get("contracts")) or Decimal(0)
            if symbol not in self.leverage or contracts == 0:
                continue
            size = contracts * (_dec(row.get("contractSize")) or Decimal(1))
            out.append(VenuePosition(symbol, -size if str(row.get("side")) == "short" else size))
        return out

    def balances(self) -> dict[str, Decimal]:
        return {c: q for c, q in self._totals().items() if q != 0}

    def funding(self, since_ns: int) -> list[FundingPayment]:
        """Funding paid and received on the configured swaps since ``since_ns``, oldest first."""
        out: list[FundingPayment] = []
        since_ms = max(0, since_ns // 1_000_000)
        for symbol in self.symbols:
            for row in self._call(self.exchange.fetch_funding_history, symbol, since_ms, None, {}):
                amount = _dec(row.get("amount")) or Decimal(0)
                out.append(FundingPayment(symbol, int(row.get("timestamp") or 0) * 1_000_000, 0.0, Decimal(0),
                                          Decimal(0), amount))
        return sorted(out, key=lambda p: (p.ts_ns, p.symbol))

    def account_check(self) -> AccountCheck:
        check: AccountCheck = self._call(self.profile.account, self.exchange)
        return check
