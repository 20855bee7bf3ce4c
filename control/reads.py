"""What a running system shows: every read of the control service (status, strategies, orders, risk, P&L ...).

Reads are concurrent actor calls shaped by ``control.views``; they change nothing, so the HTTP API may
serve them without the token on a loopback bind. ``SystemClient`` adds the operations that act.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from adapters.secrets import redact
from control.history import HistoryLink
from control.problems import ControlError, UnknownOrder, UnknownStrategy
from control.transport import LOG_LEVELS, NAMESPACE, SUPERVISOR, LogBuffer
from control.views import (
    alert_view,
    bars_view,
    build_status,
    created_between,
    equity_view,
    feed_symbols,
    kill_view,
    limits_view,
    newest_first,
    pnl_view,
    position_rows,
    strategy_rows,
)

GATEKEEPER_READ_S = 2.0  # /status waits this long for the gatekeeper, then reports its last known state


class SystemReads(HistoryLink):
    """The reads; the last gatekeeper answer is kept so a busy gatekeeper does not fail a status read."""

    def __init__(self, supervisor: str = SUPERVISOR, namespace: str = NAMESPACE, logs: LogBuffer | None = None) -> None:
        super().__init__(supervisor, namespace, logs)
        self.gatekeeper_seen: tuple[float, list[Any]] | None = None  # (wall time, [stats, kill, mode])

    async def ready(self) -> dict[str, Any]:
        """Every actor pinged; ``ready`` False names the ones that did not answer within 3 s."""
        h = await self.handles(fresh=True)
        names = {"gatekeeper": h["gatekeeper"], "router": h["router"], "portfolio": h["portfolio"],
                 **{f"feed:{k}": v for k, v in h["feeds"].items()},
                 **{f"strategy:{k}": v for k, v in h["strategies"].items()}}

        async def ping(handle: Any) -> str:
            try:
                await asyncio.wait_for(handle.ping.remote(), 3.0)
                return "ok"
            except Exception as exc:
                return f"not answering ({type(exc).__name__})"

        actors = dict(zip(names, await asyncio.gather(*(ping(x) for x in names.values())), strict=True))
        return {"ready": all(v == "ok" for v in actors.values()), "actors": actors}

    async def _venues(self, h: dict[str, Any]) -> list[dict[str, Any]]:
        """LIVE: the router's per-venue health (breaker, last reconciliation, orders of unknown fate)."""
        read = getattr(h["router"], "venue_status", None)
        if read is None or await self.environment() != "LIVE":
            return []
        return list((await self.call(read.remote())).get("venues", []))

    async def status(self) -> dict[str, Any]:
        """Read live from every actor. A gatekeeper too busy to answer within ``GATEKEEPER_READ_S`` is reported
        as last seen (with a warning) instead of failing the whole read."""
        h = await self.handles()
        gk_call = self.gather(h["gatekeeper"].stats.remote(), h["gatekeeper"].kill_switch.remote(),
                              h["gatekeeper"].mode.remote(), timeout=GATEKEEPER_READ_S)
        main, feeds, venues, gk_res = await asyncio.gather(
            self.gather(h["portfolio"].status.remote(), h["router"].stats.remote(), self.sup().get_config.remote()),
            self.gather(*(f.stats.remote() for f in h["feeds"].values())), self._venues(h), gk_call,
            return_exceptions=True)
        for res in (main, feeds, venues):
            if isinstance(res, BaseException):
                raise res
        pf, rt, cfg = main  # type: ignore[misc]
        warnings: list[str] = []
        if isinstance(gk_res, BaseException):
            cached = self.gatekeeper_seen
            if not isinstance(gk_res, ControlError) or cached is None:
                raise gk_res
            at, gk_res = cached
            warnings.append(f"the risk gatekeeper did not answer within {GATEKEEPER_READ_S:g} s (busy): kill switch "
                            f"and mode as last seen {time.time() - at:.1f} s ago")
        else:
            self.gatekeeper_seen = (time.time(), list(gk_res))
        gk, kill, mode = gk_res
        return build_status(gk, kill, mode, pf, rt, cfg, feeds, len(h["strategies"]), warnings,  # type: ignore[arg-type]
                            venues)  # type: ignore[arg-type]

    async def poll(self) -> dict[str, Any]:
        """Everything the event stream watches, in one round of concurrent calls."""
        h = await self.handles()
        feeds = list(h["feeds"].values())
        n = len(feeds)
        gk, pf, rt = h["gatekeeper"], h["portfolio"], h["router"]
        results = await self.gather(
            gk.stats.remote(), pf.status.remote(), rt.stats.remote(), gk.get_alerts.remote(), gk.kill_switch.remote(),
            gk.mode.remote(), *(f.last_prices.remote() for f in feeds), *(f.last_ts.remote() for f in feeds),
            *(f.stats.remote() for f in feeds), timeout=10)
        self.gatekeeper_seen = (time.time(), [results[0], results[4], results[5]])
        return {"gatekeeper": results[0], "portfolio": results[1], "router": results[2], "alerts": results[3],
                "kill": results[4], "mode": results[5], "prices": results[6:6 + n],
                "last_ts": results[6 + n:6 + 2 * n], "feeds": results[6 + 2 * n:], "strategies": len(h["strategies"]),
                "config": await self.config_state(), "markets": await self.markets(), "venues": await self._venues(h)}

    async def summary(self) -> dict[str, Any]:
        """The supervisor's own status: portfolio, router, feeds, strategies, venues (what ``mmats status`` shows)."""
        return dict(await self.call(self.sup().status.remote(), timeout=30))

    async def recent_signals(self, n: int) -> list[dict[str, Any]]:
        h = await self.handles()
        rows = await self.call(h["gatekeeper"].get_signals.remote(n))
        return [{**s, "reasoning": redact(str(s.get("reasoning") or ""))} for s in rows]

    async def recent_fills(self, n: int) -> list[dict[str, Any]]:
        return list(await self.call((await self.handles())["portfolio"].recent_fills.remote(n)))

    async def recent_orders(self, n: int) -> list[dict[str, Any]]:
        return list(await self.call((await self.handles())["router"].recent_orders.remote(n)))

    async def strategy_health(self) -> list[dict[str, Any]]:
        return list(await self.call(self.sup().list_strategies.remote(), timeout=10))

    async def mode(self) -> dict[str, Any]:
        h = await self.handles()
        mode, cfg = await self.gather(h["gatekeeper"].mode.remote(), self.sup().get_config.remote())
        return {**mode, "environment": cfg["config"].get("environment", "PAPER")}

    async def kill_switch(self) -> dict[str, Any]:
        return kill_view(await self.call((await self.handles())["gatekeeper"].kill_switch.remote()))

    async def strategies(self, enabled: bool | None = None) -> list[dict[str, Any]]:
        h = await self.handles()
        sup = self.sup()
        listed, stats, cfg = await self.gather(sup.list_strategies.remote(), h["portfolio"].strategy_stats.remote(),
                                               sup.get_config.remote())
        rows = strategy_rows(listed, stats, cfg)
        return rows if enabled is None else [s for s in rows if bool(s.get("enabled")) == enabled]

    async def strategy(self, strategy_id: str) -> dict[str, Any]:
        for s in await self.strategies():
            if s["id"] == strategy_id:
                return s
        raise UnknownStrategy(f"unknown strategy {strategy_id!r}")

    async def positions(self, market: str | None = None) -> list[dict[str, Any]]:
        rows = position_rows(await self.call((await self.handles())["portfolio"].status.remote()))
        return [p for p in rows if p.get("market") == market] if market else rows

    async def orders(self, status: str | None = None, symbol: str | None = None, strategy: str | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Newest first; ``status`` 'open' means every order still working."""
        router = (await self.handles())["router"]
        if status and status.lower() == "open":
            rows = [o for o in await self.call(router.open_orders.remote()) if (not symbol or o["symbol"] == symbol)
                    and (not strategy or o["strategy_id"] == strategy)]
        else:
            rows = await self.call(router.orders.remote(status, symbol, strategy))
        return newest_first(created_between(rows, since, until))

    async def order(self, client_order_id: str) -> dict[str, Any]:
        for o in await self.call((await self.handles())["router"].orders.remote()):
            if o["client_order_id"] == client_order_id:
                return dict(o)
        raise UnknownOrder(f"unknown order {client_order_id!r}")

    async def signals(self, strategy: str | None = None, symbol: str | None = None, action: str | None = None,
                      full: bool = False) -> list[dict[str, Any]]:
        """Signals with their risk decision, oldest first: the recent window, or (``full``) every one recorded."""
        rows = await self.call((await self.handles())["gatekeeper"].signal_records.remote(full=full))
        return [{**r, "reasoning": redact(str(r.get("reasoning") or ""))} for r in rows
                if (not strategy or r["strategy_id"] == strategy) and (not symbol or r["symbol"] == symbol)
                and (not action or r["action"] == action)]

    async def risk_limits(self) -> dict[str, Any]:
        """The limits the gatekeeper runs: the config's ``risk`` block, flat keys as global limits."""
        return limits_view((await self.config_state())["config"])

    async def risk_utilization(self) -> dict[str, Any]:
        """Measured by the kernel gatekeeper (``mmats.risk.utilization``), the way its rules measure."""
        return dict(await self.call((await self.handles())["gatekeeper"].risk_utilization.remote()))

    async def alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = [alert_view(a) for a in await self.call((await self.handles())["gatekeeper"].get_alerts.remote())]
        return [a for a in rows if not kind or a["kind"] == kind]

    async def decisions(self, status: str | None = None, strategy: str | None = None) -> list[dict[str, Any]]:
        rows = await self.call((await self.handles())["gatekeeper"].get_decisions.remote())
        return [d for d in rows if (not status or d.get("status") == status.upper())
                and (not strategy or d.get("strategy_id") == strategy)]

    async def allocation(self) -> dict[str, Any]:
        """Capital between strategies: method, weights, each strategy's sizing share, the schedule and the
        recent rebalances (the risk gatekeeper applies them; docs/configuration.md, "Allocation")."""
        return dict(await self.call((await self.handles())["gatekeeper"].allocation_status.remote()))

    async def pnl(self) -> dict[str, Any]:
        pf = (await self.handles())["portfolio"]
        return pnl_view(*await self.gather(pf.status.remote(), pf.strategy_stats.remote()))

    async def equity(self, points: int = 1000) -> dict[str, Any]:
        return equity_view(await self.call((await self.handles())["portfolio"].equity.remote()), points)

    async def market_list(self) -> list[dict[str, Any]]:
        """Feeds by market with their symbols and last prices."""
        cfg = (await self.config_state())["config"]
        h = await self.handles()
        feeds = [f for f in cfg.get("feeds", []) if f.get("venue") in h["feeds"]]
        prices: list[Awaitable[Any]] = [h["feeds"][f["venue"]].last_prices.remote() for f in feeds]
        return [{"market": f.get("market", "crypto"), "venue": f["venue"], "symbols": feed_symbols(f), "last_prices": p}
                for f, p in zip(feeds, await self.gather(*prices), strict=True)]

    async def bars(self, symbol: str, limit: int) -> dict[str, Any]:
        rows = await self.call((await self.feed_for(symbol)).get_history.remote([symbol], limit))
        return {"symbol": symbol, "market": (await self.markets()).get(symbol, "crypto"), "bars": bars_view(rows)}

    def log_lines(self, level: str | None = None, module: str | None = None,
                  market: str | None = None) -> list[dict[str, Any]]:
        """The control service's event log, newest first; ``module`` matches itself and its ``module:...``."""
        floor = LOG_LEVELS.index(level) if level else 0
        rows = [r for r in self.logs.items if LOG_LEVELS.index(r["level"]) >= floor
                and (not module or r["module"] == module or r["module"].startswith(module + ":"))
                and (not market or r.get("market") == market)]
        return rows[::-1]
