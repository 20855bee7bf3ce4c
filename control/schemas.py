"""The HTTP API's bodies: what each endpoint takes and answers (the OpenAPI schema is generated from these).

Inputs forbid unknown fields and bound every string and list, so a malformed request is refused with the
field's path before anything runs; outputs ignore extra keys the actors may add.
"""

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


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


class VenueStatus(Model):
    venue: str
    breaker: str = Field(description="the venue's circuit breaker: closed, open or half_open")
    last_reconcile: str | None = Field(None, description="last reconciliation with the venue (ISO time)")
    last_error: str | None = None
    orders_unknown: int = Field(0, description="orders whose fate the venue has not confirmed yet")


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
    venues: list[VenueStatus] = Field(default_factory=list, description="LIVE: one row per venue (empty otherwise)")


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

    params: dict[str, Any] = Field(description="merged onto the running parameters: the ones not named keep "
                                   "their values")
    reset: bool = Field(False, description="true: start from the strategy's defaults instead (only `params` "
                        "given here are set)")


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
