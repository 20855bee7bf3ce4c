"""``mmats backtest --config system.yaml``: the portfolio backtest of a running system's config.

The file ``mmats up`` takes (feeds, strategies, costs, risk) runs over its feeds' history in one process
(``mmats.engine.portfolio_backtest``). The one-strategy flags (``--strategy``, ``--data``, ``--fees`` ...)
describe a single run; with a system config they are refused, because the file already says it.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmats.errors import ConfigError
from mmats_cli import fmt
from mmats_cli.run_output import run_and_write

#: Flags of ``add_backtest_args`` a system config decides itself (dest -> flag as typed).
_RUN_ONLY = {"strategy": "--strategy", "param": "--param", "data": "--data", "bars": "--bars", "symbol": "--symbol",
             "market": "--market", "timeframe": "--timeframe", "allocation": "--allocation", "fees": "--fees",
             "maker_fees": "--maker-fees", "commission": "--commission", "per_share": "--per-share",
             "min_fee": "--min-fee", "spread_pips": "--spread-pips", "slippage": "--slippage",
             "slippage_model": "--slippage-model", "max_volume_share": "--max-volume-share",
             "volume_in_quote": "--volume-in-quote", "allow_leverage": "--allow-leverage",
             "max_position": "--max-position", "max_order_notional": "--max-order-notional",
             "risk_config": "--risk-config", "benchmark_data": "--benchmark-data"}


def is_system_config_file(path: str | None) -> bool:
    """Whether ``--config`` names a system config (feeds / strategies) rather than a one-strategy run config."""
    if not path:
        return False
    from mmats.engine.portfolio_backtest import is_system_config
    from mmats.system_config import read_config_file

    return is_system_config(read_config_file(path))


def refuse_run_flags(args: argparse.Namespace, command: str) -> None:
    """A one-strategy flag next to a system config: one line naming it and where the setting lives."""
    for dest, flag in _RUN_ONLY.items():
        value = getattr(args, dest, None)
        if value not in (None, False, [], ""):
            raise ConfigError(f"{flag}: {args.config} is a system config; {command} runs its feeds, strategies, "
                              "costs and risk as the file gives them (set it there: docs/configuration.md)")


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The validated system config (``--cash`` overrides ``initial_cash``) and its bars, sliced to
    ``--start`` / ``--end``."""
    from mmats.engine.portfolio_backtest import load_portfolio_data
    from mmats.system_config import load_system_config

    overrides = {"initial_cash": args.cash} if getattr(args, "cash", None) is not None else None
    cfg = load_system_config(args.config, overrides, env={})
    data = load_portfolio_data(cfg, start=args.start, end=args.end)
    return cfg, data


def cmd_portfolio_backtest(args: argparse.Namespace) -> int:
    from mmats.engine.portfolio_backtest import run_portfolio_backtest

    refuse_run_flags(args, "mmats backtest")
    cfg, data = load(args)
    doc, elapsed = run_and_write(args, sum(len(a) for a in data.series.values()), "portfolio backtest",
                                 lambda journal, update: run_portfolio_backtest(cfg, data, journal=journal,
                                                                                progress=update))
    if not args.quiet:
        print_summary(doc, elapsed)
        for path, what in ((args.json, "result"), (args.report, "report"), (args.audit, "audit journal")):
            if path:
                print(f"{what}: {path}")
    return 0


def print_summary(doc: dict[str, Any], elapsed: float) -> None:
    s = doc["summary"]
    cur = s.get("currency")
    for w in doc["warnings"]:
        print(f"note: {w}")
    print(f"portfolio of {s['strategies']} strategies on {s['symbols']} symbols: {s['bars']:,} bars "
          f"({s['timestamps']:,} timestamps) {s['first_bar']} .. {s['last_bar']} in {elapsed:.2f} s")
    m = doc["metrics"]
    print(f"final equity {fmt.money(s['final_equity'], cur)} (start {fmt.money(s['initial_cash'], cur)}, fees "
          f"{fmt.money(s['fees'], cur)}); return {fmt.pct(m.get('total_return'))}, max drawdown "
          f"{fmt.pct(m.get('max_drawdown'))}; orders {s['orders']:,}, fills {s['fills']:,}, risk rejections "
          f"{len(doc['risk']['rejected']):,}")
    att = doc["attribution"]
    print(f"{'':<18}{'realized':>18}{'fees':>18}{'trades':>8}{'win rate':>10}")
    for key in ("by_strategy", "by_market"):
        for name, r in att[key].items():
            wr = "–" if r["win_rate"] is None else fmt.pct(r["win_rate"])
            print(f"{name[:17]:<18}{fmt.money(r['realized_pnl'], cur):>18}{fmt.money(r['fees'], cur):>18}"
                  f"{r['trades']:>8}{wr:>10}")
    for k in doc["kill_switch"]:
        print(f"kill switch -> {k['state']} at {fmt.when(k['time'])} ({k['trigger']}: {k['reason']})")
