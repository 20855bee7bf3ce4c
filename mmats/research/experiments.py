"""Research over many backtests: parameter grids, random search, walk-forward windows, Monte Carlo.

Everything here is pure (no Ray, no I/O besides what the caller hands in) so that the same functions run
in one process, in a Ray task on a laptop, or on a cluster node, and give the same numbers. The Ray
driver (``actors/research.py``) only decides *where* ``evaluate`` runs; *what* it computes lives here.

Why the pieces look the way they do:

- A run is identified by a **config key**: sha256 of the canonical JSON of the fully validated
  ``BacktestConfig`` plus a fingerprint of the bars. A sweep that is interrupted and restarted skips the
  keys already in its results file; a changed data file or cost setting changes the key, so stale rows
  are never reused by accident.
- Grid keys address either strategy parameters (``fast``) or ``BacktestConfig`` fields (``allocation``,
  ``commission.taker_bps``): one grid syntax sweeps signal logic, sizing and costs alike. Fields that
  change the *data* (``data``, ``timeframe``, ``start``...) are refused, because a sweep loads its bars
  once.
- Walk-forward test windows tile the end of the series without overlap, so the stitched out-of-sample
  equity is one honest curve: each window's equity is rescaled to start where the previous one ended.
- Monte Carlo gives every run its own generator seeded by ``(seed, run index)``: results do not depend
  on how runs are split into parallel chunks, so a 2-CPU laptop and a 64-CPU cluster agree exactly.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import numpy.typing as npt

from mmats.data import BarArrays
from mmats.engine.backtest import BacktestResult
from mmats.engine.portfolio_backtest import PortfolioBars, PortfolioData, PortfolioResult, run_portfolio_backtest
from mmats.errors import ConfigError, MmatsError, StrategyRaised, ValidationError
from mmats.research.metrics import METRIC_KEYS, json_safe
from mmats.research.portfolio_runs import (
    apply_portfolio_params,
    build_portfolio_config,
    check_portfolio_param,
    is_portfolio_base,
)
from mmats.research.runconfig import BacktestConfig, LoadedRun, parse_config, run_backtest, set_dotted
from mmats.system_config import SystemConfig

GridValue = int | float | str | bool
Params = dict[str, GridValue]
Loaded = LoadedRun
FloatArray = npt.NDArray[np.float64]

MAX_AXIS_VALUES = 100_000
MAX_GRID_RUNS = 1_000_000

#: BacktestConfig fields a grid may vary; the others fix which bars are loaded (once per sweep).
SWEEPABLE_FIELDS = frozenset({
    "initial_cash", "allocation", "max_volume_share", "volume_in_quote", "cash_only", "commission",
    "slippage", "risk",
})
_DATA_FIELDS = frozenset({"strategy", "data", "generated", "symbol", "market", "timeframe", "start", "end",
                          "instrument"})
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

# ------------------------------------------------------------------------------------ grid parsing


@dataclass(frozen=True, slots=True)
class ParamAxis:
    """One swept parameter and the values it takes, in the order given."""

    name: str
    values: tuple[GridValue, ...]


def _scalar(text: str) -> GridValue:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        f = float(t)
    except ValueError:
        return t
    return f


def _number(text: str, spec: str, what: str) -> Decimal:
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"--grid {spec}: {what} {text.strip()!r} is not a number") from None
    if not d.is_finite():
        raise ConfigError(f"--grid {spec}: {what} {text.strip()!r} is not a finite number")
    return d


def parse_axis(spec: str) -> ParamAxis:
    """``fast=5:50:5`` (inclusive range, step 1 when omitted), ``fast=5,10,20`` or ``fast=10``.

    Ranges step in exact decimal arithmetic so ``0.1:0.5:0.1`` gives 0.1, 0.2 ... 0.5 and not
    0.30000000000000004; a range of integers stays integers (strategy code often needs an int period).
    """
    if "=" not in spec:
        raise ConfigError(f"--grid {spec!r}: expected NAME=START:STOP[:STEP] or NAME=V1,V2,... (e.g. fast=5:50:5)")
    name, _, body = spec.partition("=")
    name, body = name.strip(), body.strip()
    if not _NAME_RE.match(name):
        raise ConfigError(f"--grid {spec!r}: {name!r} is not a parameter name (letters, digits, _ and dots)")
    if not body:
        raise ConfigError(f"--grid {spec!r}: no values after '='")
    if ":" in body:
        parts = body.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"--grid {spec!r}: a range is START:STOP or START:STOP:STEP")
        start = _number(parts[0], spec, "start")
        stop = _number(parts[1], spec, "stop")
        step = _number(parts[2], spec, "step") if len(parts) == 3 else Decimal(1)
        if step <= 0:
            raise ConfigError(f"--grid {spec!r}: step must be > 0, got {step}")
        if stop < start:
            raise ConfigError(f"--grid {spec!r}: stop {stop} is below start {start}")
        count = int((stop - start) // step) + 1
        if count > MAX_AXIS_VALUES:
            raise ConfigError(f"--grid {spec!r}: {count:,} values is more than {MAX_AXIS_VALUES:,}; use a larger step")
        integral = all(p.strip().lstrip("+-").isdigit() for p in parts)
        vals = [start + step * i for i in range(count)]
        values: tuple[GridValue, ...] = tuple(int(v) if integral else float(v) for v in vals)
    else:
        items = [x.strip() for x in body.split(",")]
        if any(not x for x in items):
            raise ConfigError(f"--grid {spec!r}: empty value in the list")
        seen: dict[str, GridValue] = {}
        for x in items:
            v = _scalar(x)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"--grid {spec!r}: {x!r} is not a finite number")
            seen.setdefault(json.dumps(v), v)
        values = tuple(seen.values())
    return ParamAxis(name, values)


def parse_grid(specs: Sequence[str], strategies: Sequence[str] | None = None) -> list[ParamAxis]:
    """All ``--grid`` flags; a name given twice is an error rather than a silent override.

    ``strategies``: the strategy ids of a system config, whose grid names a strategy (``trend.fast``)
    or a section of the config (mmats.research.portfolio_runs)."""
    axes = [parse_axis(s) for s in specs]
    names = [a.name for a in axes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--grid: parameter {dup[0]!r} is given more than once")
    for a in axes:
        if strategies is not None:
            check_portfolio_param(a.name, strategies)
        else:
            check_param_name(a.name)
    return axes


def grid_size(axes: Sequence[ParamAxis]) -> int:
    return math.prod(len(a.values) for a in axes) if axes else 0


def expand_grid(axes: Sequence[ParamAxis]) -> list[Params]:
    """The cartesian product, first axis varying slowest (the order a person reads a table in)."""
    total = grid_size(axes)
    if total > MAX_GRID_RUNS:
        raise ConfigError(f"grid has {total:,} combinations (more than {MAX_GRID_RUNS:,}); "
                          f"use --random N to sample it")
    if not axes:
        return []
    names = [a.name for a in axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(a.values for a in axes))]


def sample_random(axes: Sequence[ParamAxis], n: int, seed: int) -> list[Params]:
    """``n`` distinct grid points drawn uniformly with a seeded generator (the whole grid if n >= its size).

    Sampling grid points rather than continuous values keeps random and grid search comparable and every
    sampled config reproducible from its printed parameters.
    """
    if n < 1:
        raise ConfigError(f"--random must be >= 1, got {n}")
    if not axes:
        raise ConfigError("--random needs at least one --grid axis to sample from")
    sizes = [len(a.values) for a in axes]
    total = math.prod(sizes)
    if n >= total:
        return expand_grid(axes)
    rng = np.random.default_rng(seed)
    if total <= 10_000_000:
        flat: list[int] = [int(x) for x in rng.choice(total, size=n, replace=False)]
    else:
        chosen: dict[int, None] = {}
        while len(chosen) < n:
            idx = 0
            for s in sizes:
                idx = idx * s + int(rng.integers(0, s))
            chosen.setdefault(idx, None)
        flat = list(chosen)
    out: list[Params] = []
    for f in flat:
        digits = []
        for s in reversed(sizes):
            f, r = divmod(f, s)
            digits.append(r)
        digits.reverse()
        out.append({a.name: a.values[d] for a, d in zip(axes, digits, strict=True)})
    return out


# ------------------------------------------------------------------------------ params -> config


def check_param_name(name: str) -> None:
    """Refuse keys that would change the data: a sweep loads its bars once and shares them."""
    if name.startswith("params."):
        return
    head = name.split(".", 1)[0]
    if head in _DATA_FIELDS:
        raise ConfigError(f"--grid {name}: cannot sweep {head!r}, the bars and instrument are loaded once per "
                          f"sweep (run one sweep per dataset instead)")
    if "." in name and head not in SWEEPABLE_FIELDS:
        raise ConfigError(f"--grid {name}: {head!r} is not a backtest config section; sweepable: "
                          f"{', '.join(sorted(SWEEPABLE_FIELDS))}, or a plain strategy parameter")


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A raw config dict with ``params`` applied (the base is not modified).

    ``fast`` and ``params.fast`` set strategy parameters; ``allocation`` and ``commission.taker_bps``
    set config fields. Setting a fee or slippage amount switches a ``none`` model on (``percent`` /
    ``fixed``), because sweeping ``commission.taker_bps`` under the no-commission model would silently
    sweep nothing.
    """
    if is_portfolio_base(base):  # a system config: keys name a strategy or a section (portfolio_runs)
        return apply_portfolio_params(base, params)
    raw = copy.deepcopy(dict(base))
    for key, value in params.items():
        check_param_name(key)
        if key.startswith("params."):
            raw.setdefault("params", {})
            raw["params"] = {**raw["params"], key[len("params."):]: value}
            continue
        path = key.split(".")
        if path[0] not in SWEEPABLE_FIELDS:
            raw["params"] = {**(raw.get("params") or {}), key: value}
            continue
        node = set_dotted(raw, path, value)
        if path[0] == "commission" and path[-1] in ("taker_bps", "maker_bps") and node.get("model", "none") == "none":
            node["model"] = "percent"
        if path[0] == "slippage" and path[-1] == "bps" and node.get("model", "none") == "none":
            node["model"] = "fixed"
    return raw


def build_config(base: Mapping[str, Any], params: Mapping[str, Any]) -> BacktestConfig | SystemConfig:
    """The validated config of one run: a one-strategy run config, or a system config (a portfolio)."""
    if is_portfolio_base(base):
        return build_portfolio_config(base, params)
    return parse_config(apply_params(base, params))


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: the same config always hashes to the same key."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str)


def config_key(cfg: BacktestConfig | SystemConfig | Mapping[str, Any], data_id: str = "") -> str:
    """sha256 (hex) of the canonical JSON of the validated config plus the data fingerprint."""
    body = cfg.model_dump(mode="json") if isinstance(cfg, BacktestConfig | SystemConfig) else dict(cfg)
    return hashlib.sha256(canonical_json({"config": body, "data": data_id}).encode()).hexdigest()


def data_fingerprint(arrays: BarArrays | PortfolioBars) -> str:
    """Hash of every column: the results of one sweep are only reused for exactly the same bars."""
    if isinstance(arrays, PortfolioBars):
        return arrays.data.fingerprint()
    h = hashlib.sha256(f"bars:{len(arrays)}".encode())
    for col in (arrays.ts_ns, arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume):
        h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One planned run: its key, the swept params, and the validated config (or why it is invalid)."""

    key: str
    params: Params
    config: BacktestConfig | SystemConfig | None
    error: str | None = None


def plan_runs(base: Mapping[str, Any], param_sets: Sequence[Params], data_id: str) -> list[RunSpec]:
    """Validate every combination up front: a bad config is known before any task is sent."""
    out: list[RunSpec] = []
    seen: set[str] = set()
    for params in param_sets:
        try:
            cfg = build_config(base, params)
        except MmatsError as exc:
            key = config_key({"invalid": canonical_json(apply_params(base, params))}, data_id)
            spec = RunSpec(key, dict(params), None, str(exc))
        else:
            spec = RunSpec(config_key(cfg, data_id), dict(params), cfg)
        if spec.key not in seen:  # two spellings of one config (5 vs params.fast=5) run once
            seen.add(spec.key)
            out.append(spec)
    return out


# -------------------------------------------------------------------------------------- evaluation


def error_record(spec: RunSpec, message: str, status: str = "error", **extra: Any) -> dict[str, Any]:
    """``error``: the input is wrong (deterministic, skipped on resume); ``failed``: a crash (retried)."""
    return {"key": spec.key, "params": spec.params, "status": status, "metrics": None, "final_equity": None,
            "error": message, "elapsed_s": 0.0, **extra}


def evaluate(spec: RunSpec, loaded: Loaded | PortfolioData, **extra: Any) -> dict[str, Any]:
    """Run one planned config on pre-loaded bars; never raises for a bad config, returns its error.

    The record is what a sweep's results JSONL holds: JSON-safe metrics (inf -> null), the final equity,
    and how long the run took (to measure per-task overhead against the work).
    """
    return evaluate_full(spec, loaded, **extra)[0]


def run_spec(spec: RunSpec, loaded: Loaded | PortfolioData) -> BacktestResult | PortfolioResult:
    """One planned run on pre-loaded bars: a one-strategy backtest, or a portfolio backtest of a system config."""
    if spec.config is None:
        raise ConfigError(spec.error or "invalid config")
    if isinstance(spec.config, SystemConfig):
        if not isinstance(loaded, PortfolioData):
            raise ConfigError("a system config runs on its feeds' data (mmats.engine.portfolio_backtest)")
        return run_portfolio_backtest(spec.config, loaded)
    if isinstance(loaded, PortfolioData):
        raise ConfigError("a one-strategy run config needs one series of bars, not a portfolio's")
    return run_backtest(spec.config, bars=loaded)


def evaluate_full(spec: RunSpec, loaded: Loaded | PortfolioData,
                  **extra: Any) -> tuple[dict[str, Any], BacktestResult | PortfolioResult | None]:
    """``evaluate`` plus the full result, for callers that need the equity curve (walk-forward tests)."""
    if spec.config is None:
        return error_record(spec, spec.error or "invalid config", **extra), None
    t0 = time.perf_counter()
    result = None
    try:
        result = run_spec(spec, loaded)
    except StrategyRaised as exc:  # a strategy bug: report it with the config that triggers it
        rec = error_record(spec, str(exc), status="failed", **extra)
    except MmatsError as exc:
        rec = error_record(spec, f"{type(exc).__name__}: {exc}", **extra)
    except Exception as exc:  # a strategy bug: report it with the config that triggers it
        rec = error_record(spec, f"{type(exc).__name__}: {exc}", status="failed", **extra)
    else:
        rec = {"key": spec.key, "params": spec.params, "status": "ok", "metrics": json_safe(result.metrics),
               "final_equity": float(result.equity[-1]), "error": None, **extra}
    rec["elapsed_s"] = round(time.perf_counter() - t0, 6)
    return rec, result


def evaluate_many(specs: Iterable[RunSpec], loaded: Loaded | PortfolioData,
                  on_record: Callable[[dict[str, Any]], None] | None = None, **extra: Any) -> list[dict[str, Any]]:
    """The sequential reference: a Ray sweep must give exactly these records (timings aside)."""
    out = []
    for spec in specs:
        rec = evaluate(spec, loaded, **extra)
        out.append(rec)
        if on_record is not None:
            on_record(rec)
    return out


def parse_metric(name: str) -> tuple[str, bool]:
    """``sharpe`` ranks high first; ``-max_drawdown`` flips the order. Returns (metric, descending).

    Drawdowns are negative fractions, so plain ``max_drawdown`` already ranks the shallowest first.
    """
    text = name.strip()
    descending = not text.startswith("-")
    metric = text.lstrip("-+")
    if metric not in METRIC_KEYS:
        raise ConfigError(f"--metric {name!r}: unknown metric; choose one of {', '.join(METRIC_KEYS)}")
    return metric, descending


def metric_value(record: Mapping[str, Any], metric: str) -> float | None:
    metrics = record.get("metrics") or {}
    v = metrics.get(metric) if isinstance(metrics, Mapping) else None
    if v is None or isinstance(v, bool):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def rank_records(records: Iterable[Mapping[str, Any]], metric: str, min_trades: int = 0,
                 top: int | None = None) -> list[dict[str, Any]]:
    """Successful runs with at least ``min_trades`` closed trades, best first; ties broken by key.

    A run whose metric is undefined (``null``: e.g. profit factor without a losing trade) ranks after
    every defined value, so an artefact of too few trades never tops the table.
    """
    name, descending = parse_metric(metric)
    if min_trades < 0:
        raise ConfigError(f"--min-trades must be >= 0, got {min_trades}")
    ok = [dict(r) for r in records
          if r.get("status") == "ok" and (metric_value(r, "num_trades") or 0) >= min_trades]

    def sort_key(r: Mapping[str, Any]) -> tuple[int, float, str]:
        v = metric_value(r, name)
        if v is None:
            return (1, 0.0, str(r.get("key")))
        return (0, -v if descending else v, str(r.get("key")))

    ok.sort(key=sort_key)
    return ok if top is None else ok[:top]


# ---------------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True, slots=True)
class WFWindow:
    """Bar index ranges, half-open: train ``[train_start, train_end)``, test ``[test_start, test_end)``."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "train_start": self.train_start, "train_end": self.train_end,
                "test_start": self.test_start, "test_end": self.test_end}


def walkforward_windows(n_bars: int, windows: int, train_fraction: float = 0.7, anchored: bool = False,
                        min_bars: int = 2) -> list[WFWindow]:
    """Split ``n_bars`` into ``windows`` train/test pairs whose test windows tile the end of the series.

    With test length T and train length R = T * f / (1 - f), n = R + windows * T: the first window is
    trained on the first R bars, and each later window moves on by T. Rolling windows keep training on
    the last R bars; anchored ones train from bar 0, growing. Both share the same test windows, so their
    out-of-sample curves compare directly.
    """
    if windows < 1:
        raise ValidationError(f"walk-forward: --windows must be >= 1, got {windows}")
    if not 0.0 < train_fraction < 1.0:
        raise ValidationError(f"walk-forward: --train must be a fraction in (0, 1), got {train_fraction}")
    ratio = train_fraction / (1.0 - train_fraction)
    test_len = n_bars / (windows + ratio)
    train_len = round(test_len * ratio)
    if test_len < min_bars or train_len < min_bars:
        raise ValidationError(
            f"walk-forward: {n_bars:,} bars are too few for {windows} windows at train fraction {train_fraction} "
            f"(test windows of {test_len:.0f} bars, train of {train_len}; need >= {min_bars} each)")
    bounds = [train_len + round(k * (n_bars - train_len) / windows) for k in range(windows + 1)]
    bounds[-1] = n_bars
    out = []
    for k in range(windows):
        start = 0 if anchored else bounds[k] - train_len
        out.append(WFWindow(k, start, bounds[k], bounds[k], bounds[k + 1]))
    return out


def slice_arrays(arrays: BarArrays, start: int, end: int) -> BarArrays:
    """Views, not copies: a window of bars shared from the object store costs nothing to cut."""
    return BarArrays(arrays.ts_ns[start:end], arrays.open[start:end], arrays.high[start:end],
                     arrays.low[start:end], arrays.close[start:end], arrays.volume[start:end])


def slice_loaded(loaded: Loaded | PortfolioData, start: int, end: int) -> Any:
    """Bars ``[start, end)``: of the one series, or of the merged timeline of a portfolio's symbols."""
    if isinstance(loaded, PortfolioData):
        return loaded.window(start, end)
    return LoadedRun(slice_arrays(loaded.bars, start, end), loaded.instrument, loaded.warnings,
                     {**loaded.resolved, "bars": [start, end]})


def stitch_equity(segments: Sequence[npt.ArrayLike], initial: float) -> FloatArray:
    """Chain equity segments: each is rescaled so it starts at the previous segment's last value.

    Every test window runs from the same initial cash; rescaling compounds them into the curve one
    account would have had by trading window after window (returns are kept, levels are not).
    """
    if not (initial > 0 and math.isfinite(initial)):
        raise ValidationError(f"stitch_equity: initial must be > 0, got {initial!r}")
    level = float(initial)
    parts: list[FloatArray] = []
    for i, seg in enumerate(segments):
        s = np.asarray(seg, dtype=np.float64)
        if s.size == 0:
            continue
        if not (s[0] > 0 and np.isfinite(s).all()):
            raise ValidationError(f"stitch_equity: segment {i} must start > 0 and be finite")
        scaled = s * (level / s[0])
        scaled[0] = level  # exact continuity (the product can be off by one ulp)
        parts.append(scaled)
        level = float(scaled[-1])
    return np.concatenate(parts) if parts else np.zeros(0)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else None


def degradation(in_sample: Sequence[float | None], out_of_sample: Sequence[float | None]) -> dict[str, Any]:
    """How much of the in-sample performance survives out of sample.

    ``efficiency`` = mean OOS / mean IS (walk-forward efficiency; > 0.5 is commonly read as robust),
    defined only when the in-sample mean is positive; ``drop`` = mean IS - mean OOS; ``oos_positive``
    = share of windows whose OOS value is > 0.
    """
    if len(in_sample) != len(out_of_sample):
        raise ValidationError(f"degradation: {len(in_sample)} in-sample values vs {len(out_of_sample)} out-of-sample")
    mi, mo = _mean(in_sample), _mean(out_of_sample)
    defined = [v for v in out_of_sample if v is not None and math.isfinite(v)]
    return {
        "mean_in_sample": mi,
        "mean_out_of_sample": mo,
        "efficiency": (mo / mi) if (mi is not None and mo is not None and mi > 0) else None,
        "drop": (mi - mo) if (mi is not None and mo is not None) else None,
        "oos_positive": (sum(1 for v in defined if v > 0) / len(defined)) if defined else None,
    }


# ---------------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True, slots=True)
class MCBatch:
    """Results of some Monte Carlo runs, equity relative to the start (1.0 = initial)."""

    run_ids: npt.NDArray[np.int64]
    final: FloatArray
    max_drawdown: FloatArray
    min_equity: FloatArray
    paths: FloatArray  # (runs, points) sampled on the same fractional grid for percentile bands

    @staticmethod
    def concat(batches: Sequence[MCBatch]) -> MCBatch:
        if not batches:
            raise ValidationError("Monte Carlo: no runs to combine")
        order = np.argsort(np.concatenate([b.run_ids for b in batches]), kind="stable")
        return MCBatch(
            np.concatenate([b.run_ids for b in batches])[order],
            np.concatenate([b.final for b in batches])[order],
            np.concatenate([b.max_drawdown for b in batches])[order],
            np.concatenate([b.min_equity for b in batches])[order],
            np.concatenate([b.paths for b in batches])[order],
        )


def _check_returns(returns: npt.ArrayLike, what: str) -> FloatArray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValidationError(f"Monte Carlo: no {what} to resample (need at least one)")
    if not np.isfinite(r).all():
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValidationError(f"Monte Carlo: {what}[{bad}] is {float(r[bad])} (must be finite)")
    return r


def path_stats(returns: FloatArray) -> tuple[float, float, float, FloatArray]:
    """Relative equity path of a return sequence: (final, max drawdown, minimum, full path from 1.0).

    A loss of 100 % or more ruins the account: the path stays at 0 from there (a negative growth factor
    would otherwise flip the sign of every later value).
    """
    growth = np.maximum(1.0 + returns, 0.0)
    path = np.empty(returns.size + 1)
    path[0] = 1.0
    np.cumprod(growth, out=path[1:])
    peak = np.maximum.accumulate(path)
    dd = np.zeros_like(path)
    np.divide(path, peak, out=dd, where=peak > 0)
    return float(path[-1]), float(min(0.0, (dd - 1.0).min())), float(path.min()), path


def _grid(n_points: int, length: int) -> npt.NDArray[np.int64]:
    return np.unique(np.linspace(0, length - 1, max(2, min(n_points, length))).round().astype(np.int64))


def _run_rng(seed: int, run: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(run)])


def mc_trade_bootstrap(trade_returns: npt.ArrayLike, run_ids: Sequence[int] | npt.NDArray[np.int64], seed: int,
                       points: int = 200) -> MCBatch:
    """Resample the trade sequence with replacement (same number of trades), compounding each trade's
    return on equity: what the same edge could have looked like in another order and mix of trades."""
    r = _check_returns(trade_returns, "trade returns")
    return _mc(r, run_ids, seed, points, lambda rng: r[rng.integers(0, r.size, r.size)])


def mc_block_bootstrap(bar_returns: npt.ArrayLike, run_ids: Sequence[int] | npt.NDArray[np.int64], seed: int,
                       block: int = 20, points: int = 200) -> MCBatch:
    """Circular block bootstrap of per-bar returns: blocks of ``block`` consecutive bars keep the short-run
    dependence (volatility clusters, a position's run of returns) that resampling single bars destroys."""
    r = _check_returns(bar_returns, "bar returns")
    if not 1 <= block <= r.size:
        raise ValidationError(f"Monte Carlo: --block must be in [1, {r.size}] (the number of returns), got {block}")
    k = -(-r.size // block)
    offsets = np.arange(block, dtype=np.int64)

    def draw(rng: np.random.Generator) -> FloatArray:
        starts = rng.integers(0, r.size, k)
        idx = (starts[:, None] + offsets).ravel()[: r.size] % r.size
        out: FloatArray = r[idx]
        return out

    return _mc(r, run_ids, seed, points, draw)


def _mc(r: FloatArray, run_ids: Sequence[int] | npt.NDArray[np.int64], seed: int, points: int,
        draw: Callable[[np.random.Generator], FloatArray]) -> MCBatch:
    ids = np.asarray(run_ids, dtype=np.int64)
    grid = _grid(points, r.size + 1)
    final = np.empty(ids.size)
    mdd = np.empty(ids.size)
    low = np.empty(ids.size)
    paths = np.empty((ids.size, grid.size))
    for j, run in enumerate(ids):
        final[j], mdd[j], low[j], path = path_stats(draw(_run_rng(seed, int(run))))
        paths[j] = path[grid]
    return MCBatch(ids, final, mdd, low, paths)


def _dist(values: FloatArray) -> dict[str, float]:
    pct = np.percentile(values, [5, 25, 50, 75, 95])
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "p5": float(pct[0]), "p25": float(pct[1]), "p50": float(pct[2]), "p75": float(pct[3]),
            "p95": float(pct[4]), "max": float(values.max())}


def summarize_mc(batch: MCBatch, initial: float, ruin: float, actual_returns: npt.ArrayLike | None = None,
                 method: str = "", block: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Distributions of final equity and max drawdown, percentile bands, probability of ruin.

    Ruin means the equity fell *below* ``ruin`` x initial at any point of the path (not only at the end),
    since an account that halves is usually stopped there, whatever happens next.
    """
    if not 0.0 < ruin < 1.0:
        raise ValidationError(f"Monte Carlo: --ruin must be a fraction in (0, 1), got {ruin}")
    if not (initial > 0 and math.isfinite(initial)):
        raise ValidationError(f"Monte Carlo: initial equity must be > 0, got {initial!r}")
    final = batch.final * initial
    out: dict[str, Any] = {
        "kind": "montecarlo",
        "method": method,
        "runs": int(batch.final.size),
        "seed": seed,
        "block": block,
        "initial_equity": initial,
        "ruin_threshold": ruin,
        "prob_ruin": float(np.mean(batch.min_equity < ruin)),
        "prob_loss": float(np.mean(batch.final < 1.0)),
        "final_equity": _dist(final),
        "max_drawdown": _dist(batch.max_drawdown),
    }
    if batch.paths.size:
        grid = np.linspace(0.0, 1.0, batch.paths.shape[1])
        pct = np.percentile(batch.paths * initial, [5, 25, 50, 75, 95], axis=0)
        out["bands"] = {"x": [round(float(x), 6) for x in grid],
                        **{f"p{p}": [float(v) for v in row] for p, row in zip((5, 25, 50, 75, 95), pct, strict=True)}}
    if actual_returns is not None:
        f, d, _, _ = path_stats(np.asarray(actual_returns, dtype=np.float64))
        out["actual"] = {"final_equity": f * initial, "max_drawdown": d}
    out["final_equity_values"] = [float(v) for v in final]
    out["max_drawdown_values"] = [float(v) for v in batch.max_drawdown]
    return out


def run_chunks(runs: int, chunk: int) -> list[range]:
    """Contiguous run-index ranges: per-run seeding makes the split irrelevant to the result."""
    if runs < 1:
        raise ValidationError(f"Monte Carlo: --runs must be >= 1, got {runs}")
    chunk = max(1, chunk)
    return [range(s, min(runs, s + chunk)) for s in range(0, runs, chunk)]


def monte_carlo(method: str, returns: npt.ArrayLike, runs: int, seed: int, *, initial: float = 1.0,
                ruin: float = 0.5, block: int = 20, points: int = 200) -> dict[str, Any]:
    """Sequential Monte Carlo (``trades`` or ``blocks``); the parallel version yields the same dict."""
    run_chunks(runs, runs)  # validates runs
    ids = np.arange(runs, dtype=np.int64)
    if method == "trades":
        batch = mc_trade_bootstrap(returns, ids, seed, points)
    elif method == "blocks":
        batch = mc_block_bootstrap(returns, ids, seed, block, points)
    else:
        raise ValidationError(f"Monte Carlo: method must be 'trades' or 'blocks', got {method!r}")
    return summarize_mc(batch, initial, ruin, returns, method, block if method == "blocks" else None, seed)


def trade_returns(trades: Sequence[Mapping[str, Any]], equity_ts_ns: npt.ArrayLike,
                  equity: npt.ArrayLike) -> FloatArray:
    """Each closed trade's P&L as a fraction of the account equity at its entry.

    Fractions, not amounts, because the account compounds: a +100 trade meant +1 % at 10,000 and
    +0.5 % at 20,000, and resampling amounts would misstate the risk of a growing or shrinking account.
    """
    ts = np.asarray(equity_ts_ns, dtype=np.float64)
    eq = np.asarray(equity, dtype=np.float64)
    if ts.size == 0 or ts.shape != eq.shape:
        raise ValidationError("Monte Carlo: the result has no equity curve to relate trade P&L to")
    out = []
    for i, t in enumerate(trades):
        try:
            pnl = float(t["pnl"])
            entry = float(t["entry_ns"]) if "entry_ns" in t else float(np.datetime64(
                str(t["entry_time"]).rstrip("Z"), "ns").astype(np.int64))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"Monte Carlo: trade {i} lacks a readable pnl/entry_time ({exc})") from None
        j = max(0, int(np.searchsorted(ts, entry, side="right")) - 1)
        base = eq[j]
        if not base > 0:
            raise ValidationError(f"Monte Carlo: equity at trade {i}'s entry is {base}, cannot express P&L as a return")
        out.append(pnl / base)
    return np.asarray(out, dtype=np.float64)


def bar_returns(equity: npt.ArrayLike) -> FloatArray:
    """Simple per-bar returns of an equity curve (flat bars included: being out of the market is a return)."""
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size < 2:
        raise ValidationError("Monte Carlo: the equity curve needs at least 2 points")
    if not (eq[:-1] > 0).all():
        bad = int(np.flatnonzero(eq[:-1] <= 0)[0])
        raise ValidationError(f"Monte Carlo: equity[{bad}] is {eq[bad]}; returns after ruin are undefined")
    out: FloatArray = eq[1:] / eq[:-1] - 1.0
    return out
