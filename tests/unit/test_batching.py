"""The adaptive batching policy every stream hop of the live path uses (mmats.engine.batching)."""

from __future__ import annotations

import pytest

from mmats.engine.batching import AdaptiveBatcher, AnswerRelay


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_an_idle_receiver_is_sent_to_at_once_with_no_timer() -> None:
    clock = FakeClock()
    b: AdaptiveBatcher[str] = AdaptiveBatcher(clock=clock)
    assert b.take() is None  # nothing pending: no message
    b.add(["bar1"])
    assert b.wait_s() == 0.0  # nothing waits for the clock
    assert b.take() == ["bar1"]  # same instant: no interval, no timer
    b.answered()
    clock.t += 0.000_001
    b.add(["bar2"])
    assert b.take() == ["bar2"]  # answered: the next item also goes at once


def test_a_busy_receiver_gets_one_coalesced_message_when_its_answer_arrives() -> None:
    clock = FakeClock()
    b: AdaptiveBatcher[int] = AdaptiveBatcher(clock=clock)
    b.add([1])
    assert b.take() == [1]
    for i in range(2, 7):  # five items arrive while the first message is in flight
        clock.t += 0.01
        b.add([i])
        assert b.take() is None
        assert b.wait_s() is None  # the answer releases the next message, not time
    clock.t += 10.0  # however long the receiver takes, nothing is sent before its answer
    assert b.take() is None
    b.answered()
    assert b.take() == [2, 3, 4, 5, 6]  # one message, order kept, nothing dropped
    assert b.messages == 2 and b.items_sent == 6 and b.items_per_message == 3.0
    assert b.take() is None  # and nothing more until something new arrives


def test_the_rate_cap_when_configured_holds_the_next_message_for_the_interval() -> None:
    clock = FakeClock()
    b: AdaptiveBatcher[int] = AdaptiveBatcher(min_interval_s=0.05, clock=clock)
    b.add([1])
    assert b.take() == [1]  # the first message is not delayed
    b.answered()
    clock.t += 0.01
    b.add([2])
    assert b.take() is None  # answered, but the cap holds it
    assert b.wait_s() == pytest.approx(0.04)
    clock.t += 0.02
    b.add([3])
    assert b.take() is None
    clock.t += 0.02
    assert b.take() == [2, 3]  # one message once the interval passed
    b.answered()
    clock.t += 1.0
    b.add([4])
    assert b.take() == [4]  # a quiet receiver past the interval is sent to at once


def test_a_watermark_goes_out_in_an_empty_message() -> None:
    b: AdaptiveBatcher[int] = AdaptiveBatcher(clock=FakeClock())
    b.touch()
    assert b.take() == []
    assert b.in_flight
    b.touch()
    assert b.take() is None
    b.answered()
    assert b.take() == []


def test_force_sends_despite_a_message_in_flight() -> None:
    b: AdaptiveBatcher[int] = AdaptiveBatcher(clock=FakeClock())
    b.add([1])
    b.take()
    b.add([2])
    assert b.take(force=True) == [2]
    assert b.take(force=True) is None  # nothing pending: nothing to force


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="min_interval_s"):
        AdaptiveBatcher(min_interval_s=-1.0)


def test_an_answer_while_the_lock_is_held_is_sent_as_soon_as_the_holder_releases_it() -> None:
    """The answer's thread never waits for the lock; what it could not send goes when the lock frees,
    not when the next message happens to arrive."""
    import threading

    lock = threading.RLock()
    b: AdaptiveBatcher[int] = AdaptiveBatcher()
    sent: list[list[int]] = []
    done = threading.Event()

    def send() -> None:
        batch = b.take()
        if batch is not None:
            sent.append(batch)
            done.set()

    relay = AnswerRelay(lock, send, "test-relay")
    b.add([1])
    send()
    done.clear()
    b.add([2, 3])  # arrives while [1] is in flight
    with lock:  # a control call holds the lock when the answer comes (on another thread)
        b.answered()
        answer = threading.Thread(target=relay.answered)
        answer.start()
        answer.join(2.0)
        assert not answer.is_alive()  # it returned without waiting for the lock
        assert sent == [[1]]
    assert done.wait(2.0)
    assert sent == [[1], [2, 3]]
    b.answered()
    b.add([4])
    done.clear()
    relay.answered()  # a free lock: sent on the answer's own thread, at once
    assert sent == [[1], [2, 3], [4]]
