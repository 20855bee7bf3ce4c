"""OHLCV bars in and out of files, checked once at the door so nothing downstream has to doubt them.

Every frame this module returns has the same shape: a UTC ``DatetimeIndex`` named ``ts`` (nanosecond
resolution, strictly increasing, the bar's open time) and float64 columns ``open, high, low, close,
volume``. The backtest hot loop never validates again, so ``load_bars`` is strict and its errors are one
line that names the file, the 0-based data row (header excluded; with the bar's time when it is known)
and the column, which is what a user needs to fix a CSV by hand.

Validation is vectorized (numpy over whole columns, one pass per rule, first offender reported), so a
million-row file is checked in a fraction of a second.

Also here: gap detection, resampling to a coarser timeframe, date slicing, timeframe inference, a
deterministic bar generator (the demo and tests must work without the real data) and ``stitch``, which
lengthens a real series for throughput benchmarks.
"""

from __future__ import annotations

import math
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mmats.errors import DataError, ValidationError
from mmats.model import Timeframe, iso

COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
#: accepted names of the timestamp column, in order of preference (matched case-insensitively)
TIME_COLUMNS = ("ts", "timestamp", "datetime", "time", "date")

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".csv.zip", ".csv.bz2", ".csv.xz")
_NS = 1_000_000_000

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------------------------- arrays


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class BarArrays:
    """One series as bare numpy columns: the backtest reads these, never the DataFrame, for speed."""

    ts_ns: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = len(self.ts_ns)
        lengths = {name: len(getattr(self, name)) for name in COLUMNS}
        if any(v != n for v in lengths.values()):
            raise ValidationError(f"BarArrays columns differ in length: ts_ns={n}, {lengths}")

    def __len__(self) -> int:
        return len(self.ts_ns)


# Columns as Python tuples, made once per BarArrays and kept while it lives. A backtest reads bars by
# index (about 10x cheaper than a numpy scalar read), and a sweep runs many configurations over the
# same arrays: converting a year of minute bars costs ~10 ms and ~13 MB of float objects per column per
# run, which is allocator and cache traffic that two parallel workers contend for. BarArrays are
# treated as immutable everywhere (Ray hands them out read-only), which is what makes this cache sound.
_COLUMN_LISTS: weakref.WeakKeyDictionary[BarArrays, dict[str, tuple[Any, ...]]] = weakref.WeakKeyDictionary()


def untracked(values: npt.NDArray[Any]) -> tuple[Any, ...]:
    """A column as a tuple of Python numbers, indexed as fast as a list.

    A tuple of floats or ints leaves the cyclic garbage collector's lists at its first collection; a list
    stays, and every full collection walks its million items again: ~0.1 s per collection for a run's
    eight bar and indicator columns, 10-15 % of a single-symbol backtest.
    """
    return tuple(values.tolist())


def column_list(arrays: BarArrays, name: str) -> tuple[Any, ...]:
    cols = _COLUMN_LISTS.get(arrays)
    if cols is None:
        cols = _COLUMN_LISTS[arrays] = {}
    out = cols.get(name)
    if out is None:
        out = cols[name] = untracked(getattr(arrays, name))
    return out


def to_arrays(df: pd.DataFrame) -> BarArrays:
    """Contiguous float64/int64 copies-or-views of a bar frame, in the layout TA-Lib and the engine want."""
    idx = _utc_index(df, "to_arrays")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError(f"to_arrays: frame lacks column(s) {missing}; has {list(df.columns)}")
    cols = [np.ascontiguousarray(df[c].to_numpy(dtype=np.float64)) for c in COLUMNS]
    ts = np.ascontiguousarray(idx.as_unit("ns").asi8, dtype=np.int64)
    return BarArrays(ts, cols[0], cols[1], cols[2], cols[3], cols[4])


def frame_from_arrays(ts_ns: IntArray, o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray,
                      v: FloatArray) -> pd.DataFrame:
    """The canonical frame layout built from columns (the inverse of ``to_arrays``)."""
    return pd.DataFrame(
        {"open": o, "high": h, "low": lo, "close": c, "volume": v},
        index=_index_from_ns(ts_ns),
    )


def _index_from_ns(ts_ns: npt.NDArray[Any]) -> pd.DatetimeIndex:
    values = np.asarray(ts_ns, dtype=np.int64).view("datetime64[ns]")
    return pd.DatetimeIndex(values, name="ts").tz_localize("UTC")


def _utc_index(df: pd.DataFrame, who: str) -> pd.DatetimeIndex:
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        raise ValidationError(f"{who}: expected a frame indexed by UTC timestamps (as load_bars returns)")
    return idx.tz_convert("UTC")


def _ts_ns(df: pd.DataFrame, who: str) -> IntArray:
    return np.asarray(_utc_index(df, who).as_unit("ns").asi8, dtype=np.int64)


# -------------------------------------------------------------------------------------------- loading


def load_bars(path: str | Path, *, symbol: str | None = None) -> pd.DataFrame:
    """Read and validate one OHLCV file (Parquet or CSV, chosen by extension).

    Column names match case-insensitively; the time column may be called ts, timestamp, datetime, time
    or date (or be a Parquet datetime index). Text times without an offset are taken as UTC, times with
    an offset are converted to UTC, and numbers are epoch seconds, milliseconds, microseconds or
    nanoseconds (chosen from their magnitude). ``volume`` is optional (0.0 when absent, as for forex).
    If the file has a ``symbol`` column, ``symbol`` selects the rows of that symbol; a file holding
    several symbols needs it.
    """
    p = Path(path)
    raw = _read(p)
    where = str(p)
    if len(raw.columns) == 0 or len(raw) == 0:
        raise DataError(f"{where}: empty file (no data rows)")
    if isinstance(raw.index, pd.DatetimeIndex):
        raw = raw.reset_index(names=raw.index.name or "ts")
    raw = raw.reset_index(drop=True)
    names = {str(c).strip().lower(): c for c in reversed(list(raw.columns))}
    raw = _select_symbol(raw, names, symbol, where)

    ts_col = next((names[n] for n in TIME_COLUMNS if n in names), None)
    missing = [c for c in PRICE_COLUMNS if c not in names]
    if ts_col is None or missing:
        need = ([] if ts_col is not None else ["ts (or timestamp/datetime/time/date)"]) + missing
        found = ", ".join(str(c) for c in raw.columns)
        raise DataError(f"{where}: missing required column(s) {', '.join(need)}; found columns: {found}")

    ts = _parse_times(raw[ts_col], where, str(ts_col))
    values: dict[str, FloatArray] = {}
    for col in COLUMNS:
        if col in names:
            values[col] = _numeric(raw[names[col]], where, str(names[col]), ts)
        else:
            values[col] = np.zeros(len(raw), dtype=np.float64)
    shown = {col: str(names.get(col, col)) for col in COLUMNS}
    _validate(where, ts, values, shown, str(ts_col))
    df = frame_from_arrays(ts, values["open"], values["high"], values["low"], values["close"], values["volume"])
    df.attrs["source"] = where
    if symbol is not None:
        df.attrs["symbol"] = symbol
    return df


def _read(p: Path) -> pd.DataFrame:
    name = p.name.lower()
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    if name.endswith(_PARQUET_SUFFIXES):
        kind = "Parquet"
    elif name.endswith(_CSV_SUFFIXES):
        kind = "CSV"
    else:
        raise DataError(f"{p}: unsupported file type (expected .parquet, .pq or .csv)")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    try:
        if kind == "Parquet":
            return pd.read_parquet(p)
        return pd.read_csv(p, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: empty file (no header, no data rows)") from None
    except Exception as exc:  # any reader failure is the file's fault here, reported as one line
        detail = " ".join(str(exc).split())[:300]
        raise DataError(f"{p}: unreadable {kind} file: {type(exc).__name__}: {detail}") from None


def _select_symbol(raw: pd.DataFrame, names: dict[str, Any], symbol: str | None, where: str) -> pd.DataFrame:
    col = names.get("symbol")
    if col is None:
        return raw
    present = raw[col].astype(str)
    if symbol is None:
        uniq = present.unique()
        if len(uniq) > 1:
            shown = ", ".join(sorted(map(str, uniq))[:10])
            raise DataError(f"{where}: column '{col}' holds several symbols ({shown}); pass symbol=")
        return raw
    mask = (present == symbol).to_numpy()
    if not mask.any():
        shown = ", ".join(sorted(map(str, present.unique()))[:10])
        raise DataError(f"{where}: column '{col}' has no rows for symbol {symbol!r} (present: {shown})")
    selected: pd.DataFrame = raw.loc[mask].reset_index(drop=True)
    return selected


def _at(where: str, row: int, col: str, ts: IntArray | None = None) -> str:
    when = f" ({iso(int(ts[row]))})" if ts is not None else ""
    return f"{where}: row {row}{when}, column '{col}'"


def _parse_times(s: pd.Series[Any], where: str, col: str) -> IntArray:
    """Timestamps as int64 UTC nanoseconds, or a DataError at the first value that is not a time."""
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        dt = pd.DatetimeIndex(s)
        dt = dt.tz_localize("UTC") if dt.tz is None else dt.tz_convert("UTC")
        bad = np.asarray(dt.isna())
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{_at(where, row, col)}: missing timestamp")
        return np.asarray(dt.as_unit("ns").asi8, dtype=np.int64)
    if pd.api.types.is_bool_dtype(dtype):
        raise DataError(f"{where}: column '{col}' holds booleans, not timestamps")
    if pd.api.types.is_numeric_dtype(dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        yyyymmdd = _yyyymmdd(x)
        return yyyymmdd if yyyymmdd is not None else _epoch_times(x, where, col)

    text = s.astype("string")
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    if bool(parsed.isna().any()):
        # not ISO 8601 throughout: let pandas infer one format (e.g. "01/02/2024 10:00") and keep the better
        alt = pd.to_datetime(text, utc=True, errors="coerce")
        if int(alt.isna().sum()) < int(parsed.isna().sum()):
            parsed = alt
    bad = np.asarray(parsed.isna())
    if bad.any():
        row = int(np.argmax(bad))
        raw_value = s.iloc[row]
        what = "missing timestamp" if pd.isna(raw_value) else f"cannot parse timestamp {str(raw_value)!r}"
        raise DataError(f"{_at(where, row, col)}: {what}")
    return np.asarray(pd.DatetimeIndex(parsed).as_unit("ns").asi8, dtype=np.int64)


def _yyyymmdd(x: FloatArray) -> IntArray | None:
    """Dates written as 8-digit numbers (20240131), common in equity CSVs; as epoch seconds they would
    silently land in 1970, so they are recognised first."""
    if len(x) == 0 or not np.isfinite(x).all() or not ((x >= 1e7) & (x < 1e8) & (x == np.floor(x))).all():
        return None
    parsed = pd.to_datetime(pd.Series(x.astype(np.int64)).astype(str), format="%Y%m%d", errors="coerce", utc=True)
    if bool(parsed.isna().any()):
        return None
    return np.asarray(pd.DatetimeIndex(parsed).as_unit("ns").asi8, dtype=np.int64)


def _epoch_times(x: FloatArray, where: str, col: str) -> IntArray:
    """Epoch numbers; the unit is read from the magnitude (seconds until year 5138, then ms, us, ns)."""
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{_at(where, row, col)}: cannot parse timestamp {x[row]!r}")
    neg = x < 0
    if neg.any():
        row = int(np.argmax(neg))
        raise DataError(f"{_at(where, row, col)}: negative epoch timestamp {x[row]!r}")
    mag = float(np.median(x))
    scale = 1 if mag >= 1e17 else 1_000 if mag >= 1e14 else 1_000_000 if mag >= 1e11 else _NS
    if scale == 1:
        return x.astype(np.int64)
    # integers stay exact; fractional seconds are rounded to the nanosecond
    if np.all(x == np.floor(x)) and float(x.max()) < 9.2e18 / scale:
        return x.astype(np.int64) * np.int64(scale)
    return np.round(x * scale).astype(np.int64)


def _numeric(s: pd.Series[Any], where: str, col: str, ts: IntArray) -> FloatArray:
    if pd.api.types.is_bool_dtype(s.dtype):
        raise DataError(f"{_at(where, 0, col, ts)}: holds booleans, not numbers")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return np.ascontiguousarray(s.to_numpy(dtype=np.float64, na_value=np.nan))
    coerced = pd.to_numeric(s, errors="coerce")
    bad = np.asarray(coerced.isna()) & ~np.asarray(s.isna())
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{_at(where, row, col, ts)}: not a number: {str(s.iloc[row])!r}")
    return np.ascontiguousarray(coerced.to_numpy(dtype=np.float64, na_value=np.nan))


def _first(mask: npt.NDArray[np.bool_]) -> int:
    """Index of the first True, or -1: argmax alone cannot tell 'row 0' from 'none'."""
    if not mask.any():
        return -1
    return int(np.argmax(mask))


def _validate(where: str, ts: IntArray, v: dict[str, FloatArray], shown: dict[str, str], ts_col: str) -> None:
    def fail(row: int, col: str, problem: str) -> DataError:
        return DataError(f"{_at(where, row, col, ts)}: {problem}")

    # 1. NaN / inf, earliest row across all columns
    best: tuple[int, str] | None = None
    for col in COLUMNS:
        r = _first(~np.isfinite(v[col]))
        if r >= 0 and (best is None or r < best[0]):
            best = (r, col)
    if best is not None:
        r, col = best
        x = v[col][r]
        what = "missing value (NaN)" if math.isnan(x) else f"non-finite value {x}"
        raise fail(r, shown[col], what)

    # 2. time order and uniqueness
    d = np.diff(ts)
    r = _first(d < 0)
    if r >= 0:
        raise DataError(
            f"{where}: row {r + 1} ({iso(int(ts[r + 1]))}), column '{ts_col}': timestamps not sorted "
            f"(earlier than row {r}, {iso(int(ts[r]))}); sort the file by time"
        )
    r = _first(d == 0)
    if r >= 0:
        raise fail(r + 1, ts_col, f"duplicate timestamp (same as row {r})")

    # 3. prices positive, volume not negative
    best = None
    for col in PRICE_COLUMNS:
        r = _first(v[col] <= 0)
        if r >= 0 and (best is None or r < best[0]):
            best = (r, col)
    if best is not None:
        r, col = best
        raise fail(r, shown[col], f"non-positive price {v[col][r]}")
    r = _first(v["volume"] < 0)
    if r >= 0:
        raise fail(r, shown["volume"], f"negative volume {v['volume'][r]}")

    # 4. OHLC consistency
    o, h, lo, c = v["open"], v["high"], v["low"], v["close"]
    r_high = _first(h < np.maximum(np.maximum(o, c), lo))
    r_low = _first(lo > np.minimum(o, c))
    if r_high >= 0 and (r_low < 0 or r_high <= r_low):
        r = r_high
        raise fail(r, shown["high"], f"high {h[r]} < max(open, close, low) = {max(o[r], c[r], lo[r])} "
                                     f"(open={o[r]}, high={h[r]}, low={lo[r]}, close={c[r]})")
    if r_low >= 0:
        r = r_low
        raise fail(r, shown["low"], f"low {lo[r]} > min(open, close) = {min(o[r], c[r])} "
                                    f"(open={o[r]}, high={h[r]}, low={lo[r]}, close={c[r]})")


# ----------------------------------------------------------------------------------------------- gaps


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole in a series: ``start`` is the last bar before it, ``end`` the first bar after it."""

    start: pd.Timestamp
    end: pd.Timestamp
    missing_bars: int

    @property
    def duration(self) -> pd.Timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{iso(self.start)} -> {iso(self.end)} ({self.missing_bars} missing)"


@dataclass(frozen=True, slots=True)
class GapSummary:
    count: int
    missing_bars: int
    largest: Gap | None

    def __str__(self) -> str:
        if self.largest is None:
            return "no gaps"
        return f"{self.count} gap(s), {self.missing_bars} missing bar(s), largest {self.largest}"


def find_gaps(df: pd.DataFrame, timeframe: Timeframe, *, min_missing: int = 1) -> list[Gap]:
    """Intervals longer than the nominal spacing, with at least ``min_missing`` whole bars missing.

    A weekend in forex or equity data is a gap like any other; pass ``min_missing`` to look past them.
    A spacing that is longer than nominal but off the grid (e.g. 90 s on 1m bars) counts the whole bar
    slots strictly inside it, so it shows with ``min_missing=0``.
    """
    ts = _ts_ns(df, "find_gaps")
    step = timeframe.seconds * _NS
    d = np.diff(ts)
    where = np.flatnonzero(d > step)
    missing = (d[where] - 1) // step
    keep = missing >= min_missing
    idx = df.index
    return [Gap(idx[i], idx[i + 1], int(m)) for i, m in zip(where[keep], missing[keep], strict=True)]


def gap_summary(gaps: Sequence[Gap]) -> GapSummary:
    """Count, total missing bars and the largest gap, for one line of output (``str()`` of the result)."""
    largest = max(gaps, key=lambda g: (g.missing_bars, g.duration), default=None)
    return GapSummary(len(gaps), sum(g.missing_bars for g in gaps), largest)


# ------------------------------------------------------------------------------ timeframes and slicing


def median_spacing_seconds(df: pd.DataFrame) -> float:
    ts = _ts_ns(df, "median_spacing_seconds")
    if len(ts) < 2:
        raise DataError(f"need at least 2 bars to measure bar spacing, got {len(ts)}")
    return float(np.median(np.diff(ts))) / _NS


def infer_timeframe(df: pd.DataFrame) -> Timeframe:
    """The timeframe whose spacing equals the median spacing: robust to weekends and sparse holes."""
    sec = median_spacing_seconds(df)
    for tf in Timeframe:
        if tf.seconds == sec:
            return tf
    known = ", ".join(f"{t.value}={t.seconds}s" for t in Timeframe)
    raise DataError(f"median bar spacing is {sec:g}s, which matches no timeframe ({known})")


def resample(df: pd.DataFrame, timeframe: Timeframe) -> pd.DataFrame:
    """Aggregate to a coarser timeframe: first open, max high, min low, last close, summed volume.

    Bins are labelled by their open time and anchored at UTC midnight (so 4h bars start at 00, 04...,
    1d bars at 00:00 UTC); bins without any source bar are dropped rather than invented.
    """
    ts = _ts_ns(df, "resample")
    if len(ts) == 0:
        return df.copy()
    if len(ts) > 1:
        spacing = float(np.median(np.diff(ts))) / _NS
        if spacing > timeframe.seconds:
            raise ValidationError(
                f"cannot resample to {timeframe.value}: it is finer than the data (median spacing {spacing:g}s)"
            )
        if np.any(np.diff(ts) <= 0):
            raise ValidationError("resample: timestamps must be strictly increasing (load with load_bars)")
    step = np.int64(timeframe.seconds * _NS)
    bins = (ts // step) * step
    starts = np.flatnonzero(np.concatenate(([True], bins[1:] != bins[:-1])))
    if len(starts) == len(ts) and np.array_equal(bins, ts):
        return df.copy()
    ends = np.concatenate((starts[1:] - 1, [len(ts) - 1]))
    a = to_arrays(df)
    return frame_from_arrays(
        bins[starts],
        a.open[starts],
        np.maximum.reduceat(a.high, starts),
        np.minimum.reduceat(a.low, starts),
        a.close[ends],
        np.add.reduceat(a.volume, starts),
    )


def _parse_date(value: str | datetime, label: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{label} date {value!r} is not a date/time ({exc})") from None
    if not isinstance(t, pd.Timestamp):
        raise ValidationError(f"{label} date {value!r} is not a date/time")
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def slice_dates(df: pd.DataFrame, start: str | datetime | None = None,
                end: str | datetime | None = None) -> pd.DataFrame:
    """Bars with start <= ts < end (naive dates are UTC), so adjacent slices never share a bar."""
    ts = _ts_ns(df, "slice_dates")
    lo_t = _parse_date(start, "start") if start is not None else None
    hi_t = _parse_date(end, "end") if end is not None else None
    if lo_t is not None and hi_t is not None and lo_t >= hi_t:
        raise ValidationError(f"start {iso(lo_t.to_pydatetime())} is not before end {iso(hi_t.to_pydatetime())}")
    i = int(np.searchsorted(ts, lo_t.as_unit("ns").value, side="left")) if lo_t is not None else 0
    j = int(np.searchsorted(ts, hi_t.as_unit("ns").value, side="left")) if hi_t is not None else len(ts)
    if j <= i:
        span = f"{iso(int(ts[0]))} .. {iso(int(ts[-1]))}" if len(ts) else "no bars"
        want = (f"[{iso(lo_t.to_pydatetime()) if lo_t is not None else '-inf'}, "
                f"{iso(hi_t.to_pydatetime()) if hi_t is not None else '+inf'})")
        raise DataError(f"no bars in {want}; the data covers {span}")
    return df.iloc[i:j].copy()


# ------------------------------------------------------------------------------------ synthetic data


def generated_seed(symbol: str) -> int:
    """The seed of a config's ``generated_symbols`` entry: its symbol's crc32, so the paper replay, the
    portfolio backtest and the benchmarks generate the same bars for it."""
    return zlib.crc32(symbol.encode())


def generate_bars(
    n: int,
    *,
    seed: int = 42,
    start: str = "2024-01-01",
    timeframe: Timeframe | str = Timeframe.M1,
    start_price: float = 30000.0,
    volatility: float | None = None,
) -> pd.DataFrame:
    """Deterministic synthetic bars: a driftless geometric random walk, gap-free, with consistent OHLC.

    ``volatility`` is the standard deviation of one bar's log return; by default 0.1% per minute scaled
    by the square root of the bar length (about 3.8% a day, BTC-like). Same arguments, same bytes.
    """
    tf = Timeframe.parse(timeframe) if isinstance(timeframe, str) else timeframe
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"generate_bars: n must be a positive integer, got {n!r}")
    if not (math.isfinite(start_price) and start_price > 0):
        raise ValidationError(f"generate_bars: start_price must be > 0, got {start_price!r}")
    minutes = tf.seconds / 60
    vol = 0.001 * math.sqrt(minutes) if volatility is None else float(volatility)
    if not (math.isfinite(vol) and vol >= 0):
        raise ValidationError(f"generate_bars: volatility must be >= 0, got {volatility!r}")
    t0 = _parse_date(start, "start").as_unit("ns").value

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((3, n))
    log_close = math.log(start_price) + np.cumsum(z[0] * vol)
    close = np.exp(log_close)
    opens = np.empty(n, dtype=np.float64)
    opens[0] = start_price
    opens[1:] = close[:-1]
    high = np.maximum(opens, close) * np.exp(np.abs(z[1]) * (vol * 0.5))
    low = np.minimum(opens, close) * np.exp(-np.abs(z[2]) * (vol * 0.5))
    volume = 10.0 * minutes * rng.lognormal(0.0, 0.75, n)
    ts = t0 + np.arange(n, dtype=np.int64) * np.int64(tf.seconds * _NS)
    return frame_from_arrays(ts, opens, high, low, close, volume)


def stitch(df: pd.DataFrame, copies: int | None = None, *, target_bars: int | None = None) -> pd.DataFrame:
    """Repeat a real series end to end (for benchmarks that need more bars than reality offers).

    Copy k is the original scaled by r**k, r = last close / first open, so each copy opens exactly where
    the previous one closed and bar-to-bar returns stay real. Timestamps continue at the median spacing;
    holes inside the original repeat in every copy. The price level drifts by r per copy, so prices
    are only realistic in shape, not level. Volume is repeated unscaled.
    """
    if (copies is None) == (target_bars is None):
        raise ValidationError("stitch: give exactly one of copies or target_bars")
    a = to_arrays(df)
    n = len(a)
    if n < 2:
        raise ValidationError(f"stitch: need at least 2 bars, got {n}")
    if copies is not None:
        if copies < 1:
            raise ValidationError(f"stitch: copies must be >= 1, got {copies}")
        k = copies
        total = n * copies
    else:
        assert target_bars is not None
        if target_bars < 1:
            raise ValidationError(f"stitch: target_bars must be >= 1, got {target_bars}")
        k = -(-target_bars // n)
        total = target_bars
    ratio = float(a.close[-1] / a.open[0])
    factors = np.cumprod(np.concatenate(([1.0], np.full(k - 1, ratio))))
    scale = np.repeat(factors, n)[:total]
    spacing = np.int64(np.median(np.diff(a.ts_ns)))
    period = np.int64(a.ts_ns[-1] - a.ts_ns[0]) + spacing
    offsets = np.repeat(np.arange(k, dtype=np.int64) * period, n)[:total]

    def rep(x: FloatArray) -> FloatArray:
        return np.tile(x, k)[:total]

    return frame_from_arrays(
        np.tile(a.ts_ns, k)[:total] + offsets,
        rep(a.open) * scale,
        rep(a.high) * scale,
        rep(a.low) * scale,
        rep(a.close) * scale,
        rep(a.volume),
    )
