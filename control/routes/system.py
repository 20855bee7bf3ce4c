"""Dashboard shell, liveness, readiness, status."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from control.problems import Unavailable
from control.routes.deps import API, READ, Client, Events
from control.schemas import Health, Problem, Ready, Status
from mmats.model import iso

STATIC = Path(__file__).resolve().parents[2] / "static"
DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

pages = APIRouter()
router = APIRouter(prefix=API, tags=["system"])


@pages.get("/", include_in_schema=False)
async def index() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=DASHBOARD_HEADERS)


@pages.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


@router.get("/health", response_model=Health, summary="Liveness", dependencies=READ)
async def health() -> dict[str, Any]:
    """Answers while the HTTP app runs, whatever the actors do (open on a loopback bind; on any other
    bind every endpoint needs the token, this one too: give the probe the header)."""
    return {"status": "ok", "time": iso(datetime.now(UTC))}


@router.get("/ready", response_model=Ready, summary="Readiness: every actor answers", dependencies=READ,
            responses={503: {"model": Problem}})
async def ready(client: Client) -> dict[str, Any]:
    res = await client.ready()
    if not res["ready"]:
        raise Unavailable(f"not ready: {', '.join(k for k, v in res['actors'].items() if v != 'ok')} not answering",
                          actors=res["actors"])
    return res


@router.get("/status", response_model=Status, dependencies=READ,
            summary="Environment, mode, kill switch, uptime, equity, lag per feed")
async def status(client: Client, hub: Events,
                 fresh: Annotated[bool, Query(description="skip the poller's snapshot (at most 1 s old) and ask "
                                                          "every actor now")] = False) -> dict[str, Any]:
    """Served from the stream poller's snapshot when it is under 1 s old and no change was made through
    this API since (`snapshot_age_s` > 0), else read live from the actors (`snapshot_age_s` = 0)."""
    snap = None if fresh else hub.fresh_status()
    return snap if snap is not None else await client.status()
