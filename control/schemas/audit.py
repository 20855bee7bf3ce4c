"""HTTP bodies: audit, misc."""

from typing import Any, Literal

from pydantic import Field

from control.schemas.base import Model
from control.schemas.strategies import ToggleOut

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
