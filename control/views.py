"""Actor answers shaped into what the API and the CLI show: pure functions, testable without Ray.

Money stays a string (``Decimal`` through ``str``) wherever the actors give it as one; derived money is
quantized to 8 decimals for display. Free text from strategies and actors goes through ``redact``.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.secrets import redact
from mmats.model import dec_str, iso

ENV_COLOURS = {"LIVE": "red", "PAPER": "yellow", "BACKTEST": "green", "DEV": "green"}
SIGNAL_FIELDS = ["time", "strategy_id", "signal_id", "symbol", "action", "position_size", "confidence", "price",
                 "reasoning", "decision", "decision_reasons"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def num(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def money(d: Decimal) -> str:
    """Derived money for display: 8 decimals at most, no exponent."""
    return dec_str(d.quantize(Decimal("1e-8")))


def dec(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def ts(value: Any) -> str | None:
    """Seconds or nanoseconds since the epoch, or already a string, as ISO time."""
    if value in (None, 0, ""):
        return None
    if isinstance(value, (int, float)):
        return iso(datetime.fromtimestamp(float(value), UTC)) if value < 1e12 else iso(int(value))
    return str(value)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def iso_to_t(text: str | None) -> float | None:
    dt = parse_time(text)
    return dt.timestamp() if dt else None


def feed_symbols(feed: dict[str, Any]) -> list[str]:
    """A feed's symbols in the config as JSON: replayed files, generated bars or a live source's."""
    return [*feed.get("files", {}), *feed.get("generated_symbols", []), *feed.get("symbols", [])]


def paginate(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    chunk = items[offset:offset + limit]
    nxt = offset + limit if offset + limit < len(items) else None
    return {"items": chunk, "total": len(items), "offset": offset, "limit": limit, "next_offset": nxt}


def newest_first(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders by creation time, newest first, ties newest-created first.

    The router keeps orders in the order it accepted them, but each symbol runs on its own bar clock, so
    acceptance order is not creation-time order: a page cut by ``until`` must follow the times it shows.
    """
    indexed = list(enumerate(orders))
    indexed.sort(key=lambda io: (parse_time(io[1].get("created")) or _EPOCH, io[0]), reverse=True)
    return [o for _, o in indexed]


def created_between(orders: list[dict[str, Any]], since: datetime | None,
                    until: datetime | None) -> list[dict[str, Any]]:
    lo = since.replace(tzinfo=since.tzinfo or UTC) if since else None
    hi = until.replace(tzinfo=until.tzinfo or UTC) if until else None
    if lo is None and hi is None:
        return orders

    def keep(o: dict[str, Any]) -> bool:
        t = parse_time(o.get("created"))
        return t is not None and (lo is None or t >= lo) and (hi is None or t < hi)

    return [o for o in orders if keep(o)]


# ------------------------------------------------------------------------------------------ status


def kill_view(k: dict[str, Any]) -> dict[str, Any]:
    return {"state": k.get("state", "RUNNING"), "trigger": k.get("trigger", ""), "reason": redact(k.get("reason", "")),
            "since": ts(k.get("since")),
            "history": [{"state": e.get("state", ""), "trigger": e.get("trigger", ""),
                         "reason": redact(e.get("reason", "")), "since": ts(e.get("since"))}
                        for e in k.get("history", [])]}


def feed_view(f: dict[str, Any]) -> dict[str, Any]:
    subs = f.get("subscribers", {}).values()
    return {**{k: f.get(k) for k in ("venue", "pace", "published", "position", "timestamps", "done", "stale",
                                      "seconds_since_update")},
            "max_lag_bars": max((s.get("lag_bars", 0) for s in subs), default=0),
            "skipped_bars": sum(s.get("skipped", 0) for s in subs)}


def venue_view(v: dict[str, Any]) -> dict[str, Any]:
    return {"venue": str(v.get("venue", "")), "breaker": str(v.get("breaker", "")),
            "last_reconcile": v.get("last_reconcile"),
            "last_error": redact(str(v["last_error"])) if v.get("last_error") else None,
            "orders_unknown": int(v.get("orders_unknown") or 0)}


def alert_view(a: dict[str, Any]) -> dict[str, Any]:
    kind = str(a.get("kind", ""))
    message = str(a.get("message"))
    # An operator's own kill or reset is an action, not an error; a trigger that fired by itself is one.
    manual = kind == "kill_switch" and ("(manual:" in message or "(reset:" in message)
    level = "ERROR" if kind in ("kill_switch", "router_error", "strategy_disabled") and not manual else "WARNING"
    return {"time": ts(a.get("time")) or "", "kind": kind, "level": level, "message": redact(str(a.get("message")))}


def build_status(gk: dict[str, Any], kill: dict[str, Any], mode: dict[str, Any], pf: dict[str, Any],
                 rt: dict[str, Any], cfg: dict[str, Any], feeds: list[dict[str, Any]], n_strategies: int,
                 warnings: list[str], venues: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    env = cfg["config"].get("environment", "PAPER")
    return {
        "environment": env, "environment_colour": ENV_COLOURS.get(env, "yellow"),
        "mode": mode["mode"], "allow_operator": mode["allow_operator"], "kill_switch": kill_view(kill),
        "uptime_s": round(time.time() - cfg.get("started", time.time()), 1), "running": cfg.get("running", True),
        "as_of": pf.get("as_of"), "currency": pf.get("currency", "USD"), "equity": pf["equity"],
        "cash": pf["cash"], "total_pnl": pf["total_pnl"], "daily_pnl": pf["daily_pnl"],
        "drawdown": abs(num(pf.get("drawdown"))), "open_positions": len(pf.get("positions", [])),
        "open_orders": rt.get("open", 0), "orders": rt.get("orders", 0), "fills": pf.get("fills", 0),
        "signals": gk.get("signals", 0), "strategies": n_strategies,
        "feeds": [feed_view(f) for f in feeds], "snapshot_age_s": 0.0,
        "warnings": [*warnings, *pf.get("fx_notes", [])],  # e.g. "USDT/USD = 1 assumed"
        "venues": [venue_view(v) for v in venues or []],
    }


def stream_status(gk: dict[str, Any], kill: dict[str, Any], mode: dict[str, Any], pf: dict[str, Any],
                  rt: dict[str, Any], env: str, bar_ns: int) -> dict[str, Any]:
    """The compact status the event stream carries on every poll."""
    return {
        "environment": env, "environment_colour": ENV_COLOURS.get(env, "yellow"), "mode": mode["mode"],
        "kill_switch": kill.get("state", "RUNNING"), "kill_reason": redact(kill.get("reason", "")),
        "equity": pf["equity"], "cash": pf["cash"], "total_pnl": pf["total_pnl"], "daily_pnl": pf["daily_pnl"],
        "currency": pf.get("currency", "USD"), "cash_by_currency": pf.get("cash_by_currency", {}),
        "drawdown": abs(num(pf.get("drawdown"))), "open_positions": len(pf.get("positions", [])),
        "open_orders": rt.get("open", 0), "fills": pf.get("fills", 0), "signals": gk.get("signals", 0),
        "as_of": pf.get("as_of"), "bar_time": iso(bar_ns) if bar_ns else None,
    }


# -------------------------------------------------------------------------------- strategies, P&L


def strategy_rows(listed: list[dict[str, Any]], stats: dict[str, dict[str, Any]],
                  cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Each strategy's health (from its actor) with its P&L from its own book (``mmats.attribution``),
    the same figures ``/pnl`` shows."""
    conf = {s["id"]: s for s in cfg["config"].get("strategies", [])}
    out = []
    for s in listed:
        sid = s["id"]
        c = conf.get(sid, {})
        st = stats.get(sid, {})
        realized, unrealized, fees = (dec(st.get(k, "0")) for k in ("realized_pnl", "unrealized_pnl", "fees"))
        trades = int(st.get("trades", 0))
        wins = int(st.get("wins", 0))
        enabled = bool(s.get("enabled", False))
        out.append({
            **{k: v for k, v in s.items() if k not in ("last_bar_ns",)},
            "version": cfg.get("versions", {}).get(sid, 1), "market": c.get("market"),
            "allocation": c.get("allocation"), "symbols": s.get("symbols") or c.get("symbols", []),
            "healthy": enabled and "error" not in s and int(s.get("consecutive_errors", 0)) == 0,
            "last_bar": iso(int(s["last_bar_ns"])) if s.get("last_bar_ns") else None,
            "fills": int(st.get("fills", 0)), "trades": trades, "wins": wins,
            "win_rate": round(wins / trades, 4) if trades else None,
            "realized_pnl": money(realized), "unrealized_pnl": money(unrealized), "fees": money(fees),
            "net_pnl": money(realized + unrealized - fees),
            "last_error": redact(str(s.get("last_error") or s.get("error") or "")),
        })
    return out


def outcome(res: dict[str, Any]) -> tuple[str, list[str]]:
    """The gatekeeper's answer to one external signal in words: submitted, rejected, queued (waits for the
    first account), recorded (advisory) or no_order, with the reasons."""
    if res.get("orders"):
        status = "submitted"
    elif res.get("rejected"):
        status = "rejected"
    elif not res.get("evaluated"):
        status = "queued"
    elif res.get("decisions") and res.get("advisory"):
        status = "recorded"
    else:
        status = "no_order"
    reasons = list(res.get("rejected", []))
    if status == "no_order":
        reasons.append("nothing to do: the target exposure is already met, or this signal_id was seen before")
    if status == "recorded":
        reasons.append("advisory mode: the decision is recorded, no order is sent")
    return status, reasons


def limits_view(cfg: dict[str, Any]) -> dict[str, Any]:
    """The limits the gatekeeper of a system with config ``cfg`` runs, per level (as the kernel resolves
    the config: environment overrides, profile, flat keys as global limits)."""
    from mmats.model import Environment
    from mmats.risk.gatekeeper import system_risk_config
    from mmats.risk.limits import parse_risk_config

    raw = cfg.get("risk") or {}
    env = cfg.get("environment", "PAPER")
    eff = parse_risk_config(system_risk_config(raw)).for_environment(Environment(env))
    lv = eff.levels
    levels = {"global": lv.global_.model_dump(exclude_none=True),
              **{f"market:{k.value}": v.model_dump(exclude_none=True) for k, v in lv.markets.items()},
              **{f"strategy:{k}": v.model_dump(exclude_none=True) for k, v in lv.strategies.items()},
              **{f"symbol:{k}": v.model_dump(exclude_none=True) for k, v in lv.symbols.items()}}
    return {"source": "risk_config", "environment": env, "profile": eff.profile, "levels": levels,
            "kill_switch": lv.kill_switch.model_dump(mode="json", exclude_none=True), "raw": raw}


def position_rows(pf: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in pf.get("positions", []):
        qty = dec(p.get("quantity"))
        out.append({**p, "side": "LONG" if qty > 0 else "SHORT" if qty < 0 else "FLAT",
                    "notional": money(abs(qty) * dec(p.get("last_price")))})
    return out


def _pnl_row(name: str, r: Decimal, u: Decimal, f: Decimal) -> dict[str, Any]:
    return {"name": name, "realized_pnl": money(r), "unrealized_pnl": money(u), "fees": money(f),
            "net_pnl": money(r + u - f)}


def pnl_view(pf: dict[str, Any], stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    attribution = pf.get("attribution", {})
    unreal: dict[str, Decimal] = {}
    for p in pf.get("positions", []):
        pnl = dec(p.get("unrealized_pnl_base", p.get("unrealized_pnl")))  # base currency when the status has it
        unreal[p.get("market", "?")] = unreal.get(p.get("market", "?"), Decimal(0)) + pnl
    by_market = []
    for m in sorted(set(attribution.get("by_market", {})) | set(unreal)):
        a = attribution.get("by_market", {}).get(m, {})
        by_market.append(_pnl_row(m, dec(a.get("realized_pnl")), unreal.get(m, Decimal(0)), dec(a.get("fees"))))
    by_strategy = [_pnl_row(sid, dec(st.get("realized_pnl")), dec(st.get("unrealized_pnl")), dec(st.get("fees")))
                   for sid, st in sorted(stats.items())]  # each strategy's own book of its own fills
    keys = ("currency", "as_of", "equity", "initial_cash", "cash", "total_pnl", "daily_pnl", "realized_pnl",
            "unrealized_pnl", "fees", "peak_equity", "drawdown")
    out: dict[str, Any] = {k: pf.get(k) for k in keys}
    out["drawdown"] = abs(num(pf.get("drawdown")))
    return {**out, "by_market": by_market, "by_strategy": by_strategy}


def equity_view(series: list[tuple[int, float]], points: int) -> dict[str, Any]:
    """Equity and drawdown, down-sampled to at most ``points`` (+ the last point, always kept)."""
    peak, worst = float("-inf"), 0.0
    full = []
    for t, eq in series:
        peak = max(peak, eq)
        dd = (peak - eq) / peak if peak > 0 else 0.0
        worst = max(worst, dd)
        full.append((t, eq, dd))
    step = max(1, -(-len(full) // points))
    picked = full[::step]
    if full and picked[-1] is not full[-1]:
        picked.append(full[-1])
    out = [{"time": iso(int(t)), "t": t / 1e9, "equity": eq, "drawdown": round(dd, 8)} for t, eq, dd in picked]
    return {"points": out, "max_drawdown": round(worst, 8)}


def signals_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SIGNAL_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "decision_reasons": "; ".join(r.get("decision_reasons", []))})
    return buf.getvalue()


def bars_view(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"time": iso(int(b[1])), "t": b[1] / 1e9, "open": b[2], "high": b[3], "low": b[4], "close": b[5],
             "volume": b[6]} for b in rows]
