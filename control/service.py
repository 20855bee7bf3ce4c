"""``SystemClient``: every operation on a running MMATS system, for the HTTP routes and the ``mmats`` CLI alike.

One implementation of each rule a control surface must keep: the operator two-step, the close-all
confirmation, which checks come before an actor is asked (an unknown strategy is ``UnknownStrategy``
before the supervisor is called), how a manual order becomes a signal through the risk gatekeeper, how a
config version is validated, applied and recorded. Routes and CLI commands only translate arguments and
print or serialise what these methods return; errors are the typed ``control.problems``.

Async throughout (the Serve replica awaits actor calls concurrently); the CLI runs each call with
``asyncio.run`` (``SystemClient.run``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from control.configs import check_ref, check_strategy_source
from control.problems import AlreadyExists, InvalidInput, NotAllowed, Refused, Unavailable, UnknownStrategy
from control.reads import SystemReads
from control.transport import CONFIRM_TTL_S, NAMESPACE, SUPERVISOR, LogBuffer
from control.views import kill_view, outcome
from mmats.errors import MmatsError
from mmats.model import SignalAction, TradeSignal

T = TypeVar("T")


class SystemClient(SystemReads):
    """A running system, addressed by its supervisor's name and namespace. Cheap to create; caches handles."""

    @staticmethod
    def run(call: Coroutine[Any, Any, T]) -> T:
        """One operation from synchronous code (the CLI)."""
        return asyncio.run(call)

    @property
    def started(self) -> bool:
        """A supervisor was found or launched by this client."""
        return self._sup is not None

    @classmethod
    def connect(cls, address: str | None = None, supervisor: str = SUPERVISOR,
                namespace: str = NAMESPACE) -> SystemClient:
        """From a shell: join the Ray cluster at ``address`` (default ``auto``) and find the system on it."""
        import ray

        if not ray.is_initialized():
            from control.cluster_address import recorded

            try:
                ray.init(address=address or recorded(namespace) or "auto", namespace=namespace,
                         logging_level=logging.ERROR, log_to_driver=False)
            except (ConnectionError, RuntimeError) as exc:
                raise Unavailable(f"no running MMATS cluster found ({exc}); start one with `mmats up`") from None
        client = cls(supervisor, namespace, LogBuffer(echo=False))
        client.sup()  # Unavailable when Ray runs but MMATS does not
        return client

    async def launch(self, config: dict[str, Any]) -> dict[str, Any]:
        """Start the actor system of ``config`` (a validated ``SystemConfig`` as JSON) on the Ray cluster this
        process is connected to, under this client's supervisor name: the supervisor builds every actor,
        then the feeds start. Returns the topology (feeds, strategies, symbols)."""
        from actors.supervisor import SupervisorActor

        actor: Any = SupervisorActor
        self._sup = actor.options(name=self.supervisor_name, namespace=self.namespace,
                                  get_if_exists=False).remote(config)
        topology = await self.call(self._sup.build.remote(), timeout=3600)  # loads and checks every bar file
        await self.call(self._sup.start.remote(), timeout=600)
        return dict(topology)

    # ================================================================================== system

    async def down(self) -> dict[str, Any]:
        """Graceful stop: feeds stop, open orders are canceled; the final status is the summary."""
        return dict(await self.call(self.sup().down.remote(), timeout=120))

    # ========================================================================= mode, kill switch

    async def set_mode(self, mode: str, confirm_token: str | None = None, reason: str = "api") -> dict[str, Any]:
        """To advisory: at once. To operator: a first call returns a token (valid 60 s) and changes nothing;
        the second call with that token switches."""
        gk = (await self.handles())["gatekeeper"]
        env = await self.environment()
        if mode == "advisory":
            res = await self.call(gk.set_advisory.remote(reason or "api"))
            self.logs.add("WARNING", "mode", f"mode -> advisory ({reason})")
            return {**res, "environment": env}
        if mode != "operator":
            raise InvalidInput(f"mode: {mode!r} is not advisory or operator")
        if confirm_token:
            res = await self.call(gk.confirm_operator.remote(confirm_token))
            self.logs.add("WARNING", "mode", "mode -> operator (confirmed)")
            return {**res, "environment": env}
        req = await self.call(gk.request_operator.remote())
        current = await self.call(gk.mode.remote())
        return {**current, "environment": env, "confirmation_required": True, "confirm_token": req["token"],
                "expires_in_s": req["expires_in_s"]}

    async def set_kill(self, state: str, reason: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        res = await self.call(self.sup().kill.remote(state, reason.strip()), timeout=30)
        out = {"kill_switch": kill_view(res["kill_switch"]), "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}
        if "flatten" in res:
            out["flatten"] = {k: float(v) for k, v in res["flatten"].items()}
        if "canceled" in res:
            out["canceled"] = int(res["canceled"])
        self.logs.add("WARNING", "kill_switch", f"kill switch -> {state} (manual): {reason}")  # an action, not an error
        return out

    # ================================================================================ strategies

    async def _exists(self, strategy_id: str) -> bool:
        """Known to the supervisor (a miss in the cached handles is checked again, fresh)."""
        return strategy_id in (await self.handles())["strategies"] or \
            strategy_id in (await self.handles(fresh=True))["strategies"]

    async def _check_symbols(self, symbols: list[str]) -> None:
        known = await self.markets()
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise Refused(f"symbols: {unknown} are not on any feed (feeds have {sorted(known)})")

    async def submit_strategy(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start a new strategy actor: ``id``, ``ref``, ``symbols``, optional market, params, allocation, ..."""
        check_ref(spec["ref"])
        await self._check_symbols(spec["symbols"])
        if await self._exists(spec["id"]):
            raise AlreadyExists(f"strategy id {spec['id']!r} already exists: pick another id or replace it")
        await self.call(self.sup().submit_strategy.remote(spec), timeout=60)
        await self.handles(fresh=True)
        await self.config_state(fresh=True)
        self.logs.add("INFO", "strategies", f"strategy {spec['id']} submitted ({spec['ref']} on {spec['symbols']})",
                      spec.get("market"))
        return await self.strategy(spec["id"])

    async def _save_source(self, strategy_id: str, source: str, class_name: str) -> str:
        """An uploaded file, checked (nothing runs here) and stored under ``$MMATS_HOME/strategies/``."""
        check_strategy_source(source, class_name)
        home = (await self.config_state())["config"].get("home", "var")
        folder = (Path(home) / "strategies").resolve()
        path = folder / f"{strategy_id}-{hashlib.sha256(source.encode()).hexdigest()[:12]}.py"

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(source)

        await asyncio.to_thread(write)
        return f"{path}:{class_name}"

    async def upload_strategy(self, spec: dict[str, Any], source: str, class_name: str) -> dict[str, Any]:
        if await self._exists(spec["id"]):
            raise AlreadyExists(f"strategy id {spec['id']!r} already exists: pick another id or replace it")
        return await self.submit_strategy({**spec, "ref": await self._save_source(spec["id"], source, class_name)})

    async def replace_strategy(self, strategy_id: str, change: dict[str, Any], source: str | None = None,
                               class_name: str | None = None) -> dict[str, Any]:
        """Hot-replace: a new version (new ref, params, symbols or file) takes over under the same id."""
        if source is not None and not class_name:
            raise InvalidInput("class_name: required with source")
        if not change and source is None:
            raise InvalidInput("body: give at least one of ref, params, symbols, source")
        if not await self._exists(strategy_id):
            raise UnknownStrategy(f"unknown strategy {strategy_id!r}")
        change = dict(change)
        if source is not None:
            change["ref"] = await self._save_source(strategy_id, source, str(class_name))
        if "ref" in change:
            check_ref(change["ref"])
        if "symbols" in change:
            await self._check_symbols(change["symbols"])
        res = await self.call(self.sup().replace_strategy.remote(strategy_id, change), timeout=60)
        await self.handles(fresh=True)
        await self.config_state(fresh=True)
        self.logs.add("WARNING", "strategies", f"strategy {strategy_id} replaced by version {res['version']}")
        return await self.strategy(strategy_id)

    async def set_params(self, strategy_id: str, params: dict[str, Any], reset: bool = False) -> dict[str, Any]:
        """New parameters as a new version: merged onto the running ones (a parameter not named keeps its
        value), or with ``reset`` onto the strategy's defaults (only the ones named are set)."""
        if not await self._exists(strategy_id):
            raise UnknownStrategy(f"unknown strategy {strategy_id!r}")
        merged = dict(params) if reset else {**(await self.strategy(strategy_id)).get("params", {}), **params}
        return await self.replace_strategy(strategy_id, {"params": merged})

    async def set_strategy_enabled(self, strategy_id: str, enabled: bool, close_positions: bool = False,
                                   reason: str = "api") -> dict[str, Any]:
        """Disabling with ``close_positions`` sends a CLOSE through the gatekeeper for each of its symbols
        with an open position (positions are netted per symbol across strategies)."""
        if not await self._exists(strategy_id):
            raise UnknownStrategy(f"unknown strategy {strategy_id!r}")
        close = close_positions and not enabled
        res = await self.call(self.sup().set_strategy_enabled.remote(strategy_id, enabled, close, reason), timeout=30)
        await self.config_state(fresh=True)
        closes = [await self.describe_outcome(strategy_id, "CLOSE", c["symbol"], 0.0, c["signal_id"], c["result"])
                  for c in res.get("closes", [])]
        self.logs.add("INFO" if enabled else "WARNING", "strategies",
                      f"strategy {strategy_id} {'enabled' if enabled else f'disabled ({reason})'}"
                      + (f", {len(closes)} position(s) closing" if closes else ""))
        return {"id": res["id"], "enabled": enabled, "close_positions": close, "closes": closes}

    # ============================================================================ signals in, positions

    async def external_signal(self, strategy_id: str, signal: TradeSignal) -> dict[str, Any]:
        """A signal from outside (a manual order, a close) through the risk gatekeeper, priced at the feed."""
        feed = await self.feed_for(signal.symbol)
        price = (await self.call(feed.last_prices.remote())).get(signal.symbol)
        if price is None:
            raise NotAllowed(f"no price yet for {signal.symbol}: the feed has not published it")
        gk = (await self.handles())["gatekeeper"]
        res = await self.call(gk.submit_external.remote(strategy_id, signal, float(price)))
        return await self.describe_outcome(strategy_id, signal.action.value, signal.symbol, signal.position_size,
                                           signal.signal_id, res)

    async def describe_outcome(self, strategy_id: str, action: str, symbol: str, size: float, signal_id: str,
                               res: dict[str, Any]) -> dict[str, Any]:
        """The gatekeeper's answer to one external signal as an order result (and a log line)."""
        status, reasons = outcome(res)
        self.logs.add("WARNING" if status == "rejected" else "INFO", "orders",
                      f"{strategy_id} {action} {symbol} ({size:g}): {status}"
                      + (f" - {'; '.join(reasons)}" if reasons else ""), (await self.markets()).get(symbol))
        return {"status": status, "strategy_id": strategy_id, "signal_id": signal_id, "symbol": symbol,
                "orders": res.get("orders", []), "reasons": reasons, "decisions": res.get("decisions", [])}

    async def _close(self, symbol: str, reason: str) -> dict[str, Any]:
        sig = TradeSignal(action=SignalAction.CLOSE, symbol=symbol, position_size=0.0, confidence=1.0,
                          reasoning=reason, metadata={"source": "api"}, strategy_id="manual",
                          signal_id=f"api-close-{uuid.uuid4().hex[:12]}")
        return await self.external_signal("manual", sig)

    async def close_position(self, symbol: str, reason: str) -> dict[str, Any]:
        await self.feed_for(symbol)
        if symbol not in {p["symbol"] for p in await self.positions() if p["side"] != "FLAT"}:
            raise NotAllowed(f"no open position in {symbol}")
        return await self._close(symbol, reason)

    async def close_all(self, confirm_token: str | None, reason: str) -> dict[str, Any]:
        """Two steps: without a token, how many positions and a token (60 s); with it, a CLOSE for each."""
        positions = [p for p in await self.positions() if p["side"] != "FLAT"]
        if not confirm_token:
            return {"confirmation_required": True, "confirm_token": self.new_confirmation("close-all"),
                    "expires_in_s": CONFIRM_TTL_S, "positions": len(positions)}
        self.take_confirmation("close-all", confirm_token)
        results = [await self._close(p["symbol"], reason) for p in positions]
        self.logs.add("WARNING", "positions", f"close-all confirmed: {len(results)} position(s) ({reason})")
        return {"confirmation_required": False, "positions": len(positions), "results": results}

    # ==================================================================================== orders

    async def manual_order(self, signal: dict[str, Any], order_type: str = "MARKET",
                           limit_price: float | None = None) -> dict[str, Any]:
        """A signal with target-exposure semantics (``strategy_id``, ``symbol``, ``side``, ``target_exposure``,
        ...): the gatekeeper sizes it and checks every rule, as for a strategy's own signal."""
        from mmats.engine.external_signals import parse_external_signal

        raw = {**signal, "signal_id": signal.get("signal_id") or f"api-{uuid.uuid4().hex[:16]}"}
        try:
            sig = parse_external_signal(raw)
        except MmatsError as exc:
            raise InvalidInput(str(exc)) from None
        if order_type == "LIMIT":
            if limit_price is None:
                raise InvalidInput("limit_price: required for a LIMIT order")
            sig.metadata.update({"order_type": "LIMIT", "limit_price": limit_price})
        sig.metadata["source"] = "api"
        return await self.external_signal(str(raw.get("strategy_id", "manual")), sig)

    async def cancel_order(self, client_order_id: str) -> dict[str, Any]:
        if not await self.call((await self.handles())["router"].cancel_order.remote(client_order_id)):
            order = await self.order(client_order_id)  # UnknownOrder when there is none
            raise NotAllowed(f"order {client_order_id} is {order['status']}: it can no longer be canceled")
        self.logs.add("INFO", "orders", f"order {client_order_id} canceled")
        return {"client_order_id": client_order_id, "canceled": True}

    async def cancel_orders(self, client_order_ids: list[str] | None = None, symbol: str | None = None,
                            strategy_id: str | None = None, everything: bool = False) -> dict[str, Any]:
        if not (client_order_ids or symbol or strategy_id or everything):
            raise InvalidInput("body: give client_order_ids, symbol, strategy_id, or all: true")
        router = (await self.handles())["router"]
        ids = set(client_order_ids or [])
        chosen = [o["client_order_id"] for o in await self.call(router.open_orders.remote())
                  if (not ids or o["client_order_id"] in ids) and (not symbol or o["symbol"] == symbol)
                  and (not strategy_id or o["strategy_id"] == strategy_id)]
        results = await self.gather(*(router.cancel_order.remote(cid) for cid in chosen))
        canceled = [cid for cid, ok in zip(chosen, results, strict=True) if ok]
        self.logs.add("WARNING", "orders", f"bulk cancel: {len(canceled)} order(s) canceled")
        return {"canceled": canceled, "count": len(canceled)}

    async def indicator_overlays(self, symbol: str, limit: int) -> dict[str, Any]:
        """The indicators each strategy trading ``symbol`` declared (``get_required_indicators``), computed
        from the feed's bars with the kernel's own TA-Lib specs, aligned with ``/bars?limit=`` (for the
        dashboard's Markets chart). A strategy on a coarser timeframe gets its bins' values from the bar
        that completed each bin on (what it knew then). The specs come from the strategy's actor (what its
        host computes), so a user's strategy file is never loaded in the API process."""
        import numpy as np

        from mmats.engine.bar_aggregation import BarAggregator
        from mmats.indicators import align_benchmark, compute_batch, parse_spec
        from mmats.model import Timeframe

        on_price = {"SMA", "EMA", "WMA", "BBANDS", "DONCHIAN"}
        chosen = [s for s in await self.strategies() if symbol in s.get("symbols", [])]
        out: list[dict[str, Any]] = []
        plans: list[tuple[dict[str, Any], list[Any], int]] = []
        for s in chosen:
            row = {"id": s["id"], "ref": s["ref"], "enabled": bool(s.get("enabled")), "timeframe": s.get("timeframe"),
                   "series": [], "note": ""}
            out.append(row)
            declared = s.get("indicators")
            if declared is None:  # the actor is restarting: nothing to chart until it answers again
                row["note"] = "the strategy's actor did not answer; its indicators appear when it does"
                continue
            try:
                specs = [parse_spec(x) for x in declared]
            except MmatsError as exc:
                row["note"] = str(exc)
                continue
            mult = max(1, Timeframe.parse(s["timeframe"]).seconds // 60) if s.get("timeframe") else 1
            plans.append((row, specs, mult * (3 * max((x.lookback for x in specs), default=0) + 10)))
        feed = await self.feed_for(symbol)  # an unknown symbol fails here, as /bars does
        need = min(20_000, limit + max((x[2] for x in plans), default=0))
        rows = await self.call(feed.get_history.remote([symbol], need))
        for row, specs, _ in plans:
            src, known = rows, [b[1] for b in rows]
            if row["timeframe"]:  # the strategy's own bins, each known at the source bar that completed it
                agg = BarAggregator(row["timeframe"])
                done = [bin_ for b in rows for bin_ in agg.update(tuple(b))]  # type: ignore[arg-type]
                src, known = [x for x, _ in done], [k for _, k in done]
            if not src:
                continue
            # benchmarks (RS_20@SPY): their bars from the same feed, aligned as the host does
            aligned: dict[str, Any] = {}
            for bench in sorted({x.benchmark for x in specs if x.benchmark is not None}):
                b_rows = await self.call(feed.get_history.remote([bench], need))
                b_src, b_known = b_rows, [b[1] for b in b_rows]
                if row["timeframe"]:
                    b_agg = BarAggregator(row["timeframe"])
                    b_done = [bin_ for b in b_rows for bin_ in b_agg.update(tuple(b))]  # type: ignore[arg-type]
                    b_src, b_known = [x for x, _ in b_done], [k for _, k in b_done]
                aligned[bench] = align_benchmark(known, b_known, [b[5] for b in b_src])
            values = compute_batch(specs, *(np.asarray([b[i] for b in src], dtype=np.float64) for i in range(2, 7)),
                                   benchmarks=aligned)
            for spec in specs:
                for name in spec.outputs:
                    if name == spec.text and len(spec.outputs) > 1 and spec.kind in ("BBANDS", "DONCHIAN"):
                        continue  # the bare key repeats the middle line
                    at = dict(zip(known, values[name].tolist(), strict=True))
                    vals, last = [], float("nan")
                    for b in rows:  # forward-filled: the value the strategy knew at each feed bar
                        last = at.get(b[1], last)
                        vals.append(last)
                    row["series"].append({"name": name, "pane": "price" if spec.kind in on_price else "lower",
                                          "values": [None if v != v else round(v, 10) for v in vals[-limit:]]})
        return {"symbol": symbol, "t": [b[1] / 1e9 for b in rows[-limit:]], "strategies": out}
