"""`mmats report --pdf` really prints a PDF with Debian's Chromium (installed by .ci/run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = pytest.mark.e2e


def test_backtest_report_prints_to_a_real_pdf(tmp_path: Path) -> None:
    from mmats_cli.main import main
    from mmats_cli.research import find_chromium

    require(find_chromium() is not None, "Chromium is not installed (apt-get install chromium)")
    result = tmp_path / "result.json"
    assert main(["backtest", "--strategy", "sma_cross", "--bars", "3000", "--param", "fast=5", "--param", "slow=20",
                 "--quiet", "--json", str(result)]) == 0
    pdf = tmp_path / "report.pdf"
    assert main(["report", str(result), "--html", str(tmp_path / "report.html"), "--pdf", str(pdf)]) == 0
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]
    assert len(data) > 5_000  # charts and tables, not an empty page
