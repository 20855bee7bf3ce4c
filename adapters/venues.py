"""Open the live venue a config names: the one place that knows every order-routing adapter.

Called inside the order router's own process (and by the supervisor's start-up check), with the
venue's spec from the config: names of credentials only; the keys are read here from the LIVE
namespace of the encrypted secret store (``adapters/secrets.py``) and never travel in an actor call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmats.errors import ConfigError
from mmats.execution.venue import VenueClient
from mmats.model import Environment

__all__ = ["open_venue", "secret_names"]


def secret_names(kind: str, name: str) -> list[str]:
    """The secret store entries a venue of ``kind`` called ``name`` needs (``mmats secrets set <entry>``)."""
    return {"ccxt": [f"{name}.api_key", f"{name}.secret"], "oanda": [f"{name}.token"],
            "alpaca": [f"{name}.key_id", f"{name}.secret_key"]}[kind]


def open_venue(spec: Mapping[str, Any]) -> VenueClient:
    """The adapter for ``spec["kind"]`` (``ccxt``, ``oanda``, ``alpaca``), connected with its keys."""
    kind, name = str(spec["kind"]), str(spec["name"])
    environment = Environment(str(spec.get("environment", "LIVE")))
    symbols = list(spec["symbols"])
    timeout_s = float(spec.get("timeout_s", 10.0))
    keys = [_secret(spec, n) for n in secret_names(kind, name)]
    if kind == "ccxt" and spec.get("leverage"):  # perpetual swaps (BASE/QUOTE:SETTLE): adapters.ccxt_swap
        from adapters.ccxt_swap import CcxtSwapVenue

        return CcxtSwapVenue.connect_swap(str(spec["exchange"]), api_key=keys[0], secret=keys[1],
                                          environment=environment, symbols=symbols, leverage=spec["leverage"],
                                          api_base=spec.get("api_base"), timeout_ms=int(timeout_s * 1000), name=name)
    if kind == "ccxt":
        from adapters.ccxt_broker import CcxtVenue

        password = _secret(spec, f"{name}.password", optional=True)
        return CcxtVenue.connect(str(spec["exchange"]), api_key=keys[0], secret=keys[1], environment=environment,
                                 symbols=symbols, api_base=spec.get("api_base"), timeout_ms=int(timeout_s * 1000),
                                 password=password, name=name)
    if kind == "oanda":
        from adapters.oanda_broker import OandaVenue

        return OandaVenue.connect(token=keys[0], account_id=str(spec["account_id"]), environment=environment,
                                  symbols=symbols, api_base=spec.get("api_base"), timeout_s=timeout_s, name=name)
    if kind == "alpaca":
        from adapters.alpaca_broker import AlpacaVenue

        return AlpacaVenue.connect(key_id=keys[0], secret_key=keys[1], environment=environment, symbols=symbols,
                                   api_base=spec.get("api_base"), timeout_s=timeout_s, name=name)
    raise ConfigError(f"venue {name}: no order-routing adapter of kind {kind!r} (ccxt, oanda, alpaca)")


def _secret(spec: Mapping[str, Any], entry: str, optional: bool = False) -> Any:
    from adapters.secrets import SecretStore

    environment = Environment(str(spec.get("environment", "LIVE")))
    store = SecretStore(str(spec["home"]), environment)
    value = store.get_optional(entry)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"venue {spec['name']}: no {environment.value} secret {entry!r}; store it with: "
                          f"mmats secrets set {entry} --environment {environment.value} --home {spec['home']}")
    return value.reveal()
