"""Open the live bar source a feed's config names: one place that knows every MarketData adapter.

The feed actor and the supervisor both call ``open_market_data`` inside their own process, with the
spec from the config (never a client object or a credential: those stay in the process that uses them,
``adapters/secrets.py``). Every source offers the same few calls: ``subscribe``, ``latest_bars``,
``bars_since`` (closed bars only), ``instruments`` and ``now_ns`` (the venue's clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmats.errors import ConfigError

__all__ = ["open_market_data"]


def open_market_data(spec: Mapping[str, Any]) -> Any:
    """The adapter for ``spec["source"]`` (``ccxt``, ``oanda``, ``alpaca``), connected, not yet subscribed."""
    source = spec.get("source")
    timeout_ms = int(spec.get("timeout_ms", 10_000))
    if source == "ccxt":
        from adapters.ccxt_market_data import CcxtMarketData

        swaps = any(":" in str(s) for s in spec.get("symbols") or ())  # BASE/QUOTE:SETTLE: perpetual swaps
        return CcxtMarketData.connect(str(spec["exchange"]), api_base=spec.get("api_base"), timeout_ms=timeout_ms,
                                      swaps=swaps)
    if source == "oanda":
        from adapters.oanda_market_data import OandaMarketData

        return OandaMarketData.connect(_secret(spec, "oanda.token"), str(spec["account_id"]),
                                       api_base=spec.get("api_base"), live=spec.get("environment") == "LIVE",
                                       timeout_s=timeout_ms / 1000)
    if source == "alpaca":
        from adapters.alpaca_market_data import AlpacaMarketData

        return AlpacaMarketData.connect(_secret(spec, "alpaca.key_id"), _secret(spec, "alpaca.secret_key"),
                                        api_base=spec.get("api_base"), data_feed=str(spec.get("data_feed", "iex")),
                                        paper=spec.get("environment") != "LIVE")
    raise ConfigError(f"feed source {source!r}: no live market data adapter by that name")


def _secret(spec: Mapping[str, Any], name: str) -> str:
    """One credential from this environment's encrypted store, read here, in the process that uses it."""
    from adapters.secrets import SecretStore
    from mmats.model import Environment

    environment = Environment(str(spec.get("environment", "PAPER")))
    store = SecretStore(str(spec["home"]), environment)
    if store.get_optional(name) is None:
        raise ConfigError(f"feed source {spec.get('source')}: no {environment.value} secret {name!r}; "
                          f"store it with: mmats secrets set {name} --environment {environment.value} "
                          f"--home {spec['home']}")
    return store.get(name).reveal()
