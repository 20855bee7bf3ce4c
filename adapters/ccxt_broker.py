"""Crypto exchanges (spot) through ccxt's unified API: the ``VenueClient`` of ``mmats.execution.venue``.

Why it is built this way:

- A translator, not a broker. Every method is one question to the exchange and one answer in the
  kernel's vocabulary (``VenueOrder``, ``VenueFill``, ...) or one typed ``VenueError``. No order state
  is kept here: the safety rules (ask before resend, UNKNOWN until reconciled, ...) live in
  ``mmats.execution.live`` once for every venue, and they only work if this layer never guesses.
- One adapter for every ccxt exchange. What differs between exchanges and cannot be read from ccxt
  (``exchange.has``, the market structure, ``precisionMode``) is one ``ExchangeProfile`` per exchange id
  in ``PROFILES``: how to look an order up by client id, how to cancel one, how trade history pages,
  which error texts mean which rejection, how the key's permissions are read. Outside that table there
  is no ``if exchange == ...``; Binance and Bybit run the same tests.
- Nothing is rounded here. The kernel rounds quantities and prices to the venue's precision (toward the
  safe side) before ``place``; an order off the lot or off the tick is refused by name *before* any HTTP
  call, because ccxt's own ``amount_to_precision`` / ``price_to_precision`` would otherwise truncate or
  round it half-up silently and the venue would trade something else than the order says. Numbers go
  out as exact decimal strings and come back as strings (``exchange.number = str``): money never passes
  through a float.
- Errors say what a user can do (``RejectKind``) and whether the venue acted. While *placing*, anything
  that may have reached the venue (timeout, 5xx, dropped connection, an error ccxt does not classify) is
  ``SubmitTimeout``: the order may exist, the kernel asks before anything is resent. A refused
  connection, a rate limit (with the venue's Retry-After) and an out-of-window timestamp are
  retryable: the venue certainly did not act. ``fetch_order`` answers None only when the venue says
  "no such order", never because a read failed.
- ccxt's rate limiter is on and ccxt never retries; calls to the one ccxt client are serialised (it
  is not thread-safe) and run in a private ``decimal`` context, because ccxt's precision helpers set
  the calling thread's rounding to half-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, Literal

import ccxt
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from adapters.bar_source import decimal_places
from adapters.ccxt_client import make_exchange
from mmats.execution.venue import (
    AccountCheck,
    DuplicateOrder,
    RejectKind,
    SubmitTimeout,
    VenueCapabilities,
    VenueError,
    VenueFill,
    VenueOrder,
    VenuePosition,
)
from mmats.model import Environment, Instrument, Liquidity, MarketType, Order, OrderStatus, OrderType, Side, TimeInForce

__all__ = ["PROFILES", "CcxtVenue", "ClientIdLookup", "ExchangeProfile", "TradePaging", "instrument_from_market",
           "translate_error"]

_DAY_MS = 86_400_000
_ABSENT: Any = object()  # a lookup's "no such order", distinct from any answer


# ------------------------------------------------------------------------------------ capability table


@dataclass(frozen=True, slots=True)
class ClientIdLookup:
    """One way an exchange finds an order by client id: a ccxt method, called ``(None, symbol, {param: cid})``
    (``returns_list=False``: ``fetch_order``, absence is ``OrderNotFound``) or ``(symbol, None, None,
    {param: cid})`` (``returns_list=True``: an empty list is absence)."""

    method: str
    param: str
    returns_list: bool = False


@dataclass(frozen=True, slots=True)
class TradePaging:
    """How the exchange's own trade history pages. ``from_id``: ascending pages from a trade id
    (``fromId``, Binance); ``cursor``: an opaque ``nextPageCursor`` inside a time window (Bybit).
    ``window_ms``: the widest startTime..endTime span one request may ask for; ``history_ms``: how far
    back the exchange keeps trades (None: no documented limit)."""

    style: Literal["from_id", "cursor"]
    limit: int
    window_ms: int
    id_param: str = "fromId"
    cursor_param: str = "cursor"
    history_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ExchangeProfile:
    """Everything exchange-specific the adapter needs that ccxt's unified API does not say.

    ``market_order_types``: names of our order types in the market's ``info.orderTypes`` list, for
    exchanges that list them per market (None: not listed, the static ``order_types`` decide).
    ``answers_complete``: create/cancel answers carry the order's status and fills (otherwise only ids,
    and the order is read back). ``cancel_trigger_flag``: an untriggered stop order is cancelled with
    ccxt's ``trigger`` param (Bybit's ``orderFilter=StopOrder``), so the order is read first.
    ``untriggered_statuses``: the exchange's raw statuses of such a stop order.
    ``trade_fee_currency_field``: the field of the raw trade that names the fee currency when ccxt
    infers it instead of reading it. ``not_found_patterns``: a lookup's "no such order";
    ``closed_patterns``: a cancel's "that order is no longer open" (it is then read back).
    ``reject_patterns``: substrings of the exchange's error answer -> the rejection a user can act on
    (checked before ccxt's exception class, which is often too coarse).
    ``prepare``: ccxt methods called once before the first order, so that ``place`` never triggers a
    first-use read whose failure would look like a lost order. ``ids_per_symbol``: the exchange numbers
    orders and trades per symbol (Binance), so the same id exists on two markets; the adapter reports
    them as ``"BTC/USDT:42"`` to keep ``venue_order_id`` and ``fill_id`` unique per venue, as the kernel
    keys on them.
    """

    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    lookups: tuple[ClientIdLookup, ...]
    cancel_param: str
    trade_paging: TradePaging
    account: Callable[[Any], AccountCheck]
    market_order_types: Mapping[OrderType, str] | None = None
    answers_complete: bool = True
    cancel_trigger_flag: bool = False
    stop_param: str = "triggerPrice"
    trade_client_id_field: str | None = None
    trade_fee_currency_field: str | None = None
    open_orders_page_limit: int | None = None
    rate_limit_reset_header: str | None = None
    reject_patterns: tuple[tuple[str, RejectKind], ...] = ()
    duplicate_patterns: tuple[str, ...] = ()
    not_found_patterns: tuple[str, ...] = ()
    closed_patterns: tuple[str, ...] = ()
    untriggered_statuses: tuple[str, ...] = ()
    prepare: tuple[str, ...] = ()
    ids_per_symbol: bool = False
    notes: Mapping[str, str] = field(default_factory=dict)


def _binance_account(exchange: Any) -> AccountCheck:
    """The account and then the key. ``GET /api/v3/account``: the account's ``canTrade`` and permission
    sets (SPOT); its ``canWithdraw`` is the ACCOUNT's, true for a trade-only key too, so it is not used.
    ``GET /sapi/v1/account/apiRestrictions`` (signed): this key's own ``enableSpotAndMarginTrading`` and
    ``enableWithdrawals``. The spot testnet serves no ``sapi`` (ccxt has no URL for it in sandbox mode):
    there the key's withdraw flag is unknown (None) and its trading right is the account's."""
    info = exchange.privateGetAccount()
    permissions = [str(p) for p in info.get("permissions") or []]
    permissions += [str(p) for group in info.get("permissionSets") or [] for p in group]
    spot = not permissions or "SPOT" in permissions
    account_trades = bool(info.get("canTrade")) and spot
    detail = (f"account canTrade={info.get('canTrade')} canWithdraw={info.get('canWithdraw')} "
              f"permissions={sorted(set(permissions))}")
    if not (exchange.urls.get("api") or {}).get("sapi"):
        return AccountCheck(True, account_trades, None, f"{detail}; key restrictions not served here (testnet)")
    key = exchange.sapiGetAccountApiRestrictions() or {}
    key_trades = _flag(key.get("enableSpotAndMarginTrading"))
    return AccountCheck(True, account_trades and key_trades, _flag(key.get("enableWithdrawals")),
                        f"{detail}; key enableReading={key.get('enableReading')} "
                        f"enableSpotAndMarginTrading={key.get('enableSpotAndMarginTrading')} "
                        f"enableWithdrawals={key.get('enableWithdrawals')}")


def _flag(value: Any) -> bool:
    """A venue's boolean, which may arrive as a JSON bool or (``exchange.number = str``) as text."""
    return value is True or str(value).lower() in ("true", "1")


def _bybit_account(exchange: Any) -> AccountCheck:
    """``GET /v5/user/query-api``: read-only flag, SpotTrade and Wallet/Withdraw permissions of this key."""
    info = (exchange.privateGetV5UserQueryApi() or {}).get("result") or {}
    permissions = info.get("permissions") or {}
    read_only = str(info.get("readOnly", "0")) not in ("0", "False", "false")
    can_trade = not read_only and "SpotTrade" in (permissions.get("Spot") or [])
    can_withdraw = "Withdraw" in (permissions.get("Wallet") or [])
    return AccountCheck(True, can_trade, can_withdraw,
                        f"readOnly={info.get('readOnly')} permissions={dict(permissions)}")


_ALL_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT})
_GTC_IOC_FOK = frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK})

#: The capability table, keyed by ccxt exchange id. An exchange not listed here is refused at build:
#: its lookups and error words would be guesses.
PROFILES: dict[str, ExchangeProfile] = {
    "binance": ExchangeProfile(
        order_types=_ALL_TYPES,
        time_in_force=_GTC_IOC_FOK,
        market_order_types={OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT", OrderType.STOP: "STOP_LOSS",
                            OrderType.STOP_LIMIT: "STOP_LOSS_LIMIT"},
        lookups=(ClientIdLookup("fetch_order", "origClientOrderId"),),
        cancel_param="origClientOrderId",
        # myTrades: 1000 a page, startTime..endTime at most 24 h apart, then fromId onwards
        trade_paging=TradePaging("from_id", 1000, _DAY_MS),
        account=_binance_account,
        reject_patterns=(("MARKET_LOT_SIZE", RejectKind.INVALID_SIZE), ("LOT_SIZE", RejectKind.INVALID_SIZE),
                         ("NOTIONAL", RejectKind.INVALID_SIZE), ("MIN_QTY", RejectKind.INVALID_SIZE),
                         ("PERCENT_PRICE", RejectKind.INVALID_PRICE), ("PRICE_FILTER", RejectKind.INVALID_PRICE),
                         ("Stop price would trigger immediately", RejectKind.INVALID_PRICE),
                         ("Invalid symbol", RejectKind.INVALID_SYMBOL),
                         ("Market is closed", RejectKind.MARKET_CLOSED),
                         ("may not place or cancel orders", RejectKind.PERMISSION_MISSING)),
        duplicate_patterns=("Duplicate order sent",),
        not_found_patterns=("-2013", "Order does not exist"),
        closed_patterns=("-2011", "Unknown order sent"),
        ids_per_symbol=True,  # orderId and trade id count per symbol
        notes={"STOP": "STOP_LOSS (stop-market) where the market lists it", "STOP_LIMIT": "STOP_LOSS_LIMIT",
               "fees": "in the asset Binance charges (commissionAsset: quote, base received, or BNB)",
               "client id": "newClientOrderId; unique among open orders only (a closed order's id is accepted again)",
               "account_check": "GET /api/v3/account canTrade (account), then GET /sapi/v1/account/apiRestrictions "
                                "enableSpotAndMarginTrading / enableWithdrawals (this key)"},
    ),
    "bybit": ExchangeProfile(
        order_types=_ALL_TYPES,
        time_in_force=_GTC_IOC_FOK,
        # /v5/order/realtime answers by orderLinkId whatever the status (recent orders); history has the rest
        lookups=(ClientIdLookup("fetch_open_orders", "orderLinkId", returns_list=True),
                 ClientIdLookup("fetch_canceled_and_closed_orders", "orderLinkId", returns_list=True)),
        cancel_param="orderLinkId",
        answers_complete=False,
        cancel_trigger_flag=True,
        # /v5/execution/list: 100 a page with a cursor, a window of at most 7 days, two years kept
        trade_paging=TradePaging("cursor", 100, 7 * _DAY_MS, history_ms=730 * _DAY_MS),
        account=_bybit_account,
        trade_client_id_field="orderLinkId",
        trade_fee_currency_field="feeCurrency",
        open_orders_page_limit=50,
        rate_limit_reset_header="X-Bapi-Limit-Reset-Timestamp",
        reject_patterns=(("170121", RejectKind.INVALID_SYMBOL), ("170131", RejectKind.INSUFFICIENT_FUNDS),
                         ("170135", RejectKind.INVALID_SIZE), ("170136", RejectKind.INVALID_SIZE),
                         ("170137", RejectKind.INVALID_SIZE), ("170140", RejectKind.INVALID_SIZE),
                         ("170148", RejectKind.INVALID_SIZE), ("170124", RejectKind.INVALID_SIZE),
                         ("170132", RejectKind.INVALID_PRICE), ("170133", RejectKind.INVALID_PRICE),
                         ("170134", RejectKind.INVALID_PRICE), ("170192", RejectKind.INVALID_PRICE),
                         ("170193", RejectKind.INVALID_PRICE), ("170194", RejectKind.INVALID_PRICE),
                         ("170151", RejectKind.MARKET_CLOSED), ("170157", RejectKind.PERMISSION_MISSING)),
        duplicate_patterns=("170141", "110072", "Duplicate clientOrderId"),
        not_found_patterns=("170213", "110001", "Order does not exist"),
        closed_patterns=("170213", "170139", "170142", "170190"),
        untriggered_statuses=("Untriggered",),
        prepare=("is_unified_enabled",),
        notes={"STOP": "spot conditional order (orderFilter=StopOrder), market on trigger",
               "STOP_LIMIT": "spot conditional order, limit on trigger",
               "fees": "execFee in feeCurrency (spot buys: usually the base coin)",
               "client id": "orderLinkId, unique per account",
               "account_check": "GET /v5/user/query-api (readOnly, Spot SpotTrade, Wallet Withdraw)"},
    ),
}


# ------------------------------------------------------------------------------------ pure translation


def _dec(value: Any) -> Decimal | None:
    """A venue number as Decimal (ccxt gives strings here, floats elsewhere; both through ``str``)."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _plain(value: Decimal) -> str:
    """An exact decimal string the venues parse (never ``1E-7``)."""
    return format(value, "f")


def _step(value: Any, mode: int, what: str, symbol: str) -> Decimal:
    """One precision entry of ccxt's market structure as a step size, in the exchange's ``precisionMode``."""
    raw = _dec(value)
    if raw is None or raw <= 0:
        raise VenueError(f"{symbol}: the venue gives no {what} precision", retryable=False,
                         kind=RejectKind.INVALID_SYMBOL)
    if mode == TICK_SIZE:
        return raw.normalize()
    if mode == DECIMAL_PLACES:
        if raw != raw.to_integral_value():
            raise VenueError(f"{symbol}: {what} precision {value} is not a number of decimal places",
                             retryable=False, kind=RejectKind.OTHER)
        return Decimal(1).scaleb(-int(raw))
    if mode == SIGNIFICANT_DIGITS:
        raise VenueError(f"{symbol}: the venue counts {what} precision in significant digits, so its step depends on "
                         "the value; a fixed tick or lot cannot be given", retryable=False,
                         kind=RejectKind.UNSUPPORTED)
    raise VenueError(f"{symbol}: unknown ccxt precisionMode {mode}", retryable=False, kind=RejectKind.UNSUPPORTED)


def instrument_from_market(market: Mapping[str, Any], kind: MarketType = MarketType.CRYPTO,
                           precision_mode: int = TICK_SIZE) -> Instrument:
    """What the venue accepts for one symbol, from ccxt's market structure and the exchange's
    ``precisionMode`` (``exchange.precisionMode``): TICK_SIZE gives steps, DECIMAL_PLACES counts
    decimals; SIGNIFICANT_DIGITS has no fixed step and is refused rather than guessed."""
    symbol = str(market["symbol"])
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = _step(precision.get("price"), precision_mode, "price", symbol)
    lot = _step(precision.get("amount"), precision_mode, "amount", symbol)
    price_places = decimal_places(tick)
    min_cost = _dec((limits.get("cost") or {}).get("min")) or Decimal(0)
    min_amount = _dec((limits.get("amount") or {}).get("min")) or Decimal(0)
    return Instrument(symbol, kind, str(market["quote"]), price_places, decimal_places(lot), lot,
                      min_cost.normalize() if min_cost else Decimal(0),
                      tick_size=None if tick == Decimal(1).scaleb(-price_places) else tick,
                      min_quantity=min_amount.normalize() if min_amount else Decimal(0))


def _refused(exc: BaseException) -> bool:
    """Whether the connection was never made (nothing reached the venue): ccxt folds it into NetworkError."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _matches(text: str, patterns: Iterable[str]) -> bool:
    return any(p in text for p in patterns)


def _retry_after(headers: Mapping[str, Any] | None, profile: ExchangeProfile, now_ms: int) -> float | None:
    """The venue's own wait: ``Retry-After`` seconds, or the profile's reset-timestamp header (ms)."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    value = _dec(lowered.get("retry-after"))
    if value is not None and value >= 0:
        return float(value)
    if profile.rate_limit_reset_header:
        reset = _dec(lowered.get(profile.rate_limit_reset_header.lower()))
        if reset is not None:
            return max(0.0, float(reset - now_ms) / 1000)
    return None


#: ccxt's exception classes -> what a user can do, for errors no pattern of the profile recognised.
_FINAL_KINDS: tuple[tuple[type[Exception], RejectKind], ...] = (
    (ccxt.InsufficientFunds, RejectKind.INSUFFICIENT_FUNDS),
    (ccxt.BadSymbol, RejectKind.INVALID_SYMBOL),
    (ccxt.MarketClosed, RejectKind.MARKET_CLOSED),
    (ccxt.PermissionDenied, RejectKind.PERMISSION_MISSING),  # subclasses of AuthenticationError: first
    (ccxt.AccountSuspended, RejectKind.PERMISSION_MISSING),
    (ccxt.AuthenticationError, RejectKind.AUTHENTICATION_FAILED),
    (ccxt.NotSupported, RejectKind.UNSUPPORTED),
    (ccxt.ArgumentsRequired, RejectKind.OTHER),  # raised by ccxt itself, before any request
    (ccxt.InvalidOrder, RejectKind.OTHER),
    (ccxt.BadRequest, RejectKind.OTHER),
    (ccxt.OperationRejected, RejectKind.OTHER),
)


def translate_error(exc: Exception, profile: ExchangeProfile, *, placing: bool,
                    headers: Mapping[str, Any] | None = None, now_ms: int | None = None) -> VenueError:
    """One ccxt exception -> one typed ``VenueError`` (see the module docstring for the rules).

    Order matters: "duplicate" first (Binance says it with the same code as insufficient funds), then a
    refused connection and a rate limit (the venue did not act), then the profile's words, then ccxt's
    class, and whatever is left is a lost answer while placing and a retryable failure otherwise.
    """
    text = f"{type(exc).__name__}: {exc}"
    if placing and (isinstance(exc, ccxt.DuplicateOrderId) or _matches(text, profile.duplicate_patterns)):
        return DuplicateOrder(text)
    if _refused(exc):
        return VenueError(text, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection) or " 429 " in str(exc):
        wait = _retry_after(headers, profile, now_ms if now_ms is not None else int(time.time() * 1000))
        return VenueError(text, retryable=True, kind=RejectKind.RATE_LIMITED, retry_after_s=wait)
    if isinstance(exc, ccxt.InvalidNonce):  # request outside the venue's time window: refused unread
        return VenueError(text, retryable=True, kind=RejectKind.OTHER)
    for pattern, kind in profile.reject_patterns:
        if pattern in text:
            return VenueError(text, retryable=False, kind=kind)
    for cls, kind in _FINAL_KINDS:
        if isinstance(exc, cls):
            return VenueError(text, retryable=False, kind=kind)
    if placing:
        return SubmitTimeout(text)
    return VenueError(text, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)


_STATUS = {"open": OrderStatus.ACCEPTED, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
           "cancelled": OrderStatus.CANCELED, "rejected": OrderStatus.REJECTED, "expired": OrderStatus.EXPIRED}


def _status(info: Mapping[str, Any], amount: Decimal, filled: Decimal) -> OrderStatus:
    """ccxt's unified status -> ours. An answer without a status is an acknowledgement (Bybit's create
    answer): the venue holds the order. "closed" short of the amount is a cancel of the rest (Bybit's
    PartiallyFilledCanceled), never FILLED."""
    raw = str(info.get("status") or "").lower()
    if not raw:
        return OrderStatus.ACCEPTED
    status = _STATUS.get(raw, OrderStatus.UNKNOWN)
    if status is OrderStatus.ACCEPTED and filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    if status is OrderStatus.FILLED and amount > 0 and filled < amount:
        return OrderStatus.CANCELED
    return status


# ------------------------------------------------------------------------------------------ the adapter


class CcxtVenue:
    """One spot account on one ccxt exchange. Build it with ``connect`` (keys, address) or, in tests,
    ``CcxtVenue(exchange, name=..., environment=..., symbols=...)`` around a ccxt client of your own."""

    def __init__(self, exchange: Any, *, name: str, environment: Environment, symbols: Sequence[str],
                 profile: ExchangeProfile | None = None) -> None:
        if environment is Environment.BACKTEST:
            raise ValueError("a ccxt venue is PAPER (an exchange's test account) or LIVE, never BACKTEST")
        exchange_id = str(exchange.id)
        if profile is None and exchange_id not in PROFILES:
            raise ValueError(f"ccxt exchange {exchange_id!r} has no entry in adapters.ccxt_broker.PROFILES "
                             f"(known: {', '.join(sorted(PROFILES))}): its lookups and error words would be guesses")
        self.exchange = exchange
        self.exchange.number = str  # ccxt's documented alternative to float: amounts stay exact strings
        self.name = name
        self.environment: Environment = environment
        self.profile = profile or PROFILES[exchange_id]
        self.symbols = list(symbols)
        self._bases = self._bases_of(self.symbols)
        self._lock = threading.RLock()
        self._prepared = False

    @staticmethod
    def _bases_of(symbols: Sequence[str]) -> dict[str, str]:
        """Base currency -> the one configured market it is held for. Spot holdings carry no market: a
        base shared by two markets, or also used as cash, cannot be attributed, so it is refused here."""
        bases: dict[str, str] = {}
        for symbol in symbols:
            if symbol.count("/") != 1 or ":" in symbol:
                raise ValueError(f"{symbol!r}: a ccxt spot symbol is BASE/QUOTE")
            base, _quote = symbol.split("/")
            if base in bases:
                raise ValueError(f"{bases[base]} and {symbol} share the base {base}: a {base} holding could belong "
                                 "to either market; trade them on separate accounts")
            bases[base] = symbol
        quotes = {s.split("/")[1] for s in symbols}
        for base, symbol in bases.items():
            if base in quotes:
                raise ValueError(f"{base} is the base of {symbol} and the quote (cash) of another configured market")
        return bases

    @classmethod
    def connect(cls, exchange_id: str, *, api_key: str, secret: str, environment: Environment,
                symbols: Sequence[str], api_base: str | None = None, timeout_ms: int = 10_000,
                password: str | None = None, options: Mapping[str, Any] | None = None,
                name: str | None = None, profile: ExchangeProfile | None = None) -> CcxtVenue:
        """The exchange's client with the account's keys: ``api_base`` for a gateway or a fake venue,
        otherwise production (LIVE) or the exchange's testnet (PAPER). Another ccxt exchange is one
        ``profile`` away (a new ``PROFILES`` row), never a code branch."""
        if profile is None and exchange_id not in PROFILES:
            raise ValueError(f"ccxt exchange {exchange_id!r} has no capability profile (known: "
                             f"{', '.join(sorted(PROFILES))})")
        exchange = make_exchange(exchange_id, api_key=api_key, secret=secret, api_base=api_base,
                                 timeout_ms=timeout_ms, options=options, password=password)
        if environment is Environment.PAPER and api_base is None:
            exchange.set_sandbox_mode(True)
        return cls(exchange, name=name or exchange_id, environment=environment, symbols=symbols, profile=profile)

    # ------------------------------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[..., Any], *args: Any, placing: bool = False,
              absent: tuple[str, ...] = ()) -> Any:
        """One ccxt call, serialised, in a private decimal context, translated on failure (the answer's
        headers are read under the same lock, so a Retry-After is this call's). With ``absent``, an
        order-not-found answer (ccxt's class or one of those patterns) returns ``_ABSENT`` instead."""
        with self._lock:
            try:
                with localcontext():
                    return fn(*args)
            except Exception as exc:
                if absent and (isinstance(exc, ccxt.OrderNotFound) or _matches(str(exc), absent)):
                    return _ABSENT
                headers = getattr(self.exchange, "last_response_headers", None)
                raise translate_error(exc, self.profile, placing=placing, headers=headers) from exc

    def _markets(self) -> dict[str, Any]:
        """Markets, loaded once (no HTTP afterwards)."""
        markets: dict[str, Any] = self._call(self.exchange.load_markets)
        return markets

    def _prepare(self) -> None:
        """The profile's one-time reads, done as reads before the first order: if ccxt did them inside
        ``create_order`` instead, their failure would look like a lost order."""
        if not self._prepared:
            for method in self.profile.prepare:
                self._call(getattr(self.exchange, method))
            self._prepared = True

    def _market(self, symbol: str) -> dict[str, Any]:
        markets = self._markets()
        if symbol not in markets:
            raise VenueError(f"{self.name}: no market {symbol}", retryable=False, kind=RejectKind.INVALID_SYMBOL)
        market: dict[str, Any] = markets[symbol]
        return market

    # ------------------------------------------------------------------------------ VenueClient

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        markets = self._markets()
        unknown = [s for s in symbols if s not in markets]
        if unknown:
            raise VenueError(f"{self.name}: no market {', '.join(unknown)}", retryable=False,
                             kind=RejectKind.INVALID_SYMBOL)
        mode = int(self.exchange.precisionMode)
        return {s: instrument_from_market(markets[s], MarketType.CRYPTO, mode) for s in symbols}

    def capabilities(self) -> VenueCapabilities:
        """The profile's order types that ccxt can send for this exchange (stops need a trigger order)."""
        has = self.exchange.has or {}
        types = set(self.profile.order_types)
        if not has.get("createOrder"):
            types.clear()
        if not (has.get("createTriggerOrder") or has.get("createStopMarketOrder")):
            types.discard(OrderType.STOP)
        if not (has.get("createTriggerOrder") or has.get("createStopLimitOrder")):
            types.discard(OrderType.STOP_LIMIT)
        notes = {"time_in_force": ", ".join(sorted(t.value for t in self.profile.time_in_force)),
                 "brackets": "not native: the kernel keeps take-profit / stop-loss legs", **self.profile.notes}
        return VenueCapabilities(frozenset(types), native_brackets=False, fractional=True, notes=notes)

    def account_check(self) -> AccountCheck:
        """What the exchange says about this key; refused credentials are an answer, not an error."""
        try:
            check: AccountCheck = self._call(self.profile.account, self.exchange)
        except VenueError as exc:
            if exc.kind is RejectKind.AUTHENTICATION_FAILED:
                return AccountCheck(False, False, None, str(exc))
            if exc.kind is RejectKind.PERMISSION_MISSING:
                return AccountCheck(True, False, None, str(exc))
            raise
        return check

    def market_open(self, symbol: str) -> bool:
        return True  # crypto spot trades around the clock

    def place(self, order: Order, children: Sequence[Order] = ()) -> VenueOrder:
        """Send ``order`` with its client id; everything the venue could refuse for sure is refused here
        first, by name and before any HTTP call (unsupported type, off the lot or tick)."""
        self._refuse_unsupported(order, children)
        market = self._market(order.symbol)
        self._refuse_for_market(order, market)
        self._prepare()
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            params["timeInForce"] = order.time_in_force.value
        if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            assert order.stop_price is not None
            params[self.profile.stop_param] = _plain(order.stop_price)
        kind = "limit" if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else "market"
        price = _plain(order.price) if kind == "limit" and order.price is not None else None
        info = self._call(self.exchange.create_order, order.symbol, kind, order.side.value.lower(),
                          _plain(order.quantity), price, params, placing=True)
        answer = self._venue_order(info, order.client_order_id, order)
        if self.profile.answers_complete:
            return answer
        try:  # the answer carried ids only: the order as the venue now holds it, if it can say
            held = self.fetch_order(order.client_order_id, order.symbol)
        except VenueError:
            held = None
        return held if held is not None else answer

    def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        info = self._lookup(client_order_id, symbol)
        return None if info is None else self._venue_order(info, client_order_id)

    def _lookup(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        """ccxt's order by client id, trying the profile's lookups in turn; None only when every one of
        them positively answered "no such order"."""
        self._market(symbol)
        absent = self.profile.not_found_patterns
        for lookup in self.profile.lookups:
            method = getattr(self.exchange, lookup.method)
            params = {lookup.param: client_order_id}
            if lookup.returns_list:
                found = [o for o in self._call(method, symbol, None, None, params)
                         if not o.get("clientOrderId") or o.get("clientOrderId") == client_order_id]
                if found:
                    return dict(found[0])
                continue
            info = self._call(method, None, symbol, params, absent=absent)
            if info is not _ABSENT:
                return dict(info)
        return None

    def cancel(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """Cancel by client id. An order no longer open comes back as the venue reports it; None only
        when the venue has no such order."""
        self._market(symbol)
        params: dict[str, Any] = {self.profile.cancel_param: client_order_id}
        if self.profile.cancel_trigger_flag:
            info = self._lookup(client_order_id, symbol)
            if info is None:
                return None
            held = self._venue_order(info, client_order_id)
            if not held.status.is_open:
                return held
            raw_status = str((info.get("info") or {}).get("orderStatus") or "")
            if held.stop_price is not None and raw_status in self.profile.untriggered_statuses:
                params["trigger"] = True
        closed = self.profile.not_found_patterns + self.profile.closed_patterns
        answer = self._call(self.exchange.cancel_order, None, symbol, params, absent=closed)
        if answer is _ABSENT:  # filled or canceled meanwhile, or never there: the venue's word on it
            return self.fetch_order(client_order_id, symbol)
        if self.profile.answers_complete and str(answer.get("status") or ""):
            return self._venue_order(answer, client_order_id)
        held_now = self.fetch_order(client_order_id, symbol)
        return held_now if held_now is not None else self._venue_order(answer, client_order_id)

    def open_orders(self) -> list[VenueOrder]:
        """Every working order on the account (every market, ours or not), each under its own client id."""
        self._markets()
        limit = self.profile.open_orders_page_limit
        if limit is None:
            infos = self._call(self.exchange.fetch_open_orders)
        else:
            infos = self._cursor_pages(lambda extra: self._call(self.exchange.fetch_open_orders, None, None, limit,
                                                                extra), limit)
        return [self._venue_order(i, str(i.get("clientOrderId") or "")) for i in infos]

    def fills(self, since_ns: int, symbols: Sequence[str]) -> list[VenueFill]:
        """Every execution since ``since_ns`` on ``symbols``, all pages, oldest first."""
        markets = self._markets()
        since_ms = max(0, since_ns // 1_000_000)
        out: dict[str, VenueFill] = {}
        for symbol in symbols:
            if symbol not in markets:
                raise VenueError(f"{self.name}: no market {symbol}", retryable=False, kind=RejectKind.INVALID_SYMBOL)
            if self.profile.trade_paging.style == "from_id":
                trades = self._trades_from_id(symbol, since_ms)
            else:
                trades = self._trades_cursor(symbol, since_ms)
            for trade in trades:
                fill = self._fill(trade, markets[symbol])
                if fill is not None and fill.ts_ns >= since_ms * 1_000_000:
                    out[fill.fill_id] = fill
        return sorted(out.values(), key=lambda f: (f.ts_ns, f.fill_id))

    def positions(self) -> list[VenuePosition]:
        """Spot holdings: the non-zero base balance of each configured market (cash is not a position)."""
        totals = self._totals()
        out = []
        for base, symbol in self._bases.items():
            qty = totals.get(base, Decimal(0))
            if qty != 0:
                out.append(VenuePosition(symbol, qty))
        return out

    def balances(self) -> dict[str, Decimal]:
        return {c: q for c, q in self._totals().items() if q != 0}

    def close(self) -> None:
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()

    # --------------------------------------------------------------------------------- internals

    def _refuse_unsupported(self, order: Order, children: Sequence[Order]) -> None:
        """Refusals that need no market data: type, time in force, brackets (no HTTP call at all)."""
        def refuse(why: str) -> VenueError:
            return VenueError(f"{self.name}: {why}", retryable=False, kind=RejectKind.UNSUPPORTED)

        if children:
            raise refuse(f"{order.client_order_id}: no native take-profit / stop-loss attached to an entry here")
        supported = self.capabilities().order_types
        if order.order_type not in supported:
            names = ", ".join(sorted(t.value for t in supported)) or "none"
            raise refuse(f"{order.order_type.value} orders are not offered (offered: {names})")
        if order.time_in_force not in self.profile.time_in_force:
            names = ", ".join(sorted(t.value for t in self.profile.time_in_force))
            raise refuse(f"time in force {order.time_in_force.value} is not offered ({names})")
        if order.order_type is OrderType.MARKET and order.time_in_force is not TimeInForce.GTC:
            raise refuse(f"time in force {order.time_in_force.value} applies to limit orders only")

    def _refuse_for_market(self, order: Order, market: Mapping[str, Any]) -> None:
        """Per-market refusals, from the market data already loaded (still no HTTP call)."""
        names = self.profile.market_order_types
        listed = (market.get("info") or {}).get("orderTypes")
        if names is not None and isinstance(listed, list) and names.get(order.order_type) not in listed:
            raise VenueError(f"{self.name}: {order.symbol} does not take {order.order_type.value} orders "
                             f"(it lists {', '.join(map(str, listed))})", retryable=False, kind=RejectKind.UNSUPPORTED)
        inst = instrument_from_market(market, MarketType.CRYPTO, int(self.exchange.precisionMode))
        if order.quantity % inst.lot_size != 0:
            raise VenueError(f"{self.name}: quantity {order.quantity} {order.symbol} is not a whole number of the lot "
                             f"{inst.lot_size} (the kernel rounds before sending; nothing was sent)",
                             retryable=False, kind=RejectKind.INVALID_SIZE)
        tick = inst.tick_size or Decimal(1).scaleb(-inst.price_precision)
        for label, value in (("price", order.price), ("stop price", order.stop_price)):
            if value is not None and value % tick != 0:
                raise VenueError(f"{self.name}: {label} {value} {order.symbol} is not on the tick {tick} (nothing "
                                 "was sent)", retryable=False, kind=RejectKind.INVALID_PRICE)

    def _venue_order(self, info: Mapping[str, Any], client_order_id: str, sent: Order | None = None) -> VenueOrder:
        """ccxt's unified order -> ``VenueOrder``; ``client_order_id`` is the id we asked about (a cancel
        answer's own clientOrderId is the cancel request's, not the order's)."""
        raw = info.get("info") or {}
        amount = _dec(info.get("amount"))
        if amount is None:
            amount = sent.quantity if sent is not None else Decimal(0)
        filled = _dec(info.get("filled")) or Decimal(0)
        trigger = _dec(info.get("triggerPrice") or info.get("stopPrice"))
        if trigger is None and sent is not None:  # an answer that leaves the stop price out is about this order
            trigger = sent.stop_price
        kind = str(info.get("type") or "").lower()
        if not kind and sent is not None:
            order_type = sent.order_type
        elif kind == "market":
            order_type = OrderType.STOP if trigger else OrderType.MARKET
        else:
            order_type = OrderType.STOP_LIMIT if trigger else OrderType.LIMIT
        average = _dec(info.get("average"))
        cost = _dec(info.get("cost"))
        if average is None and filled > 0 and cost:
            average = cost / filled
        price = _dec(info.get("price")) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
        if price is None and sent is not None:
            price = sent.price
        side_raw = str(info.get("side") or (sent.side.value if sent is not None else "")).upper()
        ts_ms = info.get("lastUpdateTimestamp") or info.get("lastTradeTimestamp") or info.get("timestamp") or 0
        symbol = str(info.get("symbol") or (sent.symbol if sent is not None else ""))
        status = _status(info, amount, filled)
        reason = ""
        if status in (OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.CANCELED) and isinstance(raw, Mapping):
            words = [str(raw.get(k)) for k in ("orderStatus", "status", "rejectReason", "cancelType") if raw.get(k)]
            reason = f"{self.name}: {' '.join(words)}" if words else ""
        return VenueOrder(
            client_order_id=client_order_id,
            venue_order_id=self._venue_id(symbol, info.get("id")),
            symbol=symbol,
            side=Side(side_raw),
            quantity=amount,
            order_type=order_type,
            status=status,
            filled_quantity=filled,
            avg_fill_price=average if filled > 0 else None,
            price=price,
            stop_price=trigger if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
            ts_ns=int(ts_ms) * 1_000_000,
            reason=reason,
        )

    def _fill(self, trade: Mapping[str, Any], market: Mapping[str, Any]) -> VenueFill | None:
        trade_id = str(trade.get("id") or "")
        if not trade_id:
            return None
        raw = trade.get("info") or {}
        fee = trade.get("fee") or {}
        currency = str(fee.get("currency") or "")
        if self.profile.trade_fee_currency_field and raw.get(self.profile.trade_fee_currency_field):
            currency = str(self.exchange.safe_currency_code(raw[self.profile.trade_fee_currency_field]))
        cid_field = self.profile.trade_client_id_field
        symbol = str(trade.get("symbol") or market["symbol"])
        return VenueFill(
            fill_id=self._venue_id(symbol, trade_id),
            venue_order_id=self._venue_id(symbol, trade.get("order")),
            client_order_id=str(raw.get(cid_field) or "") if cid_field else "",
            symbol=symbol,
            side=Side(str(trade["side"]).upper()),
            quantity=_dec(trade.get("amount")) or Decimal(0),
            price=_dec(trade.get("price")) or Decimal(0),
            fee=_dec(fee.get("cost")) or Decimal(0),
            fee_currency=currency,
            ts_ns=int(trade.get("timestamp") or 0) * 1_000_000,
            liquidity=Liquidity.MAKER if trade.get("takerOrMaker") == "maker" else Liquidity.TAKER,
        )

    def _venue_id(self, symbol: str, raw: Any) -> str:
        """The venue's id, qualified by the symbol where the venue numbers per symbol ("" stays "")."""
        text = str(raw or "")
        return f"{symbol}:{text}" if text and self.profile.ids_per_symbol else text

    def _totals(self) -> dict[str, Decimal]:
        balance = self._call(self.exchange.fetch_balance)
        return {str(c): d for c, v in (balance.get("total") or {}).items() if (d := _dec(v)) is not None}

    def _now_ms(self) -> int:
        return int(self.exchange.milliseconds())

    def _trades(self, symbol: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = self._call(self.exchange.fetch_my_trades, symbol, None,
                                                self.profile.trade_paging.limit, dict(params))
        return page

    def _trades_from_id(self, symbol: str, since_ms: int) -> list[dict[str, Any]]:
        """Ascending id pages (Binance). The newest page first: when it reaches back past ``since`` (the
        usual case) it is the whole answer; otherwise find the first trade after ``since`` window by
        window (the venue serves at most ``window_ms`` per request) and page forward by id."""
        paging = self.profile.trade_paging
        newest = self._trades(symbol, {})
        if len(newest) < paging.limit or any(int(t.get("timestamp") or 0) < since_ms for t in newest):
            return newest
        now = self._now_ms() + 60_000
        page: list[dict[str, Any]] = []
        if (now - since_ms) // paging.window_ms > 31:  # a long way back: from the account's first trade
            page = self._trades(symbol, {paging.id_param: 0})
        else:
            start = since_ms
            while start <= now and not page:
                page = self._trades(symbol, {"startTime": start, "endTime": start + paging.window_ms - 1})
                start += paging.window_ms
        out = newest + page  # the newest page too: the walk cannot miss it, whatever the clocks say
        while len(page) >= paging.limit:
            last = max(int(t["id"]) for t in page)
            page = self._trades(symbol, {paging.id_param: last + 1})
            out += page
        return out  # duplicates (the newest page seen twice) are dropped by fill id

    def _trades_cursor(self, symbol: str, since_ms: int) -> list[dict[str, Any]]:
        """Cursor pages inside time windows (Bybit): every window from ``since`` (or as far back as the
        venue keeps trades) to now, each paged to its end."""
        paging = self.profile.trade_paging
        now = self._now_ms() + 60_000
        start = since_ms if paging.history_ms is None else max(since_ms, now - paging.history_ms)
        out: list[dict[str, Any]] = []
        while start <= now:
            window: dict[str, Any] = {"startTime": start, "endTime": min(start + paging.window_ms - 1, now)}

            def page(extra: dict[str, Any], window: dict[str, Any] = window) -> list[dict[str, Any]]:
                return self._trades(symbol, {**window, **extra})

            out += self._cursor_pages(page, paging.limit)
            start += paging.window_ms
        return out

    def _cursor_pages(self, fetch: Callable[[dict[str, Any]], list[dict[str, Any]]], limit: int
                      ) -> list[dict[str, Any]]:
        """Follow ``nextPageCursor`` (ccxt leaves it on a page's first raw item) until the venue stops."""
        cursor_param = self.profile.trade_paging.cursor_param
        out: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        seen: set[str] = set()
        while True:
            page = fetch(extra)
            out += page
            cursor = next((str(c) for item in page if (c := (item.get("info") or {}).get("nextPageCursor"))), "")
            if len(page) < limit or not cursor or cursor in seen:
                return out
            seen.add(cursor)
            extra = {cursor_param: cursor}
