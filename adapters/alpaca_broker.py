"""US stocks at Alpaca through alpaca-py's ``TradingClient``: the kernel's ``VenueClient`` (``mmats.execution.venue``).

Why it is built this way:

- **A translator, nothing more.** One alpaca-py call becomes one ``VenueOrder`` / ``VenueFill`` / ... or one
  typed ``VenueError``; no order state lives here. Ask-before-resend, UNKNOWN until reconciled, the breaker,
  the rate limit, precision and the mapping of fills to orders are the kernel's (``mmats.execution.live``).
- **Our client order id on every order** (``client_order_id``): Alpaca keeps it unique over *every* order of
  the account, whatever its state, so a resend of an order the venue already holds is answered 422 "must be
  unique" (``DuplicateOrder``), and ``fetch_order`` asks ``/v2/orders:by_client_order_id``.
- **What may have reached Alpaca while placing is a lost answer** (``SubmitTimeout``): a timeout, a dropped
  connection, any 5xx, an answer we cannot read. Only a connection that was never made is certainly "not
  acted" (retryable). On reads and cancels the same failures are retryable ``VENUE_UNAVAILABLE`` errors, and
  ``fetch_order`` answers None only on Alpaca's own 404 "order not found", never on a failed call.
- **Our retries, not alpaca-py's**: its REST client retries 429/504 three times with 3 s sleeps and sets no
  request timeout; both are turned off/on through its private ``_retry`` and ``_session`` (the only knobs it
  has, as in ``adapters/alpaca_market_data.py``). A 429 becomes ``RATE_LIMITED`` with Alpaca's Retry-After
  (or its X-RateLimit-Reset) for the kernel's limiter to honour.
- **Raw JSON, read as Decimal.** The client runs with ``raw_data=True``: Alpaca sends quantities and prices as
  strings, which become ``Decimal`` without a float in between, and a status or field Alpaca adds later
  cannot break a pydantic model mid-reconciliation. (alpaca-py's *request* models carry ``qty`` and prices as
  floats; a quantity that would not survive that round trip is refused before sending.)
- **Fractional shares only where Alpaca takes them**: a fractionable asset, a simple market or limit order,
  time in force DAY. A fractional market order marked GTC is sent as DAY (a market order never rests, so the
  two differ only in name); anything else fractional is refused before sending, with the reason.
- **Brackets are native**: a LIMIT child is the take-profit, a STOP (or STOP_LIMIT) child the stop-loss;
  both make ``order_class=bracket``, one makes ``oto``. Alpaca names the exits itself (its own client ids).
  Sent one by one instead, the second exit is refused "insufficient qty available" (the first already holds
  the shares) and a new entry against a resting exit is a "potential wash trade" (403, kind OTHER).
- **Outside market hours** Alpaca accepts DAY orders and queues them for the open: the adapter just sends;
  the kernel refuses or queues from the venue's ``outside_hours`` config, asking ``market_open`` (``/v2/clock``,
  cached a few seconds). ``calendar`` tells a user when the market next opens.
- **Fills are account activities** (``/v2/account/activities/FILL``), every page (``page_token`` = the last
  activity id), each with Alpaca's activity id as ``fill_id`` and the order's Alpaca id; the activity does not
  carry the client id, so it stays "" and the kernel maps fills by venue order id. Alpaca charges no
  commission on US stocks: the fee is 0 USD. Regulatory fees (SEC, FINRA TAF) arrive as separate ``FEE``
  activities, not per fill, and are not booked by this adapter.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

from adapters.bar_source import decimal_places
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

__all__ = ["AlpacaVenue", "TradingSession", "configure_rest_client", "order_from", "translate_error"]

T = TypeVar("T")

NEW_YORK = ZoneInfo("America/New_York")
#: Alpaca's production hosts; ``api_base`` replaces them (a gateway, a test venue).
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
CLOCK_TTL_S = 5.0  # how long "is the market open" is trusted (the kernel caches it too)
FILLS_PAGE_SIZE = 100  # Alpaca's maximum page of account activities
OPEN_ORDERS_PAGE = 500  # Alpaca's maximum `limit` for /v2/orders
MAX_RETRY_AFTER_S = 60.0
MAX_FILL_PAGES = 1_000  # 100,000 fills in one look-back: a guard against a venue that ignores page_token

# Alpaca's order states -> ours. Working states are ACCEPTED (PARTIALLY_FILLED when something filled):
# new, accepted (queued outside hours), pending_new, held (a bracket exit waiting for its entry),
# pending_cancel / pending_replace (still live until Alpaca confirms), done_for_day, calculated, stopped, ...
_FINAL = {"filled": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED,
          "rejected": OrderStatus.REJECTED, "replaced": OrderStatus.CANCELED, "suspended": OrderStatus.REJECTED}
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP,
          "stop_limit": OrderType.STOP_LIMIT, "trailing_stop": OrderType.STOP}
_TIF = {TimeInForce.DAY: "day", TimeInForce.GTC: "gtc", TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok"}
_FRACTION_RE = re.compile(r"(\.\d+)")


@dataclass(frozen=True, slots=True)
class TradingSession:
    """One trading day from Alpaca's calendar: its regular session in UTC (early closes included)."""

    day: date
    open: datetime
    close: datetime


def configure_rest_client(client: Any, timeout_s: float) -> Any:
    """No retries inside alpaca-py (the caller's limiter and breaker decide) and a timeout on every request.

    Both are private attributes of alpaca-py's ``RESTClient`` (``_retry``, ``_session``), the only knobs it
    has; ``adapters/alpaca_market_data.py`` sets the same two, and an alpaca-py upgrade must keep them."""
    client._retry = 0
    session = client._session
    session.request = functools.partial(session.request, timeout=timeout_s)
    return client


# ------------------------------------------------------------------------------------------ translation


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def _ts_ns(text: Any) -> int:
    """Alpaca's RFC 3339 times (up to nanoseconds, 'Z' or an offset) as UTC ns; 0 when absent."""
    if not text:
        return 0
    raw = str(text).replace("Z", "+00:00")
    match = _FRACTION_RE.search(raw)
    frac_ns = 0
    if match is not None:
        digits = match.group(1)[1:]
        frac_ns = int(digits[:9].ljust(9, "0"))
        raw = raw[: match.start()] + raw[match.end():]
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + frac_ns


def _rfc3339(ts_ns: int) -> str:
    moment = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % 1_000_000_000) // 1000:06d}Z"


def _status(raw: str, filled: Decimal) -> OrderStatus:
    final = _FINAL.get(raw)
    if final is not None:
        return final
    return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED


def order_from(info: dict[str, Any]) -> VenueOrder:
    """One Alpaca order (raw JSON) as the kernel reads it. A notional order (no qty) reports what filled."""
    filled = _dec(info.get("filled_qty")) or Decimal(0)
    raw_status = str(info.get("status") or "")
    status = _status(raw_status, filled)
    reason = "" if status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED) \
        else f"alpaca: {raw_status}"
    kind = str(info.get("type") or info.get("order_type") or "market")
    return VenueOrder(
        client_order_id=str(info.get("client_order_id") or ""),
        venue_order_id=str(info.get("id") or ""),
        symbol=str(info.get("symbol") or ""),
        side=Side.BUY if str(info.get("side")) == "buy" else Side.SELL,
        quantity=_dec(info.get("qty")) or filled,
        order_type=_TYPES.get(kind, OrderType.MARKET),
        status=status,
        filled_quantity=filled,
        avg_fill_price=_dec(info.get("filled_avg_price")),
        price=_dec(info.get("limit_price")),
        stop_price=_dec(info.get("stop_price")),
        ts_ns=_ts_ns(info.get("updated_at") or info.get("submitted_at") or info.get("created_at")),
        reason=reason,
    )


def _body(exc: Any) -> tuple[str, int | None]:
    """Alpaca's error message and code from an APIError body ({"code": 40310000, "message": ...}); a body that
    is not Alpaca's JSON (a proxy's page) is returned as text with no code."""
    text = str(getattr(exc, "_error", "") or exc)
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:200], None
    if not isinstance(parsed, dict):
        return text.strip()[:200], None
    code = parsed.get("code")
    return str(parsed.get("message") or text), code if isinstance(code, int) else None


def _retry_after(exc: Any) -> float | None:
    """Retry-After in seconds, else the time until X-RateLimit-Reset (epoch seconds), capped."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, relative in (("Retry-After", True), ("X-RateLimit-Reset", False)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) if relative else float(value) - time.time()
        except ValueError:
            continue
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    return None


def _never_sent(exc: BaseException) -> bool:
    """Whether the connection was never made (refused, unreachable, connect timeout): nothing reached Alpaca."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        reason = getattr(seen, "reason", None)
        if isinstance(seen, NewConnectionError | ConnectTimeoutError | ConnectionRefusedError) \
                or isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return True
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = nested or seen.__cause__ or seen.__context__
    return False


def translate_error(exc: Exception, *, placing: bool, name: str = "alpaca", what: str = "") -> VenueError:
    """Every failure of an alpaca-py call as the kernel's typed error (module docstring for the rules)."""
    from alpaca.common.exceptions import APIError

    where = f"{name}: {what}: " if what else f"{name}: "
    if isinstance(exc, APIError):
        status = exc.status_code or 0
        message, code = _body(exc)
        low = message.lower()
        detail = f"{where}HTTP {status}" + (f" ({code})" if code else "") + f": {message}"
        if status == 429:
            return VenueError(detail, retryable=True, kind=RejectKind.RATE_LIMITED, retry_after_s=_retry_after(exc))
        if status >= 500:
            return SubmitTimeout(f"{detail}: the order may exist") if placing else \
                VenueError(detail, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)
        if status == 401:
            return VenueError(detail, retryable=False, kind=RejectKind.AUTHENTICATION_FAILED)
        if status == 403:
            if "wash trade" in low:  # it could trade against our own opposite order: exits go as a bracket
                return VenueError(detail, retryable=False, kind=RejectKind.OTHER)
            if "insufficient" in low or "buying power" in low:
                return VenueError(detail, retryable=False, kind=RejectKind.INSUFFICIENT_FUNDS)
            if "fractional" in low:
                return VenueError(detail, retryable=False, kind=RejectKind.INVALID_SIZE)
            return VenueError(detail, retryable=False, kind=RejectKind.PERMISSION_MISSING)
        if status == 422 and "client_order_id" in low and "unique" in low:
            return DuplicateOrder(detail)
        if status == 404 and not placing:  # a read of something Alpaca would have: the call failed, nothing known
            return VenueError(detail, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)
        if status in (400, 404, 422):
            return VenueError(detail, retryable=False, kind=_kind_of(low))
        if 400 <= status < 500:
            return VenueError(detail, retryable=False, kind=RejectKind.OTHER)
    if _never_sent(exc):
        return VenueError(f"{where}not reachable ({type(exc).__name__}: {exc})", retryable=True,
                          kind=RejectKind.VENUE_UNAVAILABLE)
    detail = f"{where}{type(exc).__name__}: {exc}"
    if placing:  # a timeout, a dropped connection, an answer we cannot read: the order may exist
        return SubmitTimeout(f"{detail}: the order may exist")
    return VenueError(detail, retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)


def _kind_of(message: str) -> RejectKind:
    """What a 4xx refusal's words mean to a user."""
    if "asset" in message and ("not found" in message or "not tradable" in message or "not active" in message
                               or "inactive" in message):
        return RejectKind.INVALID_SYMBOL
    if "symbol" in message:
        return RejectKind.INVALID_SYMBOL
    if "fractional" in message or "fractionable" in message or "qty" in message or "quantity" in message \
            or "notional" in message:
        return RejectKind.INVALID_SIZE
    if "price" in message or "sub-penny" in message:
        return RejectKind.INVALID_PRICE
    if "market hours" in message or "market is closed" in message:
        return RejectKind.MARKET_CLOSED
    if "order type" in message or "order_class" in message or "not supported" in message:
        return RejectKind.UNSUPPORTED
    return RejectKind.OTHER


def _is_not_found(exc: Exception) -> bool:
    """Alpaca's own "no such order": HTTP 404 with its JSON body, not a proxy's or a wrong path's 404 page."""
    from alpaca.common.exceptions import APIError

    if not isinstance(exc, APIError) or exc.status_code != 404:
        return False
    message, code = _body(exc)
    return code == 40410000 or "not found" in message.lower()


def _is_not_cancelable(exc: Exception) -> bool:
    from alpaca.common.exceptions import APIError

    return isinstance(exc, APIError) and exc.status_code == 422 and "not cancelable" in _body(exc)[0].lower()


# ------------------------------------------------------------------------------------------ the venue


class AlpacaVenue:
    """One Alpaca account (paper or live) as a live venue for US stocks; see the module docstring."""

    def __init__(self, trading: Any, *, environment: Environment, symbols: Sequence[str] = (),
                 name: str = "alpaca", clock_ttl_s: float = CLOCK_TTL_S,
                 fills_page_size: int = FILLS_PAGE_SIZE) -> None:
        if environment is Environment.BACKTEST:
            raise ValueError("an Alpaca venue is PAPER (Alpaca's paper trading API) or LIVE, never BACKTEST")
        if not 1 <= fills_page_size <= FILLS_PAGE_SIZE:
            raise ValueError(f"fills_page_size must be within 1..{FILLS_PAGE_SIZE}, got {fills_page_size}")
        self.trading = trading
        self.environment = environment
        self.symbols = list(symbols)
        self.name = name
        self.clock_ttl_s = clock_ttl_s
        self.fills_page_size = fills_page_size
        self._open: tuple[float, bool] | None = None  # (monotonic time read, is_open): the clock, not orders

    @classmethod
    def connect(cls, *, key_id: str, secret_key: str, environment: Environment, symbols: Sequence[str] = (),
                api_base: str | None = None, timeout_s: float = 10.0, name: str = "alpaca") -> AlpacaVenue:
        """A ``TradingClient`` on Alpaca's paper host for PAPER, its live host for LIVE, or ``api_base``."""
        from alpaca.trading.client import TradingClient

        if environment is Environment.BACKTEST:
            raise ValueError("an Alpaca venue is PAPER (Alpaca's paper trading API) or LIVE, never BACKTEST")
        paper = environment is not Environment.LIVE
        base = api_base or (PAPER_URL if paper else LIVE_URL)
        trading = TradingClient(key_id, secret_key, paper=paper, raw_data=True, url_override=base.rstrip("/"))
        configure_rest_client(trading, timeout_s)
        return cls(trading, environment=environment, symbols=symbols, name=name)

    # ------------------------------------------------------------------------------ what can be sent

    def capabilities(self) -> VenueCapabilities:
        return VenueCapabilities(
            order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}),
            native_brackets=True,
            fractional=True,
            notes={
                "fractional": "fractionable assets only, as simple market or limit DAY orders (the "
                              "instrument's lot is 1 share for the others)",
                "outside_hours": "Alpaca accepts DAY orders outside market hours and queues them for the open",
                "fees": "no commission on US stocks; regulatory fees are separate FEE activities",
                "brackets": "LIMIT child = take-profit, STOP / STOP_LIMIT child = stop-loss; the exits get "
                            "Alpaca's own client ids",
            },
        )

    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        """Lot 1 for whole-share assets, Alpaca's ``min_trade_increment`` for fractionable ones (1e-9 when
        absent); tick = ``price_increment`` (0.01: Alpaca also takes 0.0001 below $1, which 0.01 satisfies)."""
        from alpaca.common.exceptions import APIError

        out: dict[str, Instrument] = {}
        missing: list[str] = []
        refused: list[str] = []
        for symbol in symbols:
            try:
                asset = self.trading.get_asset(symbol)
            except APIError as exc:
                if exc.status_code == 404:
                    missing.append(symbol)
                    continue
                raise translate_error(exc, placing=False, name=self.name, what=f"asset {symbol}") from exc
            except Exception as exc:
                raise translate_error(exc, placing=False, name=self.name, what=f"asset {symbol}") from exc
            if not asset.get("tradable") or str(asset.get("status", "active")) != "active":
                refused.append(f"{symbol} is not tradable")
                continue
            if str(asset.get("class", "us_equity")) != "us_equity":
                refused.append(f"{symbol} is a {asset.get('class')} asset, not a US stock")
                continue
            out[symbol] = self._instrument(symbol, asset)
        if missing or refused:
            why = ([f"no asset {', '.join(missing)}"] if missing else []) + refused
            raise VenueError(f"{self.name}: {'; '.join(why)}", retryable=False, kind=RejectKind.INVALID_SYMBOL)
        return out

    @staticmethod
    def _instrument(symbol: str, asset: dict[str, Any]) -> Instrument:
        tick = _dec(asset.get("price_increment")) or Decimal("0.01")
        if asset.get("fractionable"):
            lot = _dec(asset.get("min_trade_increment")) or Decimal("1E-9")
            minimum = _dec(asset.get("min_order_size")) or lot
        else:
            lot = minimum = Decimal(1)
        return Instrument(symbol, MarketType.STOCK, "USD", decimal_places(tick), decimal_places(lot), lot,
                          Decimal(0), tick_size=tick, min_quantity=max(minimum, lot))

    # ------------------------------------------------------------------------------------ account

    def account_check(self) -> AccountCheck:
        """Authentication and trading permission from ``/v2/account``. Alpaca's API keys cannot move money out
        (withdrawals happen in its dashboard), so ``can_withdraw`` is False."""
        from alpaca.common.exceptions import APIError

        try:
            account = self.trading.get_account()
        except APIError as exc:
            if exc.status_code in (401, 403):
                return AccountCheck(False, False, False, f"HTTP {exc.status_code}: {_body(exc)[0]}")
            raise translate_error(exc, placing=False, name=self.name, what="account") from exc
        except Exception as exc:
            raise translate_error(exc, placing=False, name=self.name, what="account") from exc
        problems = [flag for flag in ("trading_blocked", "account_blocked", "trade_suspended_by_user")
                    if account.get(flag)]
        status = str(account.get("status") or "")
        if status != "ACTIVE":
            problems.append(f"status {status or 'unknown'}")
        return AccountCheck(True, not problems, False, ", ".join(problems))

    def balances(self) -> dict[str, Decimal]:
        account = self._call(self.trading.get_account, "account")
        return {str(account.get("currency") or "USD"): _dec(account.get("cash")) or Decimal(0)}

    def positions(self) -> list[VenuePosition]:
        """Signed by Alpaca's ``side`` (short: negative), whichever sign its ``qty`` carries."""
        out: list[VenuePosition] = []
        for row in self._call(self.trading.get_all_positions, "positions"):
            qty = (_dec(row.get("qty")) or Decimal(0)).copy_abs()
            signed = -qty if str(row.get("side")) == "short" else qty
            out.append(VenuePosition(str(row["symbol"]), signed, _dec(row.get("avg_entry_price"))))
        return out

    # ------------------------------------------------------------------------------- market hours

    def market_open(self, symbol: str) -> bool:
        """Alpaca's ``/v2/clock`` ``is_open`` (one clock for every US stock), trusted ``clock_ttl_s``."""
        now = time.monotonic()
        if self._open is not None and now - self._open[0] < self.clock_ttl_s:
            return self._open[1]
        clock = self._call(self.trading.get_clock, "clock")
        is_open = bool(clock.get("is_open"))
        self._open = (now, is_open)
        return is_open

    def next_open(self) -> datetime:
        """When the market next opens (``/v2/clock`` ``next_open``), in UTC: what a refused order tells a user."""
        clock = self._call(self.trading.get_clock, "clock")
        return datetime.fromtimestamp(_ts_ns(clock.get("next_open")) / 1e9, tz=UTC)

    def calendar(self, start: date, end: date) -> list[TradingSession]:
        """Trading days in [start, end] with their regular session in UTC (holidays absent, early closes
        shortened), from ``/v2/calendar`` (New York local times)."""
        from alpaca.trading.requests import GetCalendarRequest

        rows = self._call(lambda: self.trading.get_calendar(GetCalendarRequest(start=start, end=end)), "calendar")
        out: list[TradingSession] = []
        for row in rows:
            day = date.fromisoformat(str(row["date"])[:10])

            def at(hhmm: str, day: date = day) -> datetime:
                hour, minute = (int(x) for x in hhmm.split(":")[:2])
                return datetime.combine(day, dtime(hour, minute), tzinfo=NEW_YORK).astimezone(UTC)

            out.append(TradingSession(day, at(str(row["open"])), at(str(row["close"]))))
        return out

    # ------------------------------------------------------------------------------------- orders

    def place(self, order: Order, children: Sequence[Order] = ()) -> VenueOrder:
        request = self._request(order, children)
        try:
            answer = self.trading.submit_order(request)
        except Exception as exc:
            raise translate_error(exc, placing=True, name=self.name,
                                  what=f"place {order.client_order_id}") from exc
        try:
            return order_from(answer)
        except Exception as exc:  # it answered, but not in a shape we can read: the order may exist
            raise SubmitTimeout(f"{self.name}: unreadable answer to {order.client_order_id}: {exc}") from exc

    def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        info = self._lookup(client_order_id)
        return None if info is None else order_from(info)

    def cancel(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """By client id: look the order up, DELETE it by Alpaca id, read it back. An order no longer open
        (422 "not cancelable") is returned as it is; Alpaca may report pending_cancel (still ACCEPTED) first."""
        info = self._lookup(client_order_id)
        if info is None:
            return None
        if order_from(info).status.is_terminal:
            return order_from(info)
        try:
            self.trading.cancel_order_by_id(str(info["id"]))
        except Exception as exc:
            if not (_is_not_cancelable(exc) or _is_not_found(exc)):
                raise translate_error(exc, placing=False, name=self.name,
                                      what=f"cancel {client_order_id}") from exc
        after = self._lookup(client_order_id)
        return order_from(after if after is not None else info)

    def open_orders(self) -> list[VenueOrder]:
        """Every working order, oldest first, paged by submission time (Alpaca lists at most 500 at a time).
        Orders MMATS did not place keep their own client ids (Alpaca's UUIDs for dashboard orders and for the
        exits of a bracket)."""
        from alpaca.common.enums import Sort
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        seen: dict[str, VenueOrder] = {}
        after: datetime | None = None
        while True:
            request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=OPEN_ORDERS_PAGE, direction=Sort.ASC,
                                       after=after)  # not nested: a bracket's working exits are listed too
            page = self._call(functools.partial(self.trading.get_orders, request), "open orders")
            fresh = [row for row in page if str(row.get("id")) not in seen]
            for row in fresh:
                seen[str(row["id"])] = order_from(row)
            if len(page) < OPEN_ORDERS_PAGE or not fresh:
                break
            # `after` is exclusive: step back a microsecond so orders sharing the last timestamp are not skipped
            last_us = max(_ts_ns(row.get("submitted_at") or row.get("created_at")) for row in page) // 1000 - 1
            after = datetime.fromtimestamp(last_us // 1_000_000, tz=UTC).replace(microsecond=last_us % 1_000_000)
        return sorted(seen.values(), key=lambda o: (o.ts_ns, o.venue_order_id))

    def fills(self, since_ns: int, symbols: Sequence[str]) -> list[VenueFill]:
        """FILL activities after ``since_ns``, every page, oldest first (``symbols`` filters when given)."""
        wanted = set(symbols)
        out: list[VenueFill] = []
        token: str | None = None
        for _ in range(MAX_FILL_PAGES):
            params: dict[str, Any] = {"after": _rfc3339(since_ns), "direction": "asc",
                                      "page_size": self.fills_page_size}
            if token:
                params["page_token"] = token
            page = self._call(functools.partial(self.trading.get, "/account/activities/FILL", params), "fills")
            if not isinstance(page, list):
                raise VenueError(f"{self.name}: fills: unexpected answer {str(page)[:200]}", retryable=True,
                                 kind=RejectKind.VENUE_UNAVAILABLE)
            for row in page:
                fill = self._fill_from(row)
                if fill is not None and (not wanted or fill.symbol in wanted):
                    out.append(fill)
            if len(page) < self.fills_page_size:
                break
            last = str(page[-1].get("id") or "")
            if not last or last == token:  # a venue that ignores the token would page forever
                break
            token = last
        else:
            raise VenueError(f"{self.name}: fills: more than {MAX_FILL_PAGES} pages since {_rfc3339(since_ns)}",
                             retryable=True, kind=RejectKind.VENUE_UNAVAILABLE)
        out.sort(key=lambda f: (f.ts_ns, f.fill_id))
        return out

    def close(self) -> None:
        self.trading._session.close()

    # ---------------------------------------------------------------------------------- internals

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except Exception as exc:
            raise translate_error(exc, placing=False, name=self.name, what=what) from exc

    def _lookup(self, client_order_id: str) -> dict[str, Any] | None:
        """``GET /v2/orders:by_client_order_id``; None only on Alpaca's own 404."""
        try:
            return dict(self.trading.get_order_by_client_id(client_order_id))
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise translate_error(exc, placing=False, name=self.name, what=f"order {client_order_id}") from exc

    def _fill_from(self, row: dict[str, Any]) -> VenueFill | None:
        fill_id = str(row.get("id") or "")
        qty = _dec(row.get("qty"))
        price = _dec(row.get("price"))
        if not fill_id or qty is None or price is None:
            return None
        return VenueFill(fill_id=fill_id, venue_order_id=str(row.get("order_id") or ""), client_order_id="",
                         symbol=str(row.get("symbol") or ""), side=Side.BUY if row.get("side") == "buy" else Side.SELL,
                         quantity=qty, price=price, fee=Decimal(0), fee_currency="USD",
                         ts_ns=_ts_ns(row.get("transaction_time")), liquidity=Liquidity.TAKER)

    def _refuse(self, order: Order, kind: RejectKind, why: str) -> VenueError:
        return VenueError(f"{self.name}: {order.client_order_id}: {why}", retryable=False, kind=kind)

    def _request(self, order: Order, children: Sequence[Order]) -> Any:
        """alpaca-py's request model for ``order`` (and its exits), or a refusal before anything is sent."""
        from alpaca.trading.enums import OrderClass, OrderSide
        from alpaca.trading.enums import TimeInForce as AlpacaTif
        from alpaca.trading.requests import (
            LimitOrderRequest,
            MarketOrderRequest,
            StopLimitOrderRequest,
            StopLossRequest,
            StopOrderRequest,
            TakeProfitRequest,
        )

        qty = order.quantity
        fractional = qty != qty.to_integral_value()
        tif = _TIF[order.time_in_force]
        if fractional:
            if children or order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
                self._raise(order, RejectKind.INVALID_SIZE, f"fractional quantity {qty} is only taken in "
                                   "simple market or limit orders at Alpaca: send whole shares")
            if order.order_type is OrderType.MARKET and tif in ("gtc", "day"):
                tif = "day"  # a market order does not rest: DAY and GTC differ in name only
            elif tif != "day":
                self._raise(order, RejectKind.INVALID_SIZE, f"fractional quantity {qty} needs time in force "
                                   f"DAY at Alpaca (this order is {order.time_in_force.value})")
        fields: dict[str, Any] = {"symbol": order.symbol, "qty": self._number(order, "quantity", qty),
                                  "side": OrderSide.BUY if order.side is Side.BUY else OrderSide.SELL,
                                  "time_in_force": AlpacaTif(tif), "client_order_id": order.client_order_id}
        take, stop = self._exits(order, children)
        if take is not None or stop is not None:
            if tif not in ("day", "gtc"):
                self._raise(order, RejectKind.UNSUPPORTED, "Alpaca takes brackets as DAY or GTC orders only")
            fields["order_class"] = OrderClass.BRACKET if take is not None and stop is not None else OrderClass.OTO
            if take is not None:
                fields["take_profit"] = TakeProfitRequest(limit_price=self._number(order, "take-profit", take.price))
            if stop is not None:
                limit = self._number(order, "stop-loss limit", stop.price) if stop.price is not None else None
                fields["stop_loss"] = StopLossRequest(stop_price=self._number(order, "stop-loss", stop.stop_price),
                                                      limit_price=limit)
        price = self._number(order, "price", order.price) if order.price is not None else None
        stop_price = self._number(order, "stop price", order.stop_price) if order.stop_price is not None else None
        if order.order_type is OrderType.MARKET:
            return MarketOrderRequest(**fields)
        if order.order_type is OrderType.LIMIT:
            return LimitOrderRequest(limit_price=price, **fields)
        if order.order_type is OrderType.STOP:
            return StopOrderRequest(stop_price=stop_price, **fields)
        return StopLimitOrderRequest(stop_price=stop_price, limit_price=price, **fields)

    def _exits(self, order: Order, children: Sequence[Order]) -> tuple[Order | None, Order | None]:
        take: Order | None = None
        stop: Order | None = None
        for child in children:
            if child.side is order.side or child.quantity != order.quantity:
                self._raise(order, RejectKind.UNSUPPORTED, f"exit {child.client_order_id} must close the entry "
                            "(opposite side, same quantity) for an Alpaca bracket")
            if child.order_type is OrderType.LIMIT and take is None:
                take = child
            elif child.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and stop is None:
                stop = child
            else:
                self._raise(order, RejectKind.UNSUPPORTED, "an Alpaca bracket is one LIMIT take-profit and/or one "
                            f"STOP stop-loss; got {', '.join(c.order_type.value for c in children)}")
        return take, stop

    def _number(self, order: Order, what: str, value: Decimal | None) -> float:
        """alpaca-py's request models take floats: refuse a value the float round trip would change."""
        if value is None:
            self._raise(order, RejectKind.INVALID_PRICE, f"{what} is missing")
        number = float(value)
        if Decimal(repr(number)) != value:
            kind = RejectKind.INVALID_SIZE if what == "quantity" else RejectKind.INVALID_PRICE
            self._raise(order, kind, f"{what} {value} has more digits than Alpaca's API carries")
        return number

    def _raise(self, order: Order, kind: RejectKind, why: str) -> NoReturn:
        raise self._refuse(order, kind, why)
