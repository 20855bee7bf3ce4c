"""What every `mmats backtest` run shares, one strategy or a whole system config: a fresh audit journal,
a progress bar on stderr, and the result written as JSON and HTML."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_and_write(args: argparse.Namespace, total: int, desc: str,
                  run: Callable[[Any, Callable[[int], None] | None], Any]) -> tuple[dict[str, Any], float]:
    """``run(journal, progress)`` with ``--audit`` as a new journal (one per run: never chain two runs
    together) and a bar of ``total`` bars; then ``--json`` and ``--report``. Returns the result document and
    the seconds the run took."""
    journal = None
    if args.audit:
        from mmats.audit import FileJournal

        Path(args.audit).parent.mkdir(parents=True, exist_ok=True)
        if Path(args.audit).exists():
            Path(args.audit).unlink()
        journal = FileJournal(args.audit)
    bar = update = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="bar", unit_scale=True, desc=desc, file=sys.stderr, leave=False)

        def update(done: int) -> None:
            assert bar is not None
            bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        result = run(journal, update)
    finally:
        if bar is not None:
            bar.close()
        if journal is not None and hasattr(journal, "close"):
            journal.close()
    elapsed = time.perf_counter() - t0
    doc: dict[str, Any] = result.to_dict(args.equity_every)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(result.to_json(args.equity_every))
    if args.report:
        from mmats.reports.backtest_report import write_report

        write_report(doc, args.report)
    return doc, elapsed
