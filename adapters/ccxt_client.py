"""One way to build a ccxt client for MMATS, shared by the venue (orders) and the market-data adapters.

Why these defaults: spot markets only (futures and margin endpoints are never called, so spot keys
with no other permission work), no currency metadata (some exchanges fetch it from a private endpoint
a trade-only key may not reach, and nothing here needs it), ccxt's own rate limiter on, the venue's
clock difference measured at ``load_markets`` (signed requests stay inside the venue's time window, and
"is this bar closed" is asked in the venue's time, not ours), and no retries inside ccxt
(``maxRetriesOnFailure`` 0): retrying is the live execution's decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt

__all__ = ["make_exchange", "point_at", "venue_now_ms"]


def make_exchange(exchange_id: str, *, api_key: str | None = None, secret: str | None = None,
                  api_base: str | None = None, timeout_ms: int = 10_000,
                  options: Mapping[str, Any] | None = None, password: str | None = None) -> Any:
    """A sync ccxt exchange; ``api_base`` sends it to another address (``point_at``); ``password`` is the
    API passphrase some exchanges (OKX, KuCoin) require besides key and secret."""
    if not hasattr(ccxt, exchange_id) or exchange_id not in ccxt.exchanges:
        raise ValueError(f"exchange {exchange_id!r}: not an exchange ccxt knows (see ccxt.exchanges)")
    opts: dict[str, Any] = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                            "fetchCurrencies": False, "fetchMargins": False, "adjustForTimeDifference": True,
                            "warnOnFetchOpenOrdersWithoutSymbol": False, "maxRetriesOnFailure": 0}
    opts.update(options or {})
    config: dict[str, Any] = {"timeout": timeout_ms, "enableRateLimit": True, "options": opts}
    if api_key is not None:
        config.update(apiKey=api_key, secret=secret)
    if password is not None:
        config["password"] = password
    exchange = getattr(ccxt, exchange_id)(config)
    # Bybit (for one) ignores the fetchCurrencies option and calls a private coin-info endpoint on
    # load_markets whenever keys are set; markets carry every currency code MMATS uses.
    exchange.has = {**exchange.has, "fetchCurrencies": False}
    if api_base is not None:
        point_at(exchange, api_base)
    return exchange


def venue_now_ms(exchange: Any) -> int:
    """The venue's clock as ccxt estimates it (local time minus the difference measured at load_markets)."""
    return int(exchange.milliseconds()) - int(exchange.options.get("timeDifference", 0) or 0)


def point_at(exchange: Any, base_url: str) -> None:
    """Send every REST and websocket call of ``exchange`` to ``base_url``, keeping each URL's path.

    For a fake venue in tests or a self-hosted gateway. Never combine it with ccxt's sandbox mode, which
    points the URLs back at the real testnet. ccxt picks an exchange's market-specific error table by the
    production host name (Binance: ``https://api.binance.com/``); without the second half below, a few
    codes (e.g. -1008 "server overloaded") would map differently behind the new address than in production.
    """
    target = urlsplit(base_url.rstrip("/"))

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str) and value.startswith(("https://", "http://", "wss://", "ws://")):
            parts = urlsplit(value)
            scheme = "ws" if parts.scheme in ("ws", "wss") else target.scheme
            return urlunsplit((scheme, target.netloc, target.path + parts.path, parts.query, parts.fragment))
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])
    if "spot" not in (exchange.exceptions or {}):
        return
    original = exchange.get_exceptions_by_url
    spot_prefixes = (f"{base_url.rstrip('/')}/api/", f"{base_url.rstrip('/')}/sapi/")

    def get_exceptions_by_url(url: str | None, exact_or_broad: str) -> dict[str, Any]:
        if url is not None and url.startswith(spot_prefixes):
            spot = exchange.safe_dict(exchange.exceptions, "spot", {})
            table: dict[str, Any] = exchange.safe_dict(spot, exact_or_broad, {})
            return table
        result: dict[str, Any] = original(url, exact_or_broad)
        return result

    exchange.get_exceptions_by_url = get_exceptions_by_url
