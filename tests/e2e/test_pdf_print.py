"""The printed report (issue 14): Chromium prints a real backtest report and the PDF's text shows that it
lists EVERY trade with every column, repeats the table header on each page, and leaves no heading alone
at the foot of a page.

Text extraction: poppler's ``pdftotext`` when installed, else ``pypdf``. In CI (CI=true) a missing
Chromium or a missing extractor fails the test; on a developer's machine it skips with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mmats.reports.backtest_report import format_money, short_time
from tests.conftest import require

pytestmark = pytest.mark.e2e

HEADERS = ("#", "Symbol", "Side", "Qty", "Entry (UTC)", "Entry", "Exit (UTC)", "Exit", "P&L", "Return", "Fees",
           "Held")
HEADER_RE = re.compile(r"\s+".join(re.escape(h) for h in HEADERS))
DURATION_END = re.compile(r"\d(?: s| min| h| d)\s*$")


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page, laid out as printed (one table row per line)."""
    exe = shutil.which("pdftotext")
    if exe:
        out = subprocess.run([exe, "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=120, check=True)
        pages = out.stdout.split("\f")
        return pages[:-1] if pages and not pages[-1].strip() else pages
    try:
        from pypdf import PdfReader
    except ImportError:
        require(False, "no PDF text extractor: install poppler-utils (pdftotext) or pypdf")
        raise  # unreachable: require skips or fails
    return [page.extract_text(extraction_mode="layout") for page in PdfReader(str(pdf)).pages]


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    """A real backtest (generated bars, ~180 trades over several pages) with ``--report``, printed to PDF."""
    from mmats_cli.main import main
    from mmats_cli.research import find_chromium, html_to_pdf

    require(find_chromium() is not None, "Chromium is not installed (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("pdf-print")
    result, html, pdf = tmp / "result.json", tmp / "report.html", tmp / "report.pdf"
    assert main(["backtest", "--strategy", "sma_cross", "--bars", "6000", "--param", "fast=5", "--param", "slow=20",
                 "--fees", "10bps", "--quiet", "--json", str(result), "--report", str(html)]) == 0
    html_to_pdf(html, pdf)
    doc = json.loads(result.read_text(encoding="utf-8"))
    return doc, pdf_pages(pdf)


def trade_lines(pages: list[str], symbol: str) -> dict[int, str]:
    """Trade number -> its printed line (a trades-table row starts with the number and the symbol)."""
    row = re.compile(r"^\s*(\d+)\s+" + re.escape(symbol) + r"\s+(LONG|SHORT)\s")
    out: dict[int, str] = {}
    for page in pages:
        for line in page.splitlines():
            m = row.match(line)
            if m:
                assert int(m.group(1)) not in out, f"trade {m.group(1)} printed twice"
                out[int(m.group(1))] = line
    return out


def test_pdf_lists_every_trade_with_every_column(printed: tuple[dict[str, Any], list[str]]) -> None:
    doc, pages = printed
    trades = doc["trades"]
    assert len(trades) > 120, "the run must fill more than two pages of trades for this test to mean anything"
    lines = trade_lines(pages, trades[0]["symbol"])
    assert sorted(lines) == list(range(1, len(trades) + 1)), "some trades are missing from the PDF"
    # no cut columns: every row still ends with its holding time (the last column)
    cut = [n for n, line in lines.items() if not DURATION_END.search(line)]
    assert not cut, f"rows without their last column: {cut[:5]}"
    for n, t in ((1, trades[0]), (len(trades), trades[-1])):
        line = lines[n]
        for shown in (short_time(t["entry_time"]), short_time(t["exit_time"]), format_money(t["pnl"]),
                      format_money(t["fees"])):
            assert shown in line, f"trade {n}: {shown!r} not in {line!r}"


def test_pdf_repeats_the_trades_header_on_every_page(printed: tuple[dict[str, Any], list[str]]) -> None:
    doc, pages = printed
    symbol = doc["trades"][0]["symbol"]
    row = re.compile(r"^\s*\d+\s+" + re.escape(symbol) + r"\s")
    with_rows = [i for i, p in enumerate(pages) if any(row.match(line) for line in p.splitlines())]
    assert len(with_rows) >= 3
    for i in with_rows:
        assert HEADER_RE.search(pages[i]), f"page {i + 1} lists trades without the column headers"


def test_pdf_has_no_orphan_heading_and_prints_the_whole_config(printed: tuple[dict[str, Any], list[str]]) -> None:
    doc, pages = printed
    headings = {"Equity and drawdown", "Monthly returns", "Trade P&L distribution", "Performance", "Account",
                f"Trades ({len(doc['trades'])})", "Configuration"}
    text = "\n".join(pages)
    for h in headings:  # `backtest --report` has the same sections as `mmats report`
        assert h in text, h
    for i, page in enumerate(pages[:-1]):
        tail = [line.strip() for line in page.splitlines() if line.strip()]
        assert tail and tail[-1] not in headings, f"heading {tail[-1]!r} alone at the foot of page {i + 1}"
    # the configuration box is printed whole (wrapped, not cut at a scroll box's height)
    assert '"strategy_metadata"' in text and '"resolved"' in text
    assert pages[-1].strip().splitlines()[-1].strip().startswith("Generated by MMATS")
