"""Sweeps and walk-forward over a system config: the grid names what to vary in a portfolio.

A grid key addresses one strategy of the config by its id (``trend.fast`` is strategy ``trend``'s
parameter ``fast``; ``trend.allocation`` its share of capital) or a section of the config that does not
change the bars (``costs.commission.taker_bps``, ``risk.global.max_position_pct``, ``initial_cash``,
``allocation.weights.trend``). The feeds are loaded once per sweep, so they cannot be swept.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mmats.errors import ConfigError
from mmats.research.runconfig import set_dotted
from mmats.system_config import SystemConfig, validated_system_config

#: Sections of a system config a grid may vary; the rest decide which bars are loaded, or the runtime.
PORTFOLIO_SECTIONS = frozenset({"initial_cash", "costs", "risk", "allocation", "base_currency", "fx_rates"})
#: A strategy's own fields a grid may set; any other name is one of its parameters.
STRATEGY_FIELDS = frozenset({"allocation", "timeframe", "enabled"})


def strategy_ids(base: Mapping[str, Any]) -> list[str]:
    return [str(s.get("id")) for s in base.get("strategies") or [] if isinstance(s, Mapping)]


def check_portfolio_param(name: str, ids: Sequence[str]) -> None:
    """Refuse a key that names no strategy and no sweepable section, with what would work."""
    head = name.split(".", 1)[0]
    if head in PORTFOLIO_SECTIONS:
        return
    if head in ids:
        if "." not in name:
            raise ConfigError(f"--grid {name}: name one of strategy {head}'s parameters ({head}.fast) or its "
                              "allocation ({head}.allocation)")
        return
    if head == "feeds":
        raise ConfigError(f"--grid {name}: the feeds' bars are loaded once per sweep (run one sweep per data set)")
    raise ConfigError(f"--grid {name}: {head!r} is neither a strategy of the config ({', '.join(ids)}) nor a "
                      f"sweepable section ({', '.join(sorted(PORTFOLIO_SECTIONS))}); e.g. {ids[0] if ids else 'id'}"
                      ".fast=5,10")


def apply_portfolio_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A raw system config with ``params`` applied (the base is not modified)."""
    raw = copy.deepcopy(dict(base))
    ids = strategy_ids(raw)
    for key, value in params.items():
        check_portfolio_param(key, ids)
        head, _, rest = key.partition(".")
        if head in ids:
            strat = next(s for s in raw["strategies"] if s.get("id") == head)
            field, _, sub = rest.partition(".")
            if field in STRATEGY_FIELDS and not sub:
                strat[field] = value
            else:
                name = rest[len("params."):] if rest.startswith("params.") else rest
                strat["params"] = {**(strat.get("params") or {}), name: value}
            continue
        set_dotted(raw, key.split("."), value)
    return raw


def build_portfolio_config(base: Mapping[str, Any], params: Mapping[str, Any]) -> SystemConfig:
    # a swept value, risk limits included, is checked as a loaded config's is
    return validated_system_config(apply_portfolio_params(base, params))


def is_portfolio_base(base: Mapping[str, Any]) -> bool:
    """A sweep's base config is a system config (feeds / strategies), not a one-strategy run config."""
    return "strategies" in base or "feeds" in base
