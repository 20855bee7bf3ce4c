"""Positions and orders: lists, manual orders through the risk gatekeeper, closes, cancels."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from control.routes.deps import API, READ, WRITE, Client, Limit, Offset, page
from control.schemas import (
    BulkCancelIn,
    BulkCancelOut,
    CancelOut,
    CloseAllIn,
    CloseAllOut,
    CloseIn,
    ManualOrderIn,
    Market,
    OrderOut,
    OrderResult,
    Page,
    PositionOut,
)

router = APIRouter(prefix=API)
OrderId = Annotated[str, PathParam(max_length=200)]


@router.get("/positions", response_model=Page[PositionOut], tags=["positions"], dependencies=READ)
async def list_positions(client: Client, offset: Offset = 0, limit: Limit = 100,
                         market: Market | None = None) -> dict[str, Any]:
    return page(await client.positions(market), offset, limit)


@router.post("/positions/close", response_model=OrderResult, tags=["positions"], dependencies=WRITE,
             summary="Close one position (a CLOSE signal through the risk gatekeeper)")
async def close_position(client: Client, body: CloseIn) -> dict[str, Any]:
    return await client.close_position(body.symbol, body.reason)


@router.post("/positions/close-all", response_model=CloseAllOut, tags=["positions"], dependencies=WRITE,
             summary="Close every position: two steps, with a confirmation token")
async def close_all(client: Client, body: CloseAllIn) -> dict[str, Any]:
    return await client.close_all(body.confirm_token, body.reason)


@router.get("/orders", response_model=Page[OrderOut], tags=["orders"], dependencies=READ,
            summary="Orders, newest first, filtered by status, symbol, strategy and creation time")
async def list_orders(
    client: Client, offset: Offset = 0, limit: Limit = 100,
    status: Annotated[str | None, Query(max_length=20, description="NEW, ACCEPTED, PARTIALLY_FILLED, FILLED, "
                                                                      "CANCELED, REJECTED, ... or 'open'")] = None,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
) -> dict[str, Any]:
    return page(await client.orders(status, symbol, strategy, since, until), offset, limit)


@router.get("/orders/open", response_model=Page[OrderOut], tags=["orders"], dependencies=READ)
async def open_orders(client: Client, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
    return page(await client.orders("open"), offset, limit)


@router.post("/orders", response_model=OrderResult, tags=["orders"], dependencies=WRITE,
             summary="Manual order: a signal that goes through the risk gatekeeper like any other")
async def manual_order(client: Client, body: ManualOrderIn) -> dict[str, Any]:
    """`target_exposure` is the share of the strategy's allocation to hold on `side` (0 = flat), as for
    every MMATS signal; the gatekeeper sizes it, checks every risk rule and the kill switch, and sends
    the order in operator mode (advisory mode records the decision only)."""
    signal = body.model_dump(exclude={"order_type", "limit_price"})
    return await client.manual_order(signal, body.order_type, body.limit_price)


@router.post("/orders/cancel", response_model=BulkCancelOut, tags=["orders"], dependencies=WRITE,
             summary="Bulk cancel: by ids, symbol and/or strategy, or all")
async def bulk_cancel(client: Client, body: BulkCancelIn) -> dict[str, Any]:
    return await client.cancel_orders(body.client_order_ids, body.symbol, body.strategy_id, body.all)


@router.get("/orders/{client_order_id}", response_model=OrderOut, tags=["orders"], dependencies=READ)
async def get_order(client: Client, client_order_id: OrderId) -> dict[str, Any]:
    return await client.order(client_order_id)


@router.delete("/orders/{client_order_id}", response_model=CancelOut, tags=["orders"], dependencies=WRITE,
               summary="Cancel one order")
async def cancel_order(client: Client, client_order_id: OrderId) -> dict[str, Any]:
    return await client.cancel_order(client_order_id)
