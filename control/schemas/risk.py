"""HTTP bodies: signals, risk."""

from typing import Any, Literal

from pydantic import Field

from control.schemas.base import Model

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
    metadata: dict[str, Any] | None = Field(None, description="what the strategy attached (e.g. llm_agent's model, "
                                            "fallback and reason), as journaled")
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
