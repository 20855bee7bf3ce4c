"""``mmats up | status | risk | strategy | kill | signals | mode | down``: the running system from the shell.

``up`` starts (or joins) a Ray cluster and runs the actor system in the foreground; every other command
connects to the cluster (``--address``, default ``auto``) and works through ``control``'s ``SystemClient``,
the same client the HTTP API uses: the same checks, the same two-step for operator mode, the same errors
(printed as one ``error: ...`` line).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmats.errors import ConfigError
from mmats_cli import fmt
from mmats_cli.args import kv, parse_value

if TYPE_CHECKING:
    from control.service import SystemClient

SHARED_BTC = Path("../shared/data/crypto_BTCPERP_1m.parquet")


def _ray_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray starts its workers at nice 15, so any ordinary process on the machine (a compile, a browser, a
    # backtest) takes the CPU from the trading actors first: measured, one such process raised the
    # plain-call floor of the live path from 15 ms to 1.2 s p50. A cluster `mmats up` starts runs its
    # actors at normal priority (docs/deployment.md: the same for `ray start`).
    os.environ.setdefault("RAY_worker_niceness", "0")


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
        # A setup a trader would run, chosen on principle (not on these bars' results): 15-minute bars, a
        # perpetual swap's taker fee (5 bps) and 1 bp of slippage. On 1-minute bars fees eat any edge.
        "costs": {"commission": {"model": "percent", "taker_bps": 5.0}, "slippage": {"model": "fixed", "bps": 1.0},
                  "volume_in_quote": bool(path)},
        "strategies": [
            {"id": "sma_fast", "ref": "sma_cross", "symbols": [symbol], "params": {"fast": 20, "slow": 50},
             "allocation": 0.4, "timeframe": "15m"},
            {"id": "rsi_rev", "ref": "rsi_reversion", "symbols": [symbol], "params": {"period": 14},
             "allocation": 0.4, "timeframe": "15m"},
        ],
    }


def cmd_up(args: argparse.Namespace) -> int:
    _ray_env()
    import ray

    from control.service import SystemClient
    from mmats.system_config import load_system_config

    overrides: dict[str, Any] = {"home": args.home}  # None: the file's `home:` (or $MMATS_HOME) stands
    if args.data is not None and not Path(args.data).is_file():
        raise ConfigError(f"--data {args.data}: no such bar file")
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
    _check_before_start(cfg)
    ray.init(address=args.address, namespace="mmats", include_dashboard=False, logging_level=logging.ERROR,
             num_cpus=args.num_cpus if args.address is None else None)
    # A service manager (systemd, docker stop, kill) stops with SIGTERM: the same graceful `down` as Ctrl-C.
    # Set after ray.init, whose own handler would print a stack and exit without stopping the system.
    signal.signal(signal.SIGTERM, _interrupt)
    client = SystemClient()
    from control.cluster_address import forget, record

    gcs = ray.get_runtime_context().gcs_address
    record(client.namespace, gcs)  # later commands join this cluster, not whichever started last
    try:
        topo = client.run(client.launch(cfg.model_dump(mode="json")))
        print(f"MMATS up: {cfg.environment.value}, mode {cfg.mode}, feeds {topo['feeds']}, "
              f"strategies {topo['strategies']}, symbols {topo['symbols']}")
        fx = cfg.fx_plan()
        print(f"account in {fx.base}: " + ", ".join(f"{c} from {src}" for c, src in fx.sources().items()
                                                   if c != fx.base) if len(fx.currencies) > 1
              else f"account in {fx.base}")
        for note in fx.notes():
            print(f"note: {note}", flush=True)
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
        forget(client.namespace, gcs)
        ray.shutdown()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _check_before_start(cfg: Any) -> None:
    """What can be checked here is checked before a Ray cluster starts: the home and the bar files."""
    from mmats_cli.boundary import check_writable

    home = Path(cfg.home)
    if home.exists() and not home.is_dir():
        raise ConfigError(f"home {cfg.home}: is a file, a folder is needed")
    if not home.exists():
        check_writable("home", str(home))
    for feed in cfg.feeds:
        for sym, path in feed.files.items():
            if not Path(path).is_file():
                raise ConfigError(f"feeds.{feed.venue}.files.{sym}: no such bar file: {path}")


def _print_status_line(st: dict[str, Any]) -> None:
    pf = st["portfolio"]
    cur = pf.get("currency")
    feed: dict[str, Any] = next(iter(st["feeds"].values()), {})
    print(f"[{fmt.when(pf['as_of'])}] equity {fmt.money(pf['equity'], cur)} pnl "
          f"{fmt.money(pf['total_pnl'], cur, signed=True)} positions {len(pf['positions'])} fills {pf['fills']:,} "
          f"kill {st['kill_switch']} bars {feed.get('published', 0):,}", flush=True)


def _print_summary(st: dict[str, Any]) -> None:
    pf = st["portfolio"]
    cur = pf.get("currency")
    print(f"summary: equity {fmt.money(pf['equity'], cur)} (start {fmt.money(pf['initial_cash'], cur)}), "
          f"realized {fmt.money(pf['realized_pnl'], cur, signed=True)}, fees {fmt.money(pf['fees'], cur)}, "
          f"fills {pf['fills']:,}, open positions {len(pf['positions'])}, "
          f"orders canceled on shutdown {st.get('canceled_on_shutdown', 0)}")


def _table(rows: list[list[str]], head: list[str], indent: str = "  ") -> list[str]:
    return fmt.table(rows, head, indent)


def authorize(client: SystemClient, what: str) -> None:
    """A mutating command proves it holds the system's API token, as a mutating HTTP call must
    (``control.auth.check_cli_token``); nothing to check when the system published no token digest."""
    import ray

    from control.auth import check_cli_token, published_digest

    digest = published_digest(client.namespace, client.supervisor_name) if ray.is_initialized() else None
    if digest:
        check_cli_token(digest, client.run(client.config_state()).get("config", {}).get("home"), what)


def venue_lines(venues: list[dict[str, Any]]) -> list[str]:
    """The LIVE venues' health as a table (nothing when the status has none)."""
    if not venues:
        return []
    rows = [[str(v.get("venue", "")), str(v.get("breaker", "")), str(v.get("last_reconcile") or "never"),
             str(v.get("orders_unknown", 0)), str(v.get("last_error") or "-")] for v in venues]
    return ["venues:", *_table(rows, ["venue", "breaker", "last reconcile", "unknown orders", "last error"])]


def allocation_lines(a: dict[str, Any]) -> list[str]:
    """Capital between strategies (nothing without an ``allocation:`` block): weights, sizing shares, the
    next rebalance and the latest change."""
    if not a.get("method"):
        return []
    head = f"allocation: {a['method']}"
    if a.get("rebalance_every"):
        head += (f", every {a['rebalance_every']} over {a['lookback']}, next {fmt.when(a.get('next_due'))}, "
                 f"{a.get('changes', 0)} change(s) in {a.get('rebalances', 0)} rebalance(s)")
    rows = [[sid, f"{w:.4f}", f"{a.get('allocation', {}).get(sid, w):.4f}"] for sid, w in a["weights"].items()]
    out = [head, *_table(rows, ["strategy", "weight", "sizing share"])]
    last = (a.get("history") or [None])[-1]
    if last:
        out.append(f"  last change {fmt.when(last.get('time'))}: {last.get('reason', '')}")
    return out


def cmd_status(args: argparse.Namespace) -> int:
    client = connect(args.address)
    st = client.run(client.summary())
    if args.json:
        print(fmt.as_json(st))
        return 0
    # Alerts (a disabled strategy, a kill switch, a router error) belong on the status screen; the
    # status itself was read, so a failure to read them does not fail the command.
    with contextlib.suppress(Exception):
        st = {**st, "alerts": client.run(client.alerts())}
    pf = st["portfolio"]
    cur = pf.get("currency")
    print(f"environment {st['environment']}  mode {st['mode']}  kill switch {st['kill_switch']}  "
          f"uptime {fmt.duration(st['uptime_s'])}  as of {fmt.when(pf.get('as_of'))}")
    print(f"equity {fmt.money(pf['equity'], cur)}  cash {fmt.money(pf['cash'], cur)}  total P&L "
          f"{fmt.money(pf['total_pnl'], cur, signed=True)}  daily P&L {fmt.money(pf['daily_pnl'], cur, signed=True)}  "
          f"fees {fmt.money(pf['fees'], cur)}")
    held = pf.get("cash_by_currency") or {}
    if len(held) > 1 or (held and cur not in held):  # an account across currencies: cash as held, and the rates
        rates = {c: r.get("rate") for c, r in (pf.get("fx_rates") or {}).items()}
        print("cash held: " + ", ".join(f"{fmt.money(v, c)}" + (f" (1 {c} = {rates[c]} {cur})" if c in rates else "")
                                        for c, v in held.items()))
    for note in pf.get("fx_notes") or []:
        print(f"note: {note}")
    if pf["positions"]:
        print("positions:")
        print("\n".join(fmt.table([[p["symbol"], fmt.number(p["quantity"], 8), fmt.number(p["avg_price"], 8),
                                     fmt.money(p["unrealized_pnl"], p.get("quote_currency") or cur, signed=True)]
                                    for p in pf["positions"]],
                                   ["symbol", "quantity", "avg price", "unrealized P&L"], right=(1, 2, 3))))
    if st["strategies"]:
        print("strategies:")
        print("\n".join(fmt.table([[s["id"], "enabled" if s.get("enabled") else "DISABLED",
                                     f"{s.get('bars_seen', 0):,}", f"{s.get('signals', 0):,}",
                                     f"{s.get('errors_total', 0):,}"] for s in st["strategies"]],
                                   ["strategy", "state", "bars", "signals", "errors"], right=(2, 3, 4))))
    for line in allocation_lines(st.get("allocation") or {}):
        print(line)
    for name, f in st["feeds"].items():
        lag = max((x["lag_bars"] for x in f["subscribers"].values()), default=0)
        print(f"  feed {name}: {f['published']:,} bars, max lag {lag:,}, stale {f['stale']}")
    for line in venue_lines(st.get("venues") or []):
        print(line)
    alerts = st.get("alerts") or []
    if alerts:
        print(f"alerts: {len(alerts)}, the latest:")
        for a in alerts[-5:]:
            print(f"  {fmt.when(a.get('time'))}  {a.get('kind', '')}: {a.get('message', '')}")
    dry = st.get("dry_run_orders") or []
    if dry:
        print(f"dry run: {len(dry)} order(s) built but not sent; the latest:")
        for line in dry[-5:]:
            print(f"  {line}")
    return 0


def risk_lines(u: dict[str, Any]) -> list[str]:
    rows = [[it["limit"], it["scope"], it["level"], fmt.number(it["limit_value"], 6), fmt.number(it["current"], 6),
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


def strategy_lines(rows: list[dict[str, Any]]) -> list[str]:
    return fmt.table([[s["id"], s.get("ref", ""), ",".join(s.get("symbols") or []),
                       "enabled" if s.get("enabled") else "DISABLED", f"{s.get('bars_seen', 0):,}",
                       f"{s.get('signals', 0):,}", f"{s.get('errors_total', 0):,}", f"{s.get('trades', 0):,}",
                       fmt.money(s.get("net_pnl"), signed=True), fmt.when(s.get("last_bar")),
                       ", ".join(f"{k}={v}" for k, v in (s.get("params") or {}).items())] for s in rows],
                     ["id", "ref", "symbols", "state", "bars", "signals", "errors", "trades", "net P&L",
                      "last bar", "params"], indent="", right=(4, 5, 6, 7, 8))


def check_strategy_locally(ref: str, params: dict[str, Any]) -> None:
    """Load the class and set its parameters here first, as ``mmats backtest`` does: a missing file, a
    syntax error or a bad parameter is one line before anything is sent to the cluster."""
    from mmats.registry import create_strategy

    create_strategy(ref, params)


def _print_strategy(res: dict[str, Any], as_json: bool, headline: str) -> None:
    print(fmt.as_json(res) if as_json else "\n".join([headline, *strategy_lines([res])]))


def cmd_strategy(args: argparse.Namespace) -> int:
    if args.action == "submit":  # before connecting: the same mistakes as in a backtest, the same line
        from mmats.system_config import absolute_ref

        params = {k: parse_value(v) for k, v in args.param}
        check_strategy_locally(args.ref, params)
    client = connect(args.address)
    if args.action == "list":
        rows = client.run(client.strategies())
        print(fmt.as_json(rows) if args.json else "\n".join(strategy_lines(rows)) if rows else "no strategies")
        return 0
    if args.action == "submit":
        authorize(client, "strategy submit")
        spec = {"id": args.id or args.ref.rsplit(":", 1)[-1].lower(), "ref": absolute_ref(args.ref),
                "symbols": args.symbol, "market": args.market, "timeframe": args.timeframe, "params": params}
        res = client.run(client.submit_strategy(spec))
        _print_strategy(res, args.json, f"strategy {res['id']} submitted")
        return 0
    if args.action == "replace":
        authorize(client, "strategy replace")
        if args.ref is None and not args.param:
            raise ConfigError("strategy replace: give --ref and/or --param (what the new version changes)")
        params = {k: parse_value(v) for k, v in args.param}
        if args.ref is not None:  # the new file is checked here first, as a submit's is
            from mmats.system_config import absolute_ref

            check_strategy_locally(args.ref, params)
            res = client.run(client.replace_strategy(args.strategy_id, {"ref": absolute_ref(args.ref),
                                                                        "params": params}))
        else:  # parameters merged onto the running ones, as PUT /strategies/{id}/params does
            res = client.run(client.set_params(args.strategy_id, params))
        _print_strategy(res, args.json, f"strategy {res['id']} replaced: version {res['version']}")
        return 0
    enabled = args.action == "enable"
    authorize(client, f"strategy {args.action}")
    res = client.run(client.set_strategy_enabled(args.strategy_id, enabled, args.close_positions, "manual"))
    if args.json:
        print(fmt.as_json(res))
    else:
        print(f"strategy {res['id']} {'enabled' if enabled else 'disabled'}"
              + (f"; {len(res['closes'])} position(s) closing" if res.get("closes") else ""))
        for c in res.get("closes") or []:
            why = f" ({'; '.join(c['reasons'])})" if c.get("reasons") else ""
            print(f"  close {c['symbol']}: {c['status']}{why}")
    return 0


def kill_lines(res: dict[str, Any]) -> list[str]:
    k = res["kill_switch"]
    out = [f"kill switch {k['state']} since {fmt.when(k.get('since'))} ({k.get('trigger') or 'manual'}: "
           f"{k.get('reason') or '-'}), applied in {fmt.number(res.get('elapsed_ms'), 1)} ms"]
    if res.get("canceled"):
        out.append(f"open orders canceled: {res['canceled']}")
    if res.get("flatten"):
        out.append("flattening:")
        out += fmt.table([[sym, fmt.number(q, 8)] for sym, q in res["flatten"].items()], ["symbol", "quantity"],
                         right=(1,))
    history = k.get("history") or []
    if history:
        out.append("history:")
        out += fmt.table([[fmt.when(h.get("since")), h.get("state", ""), h.get("trigger", ""), h.get("reason", "")]
                          for h in history[-10:]], ["since", "state", "trigger", "reason"])
    return out


def cmd_kill(args: argparse.Namespace) -> int:
    client = connect(args.address)
    authorize(client, f"kill {args.state}")
    state = "RUNNING" if args.state == "reset" else args.state.upper()
    res = client.run(client.set_kill(state, args.reason))
    print(fmt.as_json(res) if args.json else "\n".join(kill_lines(res)))
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    client = connect(args.address)
    rows = client.run(client.orders(args.status, args.symbol, args.strategy))
    if args.json:
        print(fmt.as_json(rows))
        return 0
    if not rows:
        print("no orders")
        return 0
    rows = rows[:args.limit] if args.limit else rows  # newest first
    print("\n".join(fmt.table([[fmt.when(o.get("created")), o.get("client_order_id", ""), o.get("strategy_id", ""),
                                 o.get("symbol", ""), o.get("side", ""), o.get("type", o.get("order_type", "")),
                                 fmt.number(o.get("quantity"), 8), fmt.number(o.get("filled_quantity"), 8),
                                 fmt.number(o.get("avg_fill_price", o.get("price")), 8), o.get("status", "")]
                                for o in rows],
                               ["created", "client order id", "strategy", "symbol", "side", "type", "quantity",
                                "filled", "price", "status"], indent="", right=(6, 7, 8))))
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
    authorize(client, f"mode {args.target}")
    res = client.run(client.set_mode(args.target, args.confirm, "manual"))
    if res.get("confirmation_required"):
        res["next"] = f"mmats mode operator --confirm {res['confirm_token']}  (within {int(res['expires_in_s'])} s)"
    if args.json:
        print(fmt.as_json(res))
        return 0
    print("\n".join(fmt.table([[res.get("environment", ""), res.get("mode", ""),
                                 "yes" if res.get("allow_operator") else "no"]],
                               ["environment", "mode", "operator allowed"], indent="")))
    if res.get("confirmation_required"):
        print(f"to switch to operator (real orders), confirm: {res['next']}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    client = connect(args.address)
    authorize(client, "down")
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
    up.add_argument("--home", default=None, help="state folder (default: $MMATS_HOME, else the config's `home:`, "
                    "else ./var)")
    up.add_argument("--host", default="127.0.0.1", help="control API bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="control API port (default 8000)")
    up.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local cluster")
    up.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    up.add_argument("--dry-run", action="store_true",
                    help="LIVE config through everything except the final send; prints what would have been sent")
    up.set_defaults(func=cmd_up)

    def add_address(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", default=None,
                       help="Ray address (default: the cluster `mmats up` started on this machine, else auto)")

    st = sub.add_parser("status", help="mode, kill switch, equity, positions, per-strategy health")
    add_address(st)
    st.add_argument("--json", action="store_true", help="full status as JSON")
    st.set_defaults(func=cmd_status)

    risk = sub.add_parser("risk", help="how much of each risk limit is in use (the gatekeeper's own measure)",
                          epilog="the same figures as GET /api/v1/risk/utilization and the dashboard's Risk tab")
    add_address(risk)
    risk.add_argument("--json", action="store_true", help="as JSON")
    risk.set_defaults(func=cmd_risk)

    strat = sub.add_parser("strategy", help="submit, list, replace, enable or disable strategies",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n  mmats strategy submit strategies/sma_cross.py:SmaCross "
                                  "--symbol BTCPERP --market crypto --param fast=10 --param slow=30")
    ssub = strat.add_subparsers(dest="action", required=True, metavar="ACTION")
    sl = ssub.add_parser("list", help="strategies with health")
    add_address(sl)
    sl.add_argument("--json", action="store_true", help="as JSON (for machines)")
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
    sm.add_argument("--json", action="store_true", help="the new strategy as JSON")
    add_address(sm)
    sr = ssub.add_parser("replace", help="hot-replace: a new version takes over between two bars",
                         description="A new version of a running strategy (a new file or class, or new "
                                     "parameters) warms up beside the old one, then takes over between two "
                                     "bars under the same id: no bar is processed twice or missed, positions "
                                     "and P&L stay. A version that fails to load or warm up is refused and the "
                                     "old one keeps running.",
                         epilog="examples:\n  mmats strategy replace sma_fast --param fast=12\n"
                                "  mmats strategy replace mine --ref my_breakout.py:MyBreakout --param period=100",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sr.add_argument("strategy_id")
    sr.add_argument("--ref", help="new code: built-in name, path/to/file.py:Class or module:Class (its "
                                  "parameters start from the class defaults plus --param)")
    sr.add_argument("--param", action="append", type=kv, default=[], metavar="NAME=VALUE",
                    help="without --ref: merged onto the running parameters")
    sr.add_argument("--json", action="store_true", help="the new version as JSON")
    add_address(sr)
    for action in ("enable", "disable"):
        p = ssub.add_parser(action, help=f"{action} a strategy")
        p.add_argument("strategy_id")
        p.add_argument("--close-positions", action="store_true", help="also close its positions (disable)")
        p.add_argument("--json", action="store_true", help="the result as JSON")
        add_address(p)
    strat.set_defaults(func=cmd_strategy)

    kill = sub.add_parser("kill", help="kill switch: soft | hard | freeze | reset",
                          epilog="example: mmats kill hard --reason 'exchange outage'")
    kill.add_argument("state", choices=["soft", "hard", "freeze", "reset"])
    kill.add_argument("--reason", required=True)
    kill.add_argument("--json", action="store_true", help="the result as JSON")
    add_address(kill)
    kill.set_defaults(func=cmd_kill)

    orders = sub.add_parser("orders", help="orders of the running system, as a table (--json for machines)")
    orders.add_argument("--status", help="only this status (e.g. FILLED, OPEN, REJECTED)")
    orders.add_argument("--symbol", help="only this symbol")
    orders.add_argument("--strategy", help="only this strategy id")
    orders.add_argument("--limit", type=int, default=50, help="the latest N (default 50; 0 = all)")
    orders.add_argument("--json", action="store_true", help="as JSON")
    add_address(orders)
    orders.set_defaults(func=cmd_orders)

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
    mode.add_argument("--json", action="store_true", help="the result as JSON")
    add_address(mode)
    mode.set_defaults(func=cmd_mode)

    down = sub.add_parser("down", help="graceful stop: cancel open orders, summary")
    add_address(down)
    down.set_defaults(func=cmd_down)

