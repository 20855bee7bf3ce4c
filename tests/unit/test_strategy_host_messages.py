"""Strategy hosts: the portfolio tells each about its strategies' orders in one message, and each stamps
when it processed a bar time (the bar-processing latency of bench/many_strategies.py)."""

from __future__ import annotations

from typing import Any

from actors.portfolio import _send_outcomes
from mmats.messages import OrderOutcomes


class _Method:
    def __init__(self, calls: list[tuple[str, Any]], name: str) -> None:
        self.calls, self.name = calls, name

    def remote(self, msgs: list[OrderOutcomes]) -> str:
        self.calls.append((self.name, msgs))
        return f"ref-{self.name}"


class _Host:
    """Stands in for a Ray actor handle: hashable, with ``on_orders.remote``."""

    def __init__(self, calls: list[tuple[str, Any]], name: str) -> None:
        self.on_orders = _Method(calls, name)


def test_a_pool_gets_one_message_for_all_its_members_and_a_lone_strategy_its_own() -> None:
    calls: list[tuple[str, Any]] = []
    pool, alone = _Host(calls, "pool"), _Host(calls, "alone")
    account = object()
    refs = _send_outcomes([(pool, OrderOutcomes("a", account=account)), (alone, OrderOutcomes("c", account=account)),
                           (pool, OrderOutcomes("b", account=account))])
    assert refs == ["ref-pool", "ref-alone"]
    assert [(name, [m.strategy_id for m in msgs]) for name, msgs in calls] == [("pool", ["a", "b"]), ("alone", ["c"])]
    assert _send_outcomes([]) == []
