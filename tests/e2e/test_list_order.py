"""Order lists follow creation time, not the router's acceptance order (no Ray needed).

Each symbol has its own bar clock, so the router can accept an order stamped 07:40 after one stamped
07:41; CI once caught a page that showed them in acceptance order.
"""

from __future__ import annotations

import pytest

import serve_app

pytestmark = [pytest.mark.e2e]


def test_newest_first_sorts_on_created_and_keeps_ties_newest_accepted_first() -> None:
    accepted = [{"id": "a", "created": "2024-01-01T07:41:00Z"},
                {"id": "b", "created": "2024-01-01T07:40:00Z"},
                {"id": "c", "created": "2024-01-01T07:43:00+00:00"},
                {"id": "d", "created": "2024-01-01T07:43:00Z"},
                {"id": "e", "created": None}]
    assert [o["id"] for o in serve_app.newest_first(accepted)] == ["d", "c", "a", "b", "e"]
    assert [o["id"] for o in accepted] == ["a", "b", "c", "d", "e"], "the caller's list is left alone"
