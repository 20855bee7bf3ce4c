"""HTTP bodies: strategies."""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from control.schemas.base import Ident, Market, Model, Symbol
from control.schemas.trading import OrderResult

# ------------------------------------------------------------------------------------ strategies




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
