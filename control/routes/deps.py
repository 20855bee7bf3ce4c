"""What the routes share: the replica's ``SystemClient`` and event hub, auth, paging parameters, downloads.

The replica binds its client and hub here when it starts (``bind``); a route names ``Client`` or ``Events``
as a parameter and FastAPI hands it over (starting the hub's poller on first use, inside the event loop).
"""

from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import Response

from control.auth import READ, WRITE
from control.hub import Hub
from control.problems import Unavailable
from control.service import SystemClient
from control.views import paginate as page

API = "/api/v1"

__all__ = ["API", "READ", "WRITE", "Client", "Events", "Limit", "Offset", "bind", "download", "page"]


class _Replica:
    """Process global: one replica per process, one client and hub per replica."""

    hub: Hub | None = None


REPLICA = _Replica()


def bind(hub: Hub) -> None:
    REPLICA.hub = hub


async def _hub() -> Hub:
    hub = REPLICA.hub
    if hub is None:
        raise Unavailable("the control service is starting: retry in a moment")
    hub.ensure_started()
    return hub


async def _client(hub: Annotated[Hub, Depends(_hub)]) -> SystemClient:
    return hub.client


Client = Annotated[SystemClient, Depends(_client)]
Events = Annotated[Hub, Depends(_hub)]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]


def download(body: str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
