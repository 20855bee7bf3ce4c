"""Adaptive ("smart") batching: when to send the next message of a stream to one receiver.

One Ray actor call costs the receiver about a millisecond of CPU on a small machine whatever it
carries, so a stream of small messages (bars, signals, order commands, fills, accounts) is cheap only
if the number of messages follows the receiver's speed, not the sender's. The policy:

- nothing in flight to the receiver: send what is pending at once (no timer, no added latency);
- a message in flight: what arrives meanwhile waits, and goes out as ONE message when the answer
  comes. Under light load every item goes out alone and immediately; under heavy load the batches
  grow by themselves, and the receiver's mailbox never holds more than one message of the stream;
- an optional rate cap (``min_interval_s``): at most one message per interval. Off by default; it
  trades latency for fewer messages where a receiver's CPU, not its answer, is what runs out.

The class is pure (no Ray, no threads of its own): the actor calls ``take`` where it could send and
``answered`` from the call's completion callback. ``answered`` only clears a flag, so a completion
callback that must never wait for a lock can call it without one; the next ``take`` (the actor's
flush) sends what accumulated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class AdaptiveBatcher(Generic[T]):
    """The pending items of one stream to one receiver, and whether a message of it is in flight.

    ``dirty`` without items means "the receiver should hear from us even with nothing new": a moved
    watermark (the newest bar time published) that an empty message still carries.
    """

    min_interval_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    pending: list[T] = field(default_factory=list)
    dirty: bool = False
    in_flight: bool = False
    next_send_at: float = float("-inf")
    messages: int = 0
    items_sent: int = 0

    def __post_init__(self) -> None:
        if self.min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {self.min_interval_s}")

    def add(self, items: Iterable[T]) -> None:
        """Items for the receiver; they go out with the next message."""
        before = len(self.pending)
        self.pending.extend(items)
        if len(self.pending) > before:
            self.dirty = True

    def touch(self) -> None:
        """Something the next message carries besides items changed (a watermark): send even if empty."""
        self.dirty = True

    def ready(self, now: float | None = None) -> bool:
        """Whether ``take`` would send now."""
        if self.in_flight or not self.dirty:
            return False
        return self.min_interval_s <= 0 or (self.clock() if now is None else now) >= self.next_send_at

    def take(self, now: float | None = None, force: bool = False) -> list[T] | None:
        """The batch to send now (possibly empty when only ``touch`` was called), or None when a message
        is in flight, nothing changed, or the rate cap holds it. Taking it marks a message in flight.
        ``force`` sends what is pending even with a message in flight (a kill switch's flatten)."""
        t = self.clock() if now is None else now
        if not force and not self.ready(t):
            return None
        if force and not self.dirty:
            return None
        batch, self.pending = self.pending, []
        self.dirty = False
        self.in_flight = True
        if self.min_interval_s > 0:
            self.next_send_at = t + self.min_interval_s
        self.messages += 1
        self.items_sent += len(batch)
        return batch

    def answered(self) -> None:
        """The receiver answered the message in flight (or died): the next ``take`` may send."""
        self.in_flight = False

    def wait_s(self, now: float | None = None) -> float | None:
        """Seconds until the rate cap lets the pending batch go (0: now), or None when nothing waits for
        the clock (nothing pending, or a message in flight: its answer, not time, releases the next)."""
        if self.in_flight or not self.dirty:
            return None
        t = self.clock() if now is None else now
        return max(0.0, self.next_send_at - t) if self.min_interval_s > 0 else 0.0

    @property
    def items_per_message(self) -> float:
        return self.items_sent / self.messages if self.messages else 0.0


class _Lock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


class AnswerRelay:
    """Sends what accumulated while a message was in flight, once its answer arrives, from a thread
    that may wait for the actor's lock.

    The answer arrives on the thread that delivers call results; that thread must never wait for the
    actor's lock (a lock holder may be waiting for a result it has to deliver). ``answered`` therefore
    tries the lock without waiting and sends at once when it is free (the common case); when it is
    busy, this relay's own thread takes the lock as soon as the holder releases it and sends then.
    Without that second path the pending message waited for the next message to arrive at the actor,
    which in a lockstep replay waits for this very one.
    """

    def __init__(self, lock: _Lock, send: Callable[[], None], name: str) -> None:
        self._lock = lock
        self._send = send
        self._wake = threading.Event()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def answered(self) -> None:
        """Call from the answer's callback after marking the batcher answered."""
        if self._lock.acquire(blocking=False):
            try:
                self._send()
            finally:
                self._lock.release()
            return
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._lock.acquire()
            try:
                self._send()
            finally:
                self._lock.release()
