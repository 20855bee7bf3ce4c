"""The event hub: one poller per replica turns the system's state into Server-Sent Events and log lines.

It polls through ``SystemClient.poll`` (fast while someone watches the stream or reads /status, slower
otherwise), publishes what changed (status, prices, equity, signals, orders, fills, alerts, logs), and
keeps the latest status as a snapshot that ``GET /status`` may answer from while it is under a second
old and no mutation went through this process since (``note_write`` counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from adapters.secrets import redact
from control.problems import ControlError, InvalidInput
from control.service import SystemClient
from control.views import alert_view, build_status, iso_to_t, num, stream_status
from mmats.model import iso

STREAM_TOPICS = ("status", "prices", "equity", "signals", "orders", "fills", "alerts", "logs")
KEPT_EVENTS = 2000



def _short(v: Any, places: int = 4) -> str:
    """A ratio for a log line: ``0.5848028243623333`` -> ``0.58`` (2 places) or ``0.5848``."""
    try:
        return f"{float(v):.{places}f}".rstrip("0").rstrip(".") or "0"
    except (TypeError, ValueError):
        return str(v)

class _Writes:
    """Mutations seen by this process (a module object: the middleware and the hub share it)."""

    count = 0


WRITES = _Writes()


def note_write() -> None:
    WRITES.count += 1


def writes_seen() -> int:
    return WRITES.count


def sse(ev: dict[str, Any]) -> str:
    return f"id: {ev['id']}\nevent: {ev['topic']}\ndata: {json.dumps(ev['data'], separators=(',', ':'))}\n\n"


class Hub:
    """The replica's poller and its subscribers."""

    def __init__(self, client: SystemClient, poll_s: float = 0.5) -> None:
        self.client = client
        self.poll_s = poll_s
        self.events: deque[dict[str, Any]] = deque(maxlen=KEPT_EVENTS)
        self.seq = 0
        self.subs: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.last: dict[str, Any] = {}
        self.latest_by_topic: dict[str, dict[str, Any]] = {}
        self._wake: asyncio.Event | None = None
        self.ticks = 0
        self.status_snapshot: tuple[float, int, dict[str, Any]] | None = None
        self.status_wanted = 0.0
        client.logs.listeners.append(lambda rec: self.publish("logs", rec))

    def fresh_status(self, max_age_s: float = 1.0) -> dict[str, Any] | None:
        """The latest polled status when young enough and no mutation happened since it was read."""
        self.status_wanted = time.monotonic()
        snap = self.status_snapshot
        if snap is None:
            return None
        age = time.monotonic() - snap[0]
        if age > max_age_s or snap[1] != writes_seen():
            return None
        return {**snap[2], "snapshot_age_s": round(age, 3)}

    def ensure_started(self) -> None:
        if self.task is None or self.task.done():
            self._wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self.run())

    def poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=5000)
        self.subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.subs.discard(q)

    def backlog(self, since: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["id"] > since]

    def latest(self) -> list[dict[str, Any]]:
        """What a new subscriber sees first: the latest status, prices and equity."""
        return [self.latest_by_topic[t] for t in ("status", "prices", "equity") if t in self.latest_by_topic]

    def publish(self, topic: str, data: Any) -> None:
        self.seq += 1
        ev = {"id": self.seq, "topic": topic, "data": data}
        self.events.append(ev)
        self.latest_by_topic[topic] = ev
        for q in list(self.subs):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # a consumer that does not read: cut it off, it reconnects
                self.subs.discard(q)
                with contextlib.suppress(asyncio.QueueEmpty, asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)

    def stream(self, topics: str | None, last_event_id: str | None,
               max_seconds: float | None) -> AsyncIterator[str]:
        """The SSE body: the backlog after ``last_event_id`` (or the latest state), then live events, a
        keep-alive comment every 15 s, until ``max_seconds``. Unknown topics are refused before it starts."""
        wanted = set(STREAM_TOPICS)
        if topics:
            wanted = {t.strip() for t in topics.split(",") if t.strip()}
            bad = sorted(wanted - set(STREAM_TOPICS))
            if bad:
                raise InvalidInput(f"topics: unknown {bad}; known: {', '.join(STREAM_TOPICS)}")
        since = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
        queue = self.subscribe()
        backlog = self.backlog(since) if since is not None else self.latest()
        deadline = time.monotonic() + max_seconds if max_seconds else None

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                for ev in backlog:
                    if ev["topic"] in wanted:
                        yield sse(ev)
                while deadline is None or time.monotonic() < deadline:
                    wait = 15.0 if deadline is None else max(0.0, min(15.0, deadline - time.monotonic()))
                    try:
                        got: dict[str, Any] | None = await asyncio.wait_for(queue.get(), wait)  # type: ignore[arg-type]
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if got is None:
                        break
                    if got["topic"] in wanted:
                        yield sse(got)
            finally:
                self.unsubscribe(queue)

        return events()

    async def run(self) -> None:
        failures = 0
        logs = self.client.logs
        while True:
            try:
                await self.tick()
                if failures:
                    logs.add("INFO", "api", "actor system answering again")
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    detail = exc.detail if isinstance(exc, ControlError) else f"{type(exc).__name__}"
                    logs.add("ERROR", "api", f"live poll failed ({failures}x): {detail}")
            assert self._wake is not None
            # fast while someone watches the stream, slower otherwise (the event log still catches up)
            watched = self.subs or time.monotonic() - self.status_wanted < 10
            interval = self.poll_s if watched else max(self.poll_s, 2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval if failures == 0 else 2.0)
            self._wake.clear()

    async def tick(self) -> None:
        c = self.client
        writes0 = writes_seen()
        s = await c.poll()
        gk, pf, rt, kill, mode, cfg = s["gatekeeper"], s["portfolio"], s["router"], s["kill"], s["mode"], s["config"]
        markets: dict[str, str] = s["markets"]
        self.status_snapshot = (time.monotonic(), writes0, build_status(
            gk, kill, mode, pf, rt, cfg, s["feeds"], s["strategies"], [], s["venues"]))
        first = not self.last
        self.ticks += 1
        prices: dict[str, float] = {}
        for d in s["prices"]:
            prices.update(d)
        bar_ns = max(s["last_ts"], default=0)
        self.publish("status", stream_status(gk, kill, mode, pf, rt, cfg["config"].get("environment", "PAPER"),
                                             bar_ns))
        if prices != self.last.get("prices"):
            self.publish("prices", {"time": iso(bar_ns) if bar_ns else None, "t": bar_ns / 1e9, "prices": prices})
        eq_key = (pf["equity"], pf.get("as_of"))
        if eq_key != self.last.get("equity"):
            self.publish("equity", {"time": pf.get("as_of"), "t": iso_to_t(pf.get("as_of")),
                                    "equity": num(pf["equity"]), "drawdown": abs(num(pf.get("drawdown"))),
                                    "total_pnl": pf["total_pnl"], "daily_pnl": pf["daily_pnl"]})
        n_sig = int(gk.get("signals", 0))
        if not first and n_sig > self.last.get("signals", 0):
            for sig in await c.recent_signals(min(n_sig - self.last["signals"], 200)):
                self.publish("signals", sig)
                c.logs.add("INFO", f"strategy:{sig.get('strategy_id')}",
                           f"signal {sig.get('action')} {sig.get('symbol')} size {_short(sig.get('position_size'))} "
                           f"conf {_short(sig.get('confidence'), 2)}: {sig.get('reasoning')}",
                           markets.get(sig.get("symbol", "")))
        n_fills = int(pf.get("fills", 0))
        if not first and n_fills > self.last.get("fills", 0):
            for f in await c.recent_fills(min(n_fills - self.last["fills"], 100)):
                self.publish("fills", f)
                c.logs.add("INFO", "router", f"fill {f.get('side')} {f.get('quantity')} {f.get('symbol')} @ "
                           f"{f.get('price')} ({f.get('strategy_id')})", markets.get(f.get("symbol", "")))
        order_key = (rt.get("orders"), rt.get("open"), n_fills)
        if order_key != self.last.get("order_key"):
            self._orders(await c.recent_orders(50), first, markets)
        n_alerts = len(s["alerts"])
        if not first and n_alerts > self.last.get("alerts", 0):
            for a in s["alerts"][self.last.get("alerts", 0):]:
                out = alert_view(a)
                self.publish("alerts", out)
                c.logs.add(out["level"], f"risk:{out['kind']}", out["message"])
        if self.ticks % 10 == 1:  # strategy errors, every few seconds (one call per strategy)
            await self._strategy_errors(first)
        self.last.update({"prices": prices, "equity": eq_key, "signals": n_sig, "fills": n_fills,
                          "order_key": order_key, "alerts": n_alerts})

    def _orders(self, recent: list[dict[str, Any]], first: bool, markets: dict[str, str]) -> None:
        known: dict[str, tuple[str, str]] = self.last.get("order_states", {})
        states = {}
        for o in recent:
            state = (o["status"], o["filled_quantity"])
            states[o["client_order_id"]] = state
            if not first and known.get(o["client_order_id"]) != state:
                self.publish("orders", o)
                if o["status"] == "REJECTED":
                    self.client.logs.add("WARNING", "risk", f"order {o['client_order_id']} rejected: "
                                         f"{redact(str(o.get('reject_reason')))}", markets.get(o["symbol"]))
        self.last["order_states"] = states

    async def _strategy_errors(self, first: bool) -> None:
        seen: dict[str, int] = self.last.setdefault("errors", {})
        for s in await self.client.strategy_health():
            n = int(s.get("errors_total", 0))
            if not first and n > seen.get(s["id"], 0):
                self.client.logs.add("ERROR", f"strategy:{s['id']}",
                                     f"{n - seen.get(s['id'], 0)} new error(s); last: {s.get('last_error', '')}")
            seen[s["id"]] = n
