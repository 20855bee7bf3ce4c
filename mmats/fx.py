"""Currency conversion for one account: the rate of every currency it holds, in its base currency.

An account trades instruments quoted in several currencies (BTC/USDT in USDT, USD/JPY in JPY, AAPL in
USD) but has one base currency in which equity, P&L, limits and drawdown are measured. Every amount is
converted with ``rate(currency)``: the value of one unit of that currency in base currency.

Rates come from three sources, in this order of preference:
- the system's own feeds: a feed symbol that is a currency pair (USD/JPY, EUR_USD, BTC/USDT) gives the
  rate of its currencies, inverted where needed, and moves with every bar (``on_price``);
- configured rates (``fx_rates: {"EUR/USD": 1.08}``) for pairs no feed carries: constant;
- USDT/USD and USDC/USD default to 1 when neither gives them, reported by ``notes()``, never silently.
A rate may chain pairs (JPY -> USD -> EUR for a EUR account); the shortest chain wins, feeds before
configured rates before defaults. A currency no chain reaches is an error at load naming the currency
and how to supply it: never a silent 1.0.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, getcontext, localcontext, setcontext

from mmats.errors import ConfigError, ValidationError

#: Pairs assumed at par when no feed and no configured rate gives them (a stablecoin's peg).
STABLE_PEGS: dict[str, Decimal] = {"USDT/USD": Decimal(1), "USDC/USD": Decimal(1)}

_CCY = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
_SEP = re.compile(r"[/_\-]")
_CTX = Context(prec=60)
_ONE = Decimal(1)
_PRIORITY = {"feed": 0, "config": 1, "default": 2}


class FxError(ValidationError):
    """A currency has no rate (yet): the message names it and says how to supply one."""


def currency_code(text: str, where: str = "currency") -> str:
    """An upper-case currency code (USD, JPY, USDT); anything else is refused by name."""
    code = str(text).strip().upper()
    if not _CCY.match(code):
        raise ConfigError(f"{where}: {text!r} is not a currency code (e.g. USD, EUR, JPY, USDT)")
    return code


def split_pair(symbol: str) -> tuple[str, str] | None:
    """The (base, quote) currencies of a pair symbol, or None for a symbol that is not one (AAPL).

    ``EUR/USD``, ``EUR_USD``, ``EUR-USD``, ``EURUSD`` (six letters) and ccxt's ``BTC/USDT:USDT`` all count.
    """
    text = symbol.strip().upper().split(":", 1)[0]
    parts = _SEP.split(text)
    if len(parts) == 1 and len(text) == 6 and text.isalpha():
        parts = [text[:3], text[3:]]
    if len(parts) != 2 or not all(_CCY.match(p) for p in parts) or parts[0] == parts[1]:
        return None
    return parts[0], parts[1]


@dataclass(slots=True)
class _Edge:
    """One pair: 1 unit of ``base`` is worth ``price`` units of ``quote`` (None until a feed's first bar)."""

    pair: str
    base: str
    quote: str
    source: str  # feed | config | default
    price: Decimal | None
    used: bool = False  # some required currency's chain goes through it: its price moves a rate


class FxRates:
    """The rates of one account's currencies in its base currency, kept current by the feeds' prices."""

    def __init__(self, base: str = "USD", configured: Mapping[str, Decimal | float | str] | None = None,
                 feed_symbols: Iterable[str] = ()) -> None:
        self.base = currency_code(base, "base_currency")
        self._edges: dict[str, _Edge] = {}
        self._by_symbol: dict[str, _Edge] = {}
        for sym in feed_symbols:
            pair = split_pair(sym)
            if pair is None:
                continue
            key = f"{pair[0]}/{pair[1]}"
            edge = self._edges.get(key)
            if edge is None:
                edge = self._edges[key] = _Edge(key, pair[0], pair[1], "feed", None)
            self._by_symbol[sym] = edge
        for key, value in (configured or {}).items():
            pair = split_pair(key)
            if pair is None or "/" not in key:
                raise ConfigError(f"fx_rates: {key!r} is not a currency pair written BASE/QUOTE (e.g. EUR/USD)")
            name = f"{pair[0]}/{pair[1]}"
            carried = self._edges.get(name) or self._edges.get(f"{pair[1]}/{pair[0]}")
            if carried is not None:
                raise ConfigError(f"fx_rates {key}: a feed carries {carried.pair}, whose bars give this rate "
                                  "(remove it from fx_rates)")
            price = _positive(value, f"fx_rates {key}")
            self._edges[name] = _Edge(name, pair[0], pair[1], "config", price)
        for key, price in STABLE_PEGS.items():
            b, q = key.split("/")
            if key not in self._edges and f"{q}/{b}" not in self._edges:
                self._edges[key] = _Edge(key, b, q, "default", price)
        # currency -> chain of (edge, inverted) from the currency to base; built by ``require``.
        self._paths: dict[str, tuple[tuple[_Edge, bool], ...]] = {self.base: ()}
        self._rates: dict[str, Decimal] = {self.base: Decimal(1)}
        self._dirty = False
        self._required: set[str] = {self.base}

    # ----------------------------------------------------------------------------------- planning

    def require(self, currencies: Iterable[str], what: str = "the instruments") -> None:
        """Find a chain to base for each currency; a currency without one is refused with a way to fix it."""
        missing: list[str] = []
        for ccy in sorted({c.upper() for c in currencies}):
            if ccy in self._paths:
                self._required.add(ccy)
                continue
            path = self._find(ccy)
            if path is None:
                missing.append(ccy)
                continue
            self._paths[ccy] = path
            for edge, _ in path:
                edge.used = True
            self._required.add(ccy)
            self._dirty = True
        if missing:
            how = ", ".join(f'"{c}/{self.base}": <rate>' for c in missing)
            feeds = " or ".join(f"{self.base}/{c} or {c}/{self.base}" for c in missing)
            raise FxError(f"no rate converts {', '.join(missing)} (needed by {what}) to the base currency "
                          f"{self.base}: add a feed of {feeds}, or set fx_rates: {{{how}}}")

    def check_configured_used(self) -> None:
        """A configured rate no required currency's chain uses has no effect: refused rather than ignored."""
        used = {e.pair for path in self._paths.values() for e, _ in path}
        unused = sorted(e.pair for e in self._edges.values() if e.source == "config" and e.pair not in used)
        if unused:
            raise ConfigError(f"fx_rates {', '.join(unused)}: no instrument needs it (their currencies are "
                              f"{', '.join(sorted(self._required))}, base {self.base}); remove it")

    def _find(self, ccy: str) -> tuple[tuple[_Edge, bool], ...] | None:
        """Breadth-first from ``ccy`` to base: fewest hops, then feeds before configured before defaults."""
        adjacent: dict[str, list[tuple[int, str, _Edge, bool]]] = {}
        for e in self._edges.values():
            rank = _PRIORITY[e.source]
            adjacent.setdefault(e.base, []).append((rank, e.quote, e, False))
            adjacent.setdefault(e.quote, []).append((rank, e.base, e, True))
        for links in adjacent.values():
            links.sort(key=lambda x: (x[0], x[1]))
        prev: dict[str, tuple[str, _Edge, bool] | None] = {ccy: None}
        queue = deque([ccy])
        while queue:
            node = queue.popleft()
            if node == self.base:
                break
            for _, nxt, edge, inverted in adjacent.get(node, ()):
                if nxt not in prev:
                    prev[nxt] = (node, edge, inverted)
                    queue.append(nxt)
        if self.base not in prev:
            return None
        chain: list[tuple[_Edge, bool]] = []
        node = self.base
        while (step := prev[node]) is not None:
            chain.append((step[1], step[2]))
            node = step[0]
        chain.reverse()
        return tuple(chain)

    # ------------------------------------------------------------------------------------- prices

    def on_price(self, symbol: str, price: Decimal | float) -> bool:
        """A feed's price of ``symbol``: True when it is a rate source (its rates change)."""
        edge = self._by_symbol.get(symbol)
        if edge is None:
            return False
        if price is edge.price:  # the same Decimal again (a mark of an unchanged bar): no rate moves
            return True
        value = price if isinstance(price, Decimal) else Decimal(repr(float(price)))
        if value <= 0:
            return False
        edge.price = value
        if edge.used:  # a pair no chain reads moves no rate: the rates are not recomputed for it
            self._dirty = True
        return True

    def is_source(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def seed(self, prices: Mapping[str, Decimal | float]) -> None:
        """Feed prices known before the first bar is booked (a replay's first open, a venue's last candle)."""
        for sym, px in prices.items():
            self.on_price(sym, px)

    def rate(self, currency: str) -> Decimal:
        """Value of one unit of ``currency`` in base currency."""
        if self._dirty:
            self._recompute()
        r = self._rates.get(currency)
        if r is not None:
            return r
        if currency not in self._paths:  # not planned yet (a fee currency, a late instrument): find its chain
            self.require([currency], f"an amount in {currency}")
            self._recompute()
            r = self._rates.get(currency)
            if r is not None:
                return r
        if currency in self._paths:
            pending = [e.pair for e, _ in self._paths[currency] if e.price is None]
            raise FxError(f"no {currency}/{self.base} rate yet: the feed of {', '.join(pending)} has not "
                          "delivered a price")
        raise FxError(f"currency {currency} has no rate to {self.base} (not among the account's currencies "
                      f"{', '.join(sorted(self._paths))}); add a feed of {currency}/{self.base} or set fx_rates")

    def rates(self) -> dict[str, Decimal]:
        """Every currency whose rate is known now."""
        if self._dirty:
            self._recompute()
        return dict(self._rates)

    def current(self) -> Mapping[str, Decimal]:
        """``rates()`` without the copy, to read only: a new object whenever a rate has changed, so a
        cache of figures computed from the rates may be keyed on its identity."""
        if self._dirty:
            self._recompute()
        return self._rates

    def _recompute(self) -> None:
        saved = getcontext()  # setcontext is ~2x cheaper than localcontext: this runs on every rate move
        setcontext(_CTX)
        try:
            out: dict[str, Decimal] = {}
            for ccy, path in self._paths.items():
                r = _ONE
                for edge, inverted in path:
                    if edge.price is None:
                        break
                    r = r / edge.price if inverted else r * edge.price
                else:
                    out[ccy] = +r
        finally:
            setcontext(saved)
        self._rates = out
        self._dirty = False

    def dependence(self, currency: str, symbol: str) -> tuple[Decimal, int]:
        """``rate(currency) == constant * price(symbol) ** exponent`` (exponent -1, 0 or 1), when every other
        link of its chain is constant: what lets a one-symbol backtest derive the rate from its own closes.
        Raises ``FxError`` when the chain needs another feed's price."""
        if currency not in self._paths:
            self.require([currency])
        constant, exponent = Decimal(1), 0
        with localcontext(_CTX):
            for edge, inverted in self._paths[currency]:
                if self._by_symbol.get(symbol) is edge:
                    exponent += -1 if inverted else 1
                    continue
                if edge.source == "feed" or edge.price is None:
                    raise FxError(f"the {currency}/{self.base} rate needs the feed of {edge.pair}, which this run "
                                  f"does not have: set fx_rates {{\"{edge.pair}\": <rate>}}")
                constant = constant / edge.price if inverted else constant * edge.price
        return +constant, exponent

    # ------------------------------------------------------------------------------------ reports

    def sources(self) -> dict[str, str]:
        """Per currency, where its rate comes from (status and result): 'feed USD/JPY (inverted)', ..."""
        out: dict[str, str] = {}
        for ccy, path in sorted(self._paths.items()):
            if not path:
                out[ccy] = "base"
                continue
            out[ccy] = " x ".join(f"{e.source} {e.pair}{' (inverted)' if inv else ''}" for e, inv in path)
        return out

    def notes(self) -> list[str]:
        """What the rates assume: a default peg used by a required currency is stated, never silent."""
        used = {e.pair: e for path in self._paths.values() for e, _ in path}
        return [f"{pair} = {dec(e.price)} assumed (no feed and no fx_rates entry gives it; set fx_rates "
                f'{{"{pair}": <rate>}} to override)'
                for pair, e in sorted(used.items()) if e.source == "default" and e.price is not None]

    @property
    def currencies(self) -> list[str]:
        return sorted(self._paths)


def dec(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _positive(value: Decimal | float | str, where: str) -> Decimal:
    try:
        d = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
    except Exception:
        raise ConfigError(f"{where}: {value!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise ConfigError(f"{where}: the rate must be a positive number, got {value!r}")
    return d


def plan_fx(base: str, quote_currencies: Iterable[str], feed_symbols: Iterable[str],
            configured: Mapping[str, Decimal | float | str] | None = None,
            what: str = "the instruments") -> FxRates:
    """The account's rates, checked at load: every quote currency reachable, every configured rate used.

    Raises ``ConfigError`` naming a currency without a rate, or a configured rate with no effect.
    """
    fx = FxRates(base, configured, feed_symbols)
    try:
        fx.require(quote_currencies, what)
    except FxError as exc:
        raise ConfigError(str(exc)) from None
    fx.check_configured_used()
    return fx
