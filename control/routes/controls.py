"""Mode (advisory <-> operator) and the kill switch."""

from typing import Any

from fastapi import APIRouter

from control.routes.deps import API, READ, WRITE, Client, Events
from control.schemas import KillIn, KillOut, KillSwitch, ModeIn, ModeOut

router = APIRouter(prefix=API)


@router.get("/mode", response_model=ModeOut, tags=["mode"], dependencies=READ)
async def get_mode(client: Client) -> dict[str, Any]:
    return await client.mode()


@router.post("/mode", response_model=ModeOut, tags=["mode"], dependencies=WRITE,
             summary="advisory <-> operator (operator needs a two-step confirmation)")
async def set_mode(client: Client, body: ModeIn) -> dict[str, Any]:
    """To operator: call once without `confirm_token` (you get one, valid 60 s), then again with it.
    To advisory: one call, effective at once."""
    return await client.set_mode(body.mode, body.confirm_token, body.reason)


@router.get("/kill-switch", response_model=KillSwitch, tags=["kill switch"], dependencies=READ)
async def get_kill(client: Client) -> dict[str, Any]:
    return await client.kill_switch()


@router.post("/kill-switch", response_model=KillOut, tags=["kill switch"], dependencies=WRITE,
             summary="SOFT: no new entries; HARD: flatten everything; FREEZE: stop everything; RUNNING: reset")
async def set_kill(client: Client, hub: Events, body: KillIn) -> dict[str, Any]:
    out = await client.set_kill(body.state, body.reason.strip())
    hub.poke()
    return out
