"""PUT /strategies/{id}/params merges onto the running parameters (issue 14, point 8)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.test_control import System


def test_changing_one_parameter_keeps_the_others_and_reset_starts_from_defaults() -> None:
    system = System()
    running = {"fast": 5, "slow": 20}
    sent: list[dict[str, Any]] = []

    def replace(strategy_id: str, change: dict[str, Any]) -> dict[str, Any]:
        sent.append(change)
        running.clear()
        running.update(change["params"])
        return {"id": strategy_id, "version": 2, "ref": "sma_cross", "params": dict(running)}

    system.supervisor.methods["replace_strategy"] = replace
    system.supervisor.methods["list_strategies"] = lambda: [
        {"id": "s1", "ref": "sma_cross", "params": dict(running), "enabled": True}]
    client = system.client()
    out = asyncio.run(client.set_params("s1", {"fast": 7}))
    assert sent[-1] == {"params": {"fast": 7, "slow": 20}}
    assert out["params"] == {"fast": 7, "slow": 20}
    asyncio.run(client.set_params("s1", {"fast": 3}, reset=True))
    assert sent[-1] == {"params": {"fast": 3}}  # the rest from the strategy's defaults


def test_the_route_passes_reset_through() -> None:
    from control.schemas import ParamsIn

    assert ParamsIn.model_validate({"params": {"fast": 4}}).reset is False
    assert ParamsIn.model_validate({"params": {}, "reset": True}).reset is True
