"""Signals from a strategy host (one strategy's actor or a pool) to the gatekeeper, adaptively batched.

One message in flight: when the gatekeeper has answered, what arrived meanwhile goes as one message
(``mmats.engine.batching``), so a busy gatekeeper gets fewer, larger batches and an idle one gets every
batch at once. The answer arrives on the thread Ray delivers results on, which must never wait for a
lock; ``AnswerRelay`` sends from its own thread when the message thread holds it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from mmats.engine.batching import AdaptiveBatcher, AnswerRelay
from mmats.engine.signal_path import PendingSignal
from mmats.messages import SignalBatch


class SignalSender:
    def __init__(self, gatekeeper: Any, reporters: Callable[[], tuple[str, ...]]) -> None:
        """``reporters``: the strategies each message reports for (every one the host ran the bars through)."""
        self.gatekeeper = gatekeeper
        self._reporters = reporters
        self._batcher: AdaptiveBatcher[PendingSignal] = AdaptiveBatcher()
        self._upto_ts = -1
        self._ref: Any = None
        self._lock = threading.Lock()  # the message thread and the one that delivers the gatekeeper's answers
        self._relay = AnswerRelay(self._lock, self._send, "signals-relay")

    def send(self, signals: list[PendingSignal], upto_ts: int) -> None:
        """The signals of a batch of bars up to ``upto_ts`` (none: a report that the bars were processed)."""
        with self._lock:
            self._batcher.add(signals)
            self._batcher.touch()
            self._upto_ts = max(self._upto_ts, upto_ts)
            self._send()

    def drain(self, timeout_s: float = 30.0) -> None:
        """Return once every signal sent has been answered: before a hot replace stops this process."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                self._send()
                ref = self._ref
                if not self._batcher.in_flight and not self._batcher.dirty:
                    return
            if ref is not None:
                ray.wait([ref], timeout=max(0.0, deadline - time.monotonic()))
            time.sleep(0.001)  # the answer's callback sends what is pending

    def _send(self) -> None:
        """Under the lock: what is pending, if the gatekeeper answered the previous message."""
        items = self._batcher.take()
        if items is None:
            return
        ref = self.gatekeeper.on_signals.remote(SignalBatch(self._reporters(), self._upto_ts, items))
        self._ref = ref
        ref.future().add_done_callback(self._answered)

    def _answered(self, _: Any) -> None:
        self._batcher.answered()
        self._relay.answered()
