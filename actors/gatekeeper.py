"""RiskGatekeeper: the named singleton that is the ONLY path from a signal to the order router.

Thin: ``mmats.engine.signal_path.SignalPath`` sizes signals and the kernel ``RiskGatekeeper`` checks them with
the same rules, sizing and kill switch a backtest uses (``risk`` in the system config, docs/risk.md).
This actor adds the runtime parts: the operator/advisory mode with its two-step switch (persisted and
audited), the kill switch's persistence and its effects (HARD flattens through the router, FREEZE
cancels), feed staleness and router errors as kill-switch triggers, the lockstep acknowledgement for
exact replays, and the records of every signal and decision.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import ray

from actors.control import CONTROL, GROUPS, ask_supervisor_to_rewire, control_lock, locked
from actors.stores import open_stores, recent_records, signal_export_rows, signal_view, with_decision
from mmats.allocation import AccountAllocation, AllocationConfig
from mmats.engine.actor_settings import GatekeeperSettings
from mmats.engine.batching import AnswerRelay
from mmats.engine.group_commit import GroupCommit
from mmats.engine.operator_switch import ModeChange, OperatorSwitch
from mmats.engine.service_times import ServiceTimes
from mmats.engine.signal_path import GatewayOutput, PendingSignal, SignalPath
from mmats.engine.topology import Wiring
from mmats.engine.triggers import RouterErrorStreak, StaleFeeds
from mmats.engine.wall_stamps import WallStamps
from mmats.engine.windows import RecentKeys, RecordWindow
from mmats.messages import AccountSnapshot, BarBatch, FeedStatus, OrderCommands, SignalBatch
from mmats.model import Environment, iso
from mmats.risk.gatekeeper import RiskGatekeeper, system_risk_config
from mmats.risk.killswitch import KillSwitch, KillSwitchState, KillSwitchTransition, KillTrigger

KILL_STATES = tuple(s.value for s in KillSwitchState)
TOKEN_TTL_S = 60.0
ALERTS_KEPT = 2_000
KILL_HISTORY_KEPT = 200
COUNTERS_EVERY_S = 1.0
RECENT_KEPT = 20_000  # signals and decisions kept in memory for the live views
HOP_TIMES_KEPT = 100_000  # recent hop time stamps kept for the latency benchmark
CLAIMS_KEPT = 200_000  # signal idempotency keys kept in memory (a retried or replayed signal is recent)
READ_SETTLE_S = 2.0  # how long a read of the records waits for the journal writer


@dataclasses.dataclass(frozen=True, slots=True)
class _Decided:
    """One message's decisions on their way through the journal writer: the records to commit, what
    acts once they are on record, and when they were decided (wall clock, against kill escalations)."""

    out: GatewayOutput
    views: list[tuple[PendingSignal, dict[str, Any]]]
    decided: list[tuple[Any, dict[str, Any]]]
    ack: int | None
    decided_ns: int


@ray.remote(max_restarts=-1, max_task_retries=-1, concurrency_groups=GROUPS)
class RiskGatekeeperActor:
    def __init__(self, settings: GatekeeperSettings, wiring: Wiring[Any] | None = None) -> None:
        """``wiring``: the router and the portfolio as built (handles that survive restarts); the
        strategies come with the supervisor's ``wire`` (again after a restart of this actor)."""
        self._lock = control_lock()  # the message thread and the control thread (actors.control)
        cfg = settings
        instruments, allocation, risk, mode = cfg.instruments, cfg.allocation, cfg.risk, cfg.mode
        allow_operator, lockstep, persist = cfg.allow_operator, cfg.lockstep, cfg.persist
        environment, initial_equity, allocation_plan = cfg.environment, cfg.initial_equity, cfg.allocation_plan
        if mode == "operator" and not allow_operator:
            raise ValueError("mode 'operator' needs allow_operator: true in the config")
        self.stores = open_stores(persist) if persist is not None else None
        journal = self.stores.journal if self.stores is not None else None
        # Each (strategy, signal id) is decided once: claimed in memory, durable through the journal (a
        # signal acts only once its record is committed), seeded from the newest records after a restart.
        recent = recent_records(self.stores.storage, RECENT_KEPT) if self.stores is not None else ([], [], [])
        self.claims = RecentKeys(CLAIMS_KEPT, recent[2])
        claim = self.claims.claim if self.stores is not None else None
        saved_mode = None
        switch = KillSwitch(journal)
        if self.stores is not None:
            state = self.stores.state
            saved = state.get("kill_switch")
            if saved:  # durable across restarts: a HARD stop stays HARD until someone resets it
                switch = KillSwitch.from_dict(saved, journal)
            saved_mode = state.get("mode")
        # Signals and decisions are journaled by this actor's journal writer (``_dispatch``); the kill
        # switch journals its own transitions before they take effect.
        self.risk = RiskGatekeeper(system_risk_config(risk), Environment(environment), journal=None,
                                   kill_switch=switch, initial_equity=initial_equity, observe_equity=False)
        self.switch = switch
        self.monitor = self.risk.monitor
        self._counters_dirty = False
        if self.stores is not None:
            counters = self.stores.state.get("risk_counters")
            if counters:  # today's loss reference, the peak, throttle windows: a restart forgets none
                self.risk.restore_counters(counters)
            threading.Thread(target=self._counters_loop, name="risk-counters", daemon=True).start()
        # The two-step switch (mmats.engine.operator_switch): an automatic downgrade survives a restart.
        self.operator = OperatorSwitch(mode, allow_operator, saved_mode, ttl_s=TOKEN_TTL_S)
        self.signal_path = SignalPath(self.risk, instruments, allocation, advisory=self.operator.advisory,
                                     allowed=self._kill_veto, claim=claim)
        # The supervisor subscribes this actor to every feed when the risk config reads bars (ATR,
        # correlation): signals of bar t then also wait for bar t to have reached the gatekeeper.
        self.signal_path.await_bars = self.risk.needs.bars
        # Only an exact replay waits for the account as of each signal's bar; live, a signal is sized at
        # once on the account last pushed plus the orders on their way (mmats.engine.signal_path).
        self.signal_path.await_account = lockstep
        self._init_allocation(allocation, allocation_plan)
        self.allow_operator = allow_operator
        self.router: Any = wiring.router if wiring is not None else None
        self.portfolio: Any = wiring.portfolio if wiring is not None else None
        self.lockstep = lockstep
        self.strategies: dict[str, Any] = {}
        self.reported: dict[str, int] = {}
        self.kill_history: RecordWindow[dict[str, Any]] = RecordWindow(KILL_HISTORY_KEPT)
        self._effects: list[KillSwitchTransition] = []
        # Wall clock of the last escalation; every command carries the time it was decided, so the router
        # can drop what was decided before a kill but was still queued behind it.
        self._halt_ns = 0
        self._commands: dict[str, Any] = self._empty_commands()
        self._cmd_inflight = False
        self._refusals_told: Any = None  # lockstep: the refusals' delivery the next commands wait for
        self._cmd_relay = AnswerRelay(self._lock, self._send_commands, "commands-relay")
        # hop times (benchmarks), see hop_times; the arrivals bounded on their own: HOLDs never order
        self.signal_wall: WallStamps[tuple[str, int]] = WallStamps(HOP_TIMES_KEPT)
        self.decided_wall: WallStamps[str] = WallStamps(HOP_TIMES_KEPT)
        self.busy = ServiceTimes()  # the message thread's time per kind of message (hop_times)
        # Signals and decisions are committed off the message thread, several messages per commit.
        self.journal_writer: GroupCommit[_Decided] | None = None
        if self.stores is not None:
            self.journal_writer = GroupCommit(self._commit_decided, self._release_committed,
                                              self._journal_failed, "journal-writer")
        switch.add_listener(self._on_transition)
        # Bounded windows of the recent records (mmats.engine.windows): the full history is in the tables.
        self.signals: RecordWindow[dict[str, Any]] = RecordWindow(RECENT_KEPT, recent[0])
        self.decisions: RecordWindow[dict[str, Any]] = RecordWindow(RECENT_KEPT, recent[1])
        self.alerts: RecordWindow[dict[str, Any]] = RecordWindow(ALERTS_KEPT)
        self.stale = StaleFeeds()
        self.router_errors = RouterErrorStreak(cfg.router_error_limit)
        self._acked = -1
        ask_supervisor_to_rewire(cfg.peers, "gatekeeper")

    # --------------------------------------------------------------------------------- wiring

    @locked
    def wire(self, wiring: Wiring[Any]) -> None:
        """The peers from the topology (mmats.engine.topology): the router, the portfolio and every
        strategy's host by strategy id. A strategy no longer in it stops counting for the watermarks."""
        self.router = wiring.router or self.router
        self.portfolio = wiring.portfolio or self.portfolio
        self.strategies = dict(wiring.strategies)
        for sid in list(self.reported):
            if sid not in self.strategies:
                del self.reported[sid]
        for sid in self.strategies:
            self.reported.setdefault(sid, -1)
        if self.lockstep:  # a replay evaluates each bar's signals in one order, as the backtest does
            self.signal_path.strategy_rank = {sid: i for i, sid in enumerate(self.strategies)}
        self._track_reports()

    @locked
    def allocate_strategy(self, strategy_id: str, allocation: float) -> None:
        """A strategy started outside the config's ``allocation:`` plan sizes with its own share."""
        if self.allocation is None or strategy_id not in self.allocation.base:
            self.signal_path.allocation[strategy_id] = float(allocation)

    def risk_feeds(self) -> dict[str, bool]:
        """What the risk config needs from the wiring: ``bars`` (subscribe this actor to every feed) and
        ``reports`` (every strategy reports every batch, so a bar's signals can be aggregated together)."""
        return {"bars": self.risk.needs.bars, "reports": self.risk.aggregating}

    @locked
    def on_bars(self, msg: BarBatch) -> int:
        """A feed's bars: the ATR and correlation inputs of the risk config (subscribed only when it has them)."""
        t0 = time.perf_counter()
        self._dispatch(self.signal_path.on_bars(msg.bars, msg.upto_ts))
        self.busy.record("bars", time.perf_counter() - t0)
        return len(msg.bars)

    def _track_reports(self) -> None:
        """With an aggregation mode, or in a lockstep replay, signals of bar t wait until every strategy
        has reported bar t (a bar's signals are combined, or ordered, together)."""
        if self.signal_path.aggregate is not None or self.lockstep:
            self.signal_path.reports_as_of_ns = min(self.reported.values(), default=None)

    # ------------------------------------------------------------------------------- message path

    @locked
    def on_signals(self, msg: SignalBatch) -> None:
        """A strategy host's signals; every strategy it names has processed the bars up to ``upto_ts``."""
        t0 = time.perf_counter()
        now = time.time()
        if msg.signals:  # arrival per (strategy, bar time): the latency benchmark's hop times
            self.signal_wall.stamp(((p.strategy_id, p.ts_ns) for p in msg.signals), now)
        for strategy_id in msg.reporters:
            self.reported[strategy_id] = max(self.reported.get(strategy_id, -1), msg.upto_ts)
        self._track_reports()
        self._dispatch(self.signal_path.on_signals(msg.signals))
        self.busy.record("signals", time.perf_counter() - t0)

    @locked
    def on_account(self, msg: AccountSnapshot) -> None:
        """``closed``: the strategies' round trips the fills in ``account`` closed (strategy, return), for
        Kelly sizing: recorded before any signal of this bar is sized, as in a backtest."""
        t0 = time.perf_counter()
        account, as_of_ns, held, done, partial, closed = msg.account, msg.as_of_ns, msg.held, msg.done, \
            msg.partial, msg.closed
        if closed:
            self.signal_path.on_closed_trades(closed)
        # Drawdown and daily-loss triggers watch every account update, not only those with a signal.
        self.monitor.on_equity(as_of_ns, float(account.equity))
        if self.allocation is not None:  # a rebalance due at this bar time applies to its signals
            self._allocate(account, as_of_ns, held)
        self._dispatch(self.signal_path.on_account(account, as_of_ns, held, done, partial))
        self.busy.record("account", time.perf_counter() - t0)

    @locked
    def on_feed_status(self, msg: FeedStatus) -> None:
        """A feed's heartbeat (wall clock): staleness is a kill-switch trigger (``kill_switch.stale_data_s``)."""
        now = time.time_ns()
        alert = self.stale.on_status(msg.venue, msg.last_update_ns, msg.done, msg.stale, now)
        if msg.done:
            self.monitor.forget_feed(msg.venue)
            return
        self.monitor.on_data(msg.venue, msg.last_update_ns)
        if alert is not None:
            self._alert("stale_data", alert)
        self.monitor.check_stale(now)
        self._apply_effects()

    @locked
    def on_strategy_disabled(self, strategy_id: str, error: str) -> None:
        """A strategy that disabled itself after repeated errors: audited and alerted."""
        if self.stores is not None:
            self.stores.journal.append("strategy", {"strategy_id": strategy_id, "enabled": False,
                                                    "reason": f"consecutive errors: {error}"}, time.time_ns())
        self._alert("strategy_disabled", f"{strategy_id}: {error}")

    @ray.method(concurrency_group=CONTROL)
    @locked
    def on_strategy_toggled(self, strategy_id: str, enabled: bool, reason: str) -> None:
        """An operator enabled or disabled a strategy: audited like every other control."""
        if self.stores is not None:
            self.stores.journal.append("strategy", {"strategy_id": strategy_id, "enabled": enabled,
                                                    "reason": reason}, time.time_ns())
        self._alert("strategy", f"{strategy_id} {'enabled' if enabled else 'disabled'} ({reason})")

    @locked
    def submit_external(self, strategy_id: str, signal: Any, price: float) -> dict[str, Any]:
        """A signal from outside (manual order over HTTP, an external system): same gateway, rules and records.

        It is stamped with the account's current bar time, so it is evaluated now (no lockstep watermark is
        touched); the answer says what became of it: orders submitted, a rejection with reasons, or nothing.
        """
        p = PendingSignal(strategy_id, max(self.signal_path.as_of_ns, 0), float(price), signal)
        out = self.signal_path.on_external([p])
        self._dispatch(out)
        sid = signal.signal_id

        def mine(s: str, signal_id: str) -> bool:
            return s == strategy_id and signal_id == sid

        return {
            "evaluated": any(mine(x.strategy_id, x.signal.signal_id) for x in out.signals),
            "advisory": self.signal_path.advisory,
            "decisions": [d.to_dict() for d in out.decisions if mine(d.intent.strategy_id, d.intent.signal_id)],
            "rejected": [reason for s, o, reason in out.rejected if mine(s, o.signal_id)],
            "orders": [o.client_order_id for o, _ in out.submits if mine(o.strategy_id, o.signal_id)],
        }

    # ------------------------------------------------------------------------------ allocation

    def _init_allocation(self, allocation: Any, plan: dict[str, Any] | None) -> None:
        """The ``allocation:`` block: weights of the config's strategies, restored after a restart."""
        self.allocation: AccountAllocation | None = None
        self.allocation_history: list[dict[str, Any]] = []
        if plan is None:
            return
        base = dict(allocation) if isinstance(allocation, dict) else {}
        self.allocation = AccountAllocation(AllocationConfig.model_validate(plan), base)
        if self.stores is not None:
            saved = self.stores.state.get("allocation")
            if saved:  # weights moved by a rebalance stay moved; the return samples start afresh
                self.allocation.allocator.restore(saved)
        self.signal_path.allocation.update(self.allocation.allocation)

    def _allocate(self, account: Any, as_of_ns: int, held: dict[tuple[str, str], float] | None) -> None:
        """Feed the allocator; a rebalance that moves weights is journaled and persisted before it applies."""
        assert self.allocation is not None
        change = self.allocation.on_account_state(account, as_of_ns, held, self.signal_path.allocation)
        if change is None:
            return
        record = change.to_dict()
        if self.stores is not None:  # before the first signal sized on it is evaluated
            self.stores.journal.append("allocation", record, as_of_ns)
            self.stores.state.set("allocation", self.allocation.allocator.state())
        self.allocation_history.append({"time": iso(as_of_ns), **record})
        del self.allocation_history[:-100]
        moves = ", ".join(f"{s} {change.previous[s]:.4f} -> {w:.4f}" for s, w in change.weights.items())
        self._alert("allocation", f"{change.method} rebalance: {moves}")

    @ray.method(concurrency_group=CONTROL)
    @locked
    def allocation_status(self) -> dict[str, Any]:
        """Weights, the sizing share each strategy gets (its multiplier times its weight), the schedule
        and the recent rebalances; without an ``allocation:`` block, each strategy's own share."""
        shares = {k: v for k, v in self.signal_path.allocation.items() if k != "*"}
        if self.allocation is None:
            return {"method": None, "weights": {}, "allocation": shares, "history": []}
        st = self.allocation.state()
        for key in ("next_due_ns", "last_rebalance_ns"):
            st[key.removesuffix("_ns")] = iso(st.pop(key)) if st.get(key) is not None else None
        return {**st, "allocation": shares, "history": self.allocation_history[-20:]}

    def _kill_veto(self, p: PendingSignal) -> str | None:
        """SOFT lets only exits through; HARD and FREEZE let nothing through (the flatten goes via the router)."""
        state = self.switch.state
        if state is KillSwitchState.RUNNING:
            return None
        if state is KillSwitchState.SOFT:
            return None if p.signal.action.value == "CLOSE" else "KillSwitch: SOFT (no new entries)"
        return f"KillSwitch: {state.value}"

    def _dispatch(self, out: GatewayOutput) -> None:
        """Under the lock, on the message thread: what the gateway decided. Kill-switch effects act now
        (the switch journals its own transitions); the signals, decisions and the commands they lead to
        go to the journal writer (``mmats.engine.group_commit``), which commits them off this thread and
        only then releases the commands and the rejections, in decision order."""
        # Each signal's and decision's payload is built once: for the chain, the tables and the live views.
        views = [(p, signal_view(p.strategy_id, p.signal, p.price)) for p in out.signals]
        decided = [(d, d.to_dict()) for d in out.decisions]
        self._apply_effects()
        self._counters_dirty = True
        batch = _Decided(out, views, decided, self._lockstep_ack(), time.time_ns())
        if self.journal_writer is None or (not views and not decided and self.journal_writer.idle()):
            self._release(batch)  # nothing to write and nothing ahead of it
        else:
            self.journal_writer.submit(batch)

    def _commit_decided(self, batches: list[_Decided]) -> None:
        """The writer thread: the batches' signals and decisions, chain and tables, in one commit."""
        assert self.stores is not None  # the writer exists only when the system persists
        items: list[tuple[str, dict[str, Any], int]] = []
        st = self.stores.storage
        rows: dict[str, list[Any]] = {"signals": [], "risk_decisions": []}
        for b in batches:
            items += [("signal", v, p.ts_ns) for p, v in b.views]
            items += [("risk_decision", dd, d.intent.ts_ns) for d, dd in b.decided]
            rows["signals"] += [st.signal_row(self._signal_of(p), p.ts_ns) for p, _ in b.views]
            rows["risk_decisions"] += [st.decision_row(d, d.intent.ts_ns, dd) for d, dd in b.decided]
        if items:
            t0 = time.perf_counter()
            self.stores.journal.append_many(items, rows)
            self.busy.record("journal", time.perf_counter() - t0)

    def _release_committed(self, batches: list[_Decided]) -> None:
        with self._lock:
            for b in batches:
                self._release(b)

    def _journal_failed(self, batches: list[_Decided], error: Exception) -> None:
        """Not on record, so nothing of these batches may act: their submits are refused to their
        strategies; cancels and the lockstep acknowledgement still go (they take no new risk)."""
        with self._lock:
            orders = [o for b in batches for o, _ in b.out.submits]
            self._alert("journal", f"journal write failed, {len(orders)} orders not sent: {error}")
            self._reject_submits(orders, f"not journaled: {error}", None)
            for b in batches:
                self._release(dataclasses.replace(b, views=[], decided=[],
                                                  out=dataclasses.replace(b.out, submits=[], rejected=[])))

    def _release(self, b: _Decided) -> None:
        """Under the lock, once ``b`` is on record: the live views, the rejections to their strategies
        and the commands to the router. Submits decided before a kill switch escalation that came while
        they were being written never go."""
        out = b.out
        self.signals += [{"time": iso(p.ts_ns), **v} for p, v in b.views]
        self.decisions += [{"time": iso(d.intent.ts_ns), **dd} for d, dd in b.decided]
        self._tell_strategies([(order, reason) for _, order, reason in out.rejected])
        submits = out.submits
        if submits and self._halt_ns > b.decided_ns:
            self._reject_submits([o for o, _ in submits],
                                 f"decided before the kill switch engaged ({self.switch.state.value})", "kill_switch")
            submits = []
        if not (out.cancels or submits or b.ack is not None):
            self._send_commands()  # what queued while the router was busy and the lock was held
            return
        cmd = self._commands
        if not cmd["cancels"] and not cmd["submits"]:
            cmd["decided_ns"] = b.decided_ns  # the batch's oldest decision
        cmd["cancels"] += out.cancels
        cmd["submits"] += submits
        # decided and journaled: the latency benchmark's hop times
        self.decided_wall.stamp(order.client_order_id for order, _ in submits)
        ts = max((o.created_ns for o, _ in submits), default=self.signal_path.as_of_ns)
        cmd["ts"] = max(cmd["ts"], ts)
        if b.ack is not None:
            cmd["ack"] = b.ack if cmd["ack"] is None else max(b.ack, cmd["ack"])
        self._send_commands()

    @staticmethod
    def _signal_of(p: PendingSignal) -> Any:
        """The signal as recorded: stamped with the strategy that sent it, the id the gateway uses and the
        bar price it was decided at (``metadata.bar_price``)."""
        sig = p.signal
        return dataclasses.replace(sig, strategy_id=p.strategy_id, signal_id=sig.signal_id or str(p.ts_ns),
                                   metadata={**sig.metadata, "bar_price": p.price})

    def _counters_loop(self) -> None:
        """Risk counters to the state store once a second when they changed, off the message path (a
        write costs a round trip; losing at most the last second of throttle history on a crash is the
        accepted bound, docs/persistence.md). This thread may wait for the lock: nothing waits for it."""
        while True:
            time.sleep(COUNTERS_EVERY_S)
            if not self._counters_dirty:
                continue
            with self._lock:  # a consistent copy under the lock (microseconds) ...
                self._counters_dirty = False
                counters = self.risk.counters()
            assert self.stores is not None  # the thread runs only when the system persists
            self.stores.state.set("risk_counters", counters)  # ... the write outside it

    def _send_commands(self) -> None:
        """At most one ``apply_commands`` in flight (the feed's policy, one hop later): what is decided
        while the router works goes out together as soon as it answers, so the router's mailbox never
        holds a backlog of one-transaction-each batches. Cancels of a batch go before its submits."""
        cmd = self._commands
        if self._cmd_inflight or not (cmd["cancels"] or cmd["submits"] or cmd["ack"] is not None):
            return
        self._commands = self._empty_commands()
        self._cmd_inflight = True
        after, self._refusals_told = self._refusals_told, None
        ref = self.router.apply_commands.remote(OrderCommands(cmd["cancels"], cmd["submits"], cmd["ts"], cmd["ack"],
                                                              cmd["decided_ns"]), after=after)
        ref.future().add_done_callback(self._commands_done)

    def _commands_done(self, _: Any) -> None:
        """Runs on the Ray thread that delivers results, so it must never wait for the lock: a control
        call holding it while it waits for the router's answer (HARD -> flatten_all) would wait for
        this very thread. ``AnswerRelay`` sends what is queued at once, or when the lock frees."""
        self._cmd_inflight = False
        self._cmd_relay.answered()

    @staticmethod
    def _empty_commands() -> dict[str, Any]:
        return {"cancels": [], "submits": [], "ts": 0, "ack": None, "decided_ns": None}

    def _drop_queued_submits(self, state: KillSwitchState) -> None:
        """An escalation: submits decided but not yet sent never go (cancels still do)."""
        submits, self._commands["submits"] = self._commands["submits"], []
        self._reject_submits([order for order, _ in submits],
                             f"decided before the kill switch engaged ({state.value})", "kill_switch")

    def _reject_submits(self, orders: list[Any], reason: str, alert: str | None) -> None:
        """Orders decided that will not be sent: the gateway forgets them, each strategy hears why, and
        an ``alert`` of that kind (if any) says how many."""
        if not orders:
            return
        self.signal_path.abandon([order.client_order_id for order in orders])
        self._tell_strategies([(order, reason) for order in orders])
        if alert is not None:
            self._alert(alert, f"{len(orders)} decided orders not sent: {reason}")

    def _tell_strategies(self, rejected: list[tuple[Any, str]]) -> None:
        """Rejected orders with the reason, in one message: the portfolio tells each strategy, so a
        strategy hears about its orders from one sender."""
        if rejected and self.portfolio is not None:
            # In a lockstep replay the next bar waits for them (a backtest tells the strategy before
            # its next bar): the acknowledgement goes out only once the portfolio has delivered them.
            ref = self.portfolio.on_rejections.remote(rejected, self.lockstep)
            if self.lockstep:
                self._refusals_told = ref

    def _lockstep_ack(self) -> int | None:
        """The bar time every strategy has reported and the account has reached: safe to move on."""
        if not self.lockstep:
            return None
        done = min([self.signal_path.as_of_ns, *self.reported.values()])
        if done > self._acked and self.signal_path.waiting == 0:
            self._acked = done
            return done
        return None

    # ----------------------------------------------------------------------------------- controls

    @ray.method(concurrency_group=CONTROL)
    def set_kill_switch(self, state: str, reason: str, trigger: str = "manual") -> dict[str, Any]:
        """Escalate, or reset with RUNNING (or any lower state); journaled and persisted before it acts.

        The answer carries where the time went (``ms``: waiting for the message thread's lock, the
        journaled and persisted transition, the router's part): the HARD-to-flat figure is a target."""
        state = state.upper()
        if state not in KILL_STATES:
            raise ValueError(f"kill switch state must be one of {', '.join(KILL_STATES)}, got {state!r}")
        if not reason.strip():
            raise ValueError("a kill switch change needs a reason")
        target = KillSwitchState(state)
        t0 = time.perf_counter()
        with self._lock:
            t1 = time.perf_counter()
            now = time.time_ns()
            if target.rank < self.switch.state.rank:
                self.switch.reset(reason.strip(), now, target)
            else:
                self.switch.engage(target, KillTrigger(trigger), reason.strip(), now)
            self._effects.clear()  # a manual change acts now and reports what it did
            result: dict[str, Any] = {"kill_switch": self._kill_dict()}
            t2 = time.perf_counter()
            if target is KillSwitchState.HARD:
                result["flatten"] = ray.get(self.router.flatten_all.remote(f"kill_{trigger}", self._halt_ns))
            elif target is KillSwitchState.FREEZE:
                result["canceled"] = ray.get(self.router.cancel_all.remote(self._halt_ns))
            elif target is KillSwitchState.SOFT:
                ray.get(self.router.halt_before.remote(self._halt_ns))
            t3 = time.perf_counter()
            self._send_commands()  # cancels queued while this call held the lock
        result["ms"] = {"lock_wait": round((t1 - t0) * 1000, 3), "transition": round((t2 - t1) * 1000, 3),
                        "router": round((t3 - t2) * 1000, 3)}
        return result

    def _on_transition(self, t: KillSwitchTransition) -> None:
        """Every transition (manual or triggered): persist it, alert, and queue its effect on the router."""
        if self.stores is not None:
            self.stores.state.set("kill_switch", self.switch.to_dict())
        self._counters_dirty = True  # a reset re-bases the references: stored within a second
        self.kill_history.append({**t.to_dict(), "since": t.ts_ns / 1e9})
        self._alert("kill_switch", f"{t.previous.value} -> {t.state.value} ({t.trigger.value}: {t.reason})")
        if t.state.rank > t.previous.rank:
            self._halt_ns = time.time_ns()
            self._drop_queued_submits(t.state)
            self._effects.append(t)

    def _apply_effects(self) -> None:
        """A triggered HARD flattens, a triggered FREEZE cancels, a SOFT stops queued entries: one-way
        calls, the router orders them."""
        while self._effects:
            t = self._effects.pop(0)
            if t.state is KillSwitchState.HARD:
                self.router.flatten_all.remote(f"kill_{t.trigger.value}", self._halt_ns)
            elif t.state is KillSwitchState.FREEZE:
                self.router.cancel_all.remote(self._halt_ns)
            else:
                self.router.halt_before.remote(self._halt_ns)

    def _kill_dict(self) -> dict[str, Any]:
        ks = self.switch
        return {"state": ks.state.value, "trigger": ks.trigger.value, "reason": ks.reason,
                "since": ks.since_ns / 1e9 if ks.since_ns else None}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def kill_switch(self) -> dict[str, Any]:
        return {**self._kill_dict(), "history": self.kill_history.last(20)}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def request_operator(self) -> dict[str, Any]:
        return self.operator.request()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def confirm_operator(self, token: str) -> dict[str, Any]:
        self._set_mode(self.operator.confirm(token))
        return self.mode()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def set_advisory(self, reason: str) -> dict[str, Any]:
        self._set_mode(self.operator.to_advisory(reason))
        return self.mode()

    def _set_mode(self, change: ModeChange) -> None:
        if self.stores is not None:  # audited and persisted before it takes effect
            self.stores.journal.append("mode", {"previous": change.previous, "mode": change.mode,
                                                "reason": change.reason}, time.time_ns())
            self.stores.state.set("mode", change.mode)
        self.signal_path.advisory = self.operator.advisory
        self._alert("mode", f"{change.previous} -> {change.mode} ({change.reason})")

    @ray.method(concurrency_group=CONTROL)
    @locked
    def mode(self) -> dict[str, Any]:
        return {"mode": self.operator.mode, "allow_operator": self.allow_operator}

    @locked
    def on_router_error(self, error: str) -> None:
        """Repeated router errors downgrade operator to advisory automatically; each one counts toward the
        kill switch's ``max_consecutive_errors`` trigger."""
        downgrade = self.router_errors.on_error()
        self._alert("router_error", error)
        self.monitor.on_error(time.time_ns(), error)
        if downgrade and not self.operator.advisory:
            self.set_advisory(f"{self.router_errors.count} router errors")
        self._apply_effects()

    @locked
    def on_venue_alert(self, message: str) -> None:
        """A live venue's reconciliation difference, failed cancel or flatten: shown with the other alerts
        (the router has already journaled it). Not a router error: one venue must not downgrade the rest."""
        self._alert("venue", message)

    @locked
    def on_router_ok(self) -> None:
        self.router_errors.on_ok()
        self.monitor.on_success()

    def _alert(self, kind: str, message: str) -> None:
        self.alerts.append({"time": time.time(), "kind": kind, "message": message})

    # ------------------------------------------------------------------------------------- reads

    @ray.method(concurrency_group=CONTROL)
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every decision taken so far is journaled and released (a graceful stop, a read
        that must see them); False when the journal writer did not finish within ``timeout_s``."""
        return self.journal_writer is None or self.journal_writer.drain(timeout_s)

    def _settle(self) -> None:
        """Before a read of the records: what the message thread decided is on record first (bounded)."""
        if self.journal_writer is not None:
            self.journal_writer.drain(READ_SETTLE_S)

    @ray.method(concurrency_group=CONTROL)
    def get_signals(self, limit: int = 0) -> list[dict[str, Any]]:
        self._settle()
        with self._lock:
            return self.signals.last(limit)

    @ray.method(concurrency_group=CONTROL)
    def get_decisions(self, limit: int = 0) -> list[dict[str, Any]]:
        self._settle()
        with self._lock:
            return self.decisions.last(limit)

    @ray.method(concurrency_group=CONTROL)
    def signal_records(self, full: bool = False) -> list[dict[str, Any]]:
        """Signals with their risk decision (status and reasons), oldest first.

        ``full`` (an export): every signal ever recorded, from the SQL tables when the system persists
        (they survive restarts of this actor and of the cluster), read without the actor's lock so the
        message path never waits for it. Otherwise the recent window kept in memory (reloaded from the
        tables after a restart), which is what the dashboard polls."""
        self._settle()
        if full and self.stores is not None:
            return signal_export_rows(self.stores.storage)
        with self._lock:
            return self._recent_signal_records()

    def _recent_signal_records(self) -> list[dict[str, Any]]:
        by_key = {(d.get("strategy_id", ""), d.get("symbol", ""), d.get("time", "")): d for d in self.decisions}
        return [with_decision(s, by_key.get((s["strategy_id"], s["symbol"], s["time"]))) for s in self.signals]

    @ray.method(concurrency_group=CONTROL)
    @locked
    def get_alerts(self) -> list[dict[str, Any]]:
        return self.alerts.last()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def hop_times(self) -> dict[str, Any]:
        """Wall times (s) of the recent signals' arrival, per (strategy, bar time), and of each order's
        decision, per client order id: ``bench/live_pipeline.py`` splits tick-to-fill by hop with them.
        ``busy``: the message thread's time per kind of message since the start (its journal commits apart)."""
        return {"signal_arrived": self.signal_wall.snapshot(), "decided": self.decided_wall.snapshot(),
                "busy": self.busy.to_dict()}

    @ray.method(concurrency_group=CONTROL)
    def stats(self) -> dict[str, Any]:
        self._settle()
        writer = self.journal_writer
        with self._lock:
            return {"journal_batches_per_commit": round(writer.batches_per_commit, 2) if writer else None,
                    **self.signal_path.state(), "kill_switch": self.switch.state.value,
                    "signals": len(self.signals), "decisions": len(self.decisions), "strategies": len(self.strategies),
                    "router_errors": self.router_errors.count, "stale_feeds": sorted(self.stale.stale)}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def risk_counters(self) -> dict[str, Any]:
        """Throttle windows, order rate and loss references, as the state store keeps them."""
        return self.risk.counters()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def risk_status(self) -> dict[str, Any]:
        """The kernel gatekeeper's view: environment, profile, kill switch, equity references."""
        return self.risk.status()

    @ray.method(concurrency_group=CONTROL)
    @locked
    def risk_inputs(self) -> dict[str, Any]:
        """What the bars and closed trades fed so far: returns per symbol, ATRs, Kelly records."""
        return {**self.risk.inputs.status(), "bars_as_of": self.signal_path.bars_as_of_ns}

    @ray.method(concurrency_group=CONTROL)
    @locked
    def risk_utilization(self) -> dict[str, Any]:
        """The kernel's utilisation of every limit, for the account the portfolio last pushed here (the
        one the rules judge the next signal against; at most a fraction of a second old)."""
        return self.risk.utilization(self.signal_path.account).to_dict()

    def ping(self) -> str:
        return "ok"
