"""HTTP bodies: P&L."""


from pydantic import Field

from control.schemas.base import Model

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
