"""The ``mmats`` command line: research from the shell, and the controls of a running system.

Bad input ends with one line ``error: ...`` and exit status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmats.errors import ConfigError
from mmats_cli import fmt, research, runtime, secrets_cli
from mmats_cli.args import add_backtest_args, build_run_config
from mmats_cli.boundary import run_guarded
from mmats_cli.run_output import run_and_write

EPILOG_BACKTEST = """\
examples:
  mmats backtest --strategy sma_cross --data ../shared/data/crypto_BTCPERP_1m.parquet \\
        --param fast=10 --param slow=30 --fees 10bps --slippage 2bps \\
        --json out/result.json --report out/report.html
  mmats backtest --strategy rsi_reversion --data stock_SPY_1d.parquet --commission per_share
  mmats backtest --strategy my_strats.py:MyStrategy --timeframe 1h --start 2022-01-05 --end 2022-01-20
  mmats backtest --strategy sma_cross            # no --data: deterministic generated bars
  mmats backtest --config system.yaml --json out/pf.json --report out/pf.html
                                                 # the file `mmats up` takes: every feed, strategy and the
                                                 # gatekeeper over history in one account (--start/--end/--cash)

costs: --fees and --slippage take '10bps', '0.1%' or a plain number of bps.
fills: market orders fill at the NEXT bar's open; limit/stop orders when touched (at the open if the
bar gaps through). Result schema: docs/result-schema.md.
"""


def cmd_backtest(args: argparse.Namespace) -> int:
    from mmats.registry import load_strategy_class
    from mmats.research.runconfig import load_run_data, parse_config, run_backtest
    from mmats_cli.portfolio_cli import cmd_portfolio_backtest, is_system_config_file

    if is_system_config_file(args.config):  # the file `mmats up` takes: every feed and strategy at once
        return cmd_portfolio_backtest(args)
    cfg = parse_config(build_run_config(args))
    load_strategy_class(cfg.strategy)  # a strategy file that does not load fails before any work starts
    loaded = load_run_data(cfg)
    doc, elapsed = run_and_write(args, len(loaded.bars), f"backtest {cfg.strategy}",
                                 lambda journal, update: run_backtest(cfg, bars=loaded, journal=journal,
                                                                      progress=update))
    if not args.quiet:
        _print_summary(doc, elapsed)
        for path, what in ((args.json, "result"), (args.report, "report")):
            if path:
                print(f"{what}: {path}")
        if args.audit:
            from mmats.audit import verify_file

            res = verify_file(args.audit)
            print(f"audit journal: {args.audit} ({res.records:,} records, head hash {res.head_hash}; keep it to "
                  f"check later: mmats audit verify {args.audit} --expect-head {res.head_hash[:16]})")
    return 0


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "–"
    if key in ("num_trades",):
        return str(int(v))
    if key in ("sharpe", "sortino", "profit_factor"):
        return f"{v:.2f}"
    if key == "avg_trade_duration_s":
        return fmt.duration(v)
    return fmt.pct(v)


def _print_summary(doc: dict[str, Any], elapsed: float) -> None:
    s = doc["summary"]
    r = doc["config"]["resolved"]
    for w in doc["warnings"]:
        print(f"note: {w}")
    print(f"{doc['config']['strategy']} on {r['symbol']} ({r['market']}, {r['timeframe']}): "
          f"{s['bars']:,} bars {s['first_bar']} .. {s['last_bar']} in {elapsed:.2f} s")
    print(f"{'metric':<22}{'strategy':>14}{'buy & hold':>14}")
    for k in doc["metrics"]:
        print(f"{k:<22}{_fmt(k, doc['metrics'][k]):>14}{_fmt(k, doc['benchmark'][k]):>14}")
    cur = s.get("currency") or r.get("quote_currency") or _quote_currency(r)
    print(f"final equity {fmt.money(s['final_equity'], cur)} (start {fmt.money(s['initial_cash'], cur)}, fees "
          f"{fmt.money(s['fees'], cur)}); orders {s['orders']:,}, fills {s['fills']:,}, "
          f"risk rejections {len(doc['risk']['rejected']):,}")
    for k in doc["kill_switch"]:
        print(f"kill switch -> {k['state']} at {fmt.when(k['time'])} ({k['trigger']}: {k['reason']})")


def _quote_currency(resolved: dict[str, Any]) -> str | None:
    """``BTC/USDT`` -> ``USDT``, ``EUR_USD`` -> ``USD`` for results written before they named their
    currency; None when the symbol does not say (``BTCPERP``)."""
    sym = str(resolved.get("symbol") or "")
    for sep in ("/", "_"):
        if sep in sym:
            return sym.rsplit(sep, 1)[1] or None
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    """A first look: one backtest on the real BTC month if ../shared is present, else generated bars."""
    candidates = [Path(args.shared) / "data" / "crypto_BTCPERP_1m.parquet"] if args.shared else []
    candidates += [Path("../shared/data/crypto_BTCPERP_1m.parquet")]
    data = next((str(p) for p in candidates if p.is_file()), None)
    out = Path(args.out)
    ns = build_parser().parse_args([
        "backtest", "--strategy", "sma_cross", "--param", "fast=10", "--param", "slow=30",
        "--fees", "10bps", "--slippage", "2bps", "--json", str(out / "result.json"),
        "--report", str(out / "report.html"), "--audit", str(out / "audit.jsonl"),
        *(["--data", data, "--volume-in-quote"] if data else ["--bars", "100000"]),
    ])
    if data is None:
        print("demo: ../shared/data not found, running on 100,000 deterministic generated 1m bars")
    else:
        print(f"demo: running on real data {data}")
    return cmd_backtest(ns)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """A JSONL journal (a backtest's ``--audit``) or the running system's SQL chain (``--home``/``--db``)."""
    target = args.path
    if target is not None and "://" not in target and not Path(target).exists():
        raise ConfigError(f"{target}: no such journal file (a backtest writes one with --audit PATH)")
    if target is not None and Path(target).is_dir():
        raise ConfigError(f"{target}: is a folder; give the .jsonl journal, the .db file, or --home {target}")
    if target is not None and "://" not in target and not target.endswith(".db"):
        from mmats.audit import verify_file

        res = verify_file(target)
        where = target
    else:
        from adapters.sql_store import make_storage
        from mmats.model import Environment

        url = target if target and "://" in target else args.db
        if target and target.endswith(".db"):
            url = f"sqlite:///{Path(target).resolve()}"
        storage = make_storage(Environment(args.environment.upper()), url, home=args.home)
        try:
            res = storage.verify_audit()
        finally:
            storage.close()
        where = storage.url  # masked
    expect = (args.expect_head or "").strip().lower()
    if res.ok and expect and not res.head_hash.lower().startswith(expect):
        print(f"audit FAILED: the chain is intact but ends at head hash {res.head_hash} after {res.records:,} "
              f"records, not at the expected {expect}: records were cut off at the end, or this is another "
              f"journal ({where})")
        return 1
    if res.ok:
        print(f"audit OK: {res.records:,} records, hash chain intact ({where})")
        print(f"head hash {res.head_hash}" + (" (as expected)" if expect else
              " (compare it with one kept elsewhere: records cut off at the very end leave a valid, shorter "
              "chain; --expect-head HASH checks it)"))
        return 0
    at = f"record {res.first_bad_seq}" + (f" (line {res.line})" if res.line else "")
    print(f"audit FAILED at {at}: {res.problem} ({where}); the chain is intact up to head hash {res.head_hash}")
    return 1


def cmd_data_validate(args: argparse.Namespace) -> int:
    from mmats.data import find_gaps, infer_timeframe, load_bars

    df = load_bars(args.path)
    tf = infer_timeframe(df)
    gaps = find_gaps(df, tf)
    print(f"{args.path}: {len(df):,} bars, {tf.value}, {df.index[0]} .. {df.index[-1]}; valid")
    missing = sum(g.missing_bars for g in gaps)
    print(f"gaps: {len(gaps)} ({missing:,} missing bars)")
    for g in sorted(gaps, key=lambda g: -g.missing_bars)[: args.top]:
        print(f"  {g.start} -> {g.end}: {g.missing_bars} bars missing")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from mmats.registry import BUILTIN, load_strategy_class

    for name in sorted(BUILTIN):
        cls = load_strategy_class(name)
        print(f"{name:<20} v{cls.version:<8} {cls.description}")
        print(f"{'':<20} params: {dict(cls.default_params)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmats",
        description="MMATS: multi-market automated trading system. Research (backtest), "
        "audit and (with Ray) paper/live trading.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bt = sub.add_parser("backtest", help="run one backtest", formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Run one strategy over historical bars, in one process.", epilog=EPILOG_BACKTEST)
    add_backtest_args(bt)
    bt.set_defaults(func=cmd_backtest)

    demo = sub.add_parser("demo", help="backtest demo: one run with report and audit (works without ../shared); "
                          "the running system is `mmats up`")
    demo.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    demo.add_argument("--shared", default=None, help="path to the shared folder holding data/")
    demo.set_defaults(func=cmd_demo)

    audit = sub.add_parser("audit", help="audit journal tools")
    asub = audit.add_subparsers(dest="audit_cmd", metavar="ACTION", required=True)
    verify = asub.add_parser("verify", help="check a journal's hash chain; exit 1 naming the first bad record",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog="examples:\n"
                                    "  mmats audit verify out/audit.jsonl          # a backtest's --audit journal\n"
                                    "  mmats audit verify --home var               # the running system (SQLite)\n"
                                    "  mmats audit verify postgresql+psycopg://...  # or $MMATS_DATABASE_URL")
    verify.add_argument("path", nargs="?", default=None,
                        help="a .jsonl journal, a .db SQLite file or a database URL (default: the system's store)")
    verify.add_argument("--home", default=os.environ.get("MMATS_HOME", "var"),
                        help="state folder of the running system (default $MMATS_HOME or ./var)")
    verify.add_argument("--db", default=None, help="database URL (default $MMATS_DATABASE_URL, else SQLite in home)")
    verify.add_argument("--environment", default="PAPER", choices=["PAPER", "LIVE", "paper", "live"])
    verify.add_argument("--expect-head", metavar="HASH", help="the head hash (or its first characters) the "
                        "journal must end at: detects records cut off at the end")
    verify.set_defaults(func=cmd_audit_verify)

    data = sub.add_parser("data", help="market data tools")
    dsub = data.add_subparsers(dest="data_cmd", metavar="ACTION", required=True)
    val = dsub.add_parser("validate", help="load and validate a bar file, report gaps",
                          epilog="example: mmats data validate ../shared/data/forex_EURUSD_1h.parquet")
    val.add_argument("path")
    val.add_argument("--top", type=int, default=5, help="list the N largest gaps")
    val.set_defaults(func=cmd_data_validate)

    st = sub.add_parser("strategies", help="list the shipped strategies and their parameters")
    st.set_defaults(func=cmd_strategies)

    runtime.register(sub)
    research.register(sub)
    secrets_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, then run the command inside the CLI's one error boundary (``mmats_cli.boundary``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    if debug:
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_guarded(args.func, args, debug)


if __name__ == "__main__":
    sys.exit(main())
