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
    """The adapter for ``spec["source"]`` (``ccxt``), connected but not yet subscribed."""
    source = spec.get("source")
    timeout_ms = int(spec.get("timeout_ms", 10_000))
    if source == "ccxt":
        from adapters.ccxt_market_data import CcxtMarketData

        return CcxtMarketData.connect(str(spec["exchange"]), api_base=spec.get("api_base"), timeout_ms=timeout_ms)
    raise ConfigError(f"feed source {source!r}: no live market data adapter by that name")
