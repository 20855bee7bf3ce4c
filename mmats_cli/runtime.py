"""``mmats up | status | risk | strategy | kill | signals | mode | down``: the running system from the shell.

``up`` starts (or joins) a Ray cluster and runs the actor system in the foreground; every other command
connects to the cluster (``--address``, default ``auto``) and works through ``control``'s ``SystemClient``,
the same client the HTTP API uses: the same checks, the same two-step for operator mode, the same errors
(printed as one ``error: ...`` line).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmats_cli.args import kv, parse_value

if TYPE_CHECKING:
    from control.service import SystemClient

SHARED_BTC = Path("../shared/data/crypto_BTCPERP_1m.parquet")


def _ray_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def connect(address: str | None) -> SystemClient:
    _ray_env()
    from control.service import SystemClient

    return SystemClient.connect(address)


def demo_config(data: str | None, speed: float) -> dict[str, Any]:
    """The embedded defaults of ``mmats up``: paper, operator allowed, two strategies on one symbol."""
    path = data or (str(SHARED_BTC.resolve()) if SHARED_BTC.is_file() else None)
    feed: dict[str, Any] = {"venue": "replay-crypto", "market": "crypto", "pace": "speed", "speed": speed}
    symbol = "BTCPERP" if path else "SYNTH/USDT"
    if path:
        feed["files"] = {symbol: path}
    else:
        feed["generated_symbols"] = [symbol]
    return {
        "environment": "PAPER",
        "mode": "operator",
        "allow_operator": True,
        "feeds": [feed],
        "costs": {"commission": {"model": "percent", "taker_bps": 10.0}, "slippage": {"model": "fixed", "bps": 2.0},
                  "volume_in_quote": bool(path)},
        "strategies": [
            {"id": "sma_fast", "ref": "sma_cross", "symbols": [symbol], "params": {"fast": 5, "slow": 20},
             "allocation": 0.4},
            {"id": "rsi_rev", "ref": "rsi_reversion", "symbols": [symbol], "params": {"period": 14},
             "allocation": 0.4},
        ],
    }


def cmd_up(args: argparse.Namespace) -> int:
    _ray_env()
    import ray

    from control.service import SystemClient
    from mmats.system_config import load_system_config

    overrides: dict[str, Any] = {"home": args.home}
    if args.dry_run:
        overrides["dry_run"] = True
    if args.config:
        cfg = load_system_config(args.config, overrides)
    else:
        cfg = load_system_config(None, {**demo_config(args.data, args.speed), **overrides})
        files = [p for f in cfg.feeds for p in f.files.values()]
        print(f"demo system: replaying {files[0]} at {args.speed:g}x real time" if files else
              "demo system: ../shared/data not found, replaying deterministic generated bars (SYNTH/USDT) "
              f"at {args.speed:g}x real time", flush=True)
    ray.init(address=args.address, namespace="mmats", include_dashboard=False, logging_level=logging.ERROR,
             num_cpus=args.num_cpus if args.address is None else None)
    client = SystemClient()
    try:
        topo = client.run(client.launch(cfg.model_dump(mode="json")))
        print(f"MMATS up: {cfg.environment.value}, mode {cfg.mode}, feeds {topo['feeds']}, "
              f"strategies {topo['strategies']}, symbols {topo['symbols']}")
        if cfg.dry_run:
            print("dry run: LIVE config through everything except the final send; `mmats status` shows "
                  "what would have been sent", flush=True)
        try:  # the HTTP control plane and dashboard (serve_app.py); the CLI works without it
            from mmats_cli.serve_glue import start_control_plane

            print("\n".join(start_control_plane(args.host, args.port, cfg.home)), flush=True)
        except Exception as exc:
            print(f"control plane not started ({type(exc).__name__}: {exc}); the CLI still works", flush=True)
        print("controls: mmats status | mmats kill soft|hard|freeze --reason ... | mmats down  (Ctrl-C stops)")
        shown: set[str] = set()
        while True:
            time.sleep(args.status_every)
            st = client.run(client.summary())
            if not st["running"]:
                print("MMATS stopped by `mmats down`")
                break
            _print_status_line(st)
            for line in st.get("dry_run_orders") or []:  # LIVE --dry-run: what the router would have sent
                if line not in shown:
                    shown.add(line)
                    print(f"  dry run, not sent: {line}", flush=True)
    except KeyboardInterrupt:
        if client.started:
            _print_summary(client.run(client.down()))
    finally:
        ray.shutdown()
    return 0


def _print_status_line(st: dict[str, Any]) -> None:
    pf = st["portfolio"]
    feed: dict[str, Any] = next(iter(st["feeds"].values()), {})
    print(f"[{pf['as_of']}] equity {float(pf['equity']):,.2f} pnl {float(pf['total_pnl']):+,.2f} "
          f"positions {len(pf['positions'])} fills {pf['fills']} kill {st['kill_switch']} "
          f"bars {feed.get('published', 0):,}", flush=True)


def _print_summary(st: dict[str, Any]) -> None:
    pf = st["portfolio"]
    print(f"summary: equity {pf['equity']} (start {pf['initial_cash']}), realized {pf['realized_pnl']}, "
          f"fees {pf['fees']}, fills {pf['fills']}, open positions {len(pf['positions'])}, "
          f"orders canceled on shutdown {st.get('canceled_on_shutdown', 0)}")


def _table(rows: list[list[str]], head: list[str], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return [indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]]


def venue_lines(venues: list[dict[str, Any]]) -> list[str]:
    """The LIVE venues' health as a table (nothing when the status has none)."""
    if not venues:
        return []
    rows = [[str(v.get("venue", "")), str(v.get("breaker", "")), str(v.get("last_reconcile") or "never"),
             str(v.get("orders_unknown", 0)), str(v.get("last_error") or "-")] for v in venues]
    return ["venues:", *_table(rows, ["venue", "breaker", "last reconcile", "unknown orders", "last error"])]


def cmd_status(args: argparse.Namespace) -> int:
    client = connect(args.address)
    st = client.run(client.summary())
    if args.json:
        print(json.dumps(st, indent=1, default=str))
        return 0
    pf = st["portfolio"]
    print(f"environment {st['environment']}  mode {st['mode']}  kill switch {st['kill_switch']}  "
          f"uptime {st['uptime_s']} s")
    print(f"equity {pf['equity']}  cash {pf['cash']}  total P&L {pf['total_pnl']}  daily P&L {pf['daily_pnl']}  "
          f"fees {pf['fees']}")
    for p in pf["positions"]:
        print(f"  position {p['symbol']}: {p['quantity']} @ {p['avg_price']} (uP&L {p['unrealized_pnl']})")
    for s in st["strategies"]:
        state = "enabled" if s.get("enabled") else "DISABLED"
        print(f"  strategy {s['id']:<12} {state:<9} bars {s.get('bars_seen', 0):>7} signals {s.get('signals', 0):>4} "
              f"errors {s.get('errors_total', 0)}")
    for name, f in st["feeds"].items():
        lag = max((x["lag_bars"] for x in f["subscribers"].values()), default=0)
        print(f"  feed {name}: {f['published']:,} bars, max lag {lag}, stale {f['stale']}")
    for line in venue_lines(st.get("venues") or []):
        print(line)
    dry = st.get("dry_run_orders") or []
    if dry:
        print(f"dry run: {len(dry)} order(s) built but not sent; the latest:")
        for line in dry[-5:]:
            print(f"  {line}")
    return 0


def risk_lines(u: dict[str, Any]) -> list[str]:
    rows = [[it["limit"], it["scope"], it["level"], f"{it['limit_value']:g}", f"{it['current']:.6g}",
             f"{it['utilization_pct']:.1f} %"] for it in u["items"]]
    out = [f"equity {u['equity']:,.2f}  gross exposure {u['gross_exposure']:,.2f}  "
           f"net exposure {u['net_exposure']:,.2f}",
           *_table(rows, ["limit", "scope", "level", "limit value", "current", "used"])]
    for title, key in (("by symbol", "by_symbol"), ("by market", "by_market")):
        if u[key]:
            out.append(f"{title}: " + ", ".join(f"{x['name']} {x['notional']:,.2f} ({x['pct_of_equity']:.2%})"
                                                for x in u[key]))
    return out


def cmd_risk(args: argparse.Namespace) -> int:
    client = connect(args.address)
    u = client.run(client.risk_utilization())
    print(json.dumps(u, indent=1) if args.json else "\n".join(risk_lines(u)))
    return 0


def cmd_strategy(args: argparse.Namespace) -> int:
    client = connect(args.address)
    if args.action == "list":
        for s in client.run(client.strategies()):
            print(json.dumps(s, default=str))
        return 0
    if args.action == "submit":
        from mmats.system_config import absolute_ref

        spec = {"id": args.id or args.ref.rsplit(":", 1)[-1].lower(), "ref": absolute_ref(args.ref),
                "symbols": args.symbol, "market": args.market, "timeframe": args.timeframe,
                "params": {k: parse_value(v) for k, v in args.param}}
        print(json.dumps(client.run(client.submit_strategy(spec)), default=str))
        return 0
    enabled = args.action == "enable"
    res = client.run(client.set_strategy_enabled(args.strategy_id, enabled, args.close_positions, "manual"))
    print(json.dumps(res, default=str))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    client = connect(args.address)
    state = "RUNNING" if args.state == "reset" else args.state.upper()
    print(json.dumps(client.run(client.set_kill(state, args.reason)), default=str))
    return 0


def cmd_signals(args: argparse.Namespace) -> int:
    from control.views import signals_csv

    client = connect(args.address)
    rows = client.run(client.signals(full=True))
    text = json.dumps(rows, indent=1) + "\n" if args.format == "json" else signals_csv(rows)
    if args.output:
        Path(args.output).write_text(text)
        print(f"{len(rows)} signals -> {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_mode(args: argparse.Namespace) -> int:
    client = connect(args.address)
    res = client.run(client.set_mode(args.target, args.confirm, "manual"))
    if res.get("confirmation_required"):
        res["next"] = f"mmats mode operator --confirm {res['confirm_token']}  (within {int(res['expires_in_s'])} s)"
    print(json.dumps(res))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    client = connect(args.address)
    _print_summary(client.run(client.down()))
    return 0


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="start the actor system (paper by default) and keep it running",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples:\n  mmats up                       # local Ray, paper, replaying data\n"
                               "  mmats up --address auto        # join a cluster started with `ray start --head`\n"
                               "  mmats up --config system.yaml  # your feeds, strategies, risk (docs/)")
    up.add_argument("--config", help="system config file (YAML/TOML/JSON)")
    up.add_argument("--address", default=None, help="Ray address to join (default: start a local cluster)")
    up.add_argument("--data", help="bar file to replay in the default config (default: ../shared BTC or generated)")
    up.add_argument("--speed", type=float, default=600.0, help="replay speed, x real time (default 600)")
    up.add_argument("--home", default=os.environ.get("MMATS_HOME", "var"), help="state folder (default ./var)")
    up.add_argument("--host", default="127.0.0.1", help="control API bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="control API port (default 8000)")
    up.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local cluster")
    up.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    up.add_argument("--dry-run", action="store_true",
                    help="LIVE config through everything except the final send; prints what would have been sent")
    up.set_defaults(func=cmd_up)

    def add_address(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", default="auto", help="Ray address (default auto)")

    st = sub.add_parser("status", help="mode, kill switch, equity, positions, per-strategy health")
    add_address(st)
    st.add_argument("--json", action="store_true", help="full status as JSON")
    st.set_defaults(func=cmd_status)

    risk = sub.add_parser("risk", help="how much of each risk limit is in use (the gatekeeper's own measure)",
                          epilog="the same figures as GET /api/v1/risk/utilization and the dashboard's Risk tab")
    add_address(risk)
    risk.add_argument("--json", action="store_true", help="as JSON")
    risk.set_defaults(func=cmd_risk)

    strat = sub.add_parser("strategy", help="submit, list, enable or disable strategies",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n  mmats strategy submit strategies/sma_cross.py:SmaCross "
                                  "--symbol BTCPERP --market crypto --param fast=10 --param slow=30")
    ssub = strat.add_subparsers(dest="action", required=True, metavar="ACTION")
    sl = ssub.add_parser("list", help="strategies with health")
    add_address(sl)
    sm = ssub.add_parser("submit", help="start a new strategy actor")
    sm.add_argument("ref", help="built-in name, path/to/file.py:Class or module:Class")
    sm.add_argument("--id", help="strategy id (default: class name)")
    sm.add_argument("--symbol", action="append", required=True, help="symbol to trade, repeatable")
    sm.add_argument("--market", default=None, choices=["crypto", "forex", "stock"],
                    help="must match the feed of its symbols (default: that feed's market)")
    sm.add_argument("--timeframe", default=None, choices=["1m", "5m", "15m", "1h", "4h", "1d"],
                    help="bars the strategy sees: the feed's bars aggregated to this timeframe, as a "
                         "backtest's --timeframe resamples them (default: the feed's own bars)")
    sm.add_argument("--param", action="append", type=kv, default=[], metavar="NAME=VALUE")
    add_address(sm)
    for action in ("enable", "disable"):
        p = ssub.add_parser(action, help=f"{action} a strategy")
        p.add_argument("strategy_id")
        p.add_argument("--close-positions", action="store_true", help="also close its positions (disable)")
        add_address(p)
    strat.set_defaults(func=cmd_strategy)

    kill = sub.add_parser("kill", help="kill switch: soft | hard | freeze | reset",
                          epilog="example: mmats kill hard --reason 'exchange outage'")
    kill.add_argument("state", choices=["soft", "hard", "freeze", "reset"])
    kill.add_argument("--reason", required=True)
    add_address(kill)
    kill.set_defaults(func=cmd_kill)

    sig = sub.add_parser("signals", help="export recorded signals")
    ssig = sig.add_subparsers(dest="action", required=True, metavar="ACTION")
    ex = ssig.add_parser("export", help="signals as CSV or JSON")
    ex.add_argument("--format", choices=["csv", "json"], default="csv")
    ex.add_argument("--output", "-o", help="file (default stdout)")
    add_address(ex)
    sig.set_defaults(func=cmd_signals)

    mode = sub.add_parser("mode", help="switch advisory <-> operator (operator needs a two-step confirmation)",
                          epilog="example: mmats mode operator   then   mmats mode operator --confirm TOKEN")
    mode.add_argument("target", choices=["advisory", "operator"])
    mode.add_argument("--confirm", help="token returned by the first call")
    add_address(mode)
    mode.set_defaults(func=cmd_mode)

    down = sub.add_parser("down", help="graceful stop: cancel open orders, summary")
    add_address(down)
    down.set_defaults(func=cmd_down)

