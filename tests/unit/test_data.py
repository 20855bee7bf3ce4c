"""mmats.data: loading and validating bar files, gaps, resampling, slicing, generation, stitching."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmats.data import (
    BarArrays,
    Gap,
    find_gaps,
    gap_summary,
    generate_bars,
    infer_timeframe,
    load_bars,
    resample,
    slice_dates,
    stitch,
    to_arrays,
)
from mmats.errors import DataError, ValidationError
from mmats.model import Timeframe
from tests.conftest import shared_file

HEADER = "ts,open,high,low,close,volume\n"


def rows(n: int, start: str = "2024-01-01 00:00:00", step: str = "1min") -> list[list[object]]:
    ts = pd.date_range(start, periods=n, freq=step)
    return [[t.strftime("%Y-%m-%d %H:%M:%S"), 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0]
            for i, t in enumerate(ts)]


def write_csv(path: Path, data: list[list[object]], header: str = HEADER) -> Path:
    path.write_text(header + "".join(",".join(str(x) for x in r) + "\n" for r in data))
    return path


def small_frame(ts: list[str], o: list[float], h: list[float], lo: list[float], c: list[float],
                v: list[float]) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(ts, utc=True), name="ts").as_unit("ns")
    return pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": v}, index=idx, dtype=np.float64)


# ------------------------------------------------------------------------------------------- loading


def test_load_csv_shape_and_types(tmp_path: Path) -> None:
    df = load_bars(write_csv(tmp_path / "ok.csv", rows(5)))
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert all(df[c].dtype == np.float64 for c in df.columns)
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "ts"
    assert str(df.index.dtype) == "datetime64[ns, UTC]"
    assert df.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert df["close"].iloc[4] == 104.5


def test_load_parquet_roundtrip_and_case_insensitive_columns(tmp_path: Path) -> None:
    src = generate_bars(50, seed=1)
    p = tmp_path / "bars.parquet"
    src.reset_index().rename(columns={"ts": "Timestamp", "close": "CLOSE", "open": "Open"}).to_parquet(p)
    df = load_bars(p)
    pd.testing.assert_frame_equal(df, src, check_freq=False)
    # a Parquet file with the time as its index loads the same
    p2 = tmp_path / "indexed.parquet"
    src.to_parquet(p2)
    pd.testing.assert_frame_equal(load_bars(p2), src, check_freq=False)


def test_volume_optional(tmp_path: Path) -> None:
    p = tmp_path / "fx.csv"
    p.write_text("Date,Open,High,Low,Close\n2024-01-01,1.1,1.2,1.0,1.15\n2024-01-02,1.15,1.2,1.1,1.12\n")
    df = load_bars(p)
    assert (df["volume"] == 0.0).all() and df["volume"].dtype == np.float64
    assert infer_timeframe(df) is Timeframe.D1


@pytest.mark.parametrize(
    ("col", "values"),
    [
        ("ts", ["2024-01-01 00:00:00", "2024-01-01 00:01:00"]),  # naive -> UTC
        ("timestamp", ["2024-01-01T02:00:00+02:00", "2024-01-01T02:01:00+02:00"]),  # offset -> UTC
        ("time", ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]),
        ("date", ["1704067200", "1704067260"]),  # epoch seconds
        ("TIMESTAMP", ["1704067200000", "1704067260000"]),  # epoch milliseconds
        ("ts", ["1704067200000000", "1704067260000000"]),  # epoch microseconds
        ("ts", ["1704067200000000000", "1704067260000000000"]),  # epoch nanoseconds
        ("ts", ["01/01/2024 00:00", "01/01/2024 00:01"]),  # non-ISO, inferred format
        ("ts", ["1704067200.0", "1704067260.0"]),  # float epoch seconds
    ],
)
def test_csv_timestamp_variants(tmp_path: Path, col: str, values: list[str]) -> None:
    p = tmp_path / "t.csv"
    p.write_text(f"{col},open,high,low,close,volume\n" + "".join(f"{v},1,2,0.5,1.5,3\n" for v in values))
    df = load_bars(p)
    assert list(df.index) == [pd.Timestamp("2024-01-01 00:00", tz="UTC"), pd.Timestamp("2024-01-01 00:01", tz="UTC")]


def test_yyyymmdd_integer_dates_are_dates_not_epoch_seconds(tmp_path: Path) -> None:
    p = tmp_path / "eq.csv"
    p.write_text("Date,Open,High,Low,Close,Volume\n20240102,1,2,0.5,1.5,3\n20240103,1,2,0.5,1.5,3\n")
    assert load_bars(p).index[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_parquet_naive_and_foreign_tz_times(tmp_path: Path) -> None:
    src = generate_bars(5)
    naive = src.reset_index()
    naive["ts"] = naive["ts"].dt.tz_localize(None)
    naive.to_parquet(tmp_path / "naive.parquet")
    pd.testing.assert_frame_equal(load_bars(tmp_path / "naive.parquet"), src, check_freq=False)
    ny = src.reset_index()
    ny["ts"] = ny["ts"].dt.tz_convert("America/New_York")
    ny.to_parquet(tmp_path / "ny.parquet")
    pd.testing.assert_frame_equal(load_bars(tmp_path / "ny.parquet"), src, check_freq=False)


def test_symbol_column_selects_rows(tmp_path: Path) -> None:
    p = tmp_path / "multi.csv"
    p.write_text("ts,symbol,open,high,low,close\n"
                 "2024-01-01 00:00,AAA,1,2,0.5,1\n2024-01-01 00:00,BBB,5,6,4,5\n2024-01-01 00:01,AAA,1,2,0.5,1.5\n")
    df = load_bars(p, symbol="AAA")
    assert len(df) == 2 and df["close"].tolist() == [1.0, 1.5]
    with pytest.raises(DataError, match="several symbols"):
        load_bars(p)
    with pytest.raises(DataError, match="no rows for symbol 'ZZZ'"):
        load_bars(p, symbol="ZZZ")


def _expect(path: Path, *parts: str) -> str:
    with pytest.raises(DataError) as info:
        load_bars(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert path.name in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


def _mutate(i: int, col: int, value: object, n: int = 6) -> list[list[object]]:
    data = rows(n)
    data[i][col] = value
    return data


@pytest.mark.parametrize(
    ("name", "i", "col", "value", "expected"),
    [
        ("nan.csv", 3, 4, "nan", ("row 3", "2024-01-01T00:03:00Z", "'close'", "NaN")),
        ("empty_cell.csv", 2, 2, "", ("row 2", "'high'", "NaN")),
        ("inf.csv", 4, 1, "inf", ("row 4", "'open'", "non-finite")),
        ("text.csv", 1, 3, "abc", ("row 1", "'low'", "not a number", "'abc'")),
        ("highlow.csv", 2, 2, 50.0, ("row 2", "'high'", "high 50.0 < max(open, close, low)")),
        ("lowhigh.csv", 5, 3, 105.2, ("row 5", "'low'", "low 105.2 > min(open, close) = 105.0")),
        ("negvol.csv", 4, 5, -1.0, ("row 4", "'volume'", "negative volume")),
        ("zero.csv", 1, 1, 0.0, ("row 1", "'open'", "non-positive price")),
        ("badts.csv", 3, 0, "2024-13-45 99:00", ("row 3", "'ts'", "cannot parse timestamp", "2024-13-45")),
        ("dup.csv", 3, 0, "2024-01-01 00:02:00", ("row 3", "'ts'", "duplicate timestamp", "row 2")),
        ("unsorted.csv", 4, 0, "2024-01-01 00:01:30", ("row 4", "'ts'", "not sorted", "row 3")),
    ],
)
def test_validation_errors_name_file_row_column(
    tmp_path: Path, name: str, i: int, col: int, value: object, expected: tuple[str, ...]
) -> None:
    _expect(write_csv(tmp_path / name, _mutate(i, col, value)), *expected)


def test_validation_error_uses_the_files_own_column_name(tmp_path: Path) -> None:
    data = _mutate(2, 4, "nan")
    _expect(write_csv(tmp_path / "caps.csv", data, "Time,Open,High,Low,Close,Volume\n"), "row 2", "'Close'")


def test_missing_column_lists_found(tmp_path: Path) -> None:
    p = tmp_path / "nolow.csv"
    p.write_text("ts,open,high,close\n2024-01-01,1,2,1\n")
    _expect(p, "missing required column(s) low", "found columns: ts, open, high, close")
    p2 = tmp_path / "nots.csv"
    p2.write_text("when,open,high,low,close\n2024-01-01,1,2,1,1\n")
    _expect(p2, "missing required column(s) ts", "found columns: when")


def test_empty_unreadable_unsupported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _expect(empty, "empty file")
    header_only = tmp_path / "header.csv"
    header_only.write_text(HEADER)
    _expect(header_only, "empty file")
    bad_parquet = tmp_path / "broken.parquet"
    bad_parquet.write_bytes(b"this is not parquet at all")
    _expect(bad_parquet, "unreadable Parquet file")
    other = tmp_path / "bars.xlsx"
    other.write_text("x")
    _expect(other, "unsupported file type")
    _expect(tmp_path / "absent.csv", "file not found")


def test_a_million_rows_load_and_validate(tmp_path: Path) -> None:
    """Validation is vectorised; its speed is measured in bench/backtest_throughput.py, not timed here."""
    df = generate_bars(1_000_000, seed=5)
    p = tmp_path / "big.parquet"
    df.reset_index().to_parquet(p)
    out = load_bars(p)
    assert len(out) == 1_000_000


# ---------------------------------------------------------------------------------------------- gaps


def test_find_gaps_known_holes() -> None:
    idx = pd.date_range("2024-01-01", periods=20, freq="1min", tz="UTC")
    keep = [i for i in range(20) if i not in (5, 6, 7, 12)]  # holes: 3 bars after 04, 1 bar after 11
    df = generate_bars(20).iloc[keep]
    assert df.index.equals(idx[keep].rename("ts"))
    gaps = find_gaps(df, Timeframe.M1)
    assert gaps == [Gap(idx[4], idx[8], 3), Gap(idx[11], idx[13], 1)]
    s = gap_summary(gaps)
    assert (s.count, s.missing_bars, s.largest) == (2, 4, gaps[0])
    assert "2 gap(s), 4 missing bar(s)" in str(s)
    assert find_gaps(df, Timeframe.M1, min_missing=2) == [gaps[0]]
    assert find_gaps(generate_bars(100), Timeframe.M1) == []
    assert str(gap_summary([])) == "no gaps"


# ------------------------------------------------------------------------------------------ resample

HAND = small_frame(
    ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:02", "2024-01-01 00:03", "2024-01-01 00:04",
     "2024-01-01 00:05", "2024-01-01 00:06", "2024-01-01 00:12"],
    o=[10, 11, 12, 11, 13, 14, 15, 16],
    h=[11, 13, 12, 14, 13, 16, 15, 17],
    lo=[9, 10, 11, 10, 12, 13, 14, 15],
    c=[11, 12, 11, 13, 12, 15, 14, 16],
    v=[1, 2, 3, 4, 5, 6, 7, 8],
)


def test_resample_5m_hand_example() -> None:
    r = resample(HAND, Timeframe.M5)
    expected = small_frame(
        ["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:10"],  # 00:10 bin holds only 00:12
        o=[10, 14, 16], h=[14, 16, 17], lo=[9, 13, 15], c=[12, 14, 16], v=[15, 13, 8],
    )
    pd.testing.assert_frame_equal(r, expected)


def test_resample_1h_anchored_at_midnight_and_drops_empty_bins() -> None:
    df = small_frame(
        ["2024-01-01 23:30", "2024-01-01 23:59", "2024-01-02 00:00", "2024-01-02 02:10"],
        o=[1, 2, 3, 4], h=[2, 3, 4, 5], lo=[0.5, 1.5, 2.5, 3.5], c=[2, 3, 4, 5], v=[1, 1, 1, 1],
    )
    r = resample(df, Timeframe.H1)
    assert [t.strftime("%d %H:%M") for t in r.index] == ["01 23:00", "02 00:00", "02 02:00"]
    assert r["open"].tolist() == [1, 3, 4] and r["close"].tolist() == [3, 4, 5] and r["volume"].tolist() == [2, 1, 1]
    d = resample(generate_bars(3000, start="2024-01-01 05:17"), Timeframe.D1)
    assert d.index[1] == pd.Timestamp("2024-01-02", tz="UTC")


def test_resample_matches_pandas_on_generated_bars() -> None:
    df = generate_bars(5000, seed=9, start="2024-03-01 00:03")
    mine = resample(df, Timeframe.M15)
    ref = df.resample("15min", label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    np.testing.assert_array_equal(mine.index.as_unit("ns").asi8, ref.index.as_unit("ns").asi8)
    for c in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(mine[c].to_numpy(), ref[c].to_numpy())
    np.testing.assert_allclose(mine["volume"].to_numpy(), ref["volume"].to_numpy(), rtol=1e-12)


def test_resample_rejects_finer_target() -> None:
    with pytest.raises(ValidationError, match="finer"):
        resample(resample(HAND, Timeframe.M5), Timeframe.M1)
    same = resample(HAND, Timeframe.M1)
    pd.testing.assert_frame_equal(same, HAND)


# --------------------------------------------------------------------------------- slicing, inference


def test_slice_dates_inclusive_exclusive() -> None:
    df = generate_bars(100, start="2024-01-01")
    s = slice_dates(df, "2024-01-01 00:10", "2024-01-01T00:20:00Z")
    assert len(s) == 10
    assert s.index[0] == pd.Timestamp("2024-01-01 00:10", tz="UTC")
    assert s.index[-1] == pd.Timestamp("2024-01-01 00:19", tz="UTC")
    s2 = slice_dates(df, datetime(2024, 1, 1, 1, 30, tzinfo=UTC), None)
    assert len(s2) == 10
    assert len(slice_dates(df, None, "2024-01-01 00:05")) == 5
    with pytest.raises(ValidationError, match="'yesterday-ish'"):
        slice_dates(df, "yesterday-ish", None)
    with pytest.raises(DataError, match="no bars in"):
        slice_dates(df, "2025-01-01", None)
    with pytest.raises(ValidationError, match="not before"):
        slice_dates(df, "2024-01-01 00:20", "2024-01-01 00:10")


def test_infer_timeframe() -> None:
    assert infer_timeframe(generate_bars(10, timeframe=Timeframe.H4)) is Timeframe.H4
    assert infer_timeframe(HAND) is Timeframe.M1
    odd = small_frame(["2024-01-01 00:00", "2024-01-01 00:07", "2024-01-01 00:14"],
                      [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0])
    with pytest.raises(DataError, match="420s, which matches no timeframe"):
        infer_timeframe(odd)


# ----------------------------------------------------------------------------------------- generator


def test_generator_deterministic_and_consistent() -> None:
    a = generate_bars(2000, seed=11)
    b = generate_bars(2000, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert to_arrays(a).close.tobytes() == to_arrays(b).close.tobytes()
    c = generate_bars(2000, seed=12)
    assert not np.array_equal(a["close"].to_numpy(), c["close"].to_numpy())
    o, h, lo, cl, v = (a[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert (h >= np.maximum(o, cl)).all() and (lo <= np.minimum(o, cl)).all() and (lo > 0).all() and (v > 0).all()
    assert o[0] == 30000.0 and (o[1:] == cl[:-1]).all()
    assert find_gaps(a, Timeframe.M1) == []
    with pytest.raises(ValidationError):
        generate_bars(0)


def test_generated_bars_pass_load_validation(tmp_path: Path) -> None:
    df = generate_bars(500, seed=4, timeframe="1h")
    p = tmp_path / "gen.parquet"
    df.reset_index().to_parquet(p)
    pd.testing.assert_frame_equal(load_bars(p), df, check_freq=False)


# ---------------------------------------------------------------------------------------- stitching


def test_stitch_length_continuity_spacing() -> None:
    base = generate_bars(1000, seed=2, start_price=100.0)
    s = stitch(base, target_bars=2500)
    assert len(s) == 2500
    assert len(stitch(base, 3)) == 3000
    a = to_arrays(s)
    for k in (1, 2):
        first, prev_last = a.open[k * 1000], a.close[k * 1000 - 1]
        assert abs(first / prev_last - 1) < 1e-9
    d = np.diff(a.ts_ns)
    assert (d == 60 * 10**9).all()
    # returns inside each copy are those of the original
    np.testing.assert_allclose(a.close[1001:2000] / a.close[1000:1999], base["close"].to_numpy()[1:] /
                               base["close"].to_numpy()[:-1], rtol=1e-12)
    with pytest.raises(ValidationError):
        stitch(base)
    with pytest.raises(ValidationError):
        stitch(base, 2, target_bars=10)


def test_to_arrays() -> None:
    df = generate_bars(10)
    a = to_arrays(df)
    assert isinstance(a, BarArrays) and len(a) == 10
    assert a.ts_ns.dtype == np.int64 and a.close.dtype == np.float64
    assert a.ts_ns[0] == pd.Timestamp("2024-01-01", tz="UTC").value
    with pytest.raises(ValidationError):
        BarArrays(a.ts_ns, a.open, a.high, a.low, a.close[:5], a.volume)


# --------------------------------------------------------------------------------------- real data


def test_real_btc_month() -> None:
    df = load_bars(shared_file("crypto_BTCPERP_1m.parquet"))
    assert len(df) == 45_031
    assert infer_timeframe(df) is Timeframe.M1
    assert find_gaps(df, Timeframe.M1) == []
    assert df.index[0] == pd.Timestamp("2021-12-31 23:01", tz="UTC")
    s = stitch(df, target_bars=100_000)
    assert len(s) == 100_000 and find_gaps(s, Timeframe.M1) == []
