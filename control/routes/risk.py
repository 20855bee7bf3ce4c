"""Signals with their risk decisions, limits and their utilisation, alerts, P&L, the equity curve and the
capital allocation between strategies."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from control.routes.deps import API, READ, Client, Limit, Offset, download, page
from control.schemas import (
    AlertOut,
    AllocationOut,
    DecisionOut,
    EquityOut,
    LimitsOut,
    Page,
    PnlOut,
    SignalOut,
    UtilizationOut,
)
from control.views import signals_csv

router = APIRouter(prefix=API, dependencies=READ)


@router.get("/signals", response_model=Page[SignalOut], tags=["signals"],
            summary="Signals with their risk decision, newest first")
async def list_signals(client: Client, offset: Offset = 0, limit: Limit = 100,
                       strategy: Annotated[str | None, Query(max_length=64)] = None,
                       symbol: Annotated[str | None, Query(max_length=40)] = None,
                       action: Literal["BUY", "SELL", "CLOSE", "HOLD"] | None = None) -> dict[str, Any]:
    return page((await client.signals(strategy, symbol, action))[::-1], offset, limit)


@router.get("/signals/export", tags=["signals"], summary="Every signal as a CSV or JSON download",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                         "application/json": {"schema": {"type": "array",
                                                                         "items": {"type": "object"}}}}}})
async def export_signals(client: Client, format: Literal["csv", "json"] = "csv") -> Response:
    rows, stamp = await client.signals(full=True), datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if format == "json":
        return download(json.dumps(rows, indent=1), "application/json", f"signals-{stamp}.json")
    return download(signals_csv(rows), "text/csv", f"signals-{stamp}.csv")


@router.get("/risk/limits", response_model=LimitsOut, tags=["risk"],
            summary="Limits per level (global, market, strategy, symbol) and kill-switch thresholds")
async def risk_limits(client: Client) -> dict[str, Any]:
    return await client.risk_limits()


@router.get("/risk/utilization", response_model=UtilizationOut, tags=["risk"],
            summary="Current value of each limit in % of the limit, and the exposure breakdown")
async def risk_utilization(client: Client) -> dict[str, Any]:
    """Measured by the risk gatekeeper against the account it judges signals with, the way its rules
    measure (tightest level wins; losses from the kill-switch monitor's start of day)."""
    return await client.risk_utilization()


@router.get("/risk/alerts", response_model=Page[AlertOut], tags=["risk"], summary="Alert history, newest first")
async def risk_alerts(client: Client, offset: Offset = 0, limit: Limit = 100,
                      kind: Annotated[str | None, Query(max_length=40)] = None) -> dict[str, Any]:
    return page((await client.alerts(kind))[::-1], offset, limit)


@router.get("/risk/decisions", response_model=Page[DecisionOut], tags=["risk"],
            summary="Risk decisions (approved, resized, rejected with reasons), newest first")
async def risk_decisions(client: Client, offset: Offset = 0, limit: Limit = 100,
                         status: Annotated[str | None, Query(max_length=20)] = None,
                         strategy: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    return page((await client.decisions(status, strategy))[::-1], offset, limit)


@router.get("/pnl", response_model=PnlOut, tags=["pnl"], summary="Daily and total P&L, per market and per strategy")
async def pnl(client: Client) -> dict[str, Any]:
    return await client.pnl()


@router.get("/pnl/equity", response_model=EquityOut, tags=["pnl"],
            summary="Equity and drawdown series (bar time), down-sampled to at most `points`")
async def equity(client: Client, points: Annotated[int, Query(ge=2, le=5000)] = 1000) -> dict[str, Any]:
    return await client.equity(points)


@router.get("/allocation", response_model=AllocationOut, tags=["pnl"],
            summary="Capital between strategies: weights, sizing shares, schedule, recent rebalances")
async def allocation(client: Client) -> dict[str, Any]:
    return await client.allocation()
