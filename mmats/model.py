"""Value types shared by every part of MMATS.

Hot loops (the backtest) read plain floats from arrays; these types exist for the boundaries where
correctness matters more than nanoseconds: orders, fills, positions and account snapshots carry
``Decimal`` quantities and prices rounded to the instrument's precision, so that what a report shows is
what a venue would accept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from mmats.errors import ValidationError


class MarketType(StrEnum):
    CRYPTO = "crypto"
    FOREX = "forex"
    STOCK = "stock"


class InstrumentKind(StrEnum):
    """How an instrument is held: what it costs in margin, whether it can be shorted, how it can be lost.

    ``spot``: bought with cash, never shorted. ``perpetual``: a swap on margin (leverage, maintenance
    margin, liquidation, funding). ``forex``: a currency pair on margin, closed out when equity falls
    below ``margin_closeout`` of the margin used. ``stock``: bought with cash; sold short only where the
    instrument is ``shortable`` (the short then holds ``initial_margin`` of its value as margin).
    """

    SPOT = "spot"
    PERPETUAL = "perpetual"
    FOREX = "forex"
    STOCK = "stock"


class Timeframe(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        return _TIMEFRAME_SECONDS[self.value]

    @property
    def pandas_rule(self) -> str:
        return _PANDAS_RULES[self.value]

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(t.value for t in cls)
            raise ValidationError(f"unknown timeframe {text!r}; expected one of {allowed}") from None


_TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
_PANDAS_RULES = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}


class Environment(StrEnum):
    BACKTEST = "BACKTEST"
    PAPER = "PAPER"
    LIVE = "LIVE"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    DAY = "DAY"


class OrderStatus(StrEnum):
    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        return not self.is_terminal


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class SignalAction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"
    CLOSE = "CLOSE"


class TimeHorizon(StrEnum):
    INTRADAY = "INTRADAY"
    SWING = "SWING"
    LONG = "LONG"


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


def utc(ts: datetime) -> datetime:
    """Reject naive datetimes instead of guessing: a silent local-time bar is a look-ahead bug."""
    if ts.tzinfo is None:
        raise ValidationError(f"naive datetime {ts.isoformat()} (MMATS is UTC everywhere; attach tzinfo)")
    return ts.astimezone(UTC)


def ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).replace(microsecond=(ns // 1000) % 1_000_000)


def datetime_to_ns(ts: datetime) -> int:
    ts = utc(ts)
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


def iso(ts: datetime | int) -> str:
    """ISO 8601 UTC with a trailing Z, the one textual time format of every MMATS output."""
    dt = ns_to_datetime(ts) if isinstance(ts, int) else utc(ts)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def dec_str(d: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: '50', '0.125', never '5E+1'."""
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


# Money precision per market type: what a report rounds cash, P&L and fees to.
MONEY_PRECISION = {MarketType.CRYPTO: 8, MarketType.FOREX: 5, MarketType.STOCK: 2}


@dataclass(frozen=True, slots=True)
class Instrument:
    """What a venue accepts for one symbol: tick and lot sizes, minimum notional, quote currency."""

    symbol: str
    market: MarketType
    quote_currency: str
    price_precision: int
    quantity_precision: int
    lot_size: Decimal
    min_notional: Decimal = Decimal(0)
    pip_size: Decimal | None = None
    # The venue's price increment when it is not a power of ten (e.g. 0.5); None: 10**-price_precision.
    tick_size: Decimal | None = None
    min_quantity: Decimal = Decimal(0)
    # Margin terms (mmats.margin; docs/backtesting.md "Margin"). None: the kind's default.
    kind: InstrumentKind | None = None
    leverage: float = 1.0
    initial_margin: float | None = None
    maintenance_margin: float | None = None
    margin_closeout: float | None = None
    shortable: bool | None = None

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValidationError("instrument symbol is empty")
        _resolve_margin_terms(self)
        if self.lot_size <= 0:
            raise ValidationError(f"instrument {self.symbol}: lot_size must be > 0, got {self.lot_size}")
        if self.min_notional < 0:
            raise ValidationError(f"instrument {self.symbol}: min_notional must be >= 0")
        if self.tick_size is not None and self.tick_size <= 0:
            raise ValidationError(f"instrument {self.symbol}: tick_size must be > 0, got {self.tick_size}")
        if not (0 <= self.price_precision <= 12 and 0 <= self.quantity_precision <= 12):
            raise ValidationError(f"instrument {self.symbol}: precisions must be within 0..12")

    @property
    def money_precision(self) -> int:
        return MONEY_PRECISION[self.market]

    def round_price(self, price: float | Decimal) -> Decimal:
        return _quantize(price, self.price_precision, ROUND_HALF_EVEN)

    def round_quantity(self, quantity: float | Decimal) -> Decimal:
        """Round *down* to a whole number of lots: rounding up could push an order past a risk limit."""
        q = Decimal(str(quantity)) if isinstance(quantity, float) else quantity
        lots = (abs(q) / self.lot_size).to_integral_value(rounding=ROUND_DOWN)
        rounded = _quantize(lots * self.lot_size, self.quantity_precision, ROUND_DOWN)
        return rounded if q >= 0 else -rounded

    def round_money(self, amount: float | Decimal) -> Decimal:
        return _quantize(amount, self.money_precision, ROUND_HALF_EVEN)

    def meets_min_notional(self, quantity: Decimal, price: Decimal) -> bool:
        return abs(quantity) * price >= self.min_notional

    @property
    def is_margined(self) -> bool:
        """Held on margin (perpetual, forex): positions may exceed cash up to the leverage."""
        return self.kind is InstrumentKind.PERPETUAL or self.kind is InstrumentKind.FOREX

    def margin_rate(self, quantity: float) -> float:
        """Initial margin per unit of notional for a position of signed ``quantity`` (0: paid in cash)."""
        if self.is_margined or (quantity < 0 and self.kind is InstrumentKind.STOCK):
            return self.initial_margin or 0.0
        return 0.0

    def margin(self, quantity: Decimal, price: Decimal) -> Decimal:
        """The margin a position of signed ``quantity`` marked at ``price`` uses, in quote currency."""
        if self.kind is InstrumentKind.SPOT or not quantity or (quantity > 0 and self.kind is InstrumentKind.STOCK):
            return _NO_MARGIN
        rate = self.margin_rate(-1.0 if quantity < 0 else 1.0)
        if not rate:
            return _NO_MARGIN
        exact = _RATES.get(rate)
        if exact is None:
            exact = _RATES[rate] = Decimal(repr(rate))
        return abs(quantity) * price * exact

    @property
    def maintenance_rate(self) -> float:
        """Margin per unit of notional below which the venue liquidates (perpetual) or closes out (forex)."""
        if self.kind is InstrumentKind.PERPETUAL:
            return self.maintenance_margin or 0.0
        if self.kind is InstrumentKind.FOREX:
            return (self.margin_closeout or 0.0) * (self.initial_margin or 0.0)
        return 0.0


_QUANTA = tuple(Decimal(1).scaleb(-p) for p in range(13))
_NO_MARGIN = Decimal(0)
_RATES: dict[float, Decimal] = {}  # a margin rate as the Decimal its text reads (every snapshot asks)


def default_kind(symbol: str, market: MarketType) -> InstrumentKind:
    """Crypto symbols that name a swap (``BTCPERP``, ``BTC-PERP``, ccxt's ``BTC/USDT:USDT``) are perpetuals."""
    if market is MarketType.FOREX:
        return InstrumentKind.FOREX
    if market is MarketType.STOCK:
        return InstrumentKind.STOCK
    return InstrumentKind.PERPETUAL if symbol.upper().endswith("PERP") or ":" in symbol else InstrumentKind.SPOT


_KIND_MARKET = {InstrumentKind.SPOT: MarketType.CRYPTO, InstrumentKind.PERPETUAL: MarketType.CRYPTO,
                InstrumentKind.FOREX: MarketType.FOREX, InstrumentKind.STOCK: MarketType.STOCK}


def _resolve_margin_terms(inst: Instrument) -> None:
    """Fill the kind's defaults and refuse terms that cannot apply to the kind (a leveraged spot ...)."""
    where = f"instrument {inst.symbol}"
    kind = InstrumentKind(inst.kind) if inst.kind is not None else default_kind(inst.symbol, inst.market)
    if _KIND_MARKET[kind] is not inst.market:
        raise ValidationError(f"{where}: kind {kind.value} is not traded in market {inst.market.value}")
    margined = kind in (InstrumentKind.PERPETUAL, InstrumentKind.FOREX)
    if not (math.isfinite(inst.leverage) and 1.0 <= inst.leverage <= 1000.0):
        raise ValidationError(f"{where}: leverage must be within 1..1000, got {inst.leverage}")
    if inst.leverage != 1.0 and not margined:
        raise ValidationError(f"{where}: leverage is for kinds perpetual and forex; {kind.value} is paid in cash")
    if inst.maintenance_margin is not None and kind is not InstrumentKind.PERPETUAL:
        raise ValidationError(f"{where}: maintenance_margin is for kind perpetual, not {kind.value}")
    if inst.margin_closeout is not None and kind is not InstrumentKind.FOREX:
        raise ValidationError(f"{where}: margin_closeout is for kind forex, not {kind.value}")
    inherent = kind is not InstrumentKind.SPOT  # spot is never shorted; swaps and pairs always can be
    if inst.shortable is not None and kind is not InstrumentKind.STOCK and inst.shortable is not inherent:
        raise ValidationError(f"{where}: shortable is for kind stock ({kind.value} is "
                              f"{'always' if inherent else 'never'} shortable)")
    if inst.initial_margin is not None and kind is InstrumentKind.SPOT:
        raise ValidationError(f"{where}: initial_margin is not for kind spot (paid in cash)")
    for name in ("initial_margin", "maintenance_margin", "margin_closeout"):
        v = getattr(inst, name)
        if v is not None and not (math.isfinite(v) and 0.0 < v <= 1.0):
            raise ValidationError(f"{where}: {name} must be in (0, 1], got {v}")
    initial = inst.initial_margin
    if margined:
        floor = 1.0 / inst.leverage
        if initial is None:
            initial = floor
        elif initial < floor - 1e-12:
            raise ValidationError(f"{where}: initial_margin {initial} allows more than leverage {inst.leverage:g} "
                                  f"(at least {floor:g})")
    elif kind is InstrumentKind.STOCK and initial is None:
        initial = 0.5  # Reg T: a short holds half its value as margin
    maintenance = inst.maintenance_margin
    if kind is InstrumentKind.PERPETUAL:
        assert initial is not None
        maintenance = initial / 2 if maintenance is None else maintenance
        if maintenance >= initial:
            raise ValidationError(f"{where}: maintenance_margin {maintenance} must be below the initial margin "
                                  f"{initial:g} (1/leverage)")
    closeout = inst.margin_closeout
    if kind is InstrumentKind.FOREX and closeout is None:
        closeout = 0.5  # OANDA closes out at 50 % of the margin used
    shortable = kind is not InstrumentKind.SPOT and (kind is not InstrumentKind.STOCK or bool(inst.shortable))
    for name, value in (("kind", kind), ("initial_margin", initial), ("maintenance_margin", maintenance),
                        ("margin_closeout", closeout), ("shortable", shortable)):
        object.__setattr__(inst, name, value)


def _quantize(value: float | Decimal, places: int, rounding: str) -> Decimal:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"cannot convert non-finite value {value!r} to money")
        value = Decimal(repr(value))
    return value.quantize(_QUANTA[places], rounding=rounding)


def default_instrument(symbol: str, market: MarketType | str) -> Instrument:
    """Conventional venue precisions when the user gives none (documented in docs/configuration.md)."""
    m = MarketType(market)
    if m is MarketType.CRYPTO:
        quote = symbol.split("/")[1].split(":")[0] if "/" in symbol else "USDT"  # BTC/USDT:USDT: a swap
        return Instrument(symbol, m, quote, 2, 6, Decimal("0.000001"), Decimal("5"))
    if m is MarketType.FOREX:
        quote = symbol.replace("_", "/").split("/")[1] if ("/" in symbol or "_" in symbol) else symbol[-3:]
        jpy = quote.upper() == "JPY"
        return Instrument(symbol, m, quote.upper(), 3 if jpy else 5, 0, Decimal(1), Decimal(0),
                          Decimal("0.01") if jpy else Decimal("0.0001"))
    return Instrument(symbol, m, "USD", 2, 0, Decimal(1), Decimal(1))


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``ts`` is the bar's open time in UTC."""

    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0

    def __post_init__(self) -> None:
        utc(self.ts)
        vals = (self.open, self.high, self.low, self.close, self.volume)
        if not all(math.isfinite(v) for v in vals):
            raise ValidationError(f"bar {self.symbol} {iso(self.ts)}: non-finite value in {vals}")
        if self.high < max(self.open, self.close, self.low) or self.low > min(self.open, self.close):
            raise ValidationError(f"bar {self.symbol} {iso(self.ts)}: inconsistent OHLC {vals[:4]}")
        if self.volume < 0:
            raise ValidationError(f"bar {self.symbol} {iso(self.ts)}: negative volume {self.volume}")


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    ts: datetime
    bid: float
    ask: float
    last: float | None = None
    volume: float = 0.0

    def __post_init__(self) -> None:
        utc(self.ts)
        if self.bid > self.ask:
            raise ValidationError(f"tick {self.symbol} {iso(self.ts)}: crossed quote bid={self.bid} ask={self.ask}")

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class TradeSignal:
    """What a strategy wants: a *target exposure*, not an order.

    BUY p means "be long p of my allocated capital", SELL p "be short p", CLOSE "be flat", HOLD nothing.
    Target semantics make a repeated signal harmless: the second BUY 1.0 finds the target met.
    """

    action: SignalAction
    symbol: str
    position_size: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    confidence: float = 1.0
    reasoning: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    strategy_id: str = ""
    signal_id: str = ""
    max_slippage_bps: float | None = None
    max_notional: float | None = None
    time_horizon: TimeHorizon = TimeHorizon.INTRADAY

    def __post_init__(self) -> None:
        if not isinstance(self.action, SignalAction):
            try:
                object.__setattr__(self, "action", SignalAction(str(self.action).upper()))
            except ValueError:
                raise ValidationError(f"signal.action: {self.action!r} is not BUY, SELL, HOLD or CLOSE") from None
        if not self.symbol:
            raise ValidationError("signal.symbol is empty")
        if not (0.0 <= self.position_size <= 1.0) or math.isnan(self.position_size):
            raise ValidationError(f"signal.position_size: {self.position_size} is outside 0..1")
        if not (0.0 <= self.confidence <= 1.0) or math.isnan(self.confidence):
            raise ValidationError(f"signal.confidence: {self.confidence} is outside 0..1")
        for name in ("stop_loss", "take_profit"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValidationError(f"signal.{name}: {v} must be a positive price")

    @property
    def target_exposure(self) -> float:
        """Signed fraction of allocated capital the strategy wants to hold after this signal."""
        if self.action is SignalAction.BUY:
            return self.position_size
        if self.action is SignalAction.SELL:
            return -self.position_size
        return 0.0

    def with_id(self, signal_id: str) -> TradeSignal:
        """This signal under ``signal_id``: ``dataclasses.replace`` without running again the checks it
        passed when it was made (a third of the cost; a multi-symbol strategy's every signal is stamped).
        A subclass goes through ``replace``."""
        if type(self) is not TradeSignal:
            return replace(self, signal_id=signal_id)
        out = object.__new__(TradeSignal)
        for slot in _SIGNAL_SLOTS:
            slot.__set__(out, slot.__get__(self))
        _SIGNAL_ID.__set__(out, signal_id)
        return out


# TradeSignal's field slots (a frozen dataclass: its __setattr__ refuses), for ``TradeSignal.with_id``
_SIGNAL_SLOTS: tuple[Any, ...] = tuple(TradeSignal.__dict__[f.name] for f in fields(TradeSignal)
                                       if f.name != "signal_id")
_SIGNAL_ID: Any = TradeSignal.__dict__["signal_id"]


@dataclass(slots=True)
class Order:
    """A venue order. Mutable only through the order state machine (`mmats.orders`)."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    strategy_id: str = ""
    signal_id: str = ""
    parent_id: str | None = None
    oco_group: str | None = None
    reduce_only: bool = False
    status: OrderStatus = OrderStatus.NEW
    filled_quantity: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    created_ns: int = 0
    updated_ns: int = 0
    reject_reason: str = ""
    venue_order_id: str | None = None
    triggered: bool = False

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValidationError(f"order {self.client_order_id}: quantity must be > 0, got {self.quantity}")
        if self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and (self.price is None or self.price <= 0):
            raise ValidationError(f"order {self.client_order_id}: {self.order_type} needs a positive price")
        if self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and (
            self.stop_price is None or self.stop_price <= 0
        ):
            raise ValidationError(f"order {self.client_order_id}: {self.order_type} needs a positive stop_price")

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "type": self.order_type.value,
            "quantity": str(self.quantity),
            "price": None if self.price is None else str(self.price),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "time_in_force": self.time_in_force.value,
            "strategy_id": self.strategy_id,
            "signal_id": self.signal_id,
            "parent_id": self.parent_id,
            "oco_group": self.oco_group,
            "reduce_only": self.reduce_only,
            "status": self.status.value,
            "filled_quantity": str(self.filled_quantity),
            "avg_fill_price": None if self.avg_fill_price is None else str(self.avg_fill_price),
            "created": iso(self.created_ns),
            "updated": iso(self.updated_ns or self.created_ns),
            "reject_reason": self.reject_reason,
        }


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts_ns: int
    liquidity: Liquidity = Liquidity.TAKER
    strategy_id: str = ""
    fill_id: str = ""
    # The currency the venue charged the fee in (BNB, USD on a JPY pair, ...); None: the quote currency.
    fee_currency: str | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValidationError(f"fill for {self.client_order_id}: quantity must be > 0")
        if self.price <= 0:
            raise ValidationError(f"fill for {self.client_order_id}: price must be > 0")
        if self.fee < 0:
            raise ValidationError(f"fill for {self.client_order_id}: fee must be >= 0 (rebates not modelled)")

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity

    def to_dict(self) -> dict[str, Any]:
        out = {
            "fill_id": self.fill_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": str(self.quantity),
            "price": str(self.price),
            "fee": str(self.fee),
            "time": iso(self.ts_ns),
            "liquidity": self.liquidity.value,
            "strategy_id": self.strategy_id,
        }
        if self.fee_currency is not None:
            out["fee_currency"] = self.fee_currency
        return out


@dataclass(slots=True)
class Position:
    """Net position in one symbol; ``quantity`` is signed (negative = short)."""

    symbol: str
    market: MarketType
    quantity: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    opened_ns: int = 0
    last_price: Decimal = Decimal(0)
    strategy_id: str = ""

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def is_long(self) -> bool:
        return self.quantity > 0

    @property
    def is_short(self) -> bool:
        return self.quantity < 0

    @property
    def notional(self) -> Decimal:
        return abs(self.quantity) * self.last_price

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.quantity * (self.last_price - self.avg_price)


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    symbol: str
    market: MarketType
    quantity: Decimal
    avg_price: Decimal
    last_price: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    margin: Decimal = Decimal(0)  # initial margin the position uses (0 for cash-paid holdings)
    # Prices, P&L and margin above are in the position's quote currency; ``fx_rate`` converts them to the
    # account's base currency (1 when the quote is the base).
    quote_currency: str = ""
    fx_rate: Decimal = Decimal(1)

    @property
    def notional(self) -> Decimal:
        return abs(self.quantity) * self.last_price

    @property
    def notional_base(self) -> Decimal:
        return abs(self.quantity) * self.last_price * self.fx_rate

    @property
    def value_base(self) -> Decimal:
        """Signed market value in base currency (negative for a short)."""
        return self.quantity * self.last_price * self.fx_rate


@dataclass(frozen=True, slots=True)
class AccountState:
    """An immutable snapshot: what the risk gatekeeper and strategies see of the account at one time."""

    ts_ns: int
    currency: str
    cash: Decimal
    equity: Decimal
    positions: tuple[PositionSnapshot, ...] = ()
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    peak_equity: Decimal = Decimal(0)
    gross_exposure: Decimal = Decimal(0)
    # ``currency`` is the base currency every figure above is in (mmats.fx); cash held per currency, the
    # rate of each currency in base, and the P&L of rate moves on realized P&L held in other currencies.
    # Empty for a snapshot restored without them.
    cash_by_currency: dict[str, Decimal] = field(default_factory=dict)
    fx_rates: dict[str, Decimal] = field(default_factory=dict)
    fx_pnl: Decimal = Decimal(0)
    net_exposure: Decimal = Decimal(0)

    def fx_rate(self, currency: str) -> Decimal:
        """Value of one unit of ``currency`` in the base currency (1 for the base itself)."""
        if not currency or currency == self.currency:
            return Decimal(1)
        rate = self.fx_rates.get(currency)
        if rate is None:
            raise ValidationError(f"account in {self.currency} has no rate for {currency}")
        return rate

    @property
    def leverage(self) -> Decimal:
        return self.gross_exposure / self.equity if self.equity > 0 else Decimal(0)

    @property
    def margin_used(self) -> Decimal:
        """In base currency (each position's margin is in its quote currency)."""
        return sum((p.margin * p.fx_rate for p in self.positions), Decimal(0))

    @property
    def margin_available(self) -> Decimal:
        """Equity not tied up as margin: what new margined positions may use."""
        return self.equity - self.margin_used

    @property
    def margin_utilisation(self) -> Decimal:
        """Margin used / equity (1 or more: no margin left; an empty or negative account counts as full)."""
        used = self.margin_used
        if used == 0:
            return Decimal(0)
        return used / self.equity if self.equity > 0 else Decimal(1)

    @property
    def drawdown(self) -> Decimal:
        """Fraction below peak equity, <= 0."""
        if self.peak_equity <= 0:
            return Decimal(0)
        return min(Decimal(0), self.equity / self.peak_equity - 1)

    def position(self, symbol: str) -> PositionSnapshot | None:
        for p in self.positions:
            if p.symbol == symbol:
                return p
        return None
