"""Strategies: list with health and P&L, submit (by reference or uploaded file), hot-replace, enable/disable."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi import Path as PathParam

from control.routes.deps import API, READ, WRITE, Client, Limit, Offset, page
from control.schemas import (
    DisableIn,
    Page,
    ParamsIn,
    ParamsOut,
    StrategyIn,
    StrategyOut,
    StrategyReplaceIn,
    StrategyUploadIn,
    ToggleOut,
)

router = APIRouter(prefix=API, tags=["strategies"])
StrategyId = Annotated[str, PathParam(max_length=64)]


def _params(s: dict[str, Any]) -> dict[str, Any]:
    return {"id": s["id"], "ref": s["ref"], "version": s["version"], "params": s["params"]}


@router.get("/strategies", response_model=Page[StrategyOut], dependencies=READ,
            summary="Strategies with health, P&L, win rate")
async def list_strategies(client: Client, offset: Offset = 0, limit: Limit = 100,
                          enabled: bool | None = Query(None, description="filter")) -> dict[str, Any]:
    return page(await client.strategies(enabled), offset, limit)


@router.get("/strategies/{strategy_id}", response_model=StrategyOut, dependencies=READ)
async def get_strategy(client: Client, strategy_id: StrategyId) -> dict[str, Any]:
    return await client.strategy(strategy_id)


@router.post("/strategies", response_model=StrategyOut, status_code=201, dependencies=WRITE,
             summary="Submit a strategy by reference (built-in name, file or module)")
async def submit_strategy(client: Client, body: StrategyIn) -> dict[str, Any]:
    return await client.submit_strategy(body.model_dump())


@router.post("/strategies/upload", response_model=StrategyOut, status_code=201, dependencies=WRITE,
             summary="Submit a strategy from an uploaded Python file")
async def upload_strategy(client: Client, body: StrategyUploadIn) -> dict[str, Any]:
    """The file is checked for syntax and the class (nothing runs in the API process), stored under
    `$MMATS_HOME/strategies/`, then loaded by a new strategy actor. Loading a file executes it: only upload
    code you trust."""
    spec = body.model_dump(exclude={"source", "class_name"})
    return await client.upload_strategy(spec, body.source, body.class_name)


@router.post("/strategies/{strategy_id}/replace", response_model=StrategyOut, dependencies=WRITE,
             summary="Hot-replace with a new version (new ref, params, symbols or file)")
async def replace_strategy(client: Client, strategy_id: StrategyId, body: StrategyReplaceIn) -> dict[str, Any]:
    change = body.model_dump(exclude_none=True, exclude={"source", "class_name"})
    return await client.replace_strategy(strategy_id, change, body.source, body.class_name)


@router.get("/strategies/{strategy_id}/params", response_model=ParamsOut, dependencies=READ)
async def get_params(client: Client, strategy_id: StrategyId) -> dict[str, Any]:
    return _params(await client.strategy(strategy_id))


@router.put("/strategies/{strategy_id}/params", response_model=ParamsOut, dependencies=WRITE,
            summary="Change parameters (merged onto the running ones): a new version replaces the running actor")
async def set_params(client: Client, strategy_id: StrategyId, body: ParamsIn) -> dict[str, Any]:
    return _params(await client.set_params(strategy_id, body.params, reset=body.reset))


@router.post("/strategies/{strategy_id}/enable", response_model=ToggleOut, dependencies=WRITE)
async def enable_strategy(client: Client, strategy_id: StrategyId) -> dict[str, Any]:
    return await client.set_strategy_enabled(strategy_id, True)


@router.post("/strategies/{strategy_id}/disable", response_model=ToggleOut, dependencies=WRITE,
             summary="Disable; optionally close the positions in its symbols")
async def disable_strategy(client: Client, strategy_id: StrategyId,
                           body: Annotated[DisableIn | None, Body()] = None) -> dict[str, Any]:
    """Positions are netted per symbol across strategies: `close_positions` sends a CLOSE signal (through the
    gatekeeper, as this strategy) for each of its symbols that has an open position."""
    body = body or DisableIn()
    return await client.set_strategy_enabled(strategy_id, False, body.close_positions, body.reason)
