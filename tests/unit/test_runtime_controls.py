"""Gatekeeper logic that runs without Ray: the operator two-step switch, router-error and stale-feed
triggers, and the bounded record windows."""

from __future__ import annotations

import pytest

from mmats.engine.operator_switch import OperatorSwitch
from mmats.engine.triggers import RouterErrorStreak, StaleFeeds
from mmats.engine.windows import RecentKeys, RecordWindow


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _switch(clock: Clock, allow: bool = True, mode: str = "advisory", saved: str | None = None) -> OperatorSwitch:
    tokens = iter([f"tok-{i}" for i in range(1, 10)])
    return OperatorSwitch(mode, allow, saved, ttl_s=60, clock=clock, new_token=lambda: next(tokens))


def test_operator_mode_needs_a_request_then_its_token_before_it_expires() -> None:
    clock = Clock()
    sw = _switch(clock)
    assert sw.advisory
    with pytest.raises(ValueError, match="missing, wrong or expired"):
        sw.confirm("tok-1")  # no request yet
    assert sw.request() == {"token": "tok-1", "expires_in_s": 60}
    with pytest.raises(ValueError, match="missing, wrong or expired"):
        sw.confirm("guess")
    change = sw.confirm("tok-1")
    assert (change.previous, change.mode, sw.advisory) == ("advisory", "operator", False)
    with pytest.raises(ValueError, match="missing, wrong or expired"):
        sw.confirm("tok-1")  # used once


def test_an_expired_or_superseded_token_confirms_nothing() -> None:
    clock = Clock()
    sw = _switch(clock)
    sw.request()
    clock.t += 61
    with pytest.raises(ValueError, match="expired"):
        sw.confirm("tok-1")
    sw.request()
    sw.request()  # a new request voids the previous token
    with pytest.raises(ValueError):
        sw.confirm("tok-2")
    assert sw.confirm("tok-3").mode == "operator"
    assert sw.request()["token"] == "tok-4"
    sw.to_advisory("manual")  # going back voids the pending token too
    with pytest.raises(ValueError):
        sw.confirm("tok-4")
    assert sw.advisory


def test_operator_mode_is_refused_where_the_config_does_not_allow_it() -> None:
    with pytest.raises(ValueError, match="allow_operator"):
        _switch(Clock(), allow=False, mode="operator")
    with pytest.raises(ValueError, match="not allowed"):
        _switch(Clock(), allow=False).request()
    with pytest.raises(ValueError, match="mode must be one of"):
        _switch(Clock(), mode="yolo")


def test_a_saved_downgrade_wins_but_never_grants_operator_mode() -> None:
    assert _switch(Clock(), mode="operator", saved="advisory").advisory
    assert not _switch(Clock(), mode="advisory", saved="operator").advisory
    assert _switch(Clock(), allow=False, saved="operator").advisory


def test_a_streak_of_router_errors_reaches_the_limit_and_a_success_ends_it() -> None:
    streak = RouterErrorStreak(3)
    assert [streak.on_error(), streak.on_error()] == [False, False]
    streak.on_ok()
    assert [streak.on_error(), streak.on_error(), streak.on_error()] == [False, False, True]
    assert streak.count == 3
    with pytest.raises(ValueError, match="router_error_limit"):
        RouterErrorStreak(0)


def test_a_stale_feed_alerts_once_until_it_is_fresh_again_and_a_finished_one_never() -> None:
    feeds = StaleFeeds()
    now = 100 * 10**9
    assert feeds.on_status("binance", now - 40 * 10**9, done=False, stale=True, now_ns=now) == \
        "feed binance: no update for 40 s"
    assert feeds.on_status("binance", now - 41 * 10**9, done=False, stale=True, now_ns=now) is None
    assert feeds.stale == {"binance"}
    assert feeds.on_status("binance", now, done=False, stale=False, now_ns=now) is None
    assert feeds.stale == set()
    assert feeds.on_status("binance", now - 50 * 10**9, done=False, stale=True, now_ns=now) is not None
    assert feeds.on_status("binance", now - 50 * 10**9, done=True, stale=True, now_ns=now) is None
    assert feeds.stale == set()


def test_a_record_window_keeps_the_newest_records_within_its_bound() -> None:
    w: RecordWindow[int] = RecordWindow(10, range(25))
    assert w.last() == list(range(15, 25)) and len(w) == 10
    w += range(25, 40)
    assert w.last() == list(range(30, 40))
    assert w.last(3) == [37, 38, 39] and w.last(50) == list(range(30, 40))
    assert len(w._items) <= 12  # the slack bounds the memory, not only the view
    w.append(40)
    assert list(w)[-1] == 40 and len(w) == 10
    with pytest.raises(ValueError):
        RecordWindow(0)


def test_recent_keys_answer_first_time_within_the_window_and_forget_the_oldest() -> None:
    keys = RecentKeys(3, ["signal:a:1"])  # seeded from the stored records after a restart
    assert not keys.claim("signal:a:1")  # decided before the restart: not again
    assert keys.claim("signal:a:2") and not keys.claim("signal:a:2")
    assert keys.claim("signal:b:1") and keys.claim("signal:b:2")
    assert len(keys) == 3
    assert keys.claim("signal:a:1")  # the oldest left the window
    with pytest.raises(ValueError, match="at least 1"):
        RecentKeys(0)
