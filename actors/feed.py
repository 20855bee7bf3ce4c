"""FeedActor: one per venue. Replays bars (or, later, relays a live venue) to its subscribers.

Delivery policy (the Ray floor is ~0.5 ms per message, so one message per bar per strategy cannot
keep up): each subscriber has its own pending buffer and at most ONE call in flight. Whatever arrived
while that call was in flight goes out as the next batch: one timestamp's bars under light load, more
under heavy load; nothing skipped and order kept, so a slow strategy only receives bigger batches and
never stalls the feed for the others. If a subscriber's buffer exceeds ``max_pending`` bars it is
coalesced to the latest bar per symbol and the dropped bars are counted (``skipped``), which bounds lag
and memory; ``stats()`` exposes lag and skips per subscriber.

Message rate: the adaptive policy of ``mmats.engine.batching`` (no timer): an idle subscriber gets a bar
at once; a busy one gets everything that arrived meanwhile in one message when it answers. On a
2-core machine one Ray actor call costs the receiver 0.5-1.5 ms of CPU whatever it carries
(``bench/live_pipeline.py`` measures it), so the number of messages follows each subscriber's speed
and the batches grow with load instead of the lag. ``min_send_interval_ms`` adds a rate cap (at most
one message per interval; off by default). The in-flight call is tracked with a completion callback,
not by polling ``ray.wait``.

Pacing: ``max`` (as fast as the per-subscriber in-flight limit allows), ``speed`` (N x real time),
``lockstep`` (the next timestamp goes out only after the order router acknowledged the previous one:
used where paper must reproduce a backtest exactly).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from actors.control import ask_supervisor_to_rewire
from mmats.data import BarArrays
from mmats.engine.actor_settings import FeedSettings
from mmats.engine.batching import AdaptiveBatcher, AnswerRelay
from mmats.engine.topology import Wiring
from mmats.engine.wall_stamps import WallStamps
from mmats.feed_health import LiveFeedHealth
from mmats.messages import BarBatch, FeedStatus

HEARTBEAT_S = 1.0  # how often the gatekeeper hears that this feed is alive (and whether it is stale)

BarTuple = tuple[str, int, float, float, float, float, float]


@dataclass
class _Subscriber:
    handle: Any
    symbols: frozenset[str] | None
    method: str
    out: AdaptiveBatcher[BarTuple] = field(default_factory=AdaptiveBatcher)  # pending bars, call in flight
    sent_bars: int = 0
    sent_msgs: int = 0
    skipped: int = 0
    last_sent_ts: int = 0
    last_ref: Any = None  # the newest call in flight: a handover waits for it before the old one goes


@ray.remote(max_restarts=-1)
class FeedActor:
    def __init__(self, settings: FeedSettings) -> None:
        """Its fixed subscribers and who hears its heartbeat come with the supervisor's ``wire`` (again
        after a restart); strategy hosts attach themselves (``handover``)."""
        cfg = settings
        venue, series, pace, speed, max_pending = cfg.venue, cfg.series, cfg.pace, cfg.speed, cfg.max_pending
        history_len, stale_after_s, lockstep_timeout_s = cfg.history_len, cfg.stale_after_s, cfg.lockstep_timeout_s
        persist, min_send_interval_ms, live = cfg.persist, cfg.min_send_interval_ms, cfg.live
        # No rate cap unless configured: the adaptive policy alone sets the message rate.
        self.min_send_interval_s = (min_send_interval_ms or 0.0) / 1000.0
        self.lockstep_timeout_s = lockstep_timeout_s
        self.lockstep_timeouts = 0
        self.venue = venue
        self.series = series
        self.pace = pace
        self.speed = speed
        self.max_pending = max_pending
        self.stale_after_s = stale_after_s
        self.subs: dict[str, _Subscriber] = {}
        self.live = live  # a live source (``source: ccxt`` in the feed config) instead of a replay
        symbols = list(series) + (list(live["symbols"]) if live else [])
        self.history: dict[str, deque[BarTuple]] = {s: deque(maxlen=history_len) for s in symbols}
        self._lock = threading.RLock()
        self._relay = AnswerRelay(self._lock, self._flush, f"feed-relay-{self.venue}")
        self._acked = -1
        self._ack_cv = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pause = threading.Event()
        self.published = 0
        self.publish_wall: WallStamps[int] = WallStamps(200_000)  # bar time -> wall time it went out (benchmarks)
        self.last_update_wall = time.time()
        self.done = False
        self._timeline = self._build_timeline()
        self._pos = 0
        self._state = None
        self._saved_wall = 0.0
        self.resumed_from = 0
        self.live_source: Any = None
        self.live_last: dict[str, int] = {}  # symbol -> open time (ns) of its newest closed candle seen
        self.live_errors = 0
        self.live_last_error = ""
        self.live_health: LiveFeedHealth | None = None
        if live is not None:
            self._live_connect()  # best effort: strategies built next warm up from this history
        if persist is not None and live is None:
            # A replay resumes where it stopped: replaying old bars would re-create old signals.
            from actors.stores import open_stores

            self._state = open_stores(persist).state
            last = self._state.get(f"feed:{venue}:last_ts") or 0
            while self._pos < len(self._timeline) and self._timeline[self._pos][0] <= last:
                self._pos += 1
            self.resumed_from = self._pos
        self._published_ts = 0
        self.risk_listener: Any = None
        self._fixed: set[str] = set()  # subscribers the topology wires (not the strategy hosts)
        self._heartbeat_wall = 0.0
        ask_supervisor_to_rewire(cfg.peers, f"feed:{venue}")

    def _build_timeline(self) -> list[tuple[int, list[BarTuple]]]:
        """Bars of every symbol merged by timestamp (symbols in a fixed order within a timestamp)."""
        by_ts: dict[int, list[BarTuple]] = {}
        for sym in sorted(self.series):
            a = self.series[sym]
            rows = zip(a.ts_ns.tolist(), a.open.tolist(), a.high.tolist(), a.low.tolist(), a.close.tolist(),
                       a.volume.tolist(), strict=True)
            for ts, o, h, lo, c, v in rows:
                by_ts.setdefault(ts, []).append((sym, ts, o, h, lo, c, v))
        return sorted(by_ts.items())

    # ------------------------------------------------------------------------------ subscriptions

    def subscribe(self, sub_id: str, handle: Any, symbols: list[str] | None, method: str = "on_bars") -> int:
        """Register (or re-register after a restart) a subscriber; returns the bars already published."""
        with self._lock:
            prev = self.subs.get(sub_id)
            sub = _Subscriber(handle, None if symbols is None else frozenset(symbols), method,
                              AdaptiveBatcher(self.min_send_interval_s))
            if prev is not None:
                sub.sent_bars, sub.sent_msgs, sub.skipped = prev.sent_bars, prev.sent_msgs, prev.skipped
            self.subs[sub_id] = sub
            return self.published

    def handover(self, sub_id: str, handle: Any, symbols: list[str], after: dict[str, int],
                 flush_previous: bool) -> tuple[list[BarTuple], list[Any]]:
        """Swap ``sub_id``'s subscriber for ``handle`` between two bars, atomically.

        Returns the bars published after ``after`` (symbol -> time of the last bar the new subscriber has
        already seen; it warms up on them silently) and the previous subscriber's last call in flight.
        With ``flush_previous`` (a hot replace) the bars published but not yet sent to the previous
        subscriber go to it first, so every bar is processed live exactly once: up to the swap by the
        old version, after it by the new one. Without (Ray restarted the same actor) they are dropped,
        since the restarted actor saw them in its history."""
        with self._lock:
            prev = self.subs.get(sub_id)
            wanted = set(symbols)
            delta = sorted((b for sym in wanted for b in self.history.get(sym, ()) if b[1] > after.get(sym, -1)),
                           key=lambda b: (b[1], b[0]))
            waits: list[Any] = []
            if prev is not None and flush_previous:
                # The previous version's last call: its pending bars, and it answers only once the
                # gatekeeper has every signal it sent (StrategyActor.on_bars ``last``).
                batch = prev.out.take(force=True) or []
                prev.last_ref = getattr(prev.handle, prev.method).remote(BarBatch(batch, self._published_ts, True))
                prev.sent_bars += len(batch)
                prev.sent_msgs += 1
            if prev is not None and flush_previous and prev.last_ref is not None:
                waits.append(prev.last_ref)
            sub = _Subscriber(handle, frozenset(symbols), "on_bars", AdaptiveBatcher(self.min_send_interval_s))
            if prev is not None:
                sub.sent_bars, sub.sent_msgs, sub.skipped = prev.sent_bars, prev.sent_msgs, prev.skipped
            sub.last_sent_ts = self._published_ts
            self.subs[sub_id] = sub
            return delta, waits

    def wire(self, wiring: Wiring[Any]) -> None:
        """The topology's fixed subscribers (the router; the gatekeeper when the risk config reads bars)
        and who hears the heartbeat about once a second (staleness is a kill-switch trigger)."""
        for sub_id in self._fixed - set(wiring.subscribers):
            self.unsubscribe(sub_id)
        for sub_id, sub in wiring.subscribers.items():
            self.subscribe(sub_id, sub.handle, None if sub.symbols is None else list(sub.symbols), sub.method)
        self._fixed = set(wiring.subscribers)
        self.risk_listener = wiring.heartbeat

    def _heartbeat(self, force: bool = False) -> None:
        now = time.time()
        if self.risk_listener is None or (not force and now - self._heartbeat_wall < HEARTBEAT_S):
            return
        self._heartbeat_wall = now
        stale = (now - self.last_update_wall) > self.stale_after_s and not self.done
        self.risk_listener.on_feed_status.remote(FeedStatus(self.venue, int(self.last_update_wall * 1e9), self.done,
                                                            stale))

    def unsubscribe(self, sub_id: str) -> None:
        with self._lock:
            self.subs.pop(sub_id, None)

    def get_history(self, symbols: list[str], n: int) -> list[BarTuple]:
        """The last ``n`` bars per symbol, merged in time order: how a restarted strategy warms up."""
        with self._lock:
            out = [b for s in symbols for b in list(self.history.get(s, ()))[-n:]]
        return sorted(out, key=lambda b: (b[1], b[0]))

    # -------------------------------------------------------------------------------------- replay

    def start(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return False
        self._stop.clear()
        self.last_update_wall = time.time()  # silence before the start is not staleness
        run = self._run_live if self.live is not None else self._run
        self._thread = threading.Thread(target=run, name=f"feed-{self.venue}", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        with self._ack_cv:
            self._ack_cv.notify_all()

    def pause(self, paused: bool) -> None:
        if paused:
            self._pause.set()
        else:
            self._pause.clear()

    def ack(self, ts_ns: int) -> None:
        with self._ack_cv:
            self._acked = max(self._acked, ts_ns)
            self._ack_cv.notify_all()

    def _run(self) -> None:
        prev_ts: int | None = None
        t_wall0 = time.perf_counter()
        ts0: int | None = None
        while self._pos < len(self._timeline) and not self._stop.is_set():
            self._heartbeat()
            if self._pause.is_set():
                time.sleep(0.05)
                self._flush()
                continue
            ts, bars = self._timeline[self._pos]
            if self.pace == "speed":
                ts0 = ts if ts0 is None else ts0
                due = t_wall0 + (ts - ts0) / 1e9 / self.speed
                while not self._stop.is_set():
                    delay = due - time.perf_counter()
                    if delay <= 0:
                        break
                    self._flush()
                    self._heartbeat()
                    time.sleep(min(delay, 0.005))
            elif self.pace == "lockstep" and prev_ts is not None:
                # A crashed subscriber never acknowledges: wait at most lockstep_timeout_s, then go on.
                give_up = time.perf_counter() + self.lockstep_timeout_s
                while not self._stop.is_set() and time.perf_counter() < give_up:
                    self._flush()  # a subscriber whose previous call just ended still waits for its batch
                    with self._ack_cv:
                        if self._acked >= prev_ts:
                            break
                        self._ack_cv.wait(timeout=0.001)
                else:
                    self.lockstep_timeouts += 1
            self._publish(bars)
            prev_ts = ts
            self._pos += 1
            if self._state is not None and time.time() - self._saved_wall > 0.5:
                self._save_position(ts)
            if self.pace == "max":
                self._wait_for_room()
        # Drain what is still pending, then report completion.
        deadline = time.time() + 30
        while any(s.out.pending for s in self.subs.values()) and time.time() < deadline and not self._stop.is_set():
            self._flush()
            time.sleep(0.002)
        if prev_ts is not None and self._state is not None:
            self._save_position(prev_ts)
        self.done = True
        self._heartbeat(force=True)  # a finished replay is not a stale feed

    # ---------------------------------------------------------------------------------- live source

    def _live_connect(self) -> bool:
        """Connect to the venue and load the warm-up history (history only: old candles are not published,
        a strategy must not trade on them). A failure is counted and retried at the next poll."""
        from adapters.market_data import open_market_data
        from mmats.model import Timeframe

        assert self.live is not None
        spec = self.live
        tf = Timeframe(spec["timeframe"])
        try:
            source = open_market_data(spec)
            source.subscribe(spec["symbols"], tf)
            warm = {sym: source.latest_bars(sym, tf, max(1, int(spec.get("warmup_bars", 300))))
                    for sym in spec["symbols"]}
        except Exception as exc:  # the venue is down or refuses: reported, retried, never fatal
            self._live_failed(exc)
            return False
        with self._lock:
            for sym, bars in warm.items():
                for b in bars:
                    self.history[sym].append(_tuple(b))
                if bars:
                    self.live_last[sym] = _ns(bars[-1].ts)
            self.live_source = source
            self.last_update_wall = time.time()
        return True

    def _live_failed(self, exc: Exception) -> None:
        self.live_errors += 1
        self.live_last_error = f"{type(exc).__name__}: {exc}"[:500]

    def _run_live(self) -> None:
        """Poll the venue every ``poll_s`` for candles that closed since the last one seen, and publish them
        one timestamp at a time, in time order. The feed counts as updated (not stale) when the venue
        answered and the newest closed candle of any symbol is at most two periods old, or its market is
        closed (a weekend for forex, the night for stocks: no candle is then expected) or reopened less
        than two periods ago."""
        from mmats.model import Timeframe

        assert self.live is not None
        tf = Timeframe(self.live["timeframe"])
        period_ns = tf.seconds * 1_000_000_000
        self.live_health = LiveFeedHealth(period_ns)
        poll_s = float(self.live.get("poll_s", 2.0))
        while not self._stop.is_set():
            self._heartbeat()
            if not self._pause.is_set() and (self.live_source is not None or self._live_connect()):
                try:
                    self._poll_live(tf, period_ns)
                except Exception as exc:  # a bug or an unexpected answer must not end the feed's thread
                    self._live_failed(exc)
            due = time.perf_counter() + poll_s
            while not self._stop.is_set() and time.perf_counter() < due:
                self._flush()
                self._heartbeat()
                time.sleep(0.005)

    def _poll_live(self, tf: Any, period_ns: int) -> None:
        """One poll: every symbol's candles closed since its last one, published in time order."""
        from datetime import UTC, datetime

        assert self.live is not None
        fresh: dict[int, list[BarTuple]] = {}
        answered = True
        for sym in self.live["symbols"]:
            last = self.live_last.get(sym)
            try:
                if last is None:
                    bars = self.live_source.latest_bars(sym, tf, 1)
                else:
                    since = datetime.fromtimestamp((last + period_ns) / 1e9, tz=UTC)
                    bars = self.live_source.bars_since(sym, tf, since)
            except Exception as exc:
                self._live_failed(exc)
                answered = False
                continue
            for b in bars:
                t = _ns(b.ts)
                if last is None or t > last:
                    fresh.setdefault(t, []).append(_tuple(b))
                    self.live_last[sym] = t
        from mmats.errors import DataError

        for message in self.live_source.drain_invalid():  # skipped candles: counted, each once
            self._live_failed(DataError(message))
        for t in sorted(fresh):
            self._publish(sorted(fresh[t]))
        assert self.live_health is not None
        alive = self.live_health.alive(self.live_last, self.live_source.now_ns(), self.live_source.market_open())
        if answered and alive:
            self.last_update_wall = time.time()

    def _save_position(self, ts: int) -> None:
        assert self._state is not None
        self._state.set(f"feed:{self.venue}:last_ts", ts)
        self._saved_wall = time.time()

    def _wait_for_room(self) -> None:
        """Backpressure for ``max`` pace: never let any subscriber's buffer grow past a few batches."""
        while not self._stop.is_set():
            self._flush()
            with self._lock:
                worst = max((len(s.out.pending) for s in self.subs.values()), default=0)
            if worst < 2_000:
                return
            time.sleep(0.0005)

    def _publish(self, bars: list[BarTuple]) -> None:
        with self._lock:
            for b in bars:
                self.history[b[0]].append(b)
            self.published += len(bars)
            if bars:
                self.publish_wall.stamp((bars[-1][1],))
            self._published_ts = bars[-1][1] if bars else self._published_ts
            self.last_update_wall = time.time()
            for sub in self.subs.values():
                if sub.symbols is None:
                    sub.out.add(bars)
                else:
                    sub.out.add(b for b in bars if b[0] in sub.symbols)
                sub.out.touch()  # the watermark moved: a subscriber with none of these bars still hears it
                if len(sub.out.pending) > self.max_pending:
                    self._coalesce(sub)
        self._flush()

    @staticmethod
    def _coalesce(sub: _Subscriber) -> None:
        latest: dict[str, BarTuple] = {}
        for b in sub.out.pending:
            latest[b[0]] = b
        sub.skipped += len(sub.out.pending) - len(latest)
        sub.out.pending = sorted(latest.values(), key=lambda b: (b[1], b[0]))

    def _flush(self) -> None:
        now = time.monotonic()
        with self._lock:
            for sub in self.subs.values():
                self._send(sub, now)

    def _send(self, sub: _Subscriber, now: float) -> None:
        """Under the lock: the subscriber's next message, if the batching policy says it may go now."""
        batch = sub.out.take(now)
        if batch is None:
            return
        ref = getattr(sub.handle, sub.method).remote(BarBatch(batch, self._published_ts))
        sub.last_ref = ref
        ref.future().add_done_callback(lambda _f, s=sub: self._sent(s))
        sub.sent_bars += len(batch)
        sub.sent_msgs += 1
        sub.last_sent_ts = self._published_ts

    def _sent(self, sub: _Subscriber) -> None:
        """Completion callback (the Ray thread that delivers results): the subscriber answered, or died;
        either way it may get more, and what accumulated meanwhile goes now. That thread must never wait
        for the lock: ``AnswerRelay`` sends at once if it is free, else as soon as its holder releases it."""
        sub.out.answered()
        self._relay.answered()

    # ------------------------------------------------------------------------------------- status

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "venue": self.venue,
                "pace": self.pace,
                "lockstep_timeouts": self.lockstep_timeouts,
                "published": self.published,
                "position": self._pos,
                "resumed_from": self.resumed_from,
                "timestamps": len(self._timeline),
                "source": self.live["source"] if self.live is not None else "replay",
                "live_errors": self.live_errors,
                "live_last_error": self.live_last_error,
                "done": self.done,
                "stale": (time.time() - self.last_update_wall) > self.stale_after_s and not self.done,
                "seconds_since_update": round(time.time() - self.last_update_wall, 3),
                "subscribers": {
                    k: {"lag_bars": len(s.out.pending), "sent_bars": s.sent_bars, "messages": s.sent_msgs,
                        "skipped": s.skipped, "bars_per_message": round(s.sent_bars / max(1, s.sent_msgs), 2)}
                    for k, s in self.subs.items()
                },
            }

    def publish_times(self) -> dict[int, float]:
        with self._lock:
            return self.publish_wall.snapshot()

    def last_prices(self) -> dict[str, float]:
        with self._lock:
            return {s: h[-1][5] for s, h in self.history.items() if h}

    def last_ts(self) -> int:
        with self._lock:
            return max((h[-1][1] for h in self.history.values() if h), default=0)

    def ping(self) -> str:
        return "ok"


def _ns(ts: Any) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1_000


def _tuple(bar: Any) -> BarTuple:
    return (bar.symbol, _ns(bar.ts), bar.open, bar.high, bar.low, bar.close, bar.volume)


def arrays_from_bars(bars: list[BarTuple]) -> BarArrays:
    """Rebuild BarArrays from bar tuples (one symbol)."""
    return BarArrays(
        ts_ns=np.array([b[1] for b in bars], dtype=np.int64),
        open=np.array([b[2] for b in bars]),
        high=np.array([b[3] for b in bars]),
        low=np.array([b[4] for b in bars]),
        close=np.array([b[5] for b in bars]),
        volume=np.array([b[6] for b in bars]),
    )
