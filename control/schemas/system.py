"""HTTP bodies: system."""

from typing import Literal

from pydantic import ConfigDict, Field

from control.schemas.base import ConfirmToken, Model

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
    currency: str = Field("USD", description="the base currency: equity, cash and P&L are in it")
    equity: str
    cash: str = Field(description="all cash, every currency converted to the base currency")
    cash_by_currency: dict[str, str] = Field(default_factory=dict,
                                             description="cash held in each currency, in that currency")
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
