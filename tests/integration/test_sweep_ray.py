"""Sweeps, walk-forward and Monte Carlo on a real Ray cluster: same answers as in one process.

Small on purpose (a few thousand generated bars): the machine has 2 cores shared with other work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.research import run_montecarlo, run_sweep, run_walkforward
from mmats.research.experiments import (
    data_fingerprint,
    evaluate_many,
    expand_grid,
    monte_carlo,
    parse_grid,
    plan_runs,
    rank_records,
    slice_loaded,
    walkforward_windows,
)
from mmats.research.runconfig import load_run_data, parse_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

FAULTY = Path(__file__).resolve().parents[1] / "fixtures" / "faulty_strategies.py"
BASE: dict[str, Any] = {"strategy": "sma_cross", "generated": {"bars": 3000, "seed": 5},
                        "commission": {"model": "percent", "taker_bps": 5.0}}
# 8 configs, one invalid (fast=40 >= slow=40): it must come back as a recorded error
GRID = ["fast=5,10,20,40", "slow=40,80"]


@pytest.fixture(scope="module")
def loaded() -> Any:
    return load_run_data(parse_config(BASE))


def _strip(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in recs]


def test_ray_sweep_equals_sequential_and_reports_bad_config(loaded: Any) -> None:
    params = expand_grid(parse_grid(GRID))
    seq = evaluate_many(plan_runs(BASE, params, data_fingerprint(loaded.bars)), loaded)
    out = run_sweep(BASE, params, loaded, progress=False, batch=3)
    assert _strip(out.records) == _strip(seq)
    assert out.stats.tasks == 3  # 8 runs in batches of 3
    bad = [r for r in out.records if r["status"] != "ok"]
    assert [(r["params"], r["status"]) for r in bad] == [({"fast": 40, "slow": 40}, "error")]
    assert "must be smaller than slow=40" in bad[0]["error"]
    assert len(rank_records(out.records, "sharpe")) == 7


def test_resume_skips_finished_runs(loaded: Any, tmp_path: Path) -> None:
    params = expand_grid(parse_grid(GRID))
    log = tmp_path / "runs.jsonl"
    first = run_sweep(BASE, params, loaded, results_path=log, progress=False, batch=1)
    assert first.stats.runs_executed == 8 and first.stats.tasks == 8
    assert len(log.read_text().splitlines()) == 8

    again = run_sweep(BASE, params, loaded, results_path=log, resume=True, progress=False, batch=1)
    assert again.stats.tasks == 0 and again.stats.runs_executed == 0 and again.stats.runs_skipped == 8
    assert _strip(again.records) == _strip(first.records)

    # an interrupted sweep: three lines kept, the last one torn mid-write
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    partial = run_sweep(BASE, params, loaded, results_path=log, resume=True, progress=False, batch=1)
    assert partial.stats.runs_skipped == 3 and partial.stats.tasks == 5 and partial.stats.runs_executed == 5
    assert _strip(partial.records) == _strip(first.records)

    # a bigger grid over the same data reuses the overlap
    more = expand_grid(parse_grid(["fast=5,10,20,40,60", "slow=40,80"]))
    grown = run_sweep(BASE, more, loaded, results_path=log, resume=True, progress=False, batch=1)
    assert grown.stats.runs_executed == 2 and len(grown.records) == 10


def test_crashing_strategy_is_recorded_not_fatal(loaded: Any) -> None:
    base = {**BASE, "strategy": f"{FAULTY}:AlwaysRaises"}
    out = run_sweep(base, [{"allocation": 0.5}, {"allocation": 1.0}], loaded, progress=False)
    assert [r["status"] for r in out.records] == ["failed", "failed"]
    assert "boom on every bar" in out.records[0]["error"]


def test_walkforward_small_case_matches_a_sequential_walk(loaded: Any) -> None:
    params = expand_grid(parse_grid(["fast=5,10", "slow=30,60"]))
    windows = walkforward_windows(len(loaded.bars), 3, 0.7)
    wf = run_walkforward(BASE, params, loaded, windows, metric="sharpe", min_trades=1, progress=False)
    data_id = data_fingerprint(loaded.bars)
    stitched_len = 0
    for w, row in zip(windows, wf["windows"], strict=True):
        train = slice_loaded(loaded, w.train_start, w.train_end)
        recs = evaluate_many(plan_runs(BASE, params, f"{data_id}:{w.train_start}:{w.train_end}"), train)
        best = rank_records(recs, "sharpe", 1, top=1)[0]
        assert row["best_params"] == best["params"]
        assert row["in_sample"] == best["metrics"]
        test = slice_loaded(loaded, w.test_start, w.test_end)
        oos = evaluate_many(plan_runs(BASE, [best["params"]], "t"), test)[0]
        assert row["out_of_sample"] == oos["metrics"]
        stitched_len += w.test_end - w.test_start
    eq = wf["oos_equity"]
    assert len(eq) == stitched_len  # every test bar, in order
    assert eq[0][1] == 10_000.0
    assert eq[0][0] == wf["windows"][0]["test_from"] and eq[-1][0] == wf["windows"][-1]["test_to"]
    assert set(wf["degradation"]) >= {"sharpe", "cagr"}
    assert wf["stats"]["runs_executed"] == 12


def test_parallel_monte_carlo_equals_sequential() -> None:
    r = np.random.default_rng(1).normal(0.0005, 0.01, 400)
    par = run_montecarlo("blocks", r, 60, 7, initial=1000.0, block=10, chunk=7, parallel=True, progress=False)
    seq = monte_carlo("blocks", r, 60, 7, initial=1000.0, block=10)
    assert par["parallel"] is True
    for k in ("final_equity", "max_drawdown", "prob_ruin", "bands", "final_equity_values"):
        assert par[k] == seq[k], k


def test_cli_sweep_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    out = tmp_path / "sweep.json"
    argv = ["sweep", "--strategy", "sma_cross", "--bars", "2000", "--grid", "fast=5,10", "--grid", "slow=20,40",
            "--grid", "commission.taker_bps=0,10", "--metric", "sharpe", "--top", "3", "--json", str(out),
            "--report", str(tmp_path / "sweep.html")]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "sweep" and doc["counts"]["total"] == 8 and len(doc["ranked"]) == 3
    assert doc["best"]["params"] == doc["ranked"][0]["params"] and doc["best"]["equity"]
    assert (tmp_path / "sweep.runs.jsonl").is_file()
    # fees vary the result: the same fast/slow with 10 bps must end lower than with 0
    by = {(r["params"]["fast"], r["params"]["slow"], r["params"]["commission.taker_bps"]): r for r in doc["runs"]}
    assert by[(5, 20, 10)]["final_equity"] < by[(5, 20, 0)]["final_equity"]
    assert "heatmap" in (tmp_path / "sweep.html").read_text()
    assert main([*argv, "--resume", "--quiet"]) == 0
    assert json.loads(out.read_text())["counts"]["skipped_resume"] == 8


def test_cli_sweep_where_every_configuration_is_invalid_fails(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    argv = ["sweep", "--strategy", "sma_cross", "--bars", "500", "--grid", "fast=40,50", "--grid", "slow=10,20",
            "--json", str(tmp_path / "sweep.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "all 4 configurations failed, none ran" in err and "fast=40 must be smaller than slow=10" in err
    assert "Traceback" not in err
