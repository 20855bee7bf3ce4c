"""Sweeps, walk-forward and Monte Carlo as Ray tasks, on a laptop (``num_cpus``) or a cluster (``auto``).

A backtest is a pure function of (config, bars), so a sweep is embarrassingly parallel. What matters
for speed on a small machine:

- the bars go into the object store ONCE (``ray.put``); every task gets the same reference and reads the
  numpy columns zero-copy from shared memory (no pickling of 25 MB per task);
- several configs run per task when runs are short, so Ray's per-task cost (a few ms) stays under ~2 %
  of the work. The batch size adapts: it starts from an estimate (bars x a conservative throughput) and
  is re-sized from the measured run times as results come back;
- at most ~2 tasks per CPU are in flight, so a 10,000-config sweep does not flood the scheduler, and
  the driver (``ray.wait`` with a timeout) sleeps while workers compute: it does not steal a core;
- every finished run is appended to a JSONL file as it arrives, so an interrupted sweep restarted with
  ``resume=True`` skips the keys already there (see ``mmats.research.experiments.config_key``);
- a config that raises is a record with its error, never the end of the sweep; a task that dies (worker
  crash, OOM) marks its runs ``failed`` and they are retried on resume.

The computation itself (``evaluate``, ranking, windows, bootstrap) lives in the pure ``mmats.research.experiments``:
a Ray sweep and ``evaluate_many`` in one process give identical records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from mmats.errors import ConfigError, ValidationError
from mmats.model import Timeframe, iso
from mmats.research.experiments import (
    Loaded,
    MCBatch,
    Params,
    RunSpec,
    WFWindow,
    data_fingerprint,
    degradation,
    error_record,
    evaluate,
    evaluate_full,
    mc_block_bootstrap,
    mc_trade_bootstrap,
    metric_value,
    parse_metric,
    plan_runs,
    rank_records,
    run_chunks,
    slice_loaded,
    stitch_equity,
    summarize_mc,
)
from mmats.research.metrics import TradeRecord, compute_metrics, json_safe, periods_per_year

#: Conservative kernel throughput (bars/s per run) used only for the first batch-size guess.
EST_BARS_PER_S = 100_000.0
#: A task should carry at least this much work so Ray's per-task cost is noise against it.
TARGET_TASK_S = 0.5


# --------------------------------------------------------------------------------------------- Ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (``address``) or start a local one; True when this call started it.

    A caller that already initialized Ray (tests, notebooks) keeps its session.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray starts workers at nice 15; a sweep the user asked for should get the CPU like any command
    # (on a shared machine niced workers lose half their speed to everything else).
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise ConfigError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
    return True


def cluster_cpus() -> int:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)))


# The bars each worker process has already dereferenced, by (object ref, window). A worker runs many
# tasks over the same bars; reusing one object keeps its per-column list cache (mmats.data.column_list)
# warm across tasks instead of rebuilding a year of Python floats for every task. Bounded: a long-lived
# cluster running many sweeps pins at most this many bar sets per worker.
_WORKER_BARS: OrderedDict[tuple[str, tuple[int, int] | None], Loaded] = OrderedDict()  # (data key, window)
_WORKER_BARS_MAX = 4


def _share(loaded: Loaded, data_id: str) -> list[Any]:
    """The bars in the object store once, boxed with a key naming their content (``data_id`` is a hash
    of every column; the rest of ``loaded`` is small and hashed here), so workers recognise bars they
    already hold even when another sweep or round puts the same bars again."""
    rest = hashlib.sha256(repr((loaded.instrument, loaded.warnings, loaded.resolved)).encode()).hexdigest()[:16]
    return [ray.put(loaded), f"{data_id}:{rest}"]


def _worker_bars(boxed: list[Any], window: tuple[int, int] | None) -> Loaded:
    ref, data_key = boxed  # boxed in a list so Ray passes the ref itself, not a fresh copy per task
    key = (data_key, window)
    bars = _WORKER_BARS.get(key)
    if bars is None:
        loaded = ray.get(ref)  # zero-copy: read-only views into the object store
        bars = slice_loaded(loaded, *window) if window is not None else loaded
        _WORKER_BARS[key] = bars
        while len(_WORKER_BARS) > _WORKER_BARS_MAX:
            _WORKER_BARS.popitem(last=False)
    else:
        _WORKER_BARS.move_to_end(key)
    return bars


@ray.remote(max_retries=0)
def _run_batch(boxed: list[Any], window: tuple[int, int] | None, specs: list[RunSpec],
               extra: dict[str, Any]) -> list[dict[str, Any]]:
    bars = _worker_bars(boxed, window)
    return [evaluate(s, bars, **extra) for s in specs]


@ray.remote(max_retries=0)
def _noop(loaded: Loaded) -> int:
    return len(loaded.bars)


@ray.remote(max_retries=0)
def _test_run(loaded: Loaded, window: tuple[int, int], spec: RunSpec) -> dict[str, Any]:
    """One walk-forward test window: the record plus the equity and trades needed to stitch them."""
    rec, result = evaluate_full(spec, slice_loaded(loaded, *window), phase="test")
    if result is None:
        return {"record": rec}
    return {"record": rec, "equity": np.asarray(result.equity), "ts_ns": np.asarray(result.ts_ns),
            "trades": result.trades}


@ray.remote(max_retries=0)
def _mc_chunk(returns: np.ndarray, run_ids: range, method: str, seed: int, block: int, points: int) -> MCBatch:
    ids = np.arange(run_ids.start, run_ids.stop, dtype=np.int64)
    if method == "trades":
        return mc_trade_bootstrap(returns, ids, seed, points)
    return mc_block_bootstrap(returns, ids, seed, block, points)


# ---------------------------------------------------------------------------------- results log


class ResultsLog:
    """Append-only JSONL of finished runs, the memory that makes a sweep resumable.

    One line per run, flushed as it arrives: a crash loses at most the line being written, and a torn
    last line is ignored on reload.
    """

    def __init__(self, path: str | Path | None, resume: bool) -> None:
        self.path = Path(path) if path else None
        self.previous: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self._fh: Any = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.torn_lines += 1
                    continue
                if isinstance(rec, dict) and "key" in rec:
                    self.previous[str(rec["key"])] = rec
        self._fh = self.path.open("a" if resume else "w", encoding="utf-8")
        if resume and self.path.stat().st_size > 0:
            with self.path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            if torn:  # a crash mid-write: start on a fresh line so the next record is not glued to it
                self._fh.write("\n")

    def finished(self, key: str) -> dict[str, Any] | None:
        """A run that need not run again: it succeeded, or failed on its input (deterministically)."""
        rec = self.previous.get(key)
        return rec if rec is not None and rec.get("status") in ("ok", "error") else None

    def append(self, rec: Mapping[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(rec, allow_nan=False, default=str) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ---------------------------------------------------------------------------------------- engine


@dataclass
class RunStats:
    """What a parallel run cost: to check the batching keeps Ray's overhead small against the work."""

    runs_total: int = 0
    runs_skipped: int = 0
    runs_executed: int = 0
    tasks: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    work_s: float = 0.0  # sum of in-task run times
    wall_s: float = 0.0
    cpus: int = 1

    def to_dict(self) -> dict[str, Any]:
        busy = self.wall_s * self.cpus
        return {
            "runs_total": self.runs_total, "runs_skipped": self.runs_skipped, "runs_executed": self.runs_executed,
            "tasks": self.tasks, "mean_batch": round(sum(self.batch_sizes) / len(self.batch_sizes), 2)
            if self.batch_sizes else 0.0,
            "work_s": round(self.work_s, 3), "wall_s": round(self.wall_s, 3), "cpus": self.cpus,
            "utilization": round(self.work_s / busy, 4) if busy > 0 else None,
        }


def batch_size(run_s: float, remaining: int, cpus: int) -> int:
    """Configs per task: enough for ``TARGET_TASK_S`` of work, never so many that a CPU would sit idle."""
    want = math.ceil(TARGET_TASK_S / max(run_s, 1e-6))
    cap = max(1, math.ceil(remaining / (2 * cpus)))
    return max(1, min(want, cap))


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1)


@dataclass
class _Job:
    """A group of runs sharing bars: a whole sweep, or one walk-forward window's train grid."""

    specs: deque[RunSpec]
    window: tuple[int, int] | None
    extra: dict[str, Any]
    n_bars: int
    on_done: Callable[[list[dict[str, Any]]], None] | None = None
    outstanding: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)


def _drive(shared: list[Any], jobs: Sequence[_Job], log: ResultsLog, stats: RunStats, bar: Any,
           fixed_batch: int | None, extra_refs: dict[Any, Callable[[Any], None]] | None = None) -> None:
    """Feed tasks from every job (round-robin) with a bounded number in flight; collect with ray.wait.

    ``extra_refs`` are other object refs (walk-forward test runs) whose callbacks run on completion;
    job callbacks may add to it.
    """
    cpus = stats.cpus
    max_in_flight = 2 * cpus
    in_flight: dict[Any, tuple[_Job, list[RunSpec]]] = {}
    others = extra_refs if extra_refs is not None else {}
    run_s: float | None = None
    queue = deque(j for j in jobs if j.specs)
    for j in jobs:
        j.outstanding = len(j.specs)
        if not j.specs and j.on_done is not None:
            j.on_done(j.records)

    while queue or in_flight or others:
        while queue and len(in_flight) < max_in_flight:
            job = queue.popleft()
            est = run_s if run_s is not None else job.n_bars / EST_BARS_PER_S
            remaining = sum(len(j.specs) for j in queue) + len(job.specs)
            size = fixed_batch or batch_size(est, remaining, cpus)
            batch = [job.specs.popleft() for _ in range(min(size, len(job.specs)))]
            ref = _run_batch.remote(shared, job.window, batch, job.extra)
            in_flight[ref] = (job, batch)
            stats.tasks += 1
            stats.batch_sizes.append(len(batch))
            if job.specs:
                queue.append(job)
        waiting = list(in_flight) + list(others)
        done, _ = ray.wait(waiting, num_returns=1, timeout=0.5)
        if not done:
            bar.refresh()
            continue
        for ref in done:
            if ref in others:
                others.pop(ref)(ref)
                continue
            job, batch = in_flight.pop(ref)
            try:
                recs = ray.get(ref)
            except Exception as exc:  # the task itself died: its runs are retried on resume
                msg = f"task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                recs = [error_record(s, msg, status="failed", **job.extra) for s in batch]
            times = [float(r.get("elapsed_s") or 0.0) for r in recs]
            stats.work_s += sum(times)
            stats.runs_executed += len(recs)
            if times and sum(times) > 0:
                mean = sum(times) / len(times)
                run_s = mean if run_s is None else 0.7 * run_s + 0.3 * mean
            for r in recs:
                log.append(r)
                job.records.append(r)
            job.outstanding -= len(recs)
            bar.update(len(recs))
            if job.outstanding == 0 and job.on_done is not None:
                job.on_done(job.records)


def _resume_split(specs: Sequence[RunSpec], log: ResultsLog, extra: Mapping[str, Any]
                  ) -> tuple[list[dict[str, Any]], deque[RunSpec]]:
    """Records already known (from the log, or invalid configs that need no task) and runs still to do."""
    done: list[dict[str, Any]] = []
    todo: deque[RunSpec] = deque()
    for s in specs:
        prev = log.finished(s.key)
        if prev is not None:
            done.append(prev)
        elif s.config is None:
            rec = error_record(s, s.error or "invalid config", **extra)
            log.append(rec)
            done.append(rec)
        else:
            todo.append(s)
    return done, todo


@dataclass
class SweepOutcome:
    records: list[dict[str, Any]]
    stats: RunStats
    data_id: str


def run_sweep(
    base: Mapping[str, Any],
    param_sets: Sequence[Params],
    loaded: Loaded,
    *,
    results_path: str | Path | None = None,
    resume: bool = False,
    batch: int | None = None,
    progress: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
) -> SweepOutcome:
    """Run every param set on the same bars as Ray tasks; records come back in the plan's order."""
    t0 = time.perf_counter()
    ensure_ray(address, num_cpus)
    data_id = data_fingerprint(loaded.bars)
    specs = plan_runs(base, param_sets, data_id)
    log = ResultsLog(results_path, resume)
    stats = RunStats(runs_total=len(specs), cpus=cluster_cpus())
    try:
        done, todo = _resume_split(specs, log, {})
        stats.runs_skipped = sum(1 for r in done if log.finished(str(r["key"])) is not None)
        job = _Job(todo, None, {}, len(loaded.bars))
        shared = _share(loaded, data_id)
        with _progress(len(todo), "sweep", progress) as bar:
            _drive(shared, [job], log, stats, bar, batch)
    finally:
        log.close()
    by_key = {str(r["key"]): r for r in [*done, *job.records]}
    stats.wall_s = time.perf_counter() - t0
    return SweepOutcome([by_key[s.key] for s in specs if s.key in by_key], stats, data_id)


def measure_task_overhead(loaded: Loaded, tasks: int = 20) -> float:
    """Mean seconds a no-op task costs end to end (submit, schedule, deref the bars, return), sequentially."""
    ref = ray.put(loaded)
    ray.get(_noop.remote(ref))  # warm a worker
    t0 = time.perf_counter()
    for _ in range(tasks):
        ray.get(_noop.remote(ref))
    return (time.perf_counter() - t0) / tasks


# ----------------------------------------------------------------------------------- walk-forward


def _ppy(loaded: Loaded) -> float:
    resolved = loaded.resolved
    tf = Timeframe.parse(str(resolved.get("timeframe", "1m")))
    return periods_per_year(tf.seconds, str(resolved.get("market", "crypto")))


def _scaled_trades(trades: Sequence[TradeRecord], factor: float) -> list[TradeRecord]:
    return [TradeRecord(t.symbol, t.side, t.quantity * factor, t.entry_ns, t.entry_price, t.exit_ns, t.exit_price,
                        t.pnl * factor, t.fees * factor) for t in trades]


def run_walkforward(
    base: Mapping[str, Any],
    param_sets: Sequence[Params],
    loaded: Loaded,
    windows: Sequence[WFWindow],
    *,
    metric: str = "sharpe",
    min_trades: int = 0,
    results_path: str | Path | None = None,
    resume: bool = False,
    batch: int | None = None,
    progress: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Optimize every window's train grid in parallel, test each window's best on its test bars, stitch.

    All windows' train runs share one task queue, so the CPUs stay busy across window boundaries; a
    window's test run is submitted the moment its last train run lands.
    """
    t0 = time.perf_counter()
    name, _ = parse_metric(metric)
    ensure_ray(address, num_cpus)
    arrays = loaded.bars
    data_id = data_fingerprint(arrays)
    log = ResultsLog(results_path, resume)
    stats = RunStats(cpus=cluster_cpus())
    shared = _share(loaded, data_id)
    loaded_ref = shared[0]
    initial = float(base.get("initial_cash", 10_000.0))
    test_out: dict[int, dict[str, Any]] = {}
    best: dict[int, dict[str, Any] | None] = {}
    others: dict[Any, Callable[[Any], None]] = {}
    jobs: list[_Job] = []
    known: list[list[dict[str, Any]]] = []

    def make_on_done(w: WFWindow, specs_by_key: dict[str, RunSpec]) -> Callable[[list[dict[str, Any]]], None]:
        def on_done(records: list[dict[str, Any]]) -> None:
            everything = [*known[w.index], *records]
            ranked = rank_records(everything, metric, min_trades, top=1)
            best[w.index] = ranked[0] if ranked else None
            if not ranked:
                return
            win = plan_runs(base, [ranked[0]["params"]], f"{data_id}:{w.test_start}:{w.test_end}")[0]
            ref = _test_run.remote(loaded_ref, (w.test_start, w.test_end), win)

            def got(r: Any) -> None:
                try:
                    test_out[w.index] = ray.get(r)
                except Exception as exc:
                    test_out[w.index] = {"record": error_record(win, f"test task failed: {exc}", status="failed")}
                bar.update(1)

            others[ref] = got
        _ = specs_by_key
        return on_done

    try:
        for w in windows:
            wid = f"{data_id}:{w.train_start}:{w.train_end}"
            specs = plan_runs(base, param_sets, wid)
            extra = {"window": w.index, "phase": "train"}
            done, todo = _resume_split(specs, log, extra)
            stats.runs_total += len(specs)
            stats.runs_skipped += len(specs) - len(todo) - sum(1 for s in specs if s.config is None)
            known.append(done)
            jobs.append(_Job(todo, (w.train_start, w.train_end), extra, w.train_end - w.train_start,
                             make_on_done(w, {s.key: s for s in specs})))
        total = sum(len(j.specs) for j in jobs) + len(windows)
        with _progress(total, "walk-forward", progress) as bar:
            _drive(shared, jobs, log, stats, bar, batch, others)
            for w in windows:  # windows with no eligible config still advance the bar
                if best.get(w.index) is None:
                    bar.update(1)
    finally:
        log.close()
    stats.wall_s = time.perf_counter() - t0

    ppy = _ppy(loaded)
    segments: list[np.ndarray] = []
    seg_ts: list[np.ndarray] = []
    trades: list[TradeRecord] = []
    level = initial
    rows = []
    for w, job in zip(windows, jobs, strict=True):
        everything = [*known[w.index], *job.records]
        chosen = best.get(w.index)
        out = test_out.get(w.index)
        ts = arrays.ts_ns[w.test_start:w.test_end]
        if out is not None and "equity" in out:
            eq = np.asarray(out["equity"], dtype=np.float64)
            factor = level / float(eq[0])
            trades += _scaled_trades(out["trades"], factor)
            oos_metrics = out["record"]["metrics"]
            note = None
        else:
            eq = np.full(len(ts), 1.0)  # no eligible config, or the test run failed: stay in cash
            oos_metrics = None
            note = (out["record"]["error"] if out is not None else
                    f"no config with >= {min_trades} trades and a defined {name}: stayed in cash")
        segments.append(eq)
        seg_ts.append(np.asarray(out["ts_ns"]) if out is not None and "ts_ns" in out else ts)
        level = float(stitch_equity(segments, initial)[-1])
        rows.append({
            **w.to_dict(),
            "train_from": iso(int(arrays.ts_ns[w.train_start])), "train_to": iso(int(arrays.ts_ns[w.train_end - 1])),
            "test_from": iso(int(arrays.ts_ns[w.test_start])), "test_to": iso(int(arrays.ts_ns[w.test_end - 1])),
            "configs": len(everything), "configs_ok": sum(1 for r in everything if r.get("status") == "ok"),
            "best_params": chosen["params"] if chosen else None, "best_key": chosen["key"] if chosen else None,
            "in_sample": chosen["metrics"] if chosen else None, "out_of_sample": oos_metrics, "note": note,
        })
    stitched = stitch_equity(segments, initial)
    ts_all = np.concatenate(seg_ts) if seg_ts else np.zeros(0, dtype=np.int64)
    oos = json_safe(compute_metrics(stitched, ts_all, trades, ppy)) if stitched.size else {}
    degr = {m: degradation([metric_value({"metrics": r["in_sample"]}, m) for r in rows],
                           [metric_value({"metrics": r["out_of_sample"]}, m) for r in rows])
            for m in dict.fromkeys((name, "sharpe", "cagr"))}
    step = max(1, len(stitched) // 20_000)
    idx = np.arange(0, len(stitched), step)
    if len(idx) and idx[-1] != len(stitched) - 1:
        idx = np.append(idx, len(stitched) - 1)
    return {
        "kind": "walkforward",
        "mmats_walkforward_version": 1,
        "metric": metric,
        "min_trades": min_trades,
        "windows": rows,
        "oos_metrics": oos,
        "degradation": degr,
        "oos_equity": [[iso(int(ts_all[i])), round(float(stitched[i]), 8)] for i in idx],
        "stats": stats.to_dict(),
    }


# ------------------------------------------------------------------------------------ Monte Carlo


def run_montecarlo(
    method: str,
    returns: np.ndarray,
    runs: int,
    seed: int,
    *,
    initial: float,
    ruin: float = 0.5,
    block: int = 20,
    points: int = 200,
    chunk: int | None = None,
    parallel: bool | None = None,
    progress: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Bootstrap runs in parallel chunks; per-run seeds make the result independent of the chunking.

    ``parallel=None`` decides by the work: resampling a few hundred trades 2,000 times takes a fraction
    of a second in-process, less than starting Ray; a block bootstrap of a million bars takes minutes.
    """
    if method not in ("trades", "blocks"):
        raise ValidationError(f"Monte Carlo: method must be 'trades' or 'blocks', got {method!r}")
    r = np.ascontiguousarray(returns, dtype=np.float64)
    run_chunks(runs, 1)
    work = runs * max(1, r.size)
    if parallel is None:
        parallel = work > 20_000_000 or address is not None
    t0 = time.perf_counter()
    batches: list[MCBatch] = []
    with _progress(runs, f"monte carlo ({method})", progress) as bar:
        if not parallel:
            size = chunk or max(1, runs // 20)
            for rr in run_chunks(runs, size):
                ids = np.arange(rr.start, rr.stop, dtype=np.int64)
                batches.append(mc_trade_bootstrap(r, ids, seed, points) if method == "trades"
                               else mc_block_bootstrap(r, ids, seed, block, points))
                bar.update(len(rr))
        else:
            ensure_ray(address, num_cpus)
            cpus = cluster_cpus()
            size = chunk or max(1, math.ceil(runs / (4 * cpus)))
            ref = ray.put(r)
            pending = {_mc_chunk.remote(ref, rr, method, seed, block, points): len(rr) for rr in run_chunks(runs, size)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                if not done:
                    bar.refresh()
                for d in done:
                    bar.update(pending.pop(d))
                    batches.append(ray.get(d))
    out = summarize_mc(MCBatch.concat(batches), initial, ruin, r, method, block if method == "blocks" else None, seed)
    out["elapsed_s"] = round(time.perf_counter() - t0, 3)
    out["parallel"] = bool(parallel)
    return out
