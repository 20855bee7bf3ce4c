"""Markets and bars, the control service's event log, and the Server-Sent Events stream."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse

from control.routes.deps import API, READ, Client, Events, Limit, Offset, page
from control.schemas import BarsOut, LogOut, MarketOut, Page

router = APIRouter(prefix=API, dependencies=READ)


@router.get("/markets", response_model=list[MarketOut], tags=["markets"],
            summary="Feeds by market with their symbols and last prices")
async def markets_view(client: Client) -> list[dict[str, Any]]:
    return await client.market_list()


@router.get("/bars", response_model=BarsOut, tags=["markets"],
            summary="The latest bars of a symbol (what the feed has published)")
async def bars(client: Client, symbol: Annotated[str, Query(min_length=1, max_length=40)],
               limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
    return await client.bars(symbol, limit)


@router.get("/indicators", tags=["markets"],
            summary="The indicators each strategy on a symbol declared, computed on the bars of /bars")
async def indicators(client: Client, symbol: Annotated[str, Query(min_length=1, max_length=40)],
                     limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
    """`t` is the same epoch-second axis as `/bars?limit=`; each strategy lists `series` of `{name, pane,
    values}` (`pane` `price` for moving averages and channels, `lower` for oscillators; null in warm-up)."""
    return await client.indicator_overlays(symbol, limit)


@router.get("/logs", response_model=Page[LogOut], tags=["logs"],
            summary="The control plane's event log, newest first, filterable")
async def get_logs(client: Client, offset: Offset = 0, limit: Limit = 200,
                   level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None,
                   module: Annotated[str | None, Query(max_length=40)] = None,
                   market: Annotated[str | None, Query(max_length=20)] = None) -> dict[str, Any]:
    return page(client.log_lines(level, module, market), offset, limit)


@router.get("/stream", tags=["stream"],
            summary="Server-Sent Events: status, prices, equity, signals, orders, fills, alerts, logs",
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream(hub: Events,
                 topics: Annotated[str | None, Query(max_length=200, description="comma-separated")] = None,
                 max_seconds: Annotated[float | None, Query(gt=0, le=86400)] = None,
                 last_event_id: Annotated[str | None, Header(max_length=20)] = None) -> Response:
    """Each event: `id: <n>`, `event: <topic>`, `data: <JSON>`. A comment line every 15 s keeps the
    connection open; `max_seconds` ends the stream (for scripts). Reconnect with `Last-Event-ID` to get
    the events you missed (the last 2,000 are kept)."""
    return StreamingResponse(hub.stream(topics, last_event_id, max_seconds), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
