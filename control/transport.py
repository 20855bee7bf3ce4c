"""How the control service reaches the actor system: the named Supervisor and the handles it hands out.

Every actor call goes through ``ActorLink.call``: awaited with a timeout, and its failures turned into the
typed errors of ``control.problems`` by their *type* (an actor's own input error is ``Refused``, an actor
that is gone is ``Unavailable``, anything else ``InternalError`` with an id for the log). Handles and the
running config are cached briefly: a status read must not cost a look-up per call.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import ray
from pydantic import ValidationError as PydanticValidationError

from adapters.secrets import redact
from control.configs import ConfigStore
from control.problems import ControlError, InternalError, NotAllowed, Refused, Unavailable, UnknownSymbol
from control.views import feed_symbols
from mmats.errors import MmatsError
from mmats.model import iso

NAMESPACE = "mmats"
SUPERVISOR = "mmats_supervisor"
CONFIRM_TTL_S = 60.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

log = logging.getLogger("mmats.api")


class LogBuffer:
    """The control service's event log: actions, alerts, fills, strategy errors (what /logs and the stream
    show). ``echo`` also writes each line to the ``mmats.api`` logger (the Serve replica's log)."""

    def __init__(self, size: int = 5000, echo: bool = True) -> None:
        self.items: deque[dict[str, Any]] = deque(maxlen=size)
        self.seq = 0
        self.echo = echo
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def add(self, level: str, module: str, message: str, market: str | None = None) -> dict[str, Any]:
        self.seq += 1
        rec = {"seq": self.seq, "time": iso(datetime.now(UTC)), "level": level, "module": module, "market": market,
               "message": redact(message)}
        self.items.append(rec)
        if self.echo:
            getattr(log, level.lower(), log.info)("%s: %s", module, rec["message"])
        for fn in self.listeners:
            fn(rec)
        return rec


def actor_failure(exc: BaseException) -> str:
    """The useful line of an actor-creation failure (e.g. the StrategyError of a bad reference)."""
    text = str(exc)
    for line in text.splitlines():
        if "Error:" in line and "Traceback" not in line and "ray." not in line:
            return redact(line.strip())[:500]
    return redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:500]


def _input_error(cause: BaseException) -> str:
    if isinstance(cause, PydanticValidationError):
        err = cause.errors()[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


class ActorLink:
    """The plumbing under ``SystemClient``: calls, cached handles and config, confirmation tokens."""

    def __init__(self, supervisor: str = SUPERVISOR, namespace: str = NAMESPACE, logs: LogBuffer | None = None) -> None:
        self.supervisor_name = supervisor
        self.namespace = namespace
        self.logs = logs if logs is not None else LogBuffer()
        self._sup: Any = None
        self._handles: dict[str, Any] | None = None
        self._handles_at = 0.0
        self._config: dict[str, Any] | None = None
        self._config_at = 0.0
        self._store: ConfigStore | None = None
        self._audit: Any = None
        self._confirm: dict[str, tuple[str, float]] = {}

    async def call(self, ref: Any, timeout: float = 15.0) -> Any:
        """Await an actor call; its failure becomes a typed error carrying the actor's own message."""
        try:
            return await asyncio.wait_for(ref, timeout)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if hasattr(exc, "cause") else None
            if isinstance(cause, ControlError):
                raise cause from None
            if isinstance(cause, (MmatsError, ValueError, KeyError, PydanticValidationError)):
                raise Refused(_input_error(cause)) from None
            if isinstance(cause, ray.exceptions.RayActorError):
                raise Refused(f"an actor failed to start: {actor_failure(cause)}") from None
            error_id = uuid.uuid4().hex[:12]
            log.error("actor call failed %s: %s", error_id, redact(f"{type(cause).__name__}: {cause}"))
            raise InternalError(f"internal error in the actor system ({type(cause).__name__})",
                                error_id=error_id) from None
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, TimeoutError) as exc:
            if isinstance(exc, ray.exceptions.RayActorError):  # a restarted system: look the actors up again
                self._sup = None
                self._handles = None
            raise Unavailable(f"the actor system did not answer ({type(exc).__name__}): it may be restarting, "
                              "retry in a few seconds") from None

    async def gather(self, *refs: Any, timeout: float = 15.0) -> list[Any]:
        return list(await asyncio.gather(*(self.call(r, timeout) for r in refs)))

    def sup(self) -> Any:
        if self._sup is None:
            try:
                self._sup = ray.get_actor(self.supervisor_name, namespace=self.namespace)
            except ValueError:
                raise Unavailable(f"MMATS is not running (no actor {self.supervisor_name!r} in namespace "
                                  f"{self.namespace!r}): start it with `mmats up`") from None
        return self._sup

    async def handles(self, fresh: bool = False) -> dict[str, Any]:
        if fresh or self._handles is None or time.time() - self._handles_at > 10:
            self._handles = await self.call(self.sup().handles.remote())
            self._handles_at = time.time()
        return self._handles

    async def config_state(self, fresh: bool = False) -> dict[str, Any]:
        if fresh or self._config is None or time.time() - self._config_at > 2:
            self._config = await self.call(self.sup().get_config.remote())
            self._config_at = time.time()
        return self._config

    async def environment(self) -> str:
        return str((await self.config_state())["config"].get("environment", "PAPER"))

    async def markets(self) -> dict[str, str]:
        """symbol -> market, from the feeds of the running config."""
        cfg = (await self.config_state())["config"]
        out: dict[str, str] = {}
        for f in cfg.get("feeds", []):
            for sym in feed_symbols(f):
                out[sym] = f.get("market", "crypto")
        return out

    async def feed_for(self, symbol: str) -> Any:
        cfg = (await self.config_state())["config"]
        h = await self.handles()
        for f in cfg.get("feeds", []):
            if symbol in feed_symbols(f):
                return h["feeds"][f["venue"]]
        raise UnknownSymbol(f"unknown symbol {symbol!r}: no feed provides it")

    async def store(self) -> ConfigStore:
        if self._store is None:
            persist = await self.call(self.sup().persist_settings.remote())
            self._store = await asyncio.to_thread(ConfigStore, persist)
        return self._store

    async def audit_storage(self) -> Any:
        if self._audit is None:
            st = await self.store()
            if st.storage is None:
                raise NotAllowed("this system runs with persist: false: there is no audit journal to read")
            self._audit = st.storage
        return self._audit

    def new_confirmation(self, purpose: str) -> str:
        token = secrets.token_urlsafe(12)
        self._confirm[purpose] = (token, time.time() + CONFIRM_TTL_S)
        return token

    def take_confirmation(self, purpose: str, token: str) -> None:
        pending = self._confirm.get(purpose)
        if pending is None or not hmac.compare_digest(pending[0], token) or time.time() > pending[1]:
            raise Refused("confirm_token is missing, wrong or expired: ask for a new one (send the request "
                          "without confirm_token)")
        del self._confirm[purpose]
