"""Argument helpers shared by the ``mmats`` subcommands (backtest, sweep, walk-forward, strategy submit).

Kept apart from ``main`` so that the command modules (``research``, ``runtime``) and ``main``, which
registers them, do not import each other.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmats.errors import ConfigError
from mmats.registry import BUILTIN


def kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, _, v = text.partition("=")
    return k.strip(), v.strip()


def add_backtest_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to run")
    g.add_argument("--strategy", help=f"built-in name ({', '.join(sorted(BUILTIN))}) "
                   "or path/to/file.py:ClassName (mmats strategies lists them with their parameters)")
    g.add_argument("--param", action="append", type=kv, default=[], metavar="NAME=VALUE",
                   help="strategy parameter, repeatable: --param fast=10 --param slow=30")
    g.add_argument("--config", metavar="FILE", help="YAML/JSON run config; flags given here override it")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="PATH", help="OHLCV Parquet or CSV (ts, open, high, low, close[, volume]); "
                   "omitted: deterministic generated bars")
    d.add_argument("--bars", type=int, metavar="N", help="number of generated bars when --data is omitted")
    d.add_argument("--symbol", help="symbol name (default: from the file name, e.g. crypto_BTCPERP_1m -> BTCPERP)")
    d.add_argument("--market", choices=["crypto", "forex", "stock"], help="market type (default: from file name)")
    d.add_argument("--timeframe", choices=["1m", "5m", "15m", "1h", "4h", "1d"],
                   help="resample to this timeframe before running (default: the data's own)")
    d.add_argument("--start", help="first bar to use, inclusive (e.g. 2022-01-05)")
    d.add_argument("--end", help="last bar to use, exclusive")
    d.add_argument("--benchmark-data", metavar="PATH",
                   help="bar file of the benchmark symbol RS_n@SYMBOL indicators compare with (symbol from the "
                        "file name, e.g. stock_SPY_1d -> SPY)")
    c = p.add_argument_group("account and costs")
    c.add_argument("--cash", type=float, help="initial cash in the base currency (default 10000)")
    c.add_argument("--base-currency", help="the currency results are in (default USD; docs/configuration.md)")
    c.add_argument("--allocation", type=float, help="share of equity a position_size of 1.0 means (default 1.0)")
    c.add_argument("--fees", help="taker fee, e.g. 10bps or 0.1%% (percent commission model)")
    c.add_argument("--maker-fees", help="maker fee for limit fills (default: same as --fees)")
    c.add_argument("--commission", choices=["none", "percent", "per_share", "spread"],
                   help="commission model (default: percent when --fees is given)")
    c.add_argument("--per-share", type=float, help="per-share fee for --commission per_share (default 0.005)")
    c.add_argument("--min-fee", type=float, help="minimum fee per order for per_share (default 1.0)")
    c.add_argument("--spread-pips", type=float, help="spread in pips for --commission spread (forex)")
    c.add_argument("--slippage", help="slippage in bps for the fixed model (e.g. 2bps)")
    c.add_argument("--slippage-model", choices=["none", "fixed", "volatility", "volume"],
                   help="fixed (bps), volatility (k x bar range) or volume (sqrt impact); default fixed if --slippage")
    c.add_argument("--max-volume-share", type=float, metavar="F",
                   help="partial fills: cap each fill at F x bar volume (off by default; ignored when volume is 0)")
    c.add_argument("--volume-in-quote", action="store_true", help="the data's volume column is quote notional")
    c.add_argument("--allow-leverage", action="store_true", help="margin account: buys are not capped by cash")
    r = p.add_argument_group("risk")
    r.add_argument("--max-position", type=float, metavar="PCT",
                   help="max position as a fraction of equity for the minimal gate (default 1.0)")
    r.add_argument("--max-order-notional", type=float, help="max notional of one order")
    r.add_argument("--risk-config", metavar="FILE", help="full gatekeeper config (YAML/JSON, see docs/risk.md)")
    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="PATH", help="write the result JSON here")
    o.add_argument("--report", metavar="PATH", help="write a self-contained HTML report here")
    o.add_argument("--audit", metavar="PATH", help="write the hash-chained audit journal (JSONL) here")
    o.add_argument("--equity-every", type=int, default=1, metavar="N", help="keep every Nth equity point in JSON")
    o.add_argument("--quiet", action="store_true", help="no progress bar, no summary")


def parse_value(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def build_run_config(args: argparse.Namespace) -> dict[str, Any]:
    """Merge: defaults < --config file < flags. Returns the raw dict to validate."""
    from mmats.execution.simulated import parse_bps
    from mmats.system_config import read_config_file

    raw: dict[str, Any] = read_config_file(args.config) if args.config else {}
    if args.strategy:
        raw["strategy"] = args.strategy
    if not raw.get("strategy"):
        raise ConfigError("--strategy is required (e.g. --strategy sma_cross)")
    params = dict(raw.get("params") or {})
    for k, v in args.param:
        params[k] = parse_value(v)
    raw["params"] = params
    for flag, key in (("data", "data"), ("symbol", "symbol"), ("market", "market"), ("timeframe", "timeframe"),
                      ("start", "start"), ("end", "end"), ("cash", "initial_cash"), ("allocation", "allocation"),
                      ("max_volume_share", "max_volume_share"), ("base_currency", "base_currency"),
                      ("benchmark_data", "benchmark_data")):
        val = getattr(args, flag)
        if val is not None:
            raw[key] = val
    if args.bars is not None:
        raw["generated"] = {**raw.get("generated", {}), "bars": args.bars}
    if args.volume_in_quote:
        raw["volume_in_quote"] = True
    if args.allow_leverage:
        raw["cash_only"] = False
    com = dict(raw.get("commission") or {})
    if args.fees is not None:
        com["taker_bps"] = parse_bps(args.fees, "--fees")
        com.setdefault("model", "percent")
    if args.maker_fees is not None:
        com["maker_bps"] = parse_bps(args.maker_fees, "--maker-fees")
    if args.commission is not None:
        com["model"] = args.commission
    if args.per_share is not None:
        com["per_share"] = args.per_share
    if args.min_fee is not None:
        com["minimum"] = args.min_fee
    if args.spread_pips is not None:
        com["pips"] = args.spread_pips
        com.setdefault("model", "spread")
    if com:
        raw["commission"] = com
    slip = dict(raw.get("slippage") or {})
    if args.slippage is not None:
        slip["bps"] = parse_bps(args.slippage, "--slippage")
        slip.setdefault("model", "fixed")
    if args.slippage_model is not None:
        slip["model"] = args.slippage_model
    if slip:
        raw["slippage"] = slip
    risk = dict(raw.get("risk") or {})
    if args.max_position is not None:
        risk["max_position_pct"] = args.max_position
    if args.max_order_notional is not None:
        risk["max_order_notional"] = args.max_order_notional
    if args.risk_config:
        risk["gatekeeper"] = read_config_file(args.risk_config)
    if risk:
        raw["risk"] = risk
    return raw
