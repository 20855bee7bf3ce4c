"""Report generation time for a two-year minute-bar backtest (target: under 30 s for HTML + PDF).

Bars: the real BTC perp month from ../shared/data stitched to 1,051,200 minutes (two years), as the
sweep benchmark does (generated bars when ../shared is absent). One sma_cross backtest with costs, then
the HTML report (every equity point kept, as `mmats backtest --report` writes it) and its PDF through
headless Chromium (`mmats report --pdf`). Last line: one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sweep_scaling import BASE, TWO_YEARS, make_loaded  # noqa: E402

from mmats.reports.backtest_report import write_report  # noqa: E402
from mmats.research.experiments import data_fingerprint, evaluate_full, plan_runs  # noqa: E402
from mmats_cli.research import find_chromium, html_to_pdf  # noqa: E402


def main() -> int:
    loaded, source = make_loaded(TWO_YEARS)
    [spec] = plan_runs(BASE, [{"fast": 10, "slow": 60}], data_fingerprint(loaded.bars))
    t0 = time.perf_counter()
    rec, result = evaluate_full(spec, loaded)
    backtest_s = time.perf_counter() - t0
    assert result is not None, rec
    with tempfile.TemporaryDirectory(prefix="mmats-report-bench-") as tmp:
        t0 = time.perf_counter()
        doc = result.to_dict(1)
        html = write_report(doc, Path(tmp) / "report.html")
        html_s = time.perf_counter() - t0
        pdf_s = None
        if find_chromium() is not None:
            t0 = time.perf_counter()
            pdf = html_to_pdf(html, Path(tmp) / "report.pdf")
            pdf_s = time.perf_counter() - t0
            pdf_mb = pdf.stat().st_size / 1e6
        else:
            print("chromium not found: PDF not timed", file=sys.stderr)
            pdf_mb = None
        html_mb = html.stat().st_size / 1e6
    total = html_s + (pdf_s or 0.0)
    print(json.dumps({"bars": len(loaded.bars), "data": source, "trades": len(result.trades),
                      "backtest_s": round(backtest_s, 2), "html_s": round(html_s, 2),
                      "pdf_s": None if pdf_s is None else round(pdf_s, 2), "report_total_s": round(total, 2),
                      "target_s": 30.0, "html_mb": round(html_mb, 2),
                      "pdf_mb": None if pdf_mb is None else round(pdf_mb, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
