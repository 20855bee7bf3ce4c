"""What a live strategy pays per bar for its indicators, early in a run and after a long one.

A strategy host updates ``StreamingIndicators`` once per symbol per bar, for as long as the system runs.
A cost that grows with the history a strategy has seen would make a live system slower every day (a
strategy running on 1-minute bars sees 100,000 bars in about 70 days), so this bench measures, for every
built-in kind's examples:

- ``per_spec``: microseconds per ``update`` after 2,000 bars of history and after 100,000, and their
  ratio (``growth``: about 1 when the cost does not depend on the history);
- ``bytes_kept``: what the indicators keep of the history after 100,000 bars (0 once every TA-Lib
  stream is open: the bars are let go);
- ``mix_us``: one update of a typical strategy's five indicators together (EMA_21, RSI_14,
  MACD_12_26_9, BBANDS_20_2, ADX_14) at both history lengths.

Usage: python bench/streaming_indicators.py [--updates 2000]
Progress on stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmats.data import BarArrays, generate_bars, to_arrays
from mmats.indicators import StreamingIndicators, indicator_examples

HISTORIES = (2_000, 100_000)
MIX = ["EMA_21", "RSI_14", "MACD_12_26_9", "BBANDS_20_2", "ADX_14"]


def per_update_us(specs: list[str], a: BarArrays, history: int, updates: int) -> tuple[float, int]:
    """Microseconds per ``update`` after ``history`` bars (warmed with ``extend``), and the bytes kept."""
    s = StreamingIndicators(specs)
    s.extend(a.open[:history], a.high[:history], a.low[:history], a.close[:history], a.volume[:history])
    rows = [(float(a.open[i]), float(a.high[i]), float(a.low[i]), float(a.close[i]), float(a.volume[i]))
            for i in range(history, history + updates)]
    t0 = time.process_time()
    for o, h, lo, c, v in rows:
        s.update(o, h, lo, c, v)
    return (time.process_time() - t0) / updates * 1e6, int(s._buf.nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=2000, help="updates timed at each history length")
    args = ap.parse_args()
    if args.updates < 1:
        ap.error("--updates must be at least 1")
    a = to_arrays(generate_bars(max(HISTORIES) + args.updates, seed=3, start_price=40_000.0))
    specs = indicator_examples()  # every kind that needs no benchmark symbol
    per_spec: dict[str, Any] = {}
    for i, spec in enumerate(specs, 1):
        (early, _), (late, kept) = (per_update_us([spec], a, n, args.updates) for n in HISTORIES)
        per_spec[spec] = {"us_at_2k": round(early, 2), "us_at_100k": round(late, 2),
                          "growth": round(late / early, 2), "bytes_kept": kept}
        print(f"[{i}/{len(specs)}] {spec}: {early:.1f} us -> {late:.1f} us per update, {kept} bytes kept",
              file=sys.stderr, flush=True)
    (mix_early, _), (mix_late, mix_kept) = (per_update_us(MIX, a, n, args.updates) for n in HISTORIES)
    worst = max(per_spec, key=lambda k: per_spec[k]["growth"])
    print(json.dumps({
        "histories": list(HISTORIES), "updates": args.updates,
        "mix": MIX, "mix_us_at_2k": round(mix_early, 2), "mix_us_at_100k": round(mix_late, 2),
        "mix_bytes_kept": mix_kept,
        "max_growth": per_spec[worst]["growth"], "max_growth_spec": worst,
        "per_spec": per_spec,
    }))


if __name__ == "__main__":
    main()
