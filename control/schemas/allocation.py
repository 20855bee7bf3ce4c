"""The body of ``GET /api/v1/allocation``: capital between strategies (kept apart from control.schemas,
which holds every other body, to keep each module small)."""

from typing import Any, Literal

from pydantic import Field

from control.schemas.base import Model


class AllocationChangeOut(Model):
    time: str
    method: str
    reason: str
    previous: dict[str, float]
    weights: dict[str, float]
    detail: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per strategy: samples, and the "
                                              "volatility or Sharpe ratio weighed, or why it kept its weight")


class AllocationOut(Model):
    method: Literal["fixed", "inverse_vol", "performance"] | None = Field(
        description="null: no allocation block, each strategy sizes on its own share of the whole equity")
    weights: dict[str, float] = Field(description="share of equity each allocated strategy's capital is")
    allocation: dict[str, float] = Field(description="what a position_size of 1.0 means per strategy, as a share "
                                         "of equity: its own allocation times its weight")
    total: float | None = None
    rebalance_every: str | None = None
    lookback: str | None = None
    next_due: str | None = Field(None, description="bar time of the next scheduled rebalance")
    last_rebalance: str | None = None
    rebalances: int = 0
    changes: int = Field(0, description="rebalances that moved the weights (each one in the audit journal)")
    history: list[AllocationChangeOut] = Field(default_factory=list, description="the latest changes, oldest first")
