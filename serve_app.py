"""MMATS control plane: a Ray Serve application with a FastAPI ingress (HTTP API + dashboard).

Start it
  mmats up                                    # the actor system AND this app on 127.0.0.1:8000
  serve run serve_app:app                     # against a system already started by `mmats up`
  serve run serve_app:build_app supervisor=mmats_supervisor namespace=mmats host=127.0.0.1

The API lives under ``/api/v1`` (OpenAPI at ``/docs`` and ``/openapi.json``); the dashboard at ``/``.
Reference: docs/http-api.md.

How it works
- One replica (``ControlPlane``) talks to the named Supervisor and, through the handles it hands out,
  straight to the gatekeeper, router, portfolio and feeds (concurrent awaited actor calls: a status
  read costs a few milliseconds).
- Orders entered here are signals: they pass the risk gatekeeper exactly like a strategy's.
- Security: mutating endpoints need ``Authorization: Bearer <token>``; when the app is bound to a
  non-loopback address every API endpoint does. The replica only knows the SHA-256 of the token,
  never the token; no response and no log line carries it.
- Errors are ``application/problem+json`` (RFC 9457) with a human ``detail`` and never a stack trace.
- ``/api/v1/stream`` is a Server-Sent Events stream (prices, signals, orders, fills, equity, alerts,
  logs, status) fed by one poller per replica.
"""

import ast
import asyncio
import contextlib
import csv
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import ray
import yaml
from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.secrets import redact
from mmats.errors import ConfigError, MmatsError
from mmats.model import SignalAction, TradeSignal, iso

ROOT = Path(__file__).resolve().parent
STATIC = ROOT / "static"
API = "/api/v1"
NAMESPACE = "mmats"
SUPERVISOR = "mmats_supervisor"
TOKEN_ENV = "MMATS_API_TOKEN"
PROBLEM = "application/problem+json"
CONFIRM_TTL_S = 60.0
GATEKEEPER_READ_S = 2.0  # /status waits this long for the gatekeeper, then reports its last known state
STREAM_TOPICS = ("status", "prices", "equity", "signals", "orders", "fills", "alerts", "logs")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV_COLOURS = {"LIVE": "red", "PAPER": "yellow", "BACKTEST": "green", "DEV": "green"}

log = logging.getLogger("mmats.api")

# ================================================================================== token handling


def token_path(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "secrets" / "api_token"


def load_or_create_token(home: str | os.PathLike[str]) -> tuple[str, bool, str]:
    """The API token: ``$MMATS_API_TOKEN``, else ``<home>/secrets/api_token`` (created 0600 on first start).

    Returns ``(token, created_now, where)``; the caller prints a created token once, never again.
    """
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        if len(env) < 16:
            raise ConfigError(f"{TOKEN_ENV} is too short: use at least 16 random characters")
        return env, False, f"${TOKEN_ENV}"
    path = token_path(home)
    if path.is_file():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by other users: chmod 600 {path}")
        token = path.read_text().strip()
        if len(token) < 16:
            raise ConfigError(f"{path} holds no usable token: delete it to generate a new one")
        return token, False, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True, str(path)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ================================================================================== errors, models


class ApiError(Exception):
    """Raised anywhere in a handler; becomes an ``application/problem+json`` response."""

    TITLES: ClassVar[dict[int, str]] = {
              400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
              409: "Conflict", 422: "Unprocessable Content", 500: "Internal Server Error",
              503: "Service Unavailable"}

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": ApiError.TITLES.get(status, "Error"), "status": status,
            "detail": redact(detail), **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FieldError(Model):
    loc: str = Field(description="where: body.strategies.0.symbols, query.limit, ...")
    msg: str


class Problem(Model):
    """RFC 9457 problem details: ``detail`` says what went wrong and where, in words."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    error_id: str | None = Field(None, description="quote it when reporting an internal error")


T = TypeVar("T")


class Page(Model, Generic[T]):
    items: list[T]
    total: int = Field(description="items matching the filters")
    offset: int
    limit: int
    next_offset: int | None = Field(None, description="offset of the next page, null on the last one")


def feed_symbols(feed: dict[str, Any]) -> list[str]:
    """A feed's symbols in the config as JSON: replayed files, generated bars or a live source's."""
    return [*feed.get("files", {}), *feed.get("generated_symbols", []), *feed.get("symbols", [])]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def newest_first(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders by creation time, newest first, ties newest-created first.

    The router keeps orders in the order it accepted them, but each symbol runs on its own bar clock, so
    acceptance order is not creation-time order: a page cut by ``until`` must follow the times it shows.
    """
    indexed = list(enumerate(orders))
    indexed.sort(key=lambda io: (_parse_time(io[1].get("created")) or _EPOCH, io[0]), reverse=True)
    return [o for _, o in indexed]


def paginate(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    chunk = items[offset:offset + limit]
    nxt = offset + limit if offset + limit < len(items) else None
    return {"items": chunk, "total": len(items), "offset": offset, "limit": limit, "next_offset": nxt}


Offset = Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]

# ---------------------------------------------------------------------------------------- system


class Health(Model):
    status: Literal["ok"] = "ok"
    time: str


class Ready(Model):
    ready: bool
    actors: dict[str, str] = Field(description="actor -> 'ok' or why it did not answer")


class KillEvent(Model):
    state: str
    trigger: str = ""
    reason: str = ""
    since: str | None = None


class KillSwitch(Model):
    state: Literal["RUNNING", "SOFT", "HARD", "FREEZE"]
    trigger: str = ""
    reason: str = ""
    since: str | None = None
    history: list[KillEvent] = Field(default_factory=list)


class FeedStatus(Model):
    venue: str
    pace: str = ""
    published: int = 0
    position: int = 0
    timestamps: int = 0
    done: bool = False
    stale: bool = False
    seconds_since_update: float = 0.0
    max_lag_bars: int = 0
    skipped_bars: int = 0


class Status(Model):
    environment: str
    environment_colour: str
    mode: Literal["advisory", "operator"]
    allow_operator: bool
    kill_switch: KillSwitch
    uptime_s: float
    running: bool
    as_of: str | None = Field(None, description="bar time the portfolio is valued at")
    currency: str = "USD"
    equity: str
    cash: str
    total_pnl: str
    daily_pnl: str
    drawdown: float
    open_positions: int
    open_orders: int
    orders: int
    fills: int
    signals: int
    strategies: int
    feeds: list[FeedStatus]
    snapshot_age_s: float = Field(0.0, description="0 when read live, else the age of the poller's snapshot")
    warnings: list[str] = Field(default_factory=list, description="e.g. an actor too busy to answer in time")


class ModeOut(Model):
    mode: Literal["advisory", "operator"]
    allow_operator: bool
    environment: str
    confirmation_required: bool = False
    confirm_token: str | None = Field(None, description="send it back within expires_in_s to confirm")
    expires_in_s: float | None = None


ConfirmToken = Annotated[str, Field(max_length=200, pattern=r"^[A-Za-z0-9_-]*$")]


class ModeIn(Model):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["advisory", "operator"]
    confirm_token: ConfirmToken | None = Field(None, description="second step of advisory -> operator")
    reason: str = Field("api", max_length=500)


class KillIn(Model):
    model_config = ConfigDict(extra="forbid")

    state: Literal["RUNNING", "SOFT", "HARD", "FREEZE"] = Field(description="RUNNING resets the switch")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class KillOut(Model):
    kill_switch: KillSwitch
    flatten: dict[str, float] | None = Field(None, description="HARD: canceled orders, flatten fills, ms")
    canceled: int | None = Field(None, description="FREEZE: open orders canceled")
    elapsed_ms: float

# ------------------------------------------------------------------------------------ strategies


Market = Literal["crypto", "forex", "stock"]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Symbol = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_./:-]+$")]


class StrategyOut(Model):
    id: str
    ref: str
    version: int = 1
    symbols: list[str] = Field(default_factory=list)
    market: str | None = None
    allocation: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = False
    healthy: bool = False
    restarted: bool = False
    bars_seen: int = 0
    signals: int = 0
    errors_total: int = 0
    consecutive_errors: int = 0
    last_error: str = ""
    last_bar: str | None = None
    fills: int = 0
    trades: int = 0
    wins: int = 0
    win_rate: float | None = Field(None, description="closing trades with a positive net P&L / closing trades")
    realized_pnl: str = "0"
    unrealized_pnl: str = Field("0", description="its own open position marked at the account's last price")
    fees: str = "0"
    net_pnl: str = Field("0", description="realized + unrealized - fees, from the strategy's own fills")
    timeframe: str | None = None


class StrategyIn(Model):
    model_config = ConfigDict(extra="forbid")

    id: Ident
    ref: str = Field(min_length=1, max_length=500, description="built-in name, path/to/file.py:Class, module:Class")
    symbols: list[Symbol] = Field(min_length=1, max_length=50)
    market: Market = "crypto"
    params: dict[str, Any] = Field(default_factory=dict)
    allocation: float = Field(1.0, gt=0, le=10)
    enabled: bool = True
    timeframe: Literal["1m", "5m", "15m", "1h", "4h", "1d"] | None = Field(
        None, description="the feed's bars aggregated to this timeframe (default: the feed's own bars)")


class StrategyUploadIn(Model):
    model_config = ConfigDict(extra="forbid")

    id: Ident
    class_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    source: str = Field(min_length=1, max_length=500_000, description="the Python file's text")
    symbols: list[Symbol] = Field(min_length=1, max_length=50)
    market: Market = "crypto"
    params: dict[str, Any] = Field(default_factory=dict)
    allocation: float = Field(1.0, gt=0, le=10)
    enabled: bool = True
    timeframe: Literal["1m", "5m", "15m", "1h", "4h", "1d"] | None = Field(
        None, description="the feed's bars aggregated to this timeframe (default: the feed's own bars)")


class StrategyReplaceIn(Model):
    model_config = ConfigDict(extra="forbid")

    ref: str | None = Field(None, min_length=1, max_length=500)
    params: dict[str, Any] | None = None
    symbols: list[Symbol] | None = Field(None, min_length=1, max_length=50)
    source: str | None = Field(None, min_length=1, max_length=500_000, description="new file text (with class_name)")
    class_name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class ParamsIn(Model):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]


class ParamsOut(Model):
    id: str
    ref: str
    version: int
    params: dict[str, Any]


class DisableIn(Model):
    model_config = ConfigDict(extra="forbid")

    close_positions: bool = Field(False, description="also close the positions in the strategy's symbols")
    reason: str = Field("api", max_length=500)


class ToggleOut(Model):
    id: str
    enabled: bool
    close_positions: bool = False
    closes: list["OrderResult"] = Field(default_factory=list)

# ------------------------------------------------------------------------------- positions, orders


class PositionOut(Model):
    symbol: str
    market: str
    side: Literal["LONG", "SHORT", "FLAT"]
    quantity: str
    avg_price: str
    last_price: str
    notional: str
    unrealized_pnl: str
    realized_pnl: str


class CloseIn(Model):
    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    reason: str = Field("manual close", max_length=500)


class CloseAllIn(Model):
    model_config = ConfigDict(extra="forbid")

    confirm_token: ConfirmToken | None = Field(None, description="omit to get one; send it back to confirm")
    reason: str = Field("manual close-all", max_length=500)


class OrderOut(Model):
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: str
    price: str | None = None
    stop_price: str | None = None
    time_in_force: str = "GTC"
    strategy_id: str = ""
    signal_id: str = ""
    parent_id: str | None = None
    oco_group: str | None = None
    reduce_only: bool = False
    status: str
    filled_quantity: str = "0"
    avg_fill_price: str | None = None
    created: str
    updated: str
    reject_reason: str | None = None


class DecisionReason(Model):
    rule: str
    limit: Any = None
    observed: Any = None
    message: str = ""


class DecisionOut(Model):
    time: str | None = None
    status: str
    strategy_id: str
    signal_id: str
    symbol: str
    side: str
    requested_quantity: str
    quantity: str
    price: str
    reasons: list[DecisionReason] = Field(default_factory=list)


class OrderResult(Model):
    status: Literal["submitted", "rejected", "recorded", "no_order", "queued"] = Field(
        description="submitted: orders sent; rejected: by risk or kill switch; recorded: advisory mode, no order; "
                    "no_order: target already met or a duplicate signal_id; queued: waits for the first account")
    strategy_id: str
    signal_id: str
    symbol: str
    orders: list[str] = Field(default_factory=list, description="client order ids")
    reasons: list[str] = Field(default_factory=list)
    decisions: list[DecisionOut] = Field(default_factory=list)


class CloseAllOut(Model):
    confirmation_required: bool
    confirm_token: str | None = None
    expires_in_s: float | None = None
    positions: int
    results: list[OrderResult] = Field(default_factory=list)


class ManualOrderIn(Model):
    """A manual order is a signal with ``target_exposure`` semantics; it passes the risk gatekeeper."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    side: Literal["BUY", "SELL"]
    target_exposure: float = Field(ge=0, le=1, description="share of the allocation to hold on `side`; 0 = flat")
    confidence: float = Field(1.0, ge=0, le=1)
    strategy_id: Ident = "manual"
    signal_id: str = Field("", max_length=100, description="reuse it on retries: a duplicate never orders twice")
    reasoning: str = Field("manual order", max_length=2000)
    order_type: Literal["MARKET", "LIMIT"] = "MARKET"
    limit_price: float | None = Field(None, gt=0, allow_inf_nan=False)
    time_horizon: Literal["INTRADAY", "SWING", "LONG"] = "INTRADAY"


class CancelOut(Model):
    client_order_id: str
    canceled: bool


class BulkCancelIn(Model):
    model_config = ConfigDict(extra="forbid")

    client_order_ids: list[str] | None = Field(None, max_length=1000)
    symbol: Symbol | None = None
    strategy_id: Ident | None = None
    all: bool = Field(False, description="cancel every open order (when no other filter is given)")


class BulkCancelOut(Model):
    canceled: list[str]
    count: int

# ------------------------------------------------------------------------------------ signals, risk


class SignalOut(Model):
    time: str
    strategy_id: str
    signal_id: str = ""
    symbol: str
    action: str
    position_size: float
    confidence: float
    price: float | None = None
    reasoning: str = ""
    decision: str | None = Field(None, description="risk decision status, when one was made")
    decision_reasons: list[str] = Field(default_factory=list)


class LimitsOut(Model):
    source: Literal["risk_config"] = Field(
        description="the leveled RiskConfig the gatekeeper runs (flat max_position_pct / max_order_notional "
                    "keys are global limits; max_position_pct defaults to 1.0)")
    environment: str
    profile: str | None = None
    levels: dict[str, dict[str, Any]] = Field(description="'global', 'market:crypto', 'strategy:x', 'symbol:y'")
    kill_switch: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)


class UtilizationItem(Model):
    limit: str = Field(description="limit key, e.g. max_position_pct")
    scope: str = Field(description="what is measured: account, symbol:X, market:Y")
    level: str = Field(description="level the limit comes from: global, market:..., symbol:..., kill_switch")
    limit_value: float
    current: float
    utilization_pct: float = Field(description="current / limit x 100")


class ExposureItem(Model):
    name: str
    notional: float
    pct_of_equity: float


class UtilizationOut(Model):
    equity: float
    gross_exposure: float
    net_exposure: float
    items: list[UtilizationItem]
    by_symbol: list[ExposureItem]
    by_market: list[ExposureItem]


class AlertOut(Model):
    time: str
    kind: str
    level: str
    message: str

# --------------------------------------------------------------------------------------------- P&L


class PnlRow(Model):
    name: str
    realized_pnl: str = "0"
    unrealized_pnl: str = "0"
    fees: str = "0"
    net_pnl: str = "0"


class PnlOut(Model):
    currency: str
    as_of: str | None
    equity: str
    initial_cash: str
    cash: str
    total_pnl: str
    daily_pnl: str
    realized_pnl: str
    unrealized_pnl: str
    fees: str
    peak_equity: str
    drawdown: float
    by_market: list[PnlRow]
    by_strategy: list[PnlRow]


class EquityPoint(Model):
    time: str
    t: float = Field(description="seconds since the epoch (charts)")
    equity: float
    drawdown: float = Field(description="fraction below the running peak")


class EquityOut(Model):
    points: list[EquityPoint]
    max_drawdown: float

# ------------------------------------------------------------------------------------------ config


class ConfigOut(Model):
    version: int | None = Field(None, description="the stored version this config is, if any")
    environment: str
    config: dict[str, Any] = Field(description="secrets masked as ***")
    restart_required: list[str] = Field(default_factory=list, description="changed fields that apply on restart")


class ValidateOut(Model):
    valid: bool
    errors: list[FieldError] = Field(default_factory=list)


class ConfigUpdateIn(Model):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any]
    author: str = Field("api", min_length=1, max_length=100, description="who makes the change")
    comment: str = Field("", max_length=1000, description="why")


class ConfigImportIn(Model):
    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "yaml"] = "json"
    content: str = Field(min_length=1, max_length=1_000_000)
    author: str = Field("api", min_length=1, max_length=100)
    comment: str = Field("import", max_length=1000)


class RollbackIn(Model):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    author: str = Field("api", min_length=1, max_length=100)
    comment: str = Field("", max_length=1000)


class ConfigVersionOut(Model):
    version: int
    time: str
    author: str
    comment: str
    changes: list[str] = Field(default_factory=list)


class ConfigVersionFull(ConfigVersionOut):
    content: dict[str, Any]


class ConfigUpdateOut(Model):
    version: int
    time: str
    author: str
    comment: str
    changes: list[str]
    applied: list[str]
    restart_required: list[str]

# ------------------------------------------------------------------------------------ audit, misc


class AuditRecordOut(Model):
    seq: int
    time: str
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(Model):
    items: list[AuditRecordOut]
    total: int = Field(description="records in the chain")
    from_seq: int
    limit: int
    next_from_seq: int | None


class VerifyOut(Model):
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_hash: str


class MarketOut(Model):
    market: str
    venue: str
    symbols: list[str]
    last_prices: dict[str, float]


class Bar(Model):
    time: str
    t: float
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarsOut(Model):
    symbol: str
    market: str
    bars: list[Bar]


class LogOut(Model):
    seq: int
    time: str
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    module: str
    market: str | None = None
    message: str


ToggleOut.model_rebuild()

# ===================================================================================== helpers


def _num(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _money(d: Decimal) -> str:
    """Derived money for display: 8 decimals at most, no exponent."""
    from mmats.model import dec_str

    return dec_str(d.quantize(Decimal("1e-8")))


def _dec(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _ts(value: Any) -> str | None:
    if value in (None, 0, ""):
        return None
    if isinstance(value, (int, float)):
        return iso(datetime.fromtimestamp(float(value), UTC)) if value < 1e12 else iso(int(value))
    return str(value)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


SECRET_KEYS = ("database_url", "redis_url")


def mask_config(value: Any, key: str = "") -> Any:
    """Every string through ``redact``; connection URLs with their password masked."""
    if isinstance(value, dict):
        return {k: mask_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_config(v, key) for v in value]
    if isinstance(value, str):
        if key in SECRET_KEYS:
            from adapters.sql_engine import mask_url

            return mask_url(value) if "://" in value else redact(value)
        return redact(value)
    return value


def unmask_config(new: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A masked secret sent back unchanged (an export re-imported) keeps the running value."""
    out = dict(new)
    for k in SECRET_KEYS:
        v = out.get(k)
        if isinstance(v, str) and "***" in v and mask_config(current.get(k), k) == v:
            out[k] = current.get(k)
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed, in words: top-level fields and strategies by id."""
    changes: list[str] = []
    for k in sorted(set(old) | set(new)):
        if k == "strategies":
            continue
        if old.get(k) != new.get(k):
            changes.append(f"{k}: changed" if k in old and k in new else f"{k}: {'added' if k in new else 'removed'}")
    so = {s.get("id"): s for s in old.get("strategies", []) if isinstance(s, dict)}
    sn = {s.get("id"): s for s in new.get("strategies", []) if isinstance(s, dict)}
    for sid in sorted(set(so) | set(sn), key=str):
        if sid not in sn:
            changes.append(f"strategies.{sid}: removed")
        elif sid not in so:
            changes.append(f"strategies.{sid}: added")
        elif so[sid] != sn[sid]:
            keys = sorted(k for k in set(so[sid]) | set(sn[sid]) if so[sid].get(k) != sn[sid].get(k))
            changes.append(f"strategies.{sid}: {', '.join(keys)} changed")
    return changes


def pydantic_errors(exc: PydanticValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        out.append({"loc": f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body", "msg": err.get("msg", "")})
    return out


def check_strategy_source(source: str, class_name: str) -> None:
    """Syntax and class presence, without executing anything in the API process."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ApiError(400, f"source: syntax error at line {exc.lineno}: {exc.msg}") from None
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    if class_name not in names:
        raise ApiError(400, f"source: no class {class_name!r} in the file (classes: {sorted(names) or 'none'})")


def check_ref(ref: str) -> None:
    """Reject references that cannot load, before an actor is started for them."""
    from mmats.registry import BUILTIN

    target = BUILTIN.get(ref, ref)
    if ":" not in target:
        raise ApiError(400, f"ref: unknown strategy {ref!r}: use one of {', '.join(sorted(BUILTIN))}, "
                            "path/to/file.py:ClassName or package.module:ClassName")
    where, _, cls = target.rpartition(":")
    if not where or not cls.isidentifier():
        raise ApiError(400, f"ref: {ref!r} is not path/to/file.py:ClassName or package.module:ClassName")
    if where.endswith(".py") and not Path(where).is_file():
        raise ApiError(400, f"ref: strategy file not found: {where}")


class LogBuffer:
    """The replica's event log: API actions, alerts, fills, strategy errors (what /logs and the stream show)."""

    def __init__(self, size: int = 5000) -> None:
        self.items: deque[dict[str, Any]] = deque(maxlen=size)
        self.seq = 0
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def add(self, level: str, module: str, message: str, market: str | None = None) -> dict[str, Any]:
        self.seq += 1
        rec = {"seq": self.seq, "time": iso(datetime.now(UTC)), "level": level, "module": module, "market": market,
               "message": redact(message)}
        self.items.append(rec)
        getattr(log, level.lower(), log.info)("%s: %s", module, rec["message"])
        for fn in self.listeners:
            fn(rec)
        return rec


class ConfigStore:
    """Versions of the config: in the system's SQL store when it persists, else in this replica's memory."""

    def __init__(self, persist: dict[str, Any] | None) -> None:
        self.storage: Any = None
        self.memory: list[dict[str, Any]] = []
        if persist is not None:
            from actors.stores import open_stores

            self.storage = open_stores(persist).storage

    def save(self, content: dict[str, Any], author: str, comment: str, changes: list[str]) -> dict[str, Any]:
        body = {"config": content, "changes": changes}
        if self.storage is not None:
            return dict(self.storage.save_config_version(body, author, comment).to_dict())
        rec = {"version": len(self.memory) + 1, "time": iso(datetime.now(UTC)), "author": author,
               "comment": comment, "content": body}
        self.memory.append(rec)
        return rec

    def list(self) -> list[dict[str, Any]]:
        if self.storage is not None:
            return [v.to_dict() for v in self.storage.list_config_versions()]
        return list(self.memory)

    def get(self, version: int | None) -> dict[str, Any] | None:
        if self.storage is not None:
            v = self.storage.get_config_version(version)
            return None if v is None else dict(v.to_dict())
        if not self.memory:
            return None
        if version is None:
            return self.memory[-1]
        return next((r for r in self.memory if r["version"] == version), None)


def version_out(rec: dict[str, Any], full: bool = False) -> dict[str, Any]:
    content = rec.get("content") or {}
    out = {"version": rec["version"], "time": rec["time"], "author": rec["author"], "comment": rec.get("comment", ""),
           "changes": list(content.get("changes", []))}
    if full:
        out["content"] = content.get("config", content)
    return out


# ================================================================================ the FastAPI app

ERROR_CODES = (400, 401, 403, 404, 409, 422, 503)
bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="The API token: $MMATS_API_TOKEN, or the one `mmats up` printed on first start "
                                "(stored in $MMATS_HOME/secrets/api_token).")

class _ProblemFastAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """Error responses are application/problem+json, including FastAPI's own 422."""
        if self.openapi_schema:
            return self.openapi_schema
        schema = get_openapi(title=self.title, version=self.version, summary=self.summary,
                             description=self.description, routes=self.routes)
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                for code, resp in op.get("responses", {}).items():
                    if code.isdigit() and int(code) >= 400:
                        resp["content"] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        comps = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            comps.pop(name, None)
        self.openapi_schema = schema
        return schema


fastapi_app = _ProblemFastAPI(
    title="MMATS control API",
    version="1.0",
    summary="Control plane of the Multi-Market Automated Trading System",
    description="Everything the CLI does, over HTTP. Mutating endpoints need `Authorization: Bearer <token>`; "
                "when the server is bound to a non-loopback address every endpoint does. Errors are "
                "`application/problem+json`. Lists are paginated with `offset`/`limit`. See docs/http-api.md.",
    docs_url="/docs",
    redoc_url=None,
    openapi_url="/openapi.json",
    responses={code: {"model": Problem, "description": ApiError.TITLES[code]} for code in ERROR_CODES},
)


class _Auth:
    """The replica's auth settings (a process global: Serve may run a copy of ``fastapi_app``)."""

    digest = ""  # SHA-256 of the token; empty = no token accepted (fail closed)
    all_endpoints = True


AUTH = _Auth()


def configure_auth(digest: str, all_endpoints: bool) -> None:
    """Called by the replica's constructor (a module function, so it sets *this* module's AUTH: Serve ships
    the deployment class by value, with copies of the module globals its methods name)."""
    AUTH.digest = digest
    AUTH.all_endpoints = all_endpoints or not digest


def _check_token(request: Request) -> None:
    auth = AUTH
    challenge = {"WWW-Authenticate": 'Bearer realm="mmats"'}
    header = request.headers.get("authorization")
    if header is None:
        raise ApiError(401, "this endpoint needs the API token (header 'Authorization: Bearer <token>')", challenge)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        raise ApiError(401, "malformed Authorization header: expected 'Bearer <token>'", challenge)
    if not auth.digest or not hmac.compare_digest(token_digest(value), auth.digest):
        raise ApiError(403, "the API token is not valid")


async def require_write(request: Request, _creds: Annotated[Any, Depends(bearer)] = None) -> None:
    _check_token(request)


async def require_read(request: Request, _creds: Annotated[Any, Depends(bearer)] = None) -> None:
    if AUTH.all_endpoints:
        _check_token(request)


READ = [Depends(require_read)]
WRITE = [Depends(require_write)]


@fastapi_app.exception_handler(ApiError)
async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return problem(exc.status, exc.detail, exc.headers, **exc.extra)


@fastapi_app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": ".".join(str(x) for x in e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    first = errors[0] if errors else {"loc": "request", "msg": "invalid"}
    return problem(422, f"{first['loc']}: {first['msg']}", errors=errors)


@fastapi_app.exception_handler(StarletteHTTPException)
async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint: see /docs for the API"
    return problem(exc.status_code, detail, dict(exc.headers or {}))


class ProblemMiddleware:
    """Last line: an unexpected exception becomes a 500 problem with an error id, never a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        mutating = scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        if mutating:
            note_write()

        async def wrapped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        except Exception as exc:
            if started:
                raise
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s on %s %s: %s", error_id, scope.get("method"), scope.get("path"),
                      redact(f"{type(exc).__name__}: {exc}"))
            resp = problem(500, "internal error: the request could not be completed (see the server log)",
                           error_id=error_id)
            await resp(scope, receive, send)


fastapi_app.add_middleware(ProblemMiddleware)


if STATIC.is_dir():
    fastapi_app.mount("/static", StaticFiles(directory=STATIC), name="static")

DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class _Writes:
    """Mutations seen by this process (a module object: read through module functions, see configure_auth)."""

    count = 0


WRITES = _Writes()


def note_write() -> None:
    WRITES.count += 1


def writes_seen() -> int:
    return WRITES.count


def build_status(gk: dict[str, Any], kill: dict[str, Any], mode: dict[str, Any], pf: dict[str, Any],
                 rt: dict[str, Any], cfg: dict[str, Any], feeds: list[dict[str, Any]], n_strategies: int,
                 warnings: list[str]) -> dict[str, Any]:
    env = cfg["config"].get("environment", "PAPER")
    return {
        "environment": env, "environment_colour": ENV_COLOURS.get(env, "yellow"),
        "mode": mode["mode"], "allow_operator": mode["allow_operator"], "kill_switch": _kill(kill),
        "uptime_s": round(time.time() - cfg.get("started", time.time()), 1), "running": cfg.get("running", True),
        "as_of": pf.get("as_of"), "currency": pf.get("currency", "USD"), "equity": pf["equity"],
        "cash": pf["cash"], "total_pnl": pf["total_pnl"], "daily_pnl": pf["daily_pnl"],
        "drawdown": abs(_num(pf.get("drawdown"))), "open_positions": len(pf.get("positions", [])),
        "open_orders": rt.get("open", 0), "orders": rt.get("orders", 0), "fills": pf.get("fills", 0),
        "signals": gk.get("signals", 0), "strategies": n_strategies,
        "feeds": [_feed(f) for f in feeds], "snapshot_age_s": 0.0, "warnings": warnings,
    }


def _sse(ev: dict[str, Any]) -> str:
    return f"id: {ev['id']}\nevent: {ev['topic']}\ndata: {json.dumps(ev['data'], separators=(',', ':'))}\n\n"


def _kill(k: dict[str, Any]) -> dict[str, Any]:
    return {"state": k.get("state", "RUNNING"), "trigger": k.get("trigger", ""), "reason": redact(k.get("reason", "")),
            "since": _ts(k.get("since")),
            "history": [{"state": e.get("state", ""), "trigger": e.get("trigger", ""),
                         "reason": redact(e.get("reason", "")), "since": _ts(e.get("since"))}
                        for e in k.get("history", [])]}


def _feed(f: dict[str, Any]) -> dict[str, Any]:
    subs = f.get("subscribers", {}).values()
    return {**{k: f.get(k) for k in ("venue", "pace", "published", "position", "timestamps", "done", "stale",
                                      "seconds_since_update")},
            "max_lag_bars": max((s.get("lag_bars", 0) for s in subs), default=0),
            "skipped_bars": sum(s.get("skipped", 0) for s in subs)}


def _alert(a: dict[str, Any]) -> dict[str, Any]:
    kind = str(a.get("kind", ""))
    level = "ERROR" if kind in ("kill_switch", "router_error", "strategy_disabled") else "WARNING"
    return {"time": _ts(a.get("time")) or "", "kind": kind, "level": level, "message": redact(str(a.get("message")))}


def _actor_failure(exc: BaseException) -> str:
    """The useful line of an actor-creation failure (e.g. the StrategyError of a bad reference)."""
    text = str(exc)
    for line in text.splitlines():
        if "Error:" in line and "Traceback" not in line and "ray." not in line:
            return redact(line.strip())[:500]
    return redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:500]


# ====================================================================================== the hub


class Hub:
    """One poller per replica: turns actor state into stream events (and the replica's event log)."""

    def __init__(self, plane: Any) -> None:  # the ControlPlane replica
        self.plane = plane
        self.events: deque[dict[str, Any]] = deque(maxlen=2000)
        self.seq = 0
        self.subs: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.last: dict[str, Any] = {}
        self.latest_by_topic: dict[str, dict[str, Any]] = {}
        self._wake: asyncio.Event | None = None
        self.ticks = 0
        self.gatekeeper_cache: tuple[float, list[Any]] | None = None
        self.status_snapshot: tuple[float, int, dict[str, Any]] | None = None
        self.status_wanted = 0.0

    def fresh_status(self, max_age_s: float = 1.0) -> dict[str, Any] | None:
        """The latest polled status when young enough and no mutation happened since it was read."""
        self.status_wanted = time.monotonic()
        snap = self.status_snapshot
        if snap is None:
            return None
        age = time.monotonic() - snap[0]
        if age > max_age_s or snap[1] != writes_seen():
            return None
        return {**snap[2], "snapshot_age_s": round(age, 3)}

    def ensure_started(self) -> None:
        if self.task is None or self.task.done():
            self._wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self.run())

    def poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=5000)
        self.subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.subs.discard(q)

    def backlog(self, since: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["id"] > since]

    def latest(self) -> list[dict[str, Any]]:
        """What a new subscriber sees first: the latest status, prices and equity."""
        return [self.latest_by_topic[t] for t in ("status", "prices", "equity") if t in self.latest_by_topic]

    def publish(self, topic: str, data: Any) -> None:
        self.seq += 1
        ev = {"id": self.seq, "topic": topic, "data": data}
        self.events.append(ev)
        self.latest_by_topic[topic] = ev
        for q in list(self.subs):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # a consumer that does not read: cut it off, it reconnects
                self.subs.discard(q)
                with contextlib.suppress(asyncio.QueueEmpty, asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.tick()
                if failures:
                    self.plane.logs.add("INFO", "api", "actor system answering again")
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    detail = exc.detail if isinstance(exc, ApiError) else f"{type(exc).__name__}"
                    self.plane.logs.add("ERROR", "api", f"live poll failed ({failures}x): {detail}")
            assert self._wake is not None
            # fast while someone watches the stream, slower otherwise (the event log still catches up)
            watched = self.subs or time.monotonic() - self.status_wanted < 10
            interval = self.plane.poll_s if watched else max(self.plane.poll_s, 2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval if failures == 0 else 2.0)
            self._wake.clear()

    async def tick(self) -> None:
        p = self.plane
        writes0 = writes_seen()
        h = await p.handles()
        feeds = list(h["feeds"].values())
        n = len(feeds)
        results = await p.gather(
            h["gatekeeper"].stats.remote(), h["portfolio"].status.remote(), h["router"].stats.remote(),
            h["gatekeeper"].get_alerts.remote(), h["gatekeeper"].kill_switch.remote(), h["gatekeeper"].mode.remote(),
            *(f.last_prices.remote() for f in feeds), *(f.last_ts.remote() for f in feeds),
            *(f.stats.remote() for f in feeds), timeout=10)
        gk, pf, rt, alerts, kill, mode = results[:6]
        prices_list, last_ts, feed_stats = results[6:6 + n], results[6 + n:6 + 2 * n], results[6 + 2 * n:]
        self.gatekeeper_cache = (time.time(), [gk, kill, mode])
        markets = await p.markets()
        self.status_snapshot = (time.monotonic(), writes0, build_status(
            gk, kill, mode, pf, rt, await p.config_state(), feed_stats, len(h["strategies"]), []))
        first = not self.last
        self.ticks += 1
        prices: dict[str, float] = {}
        for d in prices_list:
            prices.update(d)
        bar_ns = max(last_ts, default=0)
        cfg = await p.config_state()
        env = cfg["config"].get("environment", "PAPER")
        self.publish("status", {
            "environment": env, "environment_colour": ENV_COLOURS.get(env, "yellow"), "mode": mode["mode"],
            "kill_switch": kill.get("state", "RUNNING"), "kill_reason": redact(kill.get("reason", "")),
            "equity": pf["equity"], "cash": pf["cash"], "total_pnl": pf["total_pnl"], "daily_pnl": pf["daily_pnl"],
            "drawdown": abs(_num(pf.get("drawdown"))), "open_positions": len(pf.get("positions", [])),
            "open_orders": rt.get("open", 0), "fills": pf.get("fills", 0), "signals": gk.get("signals", 0),
            "as_of": pf.get("as_of"), "bar_time": iso(bar_ns) if bar_ns else None,
        })
        if prices != self.last.get("prices"):
            self.publish("prices", {"time": iso(bar_ns) if bar_ns else None, "t": bar_ns / 1e9, "prices": prices})
        eq_key = (pf["equity"], pf.get("as_of"))
        if eq_key != self.last.get("equity"):
            self.publish("equity", {"time": pf.get("as_of"), "t": _iso_to_t(pf.get("as_of")),
                                    "equity": _num(pf["equity"]), "drawdown": abs(_num(pf.get("drawdown"))),
                                    "total_pnl": pf["total_pnl"], "daily_pnl": pf["daily_pnl"]})
        n_sig = int(gk.get("signals", 0))
        if not first and n_sig > self.last.get("signals", 0):
            for s in await p.call(h["gatekeeper"].get_signals.remote(min(n_sig - self.last["signals"], 200))):
                s = {**s, "reasoning": redact(str(s.get("reasoning") or ""))}
                self.publish("signals", s)
                p.logs.add("INFO", f"strategy:{s.get('strategy_id')}",
                           f"signal {s.get('action')} {s.get('symbol')} size {s.get('position_size')} "
                           f"conf {s.get('confidence')}: {s.get('reasoning')}", markets.get(s.get("symbol", "")))
        n_fills = int(pf.get("fills", 0))
        if not first and n_fills > self.last.get("fills", 0):
            for f in await p.call(h["portfolio"].recent_fills.remote(min(n_fills - self.last["fills"], 100))):
                self.publish("fills", f)
                p.logs.add("INFO", "router", f"fill {f.get('side')} {f.get('quantity')} {f.get('symbol')} @ "
                           f"{f.get('price')} ({f.get('strategy_id')})", markets.get(f.get("symbol", "")))
        order_key = (rt.get("orders"), rt.get("open"), n_fills)
        if order_key != self.last.get("order_key"):
            known: dict[str, tuple[str, str]] = self.last.get("order_states", {})
            recent = await p.call(h["router"].recent_orders.remote(50))
            states = {}
            for o in recent:
                state = (o["status"], o["filled_quantity"])
                states[o["client_order_id"]] = state
                if not first and known.get(o["client_order_id"]) != state:
                    self.publish("orders", o)
                    if o["status"] == "REJECTED":
                        p.logs.add("WARNING", "risk", f"order {o['client_order_id']} rejected: "
                                   f"{o.get('reject_reason')}", markets.get(o["symbol"]))
            self.last["order_states"] = states
        n_alerts = len(alerts)
        if not first and n_alerts > self.last.get("alerts", 0):
            for a in alerts[self.last.get("alerts", 0):]:
                out = _alert(a)
                self.publish("alerts", out)
                p.logs.add(out["level"], f"risk:{out['kind']}", out["message"])
        if self.ticks % 10 == 1:  # strategy errors, every few seconds (one call per strategy)
            await self._strategy_errors(first)
        self.last.update({"prices": prices, "equity": eq_key, "signals": n_sig, "fills": n_fills,
                          "order_key": order_key, "alerts": n_alerts})

    async def _strategy_errors(self, first: bool) -> None:
        listed = await self.plane.call(self.plane.sup().list_strategies.remote(), timeout=10)
        seen: dict[str, int] = self.last.setdefault("errors", {})
        for s in listed:
            n = int(s.get("errors_total", 0))
            if not first and n > seen.get(s["id"], 0):
                self.plane.logs.add("ERROR", f"strategy:{s['id']}",
                                    f"{n - seen.get(s['id'], 0)} new error(s); last: {s.get('last_error', '')}")
            seen[s["id"]] = n


def _iso_to_t(text: str | None) -> float | None:
    dt = _parse_time(text)
    return dt.timestamp() if dt else None


# ================================================================================= the replica


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0},
                  health_check_period_s=10)
@serve.ingress(fastapi_app)
class ControlPlane:
    def __init__(self, supervisor: str = SUPERVISOR, namespace: str = NAMESPACE, token_sha256: str = "",
                 auth_all: bool = True, poll_s: float = 0.5) -> None:
        configure_auth(token_sha256, auth_all)
        self.supervisor_name = supervisor
        self.namespace = namespace
        self.poll_s = poll_s
        self._sup: Any = None
        self._handles: dict[str, Any] | None = None
        self._handles_at = 0.0
        self._config: dict[str, Any] | None = None
        self._config_at = 0.0
        self._store: ConfigStore | None = None
        self._audit: Any = None
        self._confirm: dict[str, tuple[str, float]] = {}
        self.logs = LogBuffer()
        self.hub = Hub(self)
        self.logs.listeners.append(lambda rec: self.hub.publish("logs", rec))
        self.logs.add("INFO", "api", f"control plane started for {supervisor} (namespace {namespace}); "
                                     f"{'every endpoint' if auth_all or not token_sha256 else 'mutations'} "
                                     "need the API token")

    # ------------------------------------------------------------------------------ plumbing

    async def call(self, ref: Any, timeout: float = 15.0) -> Any:
        """Await an actor call; actor errors become problems with the actor's own message."""
        try:
            return await asyncio.wait_for(ref, timeout)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if hasattr(exc, "cause") else None
            if isinstance(cause, ApiError):
                raise cause from None
            if isinstance(cause, (MmatsError, ValueError, KeyError, PydanticValidationError)):
                msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
                if isinstance(cause, PydanticValidationError):
                    err = cause.errors()[0]
                    msg = f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
                status = 404 if msg.startswith("unknown strategy") else 409 if "already exists" in msg else 400
                raise ApiError(status, msg) from None
            if isinstance(cause, ray.exceptions.RayActorError):
                raise ApiError(400, f"an actor failed to start: {_actor_failure(cause)}") from None
            error_id = uuid.uuid4().hex[:12]
            log.error("actor call failed %s: %s", error_id, redact(f"{type(cause).__name__}: {cause}"))
            raise ApiError(500, f"internal error in the actor system ({type(cause).__name__})",
                           error_id=error_id) from None
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, TimeoutError) as exc:
            if isinstance(exc, ray.exceptions.RayActorError):  # a restarted system: look the actors up again
                self._sup = None
                self._handles = None
            raise ApiError(503, f"the actor system did not answer ({type(exc).__name__}): it may be restarting, "
                                "retry in a few seconds") from None

    async def gather(self, *refs: Any, timeout: float = 15.0) -> list[Any]:
        return list(await asyncio.gather(*(self.call(r, timeout) for r in refs)))

    def sup(self) -> Any:
        if self._sup is None:
            try:
                self._sup = ray.get_actor(self.supervisor_name, namespace=self.namespace)
            except ValueError:
                raise ApiError(503, f"MMATS is not running (no actor {self.supervisor_name!r} in namespace "
                                    f"{self.namespace!r}): start it with `mmats up`") from None
        return self._sup

    async def handles(self, fresh: bool = False) -> dict[str, Any]:
        self.hub.ensure_started()
        if fresh or self._handles is None or time.time() - self._handles_at > 10:
            self._handles = await self.call(self.sup().handles.remote())
            self._handles_at = time.time()
        return self._handles

    async def config_state(self, fresh: bool = False) -> dict[str, Any]:
        if fresh or self._config is None or time.time() - self._config_at > 2:
            self._config = await self.call(self.sup().get_config.remote())
            self._config_at = time.time()
        return self._config

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
        raise ApiError(404, f"unknown symbol {symbol!r}: no feed provides it")

    async def persist(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.call(self.sup().persist_settings.remote())
        return result

    async def store(self) -> ConfigStore:
        if self._store is None:
            self._store = await asyncio.to_thread(ConfigStore, await self.persist())
        return self._store

    async def audit_storage(self) -> Any:
        if self._audit is None:
            st = await self.store()
            if st.storage is None:
                raise ApiError(409, "this system runs with persist: false: there is no audit journal to read")
            self._audit = st.storage
        return self._audit

    def new_confirmation(self, purpose: str) -> str:
        token = secrets.token_urlsafe(12)
        self._confirm[purpose] = (token, time.time() + CONFIRM_TTL_S)
        return token

    def take_confirmation(self, purpose: str, token: str) -> None:
        pending = self._confirm.get(purpose)
        if pending is None or not hmac.compare_digest(pending[0], token) or time.time() > pending[1]:
            raise ApiError(400, "confirm_token is missing, wrong or expired: ask for a new one (send the request "
                                "without confirm_token)")
        del self._confirm[purpose]

    async def external_signal(self, strategy_id: str, signal: TradeSignal) -> dict[str, Any]:
        """Send a signal through the risk gatekeeper and describe the outcome."""
        feed = await self.feed_for(signal.symbol)
        h = await self.handles()
        prices = await self.call(feed.last_prices.remote())
        price = prices.get(signal.symbol)
        if price is None:
            raise ApiError(409, f"no price yet for {signal.symbol}: the feed has not published it")
        res = await self.call(h["gatekeeper"].submit_external.remote(strategy_id, signal, float(price)))
        return await self.describe_outcome(strategy_id, signal.action.value, signal.symbol, signal.position_size,
                                           signal.signal_id, res)

    async def describe_outcome(self, strategy_id: str, action: str, symbol: str, size: float, signal_id: str,
                               res: dict[str, Any]) -> dict[str, Any]:
        """The gatekeeper's answer to one external signal as an OrderResult (and a log line)."""
        decisions = res.get("decisions", [])
        if res.get("orders"):
            status = "submitted"
        elif res.get("rejected"):
            status = "rejected"
        elif not res.get("evaluated"):
            status = "queued"
        elif decisions and res.get("advisory"):
            status = "recorded"
        else:
            status = "no_order"
        reasons = list(res.get("rejected", []))
        if status == "no_order":
            reasons.append("nothing to do: the target exposure is already met, or this signal_id was seen before")
        if status == "recorded":
            reasons.append("advisory mode: the decision is recorded, no order is sent")
        market = (await self.markets()).get(symbol)
        self.logs.add("WARNING" if status == "rejected" else "INFO", "orders",
                      f"{strategy_id} {action} {symbol} ({size:g}): {status}"
                      + (f" - {'; '.join(reasons)}" if reasons else ""), market)
        return {"status": status, "strategy_id": strategy_id, "signal_id": signal_id, "symbol": symbol,
                "orders": res.get("orders", []), "reasons": reasons, "decisions": decisions}

    async def close_symbol(self, symbol: str, strategy_id: str, reason: str) -> dict[str, Any]:
        sig = TradeSignal(action=SignalAction.CLOSE, symbol=symbol, position_size=0.0, confidence=1.0,
                          reasoning=reason, metadata={"source": "api"}, strategy_id=strategy_id,
                          signal_id=f"api-close-{uuid.uuid4().hex[:12]}")
        return await self.external_signal(strategy_id, sig)

    # ============================================================================ dashboard

    @fastapi_app.get("/", include_in_schema=False)
    async def index(self) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=DASHBOARD_HEADERS)

    @fastapi_app.get("/favicon.ico", include_in_schema=False)
    async def favicon(self) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    # =============================================================================== system

    @fastapi_app.get(f"{API}/health", response_model=Health, tags=["system"], summary="Liveness",
                     dependencies=READ)
    async def health(self) -> dict[str, Any]:
        """Answers while the HTTP app runs, whatever the actors do (open on a loopback bind; on any other
        bind every endpoint needs the token, this one too: give the probe the header)."""
        return {"status": "ok", "time": iso(datetime.now(UTC))}

    @fastapi_app.get(f"{API}/ready", response_model=Ready, tags=["system"], summary="Readiness: every actor answers",
                     dependencies=READ, responses={503: {"model": Problem}})
    async def ready(self) -> Response:
        h = await self.handles(fresh=True)
        names = {"gatekeeper": h["gatekeeper"], "router": h["router"], "portfolio": h["portfolio"],
                 **{f"feed:{k}": v for k, v in h["feeds"].items()},
                 **{f"strategy:{k}": v for k, v in h["strategies"].items()}}

        async def ping(handle: Any) -> str:
            try:
                await asyncio.wait_for(handle.ping.remote(), 3.0)
                return "ok"
            except Exception as exc:
                return f"not answering ({type(exc).__name__})"

        results = await asyncio.gather(*(ping(x) for x in names.values()))
        actors = dict(zip(names, results, strict=True))
        ok = all(v == "ok" for v in actors.values())
        if not ok:
            bad = ", ".join(k for k, v in actors.items() if v != "ok")
            return problem(503, f"not ready: {bad} not answering", actors=actors)
        return JSONResponse({"ready": True, "actors": actors})

    @fastapi_app.get(f"{API}/status", response_model=Status, tags=["system"], dependencies=READ,
                     summary="Environment, mode, kill switch, uptime, equity, lag per feed")
    async def status(self, fresh: Annotated[bool, Query(description="skip the poller's snapshot (at most "
                                                                     "1 s old) and ask every actor now")] = False
                     ) -> dict[str, Any]:
        """Served from the stream poller's snapshot when it is under 1 s old and no change was made through
        this API since (`snapshot_age_s` > 0), else read live from the actors (`snapshot_age_s` = 0)."""
        snap = self.hub.fresh_status()
        if snap is not None and not fresh:
            return snap
        h = await self.handles()
        gk_call = self.gather(h["gatekeeper"].stats.remote(), h["gatekeeper"].kill_switch.remote(),
                              h["gatekeeper"].mode.remote(), timeout=GATEKEEPER_READ_S)
        main, feeds, gk_res = await asyncio.gather(
            self.gather(h["portfolio"].status.remote(), h["router"].stats.remote(), self.sup().get_config.remote()),
            self.gather(*(f.stats.remote() for f in h["feeds"].values())), gk_call, return_exceptions=True)
        for res in (main, feeds):
            if isinstance(res, BaseException):
                raise res
        pf, rt, cfg = main
        warnings: list[str] = []
        if isinstance(gk_res, BaseException):
            cached = self.hub.gatekeeper_cache
            if not isinstance(gk_res, ApiError) or cached is None:
                raise gk_res
            at, gk_res = cached
            warnings.append(f"the risk gatekeeper did not answer within {GATEKEEPER_READ_S:g} s (busy): kill switch "
                            f"and mode as last seen {time.time() - at:.1f} s ago")
        gk, kill, mode = gk_res
        return build_status(gk, kill, mode, pf, rt, cfg, feeds, len(h["strategies"]), warnings)

    # ================================================================================= mode

    @fastapi_app.get(f"{API}/mode", response_model=ModeOut, tags=["mode"], dependencies=READ)
    async def get_mode(self) -> dict[str, Any]:
        h = await self.handles()
        mode, cfg = await self.gather(h["gatekeeper"].mode.remote(), self.sup().get_config.remote())
        return {**mode, "environment": cfg["config"].get("environment", "PAPER")}

    @fastapi_app.post(f"{API}/mode", response_model=ModeOut, tags=["mode"], dependencies=WRITE,
                      summary="advisory <-> operator (operator needs a two-step confirmation)")
    async def set_mode(self, body: ModeIn) -> dict[str, Any]:
        """To operator: call once without `confirm_token` (you get one, valid 60 s), then again with it.
        To advisory: one call, effective at once."""
        h = await self.handles()
        gk = h["gatekeeper"]
        env = (await self.config_state())["config"].get("environment", "PAPER")
        if body.mode == "advisory":
            res = await self.call(gk.set_advisory.remote(body.reason or "api"))
            self.logs.add("WARNING", "mode", f"mode -> advisory ({body.reason})")
            return {**res, "environment": env}
        if body.confirm_token:
            res = await self.call(gk.confirm_operator.remote(body.confirm_token))
            self.logs.add("WARNING", "mode", "mode -> operator (confirmed)")
            return {**res, "environment": env}
        req = await self.call(gk.request_operator.remote())
        mode = await self.call(gk.mode.remote())
        return {**mode, "environment": env, "confirmation_required": True, "confirm_token": req["token"],
                "expires_in_s": req["expires_in_s"]}

    # ========================================================================== kill switch

    @fastapi_app.get(f"{API}/kill-switch", response_model=KillSwitch, tags=["kill switch"], dependencies=READ)
    async def get_kill(self) -> dict[str, Any]:
        h = await self.handles()
        return _kill(await self.call(h["gatekeeper"].kill_switch.remote()))

    @fastapi_app.post(f"{API}/kill-switch", response_model=KillOut, tags=["kill switch"], dependencies=WRITE,
                      summary="SOFT: no new entries; HARD: flatten everything; FREEZE: stop everything; RUNNING: reset")
    async def set_kill(self, body: KillIn) -> dict[str, Any]:
        t0 = time.perf_counter()
        res = await self.call(self.sup().kill.remote(body.state, body.reason.strip()), timeout=30)
        out = {"kill_switch": _kill(res["kill_switch"]), "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}
        if "flatten" in res:
            out["flatten"] = {k: float(v) for k, v in res["flatten"].items()}
        if "canceled" in res:
            out["canceled"] = int(res["canceled"])
        self.logs.add("ERROR" if body.state in ("HARD", "FREEZE") else "WARNING", "kill_switch",
                      f"kill switch -> {body.state} via API: {body.reason}")
        self.hub.poke()
        return out

    # =========================================================================== strategies

    async def _strategies(self) -> list[dict[str, Any]]:
        h = await self.handles()
        sup = self.sup()
        # P&L from each strategy's own book (mmats.attribution), the same figures /pnl shows.
        listed, stats, cfg = await self.gather(sup.list_strategies.remote(), h["portfolio"].strategy_stats.remote(),
                                               sup.get_config.remote())
        conf = {s["id"]: s for s in cfg["config"].get("strategies", [])}
        out = []
        for s in listed:
            sid = s["id"]
            c = conf.get(sid, {})
            st = stats.get(sid, {})
            realized, unrealized, fees = (_dec(st.get(k, "0")) for k in ("realized_pnl", "unrealized_pnl", "fees"))
            trades = int(st.get("trades", 0))
            wins = int(st.get("wins", 0))
            enabled = bool(s.get("enabled", False))
            out.append({
                **{k: v for k, v in s.items() if k not in ("last_bar_ns",)},
                "version": cfg.get("versions", {}).get(sid, 1), "market": c.get("market"),
                "allocation": c.get("allocation"), "symbols": s.get("symbols") or c.get("symbols", []),
                "healthy": enabled and "error" not in s and int(s.get("consecutive_errors", 0)) == 0,
                "last_bar": iso(int(s["last_bar_ns"])) if s.get("last_bar_ns") else None,
                "fills": int(st.get("fills", 0)), "trades": trades, "wins": wins,
                "win_rate": round(wins / trades, 4) if trades else None,
                "realized_pnl": _money(realized), "unrealized_pnl": _money(unrealized), "fees": _money(fees),
                "net_pnl": _money(realized + unrealized - fees),
                "last_error": redact(str(s.get("last_error") or s.get("error") or "")),
            })
        return out

    async def _strategy(self, strategy_id: str) -> dict[str, Any]:
        for s in await self._strategies():
            if s["id"] == strategy_id:
                return s
        raise ApiError(404, f"unknown strategy {strategy_id!r}")

    @fastapi_app.get(f"{API}/strategies", response_model=Page[StrategyOut], tags=["strategies"], dependencies=READ,
                     summary="Strategies with health, P&L, win rate")
    async def list_strategies(self, offset: Offset = 0, limit: Limit = 100,
                              enabled: bool | None = Query(None, description="filter")) -> dict[str, Any]:
        items = await self._strategies()
        if enabled is not None:
            items = [s for s in items if bool(s.get("enabled")) == enabled]
        return paginate(items, offset, limit)

    @fastapi_app.get(f"{API}/strategies/{{strategy_id}}", response_model=StrategyOut, tags=["strategies"],
                     dependencies=READ)
    async def get_strategy(self, strategy_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        return await self._strategy(strategy_id)

    async def _submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        check_ref(spec["ref"])
        known = await self.markets()
        unknown = [s for s in spec["symbols"] if s not in known]
        if unknown:
            raise ApiError(400, f"symbols: {unknown} are not on any feed (feeds have {sorted(known)})")
        h = await self.handles()
        if spec["id"] in h["strategies"]:
            raise ApiError(409, f"strategy id {spec['id']!r} already exists: pick another id or replace it")
        await self.call(self.sup().submit_strategy.remote(spec), timeout=60)
        await self.handles(fresh=True)
        await self.config_state(fresh=True)
        self.logs.add("INFO", "strategies", f"strategy {spec['id']} submitted ({spec['ref']} on {spec['symbols']})",
                      spec.get("market"))
        return await self._strategy(spec["id"])

    @fastapi_app.post(f"{API}/strategies", response_model=StrategyOut, status_code=201, tags=["strategies"],
                      dependencies=WRITE, summary="Submit a strategy by reference (built-in name, file or module)")
    async def submit_strategy(self, body: StrategyIn) -> dict[str, Any]:
        return await self._submit(body.model_dump())

    async def _save_source(self, strategy_id: str, source: str, class_name: str) -> str:
        check_strategy_source(source, class_name)
        home = (await self.config_state())["config"].get("home", "var")
        folder = (Path(home) / "strategies").resolve()
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        path = folder / f"{strategy_id}-{digest}.py"

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(source)

        await asyncio.to_thread(write)
        return f"{path}:{class_name}"

    @fastapi_app.post(f"{API}/strategies/upload", response_model=StrategyOut, status_code=201, tags=["strategies"],
                      dependencies=WRITE, summary="Submit a strategy from an uploaded Python file")
    async def upload_strategy(self, body: StrategyUploadIn) -> dict[str, Any]:
        """The file is checked for syntax and the class (nothing runs in the API process), stored under
        `$MMATS_HOME/strategies/`, then loaded by a new strategy actor. Loading a file executes it: only upload
        code you trust."""
        h = await self.handles()
        if body.id in h["strategies"]:
            raise ApiError(409, f"strategy id {body.id!r} already exists: pick another id or replace it")
        ref = await self._save_source(body.id, body.source, body.class_name)
        spec = body.model_dump(exclude={"source", "class_name"})
        return await self._submit({**spec, "ref": ref})

    async def _replace(self, strategy_id: str, change: dict[str, Any]) -> dict[str, Any]:
        h = await self.handles()
        if strategy_id not in h["strategies"]:
            raise ApiError(404, f"unknown strategy {strategy_id!r}")
        if "ref" in change:
            check_ref(change["ref"])
        if "symbols" in change:
            known = await self.markets()
            unknown = [s for s in change["symbols"] if s not in known]
            if unknown:
                raise ApiError(400, f"symbols: {unknown} are not on any feed (feeds have {sorted(known)})")
        res = await self.call(self.sup().replace_strategy.remote(strategy_id, change), timeout=60)
        await self.handles(fresh=True)
        await self.config_state(fresh=True)
        self.logs.add("WARNING", "strategies", f"strategy {strategy_id} replaced by version {res['version']}")
        return await self._strategy(strategy_id)

    @fastapi_app.post(f"{API}/strategies/{{strategy_id}}/replace", response_model=StrategyOut, tags=["strategies"],
                      dependencies=WRITE, summary="Hot-replace with a new version (new ref, params, symbols or file)")
    async def replace_strategy(self, strategy_id: Annotated[str, PathParam(max_length=64)],
                               body: StrategyReplaceIn) -> dict[str, Any]:
        change = body.model_dump(exclude_none=True, exclude={"source", "class_name"})
        if body.source is not None:
            if not body.class_name:
                raise ApiError(422, "class_name: required with source")
            change["ref"] = await self._save_source(strategy_id, body.source, body.class_name)
        if not change:
            raise ApiError(422, "body: give at least one of ref, params, symbols, source")
        return await self._replace(strategy_id, change)

    @fastapi_app.get(f"{API}/strategies/{{strategy_id}}/params", response_model=ParamsOut, tags=["strategies"],
                     dependencies=READ)
    async def get_params(self, strategy_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        s = await self._strategy(strategy_id)
        return {"id": s["id"], "ref": s["ref"], "version": s["version"], "params": s["params"]}

    @fastapi_app.put(f"{API}/strategies/{{strategy_id}}/params", response_model=ParamsOut, tags=["strategies"],
                     dependencies=WRITE, summary="New parameters: a new version replaces the running actor")
    async def set_params(self, strategy_id: Annotated[str, PathParam(max_length=64)], body: ParamsIn) -> dict[str, Any]:
        s = await self._replace(strategy_id, {"params": body.params})
        return {"id": s["id"], "ref": s["ref"], "version": s["version"], "params": s["params"]}

    @fastapi_app.post(f"{API}/strategies/{{strategy_id}}/enable", response_model=ToggleOut, tags=["strategies"],
                      dependencies=WRITE)
    async def enable_strategy(self, strategy_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        res = await self.call(self.sup().set_strategy_enabled.remote(strategy_id, True, False))
        await self.config_state(fresh=True)
        self.logs.add("INFO", "strategies", f"strategy {strategy_id} enabled")
        return {"id": res["id"], "enabled": True, "close_positions": False, "closes": []}

    @fastapi_app.post(f"{API}/strategies/{{strategy_id}}/disable", response_model=ToggleOut, tags=["strategies"],
                      dependencies=WRITE, summary="Disable; optionally close the positions in its symbols")
    async def disable_strategy(self, strategy_id: Annotated[str, PathParam(max_length=64)],
                               body: Annotated[DisableIn | None, Body()] = None) -> dict[str, Any]:
        """Positions are netted per symbol across strategies: `close_positions` sends a CLOSE signal (through the
        gatekeeper, as this strategy) for each of its symbols that has an open position."""
        body = body or DisableIn()
        res = await self.call(self.sup().set_strategy_enabled.remote(strategy_id, False, body.close_positions,
                                                                      body.reason), timeout=30)
        await self.config_state(fresh=True)
        closes = [await self.describe_outcome(strategy_id, "CLOSE", c["symbol"], 0.0, c["signal_id"], c["result"])
                  for c in res.get("closes", [])]
        self.logs.add("WARNING", "strategies", f"strategy {strategy_id} disabled ({body.reason})"
                      + (f", {len(closes)} position(s) closing" if closes else ""))
        return {"id": res["id"], "enabled": False, "close_positions": body.close_positions, "closes": closes}

    # ============================================================================ positions

    async def _positions(self) -> list[dict[str, Any]]:
        h = await self.handles()
        pf = await self.call(h["portfolio"].status.remote())
        out = []
        for p in pf.get("positions", []):
            qty = _dec(p.get("quantity"))
            out.append({**p, "side": "LONG" if qty > 0 else "SHORT" if qty < 0 else "FLAT",
                        "notional": _money(abs(qty) * _dec(p.get("last_price")))})
        return out

    @fastapi_app.get(f"{API}/positions", response_model=Page[PositionOut], tags=["positions"], dependencies=READ)
    async def list_positions(self, offset: Offset = 0, limit: Limit = 100,
                             market: Market | None = None) -> dict[str, Any]:
        items = await self._positions()
        if market:
            items = [p for p in items if p.get("market") == market]
        return paginate(items, offset, limit)

    @fastapi_app.post(f"{API}/positions/close", response_model=OrderResult, tags=["positions"], dependencies=WRITE,
                      summary="Close one position (a CLOSE signal through the risk gatekeeper)")
    async def close_position(self, body: CloseIn) -> dict[str, Any]:
        await self.feed_for(body.symbol)
        held = {p["symbol"] for p in await self._positions() if p["side"] != "FLAT"}
        if body.symbol not in held:
            raise ApiError(409, f"no open position in {body.symbol}")
        return await self.close_symbol(body.symbol, "manual", body.reason)

    @fastapi_app.post(f"{API}/positions/close-all", response_model=CloseAllOut, tags=["positions"], dependencies=WRITE,
                      summary="Close every position: two steps, with a confirmation token")
    async def close_all(self, body: CloseAllIn) -> dict[str, Any]:
        positions = [p for p in await self._positions() if p["side"] != "FLAT"]
        if not body.confirm_token:
            token = self.new_confirmation("close-all")
            return {"confirmation_required": True, "confirm_token": token, "expires_in_s": CONFIRM_TTL_S,
                    "positions": len(positions)}
        self.take_confirmation("close-all", body.confirm_token)
        results = [await self.close_symbol(p["symbol"], "manual", body.reason) for p in positions]
        self.logs.add("WARNING", "positions", f"close-all confirmed: {len(results)} position(s) ({body.reason})")
        return {"confirmation_required": False, "positions": len(positions), "results": results}

    # =============================================================================== orders

    @fastapi_app.get(f"{API}/orders", response_model=Page[OrderOut], tags=["orders"], dependencies=READ,
                     summary="Orders, newest first, filtered by status, symbol, strategy and creation time")
    async def list_orders(
        self, offset: Offset = 0, limit: Limit = 100,
        status: Annotated[str | None, Query(max_length=20, description="NEW, ACCEPTED, PARTIALLY_FILLED, FILLED, "
                                                                          "CANCELED, REJECTED, ... or 'open'")] = None,
        symbol: Annotated[str | None, Query(max_length=40)] = None,
        strategy: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
        until: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
    ) -> dict[str, Any]:
        h = await self.handles()
        if status and status.lower() == "open":
            rows = await self.call(h["router"].open_orders.remote())
            rows = [o for o in rows if (not symbol or o["symbol"] == symbol)
                    and (not strategy or o["strategy_id"] == strategy)]
        else:
            rows = await self.call(h["router"].orders.remote(status, symbol, strategy))
        lo = since.replace(tzinfo=since.tzinfo or UTC) if since else None
        hi = until.replace(tzinfo=until.tzinfo or UTC) if until else None
        if lo or hi:
            def keep(o: dict[str, Any]) -> bool:
                t = _parse_time(o.get("created"))
                return t is not None and (lo is None or t >= lo) and (hi is None or t < hi)
            rows = [o for o in rows if keep(o)]
        return paginate(newest_first(rows), offset, limit)

    @fastapi_app.get(f"{API}/orders/open", response_model=Page[OrderOut], tags=["orders"], dependencies=READ)
    async def open_orders(self, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
        h = await self.handles()
        rows = await self.call(h["router"].open_orders.remote())
        return paginate(newest_first(rows), offset, limit)

    @fastapi_app.post(f"{API}/orders", response_model=OrderResult, tags=["orders"], dependencies=WRITE,
                      summary="Manual order: a signal that goes through the risk gatekeeper like any other")
    async def manual_order(self, body: ManualOrderIn) -> dict[str, Any]:
        """`target_exposure` is the share of the strategy's allocation to hold on `side` (0 = flat), as for
        every MMATS signal; the gatekeeper sizes it, checks every risk rule and the kill switch, and sends
        the order in operator mode (advisory mode records the decision only)."""
        from mmats.signals import parse_external_signal

        raw = body.model_dump(exclude={"order_type", "limit_price"})
        raw["signal_id"] = body.signal_id or f"api-{uuid.uuid4().hex[:16]}"
        try:
            signal = parse_external_signal(raw)
        except MmatsError as exc:
            raise ApiError(422, str(exc)) from None
        if body.order_type == "LIMIT":
            if body.limit_price is None:
                raise ApiError(422, "limit_price: required for a LIMIT order")
            signal.metadata.update({"order_type": "LIMIT", "limit_price": body.limit_price})
        signal.metadata["source"] = "api"
        return await self.external_signal(body.strategy_id, signal)

    @fastapi_app.post(f"{API}/orders/cancel", response_model=BulkCancelOut, tags=["orders"], dependencies=WRITE,
                      summary="Bulk cancel: by ids, symbol and/or strategy, or all")
    async def bulk_cancel(self, body: BulkCancelIn) -> dict[str, Any]:
        if not (body.client_order_ids or body.symbol or body.strategy_id or body.all):
            raise ApiError(422, "body: give client_order_ids, symbol, strategy_id, or all: true")
        h = await self.handles()
        rows = await self.call(h["router"].open_orders.remote())
        ids = set(body.client_order_ids or [])
        chosen = [o["client_order_id"] for o in rows
                  if (not ids or o["client_order_id"] in ids) and (not body.symbol or o["symbol"] == body.symbol)
                  and (not body.strategy_id or o["strategy_id"] == body.strategy_id)]
        results = await self.gather(*(h["router"].cancel_order.remote(cid) for cid in chosen))
        canceled = [cid for cid, ok in zip(chosen, results, strict=True) if ok]
        self.logs.add("WARNING", "orders", f"bulk cancel: {len(canceled)} order(s) canceled")
        return {"canceled": canceled, "count": len(canceled)}

    @fastapi_app.get(f"{API}/orders/{{client_order_id}}", response_model=OrderOut, tags=["orders"], dependencies=READ)
    async def get_order(self, client_order_id: Annotated[str, PathParam(max_length=200)]) -> dict[str, Any]:
        h = await self.handles()
        for o in await self.call(h["router"].orders.remote()):
            if o["client_order_id"] == client_order_id:
                return dict(o)
        raise ApiError(404, f"unknown order {client_order_id!r}")

    @fastapi_app.delete(f"{API}/orders/{{client_order_id}}", response_model=CancelOut, tags=["orders"],
                        dependencies=WRITE, summary="Cancel one order")
    async def cancel_order(self, client_order_id: Annotated[str, PathParam(max_length=200)]) -> dict[str, Any]:
        h = await self.handles()
        ok = await self.call(h["router"].cancel_order.remote(client_order_id))
        if not ok:
            order = await self.get_order(client_order_id)  # 404 when it does not exist
            raise ApiError(409, f"order {client_order_id} is {order['status']}: it can no longer be canceled")
        self.logs.add("INFO", "orders", f"order {client_order_id} canceled")
        return {"client_order_id": client_order_id, "canceled": True}

    # ============================================================================== signals

    async def _signals(self, full: bool = False) -> list[dict[str, Any]]:
        """The gatekeeper's recent window (lists), or every signal recorded (``full``: exports)."""
        h = await self.handles()
        rows = await self.call(h["gatekeeper"].signal_records.remote(full=full))
        return [{**r, "reasoning": redact(str(r.get("reasoning") or ""))} for r in rows]

    @fastapi_app.get(f"{API}/signals", response_model=Page[SignalOut], tags=["signals"], dependencies=READ,
                     summary="Signals with their risk decision, newest first")
    async def list_signals(self, offset: Offset = 0, limit: Limit = 100,
                           strategy: Annotated[str | None, Query(max_length=64)] = None,
                           symbol: Annotated[str | None, Query(max_length=40)] = None,
                           action: Literal["BUY", "SELL", "CLOSE", "HOLD"] | None = None) -> dict[str, Any]:
        rows = [s for s in await self._signals() if (not strategy or s["strategy_id"] == strategy)
                and (not symbol or s["symbol"] == symbol) and (not action or s["action"] == action)]
        rows.reverse()
        return paginate(rows, offset, limit)

    @fastapi_app.get(f"{API}/signals/export", tags=["signals"], dependencies=READ,
                     summary="Every signal as a CSV or JSON download",
                     responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                                  "application/json": {"schema": {"type": "array",
                                                                                  "items": {"type": "object"}}}}}})
    async def export_signals(self, format: Literal["csv", "json"] = "csv") -> Response:
        rows = await self._signals(full=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if format == "json":
            return Response(json.dumps(rows, indent=1), media_type="application/json",
                            headers={"Content-Disposition": f'attachment; filename="signals-{stamp}.json"'})
        buf = io.StringIO()
        fields = ["time", "strategy_id", "symbol", "action", "position_size", "confidence", "price", "reasoning",
                  "decision", "decision_reasons"]
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "decision_reasons": "; ".join(r.get("decision_reasons", []))})
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="signals-{stamp}.csv"'})

    # ================================================================================= risk

    async def _limits(self) -> dict[str, Any]:
        """The limits the gatekeeper runs: the config's ``risk`` block, flat keys as global limits."""
        from mmats.model import Environment
        from mmats.risk.gatekeeper import system_risk_config
        from mmats.risk.limits import parse_risk_config

        cfg = (await self.config_state())["config"]
        raw = cfg.get("risk") or {}
        env = cfg.get("environment", "PAPER")
        eff = parse_risk_config(system_risk_config(raw)).for_environment(Environment(env))
        lv = eff.levels
        levels = {"global": lv.global_.model_dump(exclude_none=True)}
        levels.update({f"market:{k.value}": v.model_dump(exclude_none=True) for k, v in lv.markets.items()})
        levels.update({f"strategy:{k}": v.model_dump(exclude_none=True) for k, v in lv.strategies.items()})
        levels.update({f"symbol:{k}": v.model_dump(exclude_none=True) for k, v in lv.symbols.items()})
        return {"source": "risk_config", "environment": env, "profile": eff.profile, "levels": levels,
                "kill_switch": lv.kill_switch.model_dump(mode="json", exclude_none=True), "raw": raw}

    @fastapi_app.get(f"{API}/risk/limits", response_model=LimitsOut, tags=["risk"], dependencies=READ,
                     summary="Limits per level (global, market, strategy, symbol) and kill-switch thresholds")
    async def risk_limits(self) -> dict[str, Any]:
        return await self._limits()

    @fastapi_app.get(f"{API}/risk/utilization", response_model=UtilizationOut, tags=["risk"], dependencies=READ,
                     summary="Current value of each limit in % of the limit, and the exposure breakdown")
    async def risk_utilization(self) -> dict[str, Any]:
        limits = await self._limits()
        h = await self.handles()
        pf = await self.call(h["portfolio"].status.remote())
        equity = _num(pf.get("equity"))
        g = limits["levels"].get("global", {})
        items: list[dict[str, Any]] = []

        def add(key: str, scope: str, level: str, limit_value: Any, current: float) -> None:
            lim = _num(limit_value)
            if lim > 0:
                items.append({"limit": key, "scope": scope, "level": level, "limit_value": lim,
                              "current": round(current, 8), "utilization_pct": round(100 * current / lim, 2)})

        by_symbol: list[dict[str, Any]] = []
        by_market: dict[str, float] = {}
        gross = net = 0.0
        for p in pf.get("positions", []):
            qty, px = _num(p.get("quantity")), _num(p.get("last_price"))
            notional = qty * px
            gross += abs(notional)
            net += notional
            by_market[p.get("market", "?")] = by_market.get(p.get("market", "?"), 0.0) + abs(notional)
            pct = abs(notional) / equity if equity > 0 else 0.0
            by_symbol.append({"name": p["symbol"], "notional": round(notional, 2), "pct_of_equity": round(pct, 6)})
            level, lim = "global", g.get("max_position_pct")
            for lv in (f"market:{p.get('market')}", f"symbol:{p['symbol']}"):
                v = limits["levels"].get(lv, {}).get("max_position_pct")
                if v is not None and (lim is None or v < lim):
                    level, lim = lv, v
            add("max_position_pct", f"symbol:{p['symbol']}", level, lim, pct)
        if not by_symbol:  # flat: the position limit is still there, at 0 %
            add("max_position_pct", "any symbol", "global", g.get("max_position_pct"), 0.0)
        eq = equity if equity > 0 else float("inf")
        add("max_open_positions", "account", "global", g.get("max_open_positions"), float(len(pf.get("positions", []))))
        add("max_leverage", "account", "global", g.get("max_leverage"), gross / eq)
        add("max_gross_exposure", "account", "global", g.get("max_gross_exposure"), gross)
        add("max_net_exposure_pct", "account", "global", g.get("max_net_exposure_pct"), abs(net) / eq)
        drawdown = abs(_num(pf.get("drawdown")))
        add("max_drawdown_pct", "account", "global", g.get("max_drawdown_pct"), drawdown)
        daily_loss = max(0.0, -_num(pf.get("daily_pnl")))
        add("max_daily_loss", "account", "global", g.get("max_daily_loss"), daily_loss)
        add("max_daily_loss_pct", "account", "global", g.get("max_daily_loss_pct"), daily_loss / eq)
        for m, v in by_market.items():
            lim = limits["levels"].get(f"market:{m}", {}).get("max_market_exposure_pct",
                                                              g.get("max_market_exposure_pct"))
            add("max_market_exposure_pct", f"market:{m}", f"market:{m}", lim, v / eq)
        ks = limits.get("kill_switch", {})
        add("kill_switch.max_drawdown_pct", "account", "kill_switch", ks.get("max_drawdown_pct"), drawdown)
        add("kill_switch.daily_loss_pct", "account", "kill_switch", ks.get("daily_loss_pct"), daily_loss / eq)
        markets = [{"name": m, "notional": round(v, 2), "pct_of_equity": round(v / eq, 6) if equity > 0 else 0.0}
                   for m, v in sorted(by_market.items())]
        return {"equity": equity, "gross_exposure": round(gross, 2), "net_exposure": round(net, 2), "items": items,
                "by_symbol": by_symbol, "by_market": markets}

    @fastapi_app.get(f"{API}/risk/alerts", response_model=Page[AlertOut], tags=["risk"], dependencies=READ,
                     summary="Alert history, newest first")
    async def risk_alerts(self, offset: Offset = 0, limit: Limit = 100,
                          kind: Annotated[str | None, Query(max_length=40)] = None) -> dict[str, Any]:
        h = await self.handles()
        rows = [_alert(a) for a in await self.call(h["gatekeeper"].get_alerts.remote())]
        if kind:
            rows = [a for a in rows if a["kind"] == kind]
        rows.reverse()
        return paginate(rows, offset, limit)

    @fastapi_app.get(f"{API}/risk/decisions", response_model=Page[DecisionOut], tags=["risk"], dependencies=READ,
                     summary="Risk decisions (approved, resized, rejected with reasons), newest first")
    async def risk_decisions(self, offset: Offset = 0, limit: Limit = 100,
                             status: Annotated[str | None, Query(max_length=20)] = None,
                             strategy: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
        h = await self.handles()
        rows = await self.call(h["gatekeeper"].get_decisions.remote())
        rows = [d for d in rows if (not status or d.get("status") == status.upper())
                and (not strategy or d.get("strategy_id") == strategy)]
        rows.reverse()
        return paginate(rows, offset, limit)

    # ================================================================================== P&L

    @fastapi_app.get(f"{API}/pnl", response_model=PnlOut, tags=["pnl"], dependencies=READ,
                     summary="Daily and total P&L, per market and per strategy")
    async def pnl(self) -> dict[str, Any]:
        h = await self.handles()
        pf, stats = await self.gather(h["portfolio"].status.remote(), h["portfolio"].strategy_stats.remote())
        attribution = pf.get("attribution", {})
        unreal: dict[str, Decimal] = {}
        for p in pf.get("positions", []):
            unreal[p.get("market", "?")] = unreal.get(p.get("market", "?"), Decimal(0)) + _dec(p.get("unrealized_pnl"))
        by_market = []
        for m in sorted(set(attribution.get("by_market", {})) | set(unreal)):
            a = attribution.get("by_market", {}).get(m, {})
            r, f, u = _dec(a.get("realized_pnl")), _dec(a.get("fees")), unreal.get(m, Decimal(0))
            by_market.append({"name": m, "realized_pnl": _money(r), "unrealized_pnl": _money(u), "fees": _money(f),
                              "net_pnl": _money(r + u - f)})
        by_strategy = []  # each strategy's own book of its own fills (mmats.attribution)
        for sid in sorted(stats):
            st = stats[sid]
            r, u, f = _dec(st.get("realized_pnl")), _dec(st.get("unrealized_pnl")), _dec(st.get("fees"))
            by_strategy.append({"name": sid, "realized_pnl": _money(r), "unrealized_pnl": _money(u), "fees": _money(f),
                                "net_pnl": _money(r + u - f)})
        keys = ("currency", "as_of", "equity", "initial_cash", "cash", "total_pnl", "daily_pnl", "realized_pnl",
                "unrealized_pnl", "fees", "peak_equity", "drawdown")
        out = {k: pf.get(k) for k in keys}
        out["drawdown"] = abs(_num(pf.get("drawdown")))
        return {**out, "by_market": by_market, "by_strategy": by_strategy}

    @fastapi_app.get(f"{API}/pnl/equity", response_model=EquityOut, tags=["pnl"], dependencies=READ,
                     summary="Equity and drawdown series (bar time), down-sampled to at most `points`")
    async def equity(self, points: Annotated[int, Query(ge=2, le=5000)] = 1000) -> dict[str, Any]:
        h = await self.handles()
        series = await self.call(h["portfolio"].equity.remote())
        out, peak, worst = [], float("-inf"), 0.0
        full = []
        for ts, eq in series:
            peak = max(peak, eq)
            dd = (peak - eq) / peak if peak > 0 else 0.0
            worst = max(worst, dd)
            full.append((ts, eq, dd))
        step = max(1, -(-len(full) // points))
        picked = full[::step]
        if full and picked[-1] is not full[-1]:
            picked.append(full[-1])
        for ts, eq, dd in picked:
            out.append({"time": iso(int(ts)), "t": ts / 1e9, "equity": eq, "drawdown": round(dd, 8)})
        return {"points": out, "max_drawdown": round(worst, 8)}

    # =============================================================================== config

    async def _current_config(self) -> tuple[dict[str, Any], dict[str, Any]]:
        state = await self.config_state(fresh=True)
        return state["config"], state

    async def _ensure_baseline(self, current: dict[str, Any]) -> None:
        """The running config is version 1 of a fresh store (who: system)."""
        st = await self.store()
        latest = await asyncio.to_thread(st.get, None)
        if latest is None:
            await asyncio.to_thread(st.save, mask_config(current), "system", "running config at start", [])

    @fastapi_app.get(f"{API}/config", response_model=ConfigOut, tags=["config"], dependencies=READ,
                     summary="The running configuration (secrets masked)")
    async def get_config(self) -> dict[str, Any]:
        current, state = await self._current_config()
        await self._ensure_baseline(current)
        st = await self.store()
        latest = await asyncio.to_thread(st.get, None)
        masked = mask_config(current)
        version = None
        if latest is not None and (latest.get("content") or {}).get("config") == masked:
            version = latest["version"]
        return {"version": version, "environment": current.get("environment", "PAPER"), "config": masked,
                "restart_required": state.get("restart_required", [])}

    @fastapi_app.post(f"{API}/config/validate", response_model=ValidateOut, tags=["config"], dependencies=READ,
                      summary="Validate a configuration without applying it")
    async def validate_config(self, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        from mmats.system_config import SystemConfig

        try:
            SystemConfig.model_validate(body)
        except PydanticValidationError as exc:
            return {"valid": False, "errors": pydantic_errors(exc, "config.")}
        return {"valid": True, "errors": []}

    async def _apply(self, new: dict[str, Any], author: str, comment: str) -> dict[str, Any]:
        from mmats.system_config import SystemConfig

        current, _ = await self._current_config()
        await self._ensure_baseline(current)
        new = unmask_config(new, current)
        try:
            validated = SystemConfig.model_validate(new).model_dump(mode="json")
        except PydanticValidationError as exc:
            errors = pydantic_errors(exc, "config.")
            raise ApiError(422, f"{errors[0]['loc']}: {errors[0]['msg']}", errors=errors) from None
        for s in validated.get("strategies", []):
            if s["id"] not in {x["id"] for x in current.get("strategies", [])}:
                check_ref(s["ref"])
        changes = config_changes(current, validated)
        res = await self.call(self.sup().apply_config.remote(validated), timeout=120)
        await self.handles(fresh=True)
        now_cfg, _ = await self._current_config()
        st = await self.store()
        rec = await asyncio.to_thread(st.save, mask_config(now_cfg), author, comment, changes)
        self.logs.add("WARNING", "config", f"config version {rec['version']} by {author}: "
                                           f"{'; '.join(changes) or 'no change'}")
        return {"version": rec["version"], "time": rec["time"], "author": author, "comment": comment,
                "changes": changes, "applied": res.get("applied", []),
                "restart_required": res.get("restart_required", [])}

    @fastapi_app.put(f"{API}/config", response_model=ConfigUpdateOut, tags=["config"], dependencies=WRITE,
                     summary="Update: a new version (who, when, what); strategy changes apply at once")
    async def put_config(self, body: ConfigUpdateIn) -> dict[str, Any]:
        return await self._apply(body.config, body.author, body.comment)

    @fastapi_app.get(f"{API}/config/history", response_model=Page[ConfigVersionOut], tags=["config"],
                     dependencies=READ, summary="Config versions, newest first")
    async def config_history(self, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
        current, _ = await self._current_config()
        await self._ensure_baseline(current)
        st = await self.store()
        rows = [version_out(r) for r in await asyncio.to_thread(st.list)]
        rows.reverse()
        return paginate(rows, offset, limit)

    @fastapi_app.get(f"{API}/config/history/{{version}}", response_model=ConfigVersionFull, tags=["config"],
                     dependencies=READ)
    async def config_version(self, version: Annotated[int, PathParam(ge=1, le=10_000_000)]) -> dict[str, Any]:
        st = await self.store()
        rec = await asyncio.to_thread(st.get, version)
        if rec is None:
            raise ApiError(404, f"no config version {version}")
        return version_out(rec, full=True)

    @fastapi_app.post(f"{API}/config/rollback", response_model=ConfigUpdateOut, tags=["config"], dependencies=WRITE,
                      summary="Re-apply an older version (saved as a new version)")
    async def rollback(self, body: RollbackIn) -> dict[str, Any]:
        st = await self.store()
        rec = await asyncio.to_thread(st.get, body.version)
        if rec is None:
            raise ApiError(404, f"no config version {body.version}")
        content = (rec.get("content") or {}).get("config")
        if not isinstance(content, dict):
            raise ApiError(409, f"config version {body.version} holds no configuration")
        return await self._apply(content, body.author, body.comment or f"rollback to version {body.version}")

    @fastapi_app.get(f"{API}/config/export", tags=["config"], dependencies=READ,
                     summary="The running config as a JSON or YAML file (secrets masked)",
                     responses={200: {"content": {"application/json": {"schema": {"type": "object"}},
                                                  "application/yaml": {"schema": {"type": "object"}}}}})
    async def export_config(self, format: Literal["json", "yaml"] = "yaml") -> Response:
        current, _ = await self._current_config()
        masked = mask_config(current)
        if format == "json":
            return Response(json.dumps(masked, indent=1), media_type="application/json",
                            headers={"Content-Disposition": 'attachment; filename="mmats-config.json"'})
        return Response(yaml.safe_dump(masked, sort_keys=False), media_type="application/yaml",
                        headers={"Content-Disposition": 'attachment; filename="mmats-config.yaml"'})

    @fastapi_app.post(f"{API}/config/import", response_model=ConfigUpdateOut, tags=["config"], dependencies=WRITE,
                      summary="Import a JSON or YAML config file (validated, then applied as a new version)")
    async def import_config(self, body: ConfigImportIn) -> dict[str, Any]:
        try:
            data = json.loads(body.content) if body.format == "json" else yaml.safe_load(body.content)
        except (ValueError, yaml.YAMLError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ApiError(422, f"content: not valid {body.format}: {first}") from None
        if not isinstance(data, dict):
            raise ApiError(422, f"content: a {body.format} mapping (object) is expected")
        return await self._apply(data, body.author, body.comment)

    # ================================================================================ audit

    @fastapi_app.get(f"{API}/audit", response_model=AuditPage, tags=["audit"], dependencies=READ,
                     summary="Audit records in chain order (default: the latest `limit`)")
    async def audit(self, from_seq: Annotated[int | None, Query(ge=1, le=10**12)] = None, limit: Limit = 100,
                    kind: Annotated[str | None, Query(max_length=40)] = None) -> dict[str, Any]:
        storage = await self.audit_storage()

        def read() -> dict[str, Any]:
            total = storage.audit_count()
            start = from_seq if from_seq is not None else max(1, total - limit + 1)
            items: list[dict[str, Any]] = []
            last = start - 1
            for rec in storage.audit_records(from_seq=start):
                last = rec.seq
                if kind and rec.kind != kind:
                    continue
                items.append({"seq": rec.seq, "time": iso(rec.ts_ns), "kind": rec.kind,
                              "payload": json.loads(redact(json.dumps(rec.payload))),
                              "prev_hash": rec.prev_hash, "hash": rec.hash})
                if len(items) >= limit:
                    break
            nxt = last + 1 if last < total and items else None
            return {"items": items, "total": total, "from_seq": start, "limit": limit, "next_from_seq": nxt}

        return await asyncio.to_thread(read)

    @fastapi_app.get(f"{API}/audit/verify", response_model=VerifyOut, tags=["audit"], dependencies=READ,
                     summary="Re-hash the whole chain and report the first damaged record")
    async def audit_verify(self) -> dict[str, Any]:
        storage = await self.audit_storage()
        v = await asyncio.to_thread(storage.verify_audit)
        return {"ok": v.ok, "records": v.records, "first_bad_seq": v.first_bad_seq, "problem": v.problem,
                "head_hash": v.head_hash}

    # ============================================================================== markets

    @fastapi_app.get(f"{API}/markets", response_model=list[MarketOut], tags=["markets"], dependencies=READ,
                     summary="Feeds by market with their symbols and last prices")
    async def markets_view(self) -> list[dict[str, Any]]:
        cfg = (await self.config_state())["config"]
        h = await self.handles()
        feeds = [f for f in cfg.get("feeds", []) if f.get("venue") in h["feeds"]]
        prices = await self.gather(*(h["feeds"][f["venue"]].last_prices.remote() for f in feeds))
        return [{"market": f.get("market", "crypto"), "venue": f["venue"],
                 "symbols": feed_symbols(f), "last_prices": p}
                for f, p in zip(feeds, prices, strict=True)]

    @fastapi_app.get(f"{API}/bars", response_model=BarsOut, tags=["markets"], dependencies=READ,
                     summary="The latest bars of a symbol (what the feed has published)")
    async def bars(self, symbol: Annotated[str, Query(min_length=1, max_length=40)],
                   limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
        feed = await self.feed_for(symbol)
        rows = await self.call(feed.get_history.remote([symbol], limit))
        market = (await self.markets()).get(symbol, "crypto")
        return {"symbol": symbol, "market": market,
                "bars": [{"time": iso(int(b[1])), "t": b[1] / 1e9, "open": b[2], "high": b[3], "low": b[4],
                          "close": b[5], "volume": b[6]} for b in rows]}

    # ================================================================================= logs

    @fastapi_app.get(f"{API}/logs", response_model=Page[LogOut], tags=["logs"], dependencies=READ,
                     summary="The control plane's event log, newest first, filterable")
    async def get_logs(self, offset: Offset = 0, limit: Limit = 200,
                       level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None,
                       module: Annotated[str | None, Query(max_length=40)] = None,
                       market: Annotated[str | None, Query(max_length=20)] = None) -> dict[str, Any]:
        await self.handles()
        floor = LOG_LEVELS.index(level) if level else 0
        rows = [r for r in self.logs.items if LOG_LEVELS.index(r["level"]) >= floor
                and (not module or r["module"] == module or r["module"].startswith(module + ":"))
                and (not market or r.get("market") == market)]
        rows.reverse()
        return paginate(rows, offset, limit)

    # =============================================================================== stream

    @fastapi_app.get(f"{API}/stream", tags=["stream"], dependencies=READ,
                     summary="Server-Sent Events: status, prices, equity, signals, orders, fills, alerts, logs",
                     responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def stream(self, topics: Annotated[str | None, Query(max_length=200, description="comma-separated")] = None,
                     max_seconds: Annotated[float | None, Query(gt=0, le=86400)] = None,
                     last_event_id: Annotated[str | None, Header(max_length=20)] = None) -> Response:
        """Each event: `id: <n>`, `event: <topic>`, `data: <JSON>`. A comment line every 15 s keeps the
        connection open; `max_seconds` ends the stream (for scripts). Reconnect with `Last-Event-ID` to get
        the events you missed (the last 2,000 are kept)."""
        wanted = set(STREAM_TOPICS)
        if topics:
            wanted = {t.strip() for t in topics.split(",") if t.strip()}
            bad = sorted(wanted - set(STREAM_TOPICS))
            if bad:
                raise ApiError(422, f"topics: unknown {bad}; known: {', '.join(STREAM_TOPICS)}")
        await self.handles()
        since = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
        queue = self.hub.subscribe()
        backlog = self.hub.backlog(since) if since is not None else self.hub.latest()
        deadline = time.monotonic() + max_seconds if max_seconds else None

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                for ev in backlog:
                    if ev["topic"] in wanted:
                        yield _sse(ev)
                while deadline is None or time.monotonic() < deadline:
                    wait = 15.0 if deadline is None else max(0.0, min(15.0, deadline - time.monotonic()))
                    try:
                        ev = await asyncio.wait_for(queue.get(), wait)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if ev is None:
                        break
                    if ev["topic"] in wanted:
                        yield _sse(ev)
            finally:
                self.hub.unsubscribe(queue)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ================================================================================ app builders


def make_app(supervisor: str = SUPERVISOR, namespace: str = NAMESPACE, token_sha256: str = "",
             auth_all: bool = False, poll_s: float = 0.5) -> Any:
    """The bound application (what ``serve.run`` takes). ``auth_all``: every endpoint needs the token."""
    options: dict[str, Any] = {"num_cpus": 0}
    # serve_app.py is a top-level file, not part of the installed packages: replicas import it from here.
    pythonpath = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    options["runtime_env"] = {"env_vars": {"PYTHONPATH": pythonpath}}
    return ControlPlane.options(ray_actor_options=options).bind(supervisor, namespace, token_sha256, auth_all, poll_s)


def build_app(args: dict[str, str] | None = None) -> Any:
    """``serve run serve_app:build_app [supervisor=..] [namespace=..] [host=..] [home=..]``.

    Resolves the API token (``$MMATS_API_TOKEN`` or ``<home>/secrets/api_token``, created and printed once).
    ``host`` says where Serve is bound: a non-loopback host makes every endpoint require the token.
    """
    args = dict(args or {})
    home = args.get("home") or os.environ.get("MMATS_HOME") or "var"
    host = args.get("host") or os.environ.get("MMATS_API_HOST") or "127.0.0.1"
    token, created, where = load_or_create_token(home)
    if created:
        print(f"MMATS API token (shown once; stored in {where}, mode 0600):\n  {token}", flush=True)
    auth_all = not is_loopback(host) or args.get("auth_all", "").lower() in ("1", "true", "yes")
    return make_app(args.get("supervisor", SUPERVISOR), args.get("namespace", NAMESPACE), token_digest(token),
                    auth_all, float(args.get("poll_s", 0.5)))


def __getattr__(name: str) -> Any:
    """``serve run serve_app:app`` builds the app on first access (importing this module has no side effect)."""
    if name == "app":
        return build_app({})
    raise AttributeError(name)
