"""The feed's delivery policy on real actors: a slow subscriber never stalls a fast one."""

from __future__ import annotations

import time

import pytest
import ray

from actors.feed import FeedActor
from mmats.data import generate_bars, to_arrays
from mmats.engine.actor_settings import FeedSettings
from mmats.messages import BarBatch

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


@ray.remote
class Recorder:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.bars: list[tuple[str, int]] = []
        self.messages = 0

    def ready(self) -> bool:
        """Up, with the message types imported (the first message would otherwise pay for the import)."""
        import mmats.messages  # noqa: F401

        return True

    def on_bars(self, msg: BarBatch) -> int:
        time.sleep(self.delay_s)
        self.bars.extend((b[0], b[1]) for b in msg.bars)
        self.messages += 1
        return len(msg.bars)

    def seen(self) -> tuple[list[tuple[str, int]], int]:
        return self.bars, self.messages


def test_slow_subscriber_is_coalesced_while_the_fast_one_gets_every_bar_in_order() -> None:
    series = {s: to_arrays(generate_bars(3000, seed=i)) for i, s in enumerate(["A/USDT", "B/USDT"])}
    feed = FeedActor.remote(FeedSettings("replay", series, "speed", 60 * 1000, max_pending=200))  # 1,000 ts/s
    fast, slow = Recorder.remote(0.0), Recorder.remote(0.5)
    ray.get([feed.subscribe.remote("fast", fast, None), feed.subscribe.remote("slow", slow, ["A/USDT"])])
    ray.get([fast.ready.remote(), slow.ready.remote()])  # a worker still starting up is not "slow"
    ray.get(feed.start.remote())
    deadline = time.time() + 60
    while time.time() < deadline and not ray.get(feed.stats.remote())["done"]:
        time.sleep(0.1)
    stats = ray.get(feed.stats.remote())
    fast_bars, fast_msgs = ray.get(fast.seen.remote())
    slow_bars, slow_msgs = ray.get(slow.seen.remote())
    ray.kill(feed)
    assert stats["done"]
    expected = sorted((s, int(t)) for s, a in series.items() for t in a.ts_ns)
    assert sorted(fast_bars) == expected and len(fast_bars) == 6000  # nothing skipped for the fast one ...
    assert fast_bars == sorted(fast_bars, key=lambda b: (b[1], b[0]))  # ... and in time order
    sub = stats["subscribers"]
    assert sub["fast"]["skipped"] == 0
    assert sub["slow"]["skipped"] > 0  # the slow one was coalesced to the latest bar ...
    assert len(slow_bars) + sub["slow"]["skipped"] == 3000  # ... with every dropped bar counted
    assert slow_bars[-1] == ("A/USDT", int(series["A/USDT"].ts_ns[-1]))  # and it still got the latest
    assert slow_msgs < fast_msgs and sub["slow"]["lag_bars"] == 0


def _messages_at_light_pace(min_send_interval_ms: float | None) -> tuple[int, int]:
    """Two symbols at 20 timestamps/s to one quick subscriber: (messages, bars) it received."""
    series = {s: to_arrays(generate_bars(100, seed=i)) for i, s in enumerate(["A/USDT", "B/USDT"])}
    feed = FeedActor.remote(FeedSettings("replay", series, "speed", 60 * 20,  # 20 timestamps/s
                                         min_send_interval_ms=min_send_interval_ms))
    sub = Recorder.remote(0.0)
    ray.get(feed.subscribe.remote("sub", sub, None))
    ray.get(feed.start.remote())
    deadline = time.time() + 30
    while time.time() < deadline and not ray.get(feed.stats.remote())["done"]:
        time.sleep(0.1)
    stats = ray.get(feed.stats.remote())["subscribers"]["sub"]
    ray.kill(feed)
    ray.kill(sub)
    return stats["messages"], stats["sent_bars"]


def test_an_idle_subscriber_gets_each_bar_at_once_and_the_rate_cap_batches_when_configured() -> None:
    """No timer by default: at a light pace every timestamp goes out in its own message. With
    ``min_send_interval_ms`` the same replay reaches the subscriber in fewer, larger messages."""
    messages, bars = _messages_at_light_pace(None)
    assert bars == 200
    assert messages >= 80  # one message per timestamp (100) but for answers slower than 50 ms on a busy machine
    capped, capped_bars = _messages_at_light_pace(250.0)
    assert capped_bars == 200
    assert capped <= 30  # 5 s of replay at most one message per 250 ms: about 20
