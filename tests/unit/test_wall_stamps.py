"""The bounded wall-time stamps every live actor keeps for the latency benchmarks."""

from __future__ import annotations

import pytest

from mmats.engine.wall_stamps import WallStamps


def test_a_later_stamp_wins_unless_the_first_is_kept() -> None:
    stamps: WallStamps[int] = WallStamps(10)
    stamps.stamp([1, 2], 100.0)
    stamps.stamp([2], 101.0)  # a bar time split over two batches is done with the later one
    assert stamps.snapshot() == {1: 100.0, 2: 101.0}
    stamps.stamp([2, 3], 102.0, first=True)  # when it first arrived: the earlier time stays
    assert stamps.snapshot() == {1: 100.0, 2: 101.0, 3: 102.0}
    assert stamps.get(3) == 102.0 and stamps.get(4) is None and 1 in stamps and len(stamps) == 3


def test_stamps_stay_bounded_and_keep_the_newest() -> None:
    stamps: WallStamps[str] = WallStamps(100)
    for i in range(1_000):
        stamps.stamp([f"order-{i}"], float(i))
        assert len(stamps) <= 100
    snap = stamps.snapshot()
    assert "order-999" in snap and "order-0" not in snap
    # what is kept is the newest run of stamps, in time order
    kept = sorted(int(k.split("-")[1]) for k in snap)
    assert kept == list(range(kept[0], 1_000)) and len(kept) >= 50


def test_the_snapshot_is_a_copy() -> None:
    stamps: WallStamps[int] = WallStamps(10)
    stamps.stamp([1], 1.0)
    snap = stamps.snapshot()
    snap[2] = 2.0
    assert 2 not in stamps


def test_a_bound_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        WallStamps(1)
