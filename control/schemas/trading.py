"""HTTP bodies: positions, orders."""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from control.schemas.base import ConfirmToken, Ident, Model, Symbol

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
