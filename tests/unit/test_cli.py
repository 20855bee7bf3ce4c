"""The CLI as a user meets it: one clear line and a non-zero exit on bad input, files on success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmats_cli.main import main


def good_csv(path: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    df = pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
        "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 10.0,
    })
    df.to_csv(path, index=False)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_backtest_writes_json_report_and_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = good_csv(tmp_path / "bars.csv")
    code, _out, err = run_cli(["backtest", "--strategy", "sma_cross", "--data", str(data), "--param", "fast=5",
                              "--param", "slow=20", "--fees", "10bps", "--slippage", "2bps", "--quiet",
                              "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html"),
                              "--audit", str(tmp_path / "a.jsonl")], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["config"]["params"] == {"fast": 5, "slow": 20}
    assert doc["config"]["commission"]["taker_bps"] == 10
    assert {"config", "metrics", "benchmark", "trades", "equity"} <= set(doc)
    assert (tmp_path / "r.html").read_text().startswith("<!")
    assert main(["audit", "verify", str(tmp_path / "a.jsonl")]) == 0


@pytest.mark.parametrize("mutate,expect", [
    (lambda df: df.drop(columns=["close"]), "close"),
    (lambda df: df.iloc[::-1], "sort"),
    (lambda df: df.assign(high=df["high"].where(df.index != 7, np.nan)), "high"),
])
def test_bad_data_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, expect) -> None:  # type: ignore[no-untyped-def]
    src = pd.read_csv(good_csv(tmp_path / "ok.csv"))
    bad = tmp_path / "bad.csv"
    mutate(src).to_csv(bad, index=False)
    code, _out, err = run_cli(["backtest", "--strategy", "sma_cross", "--data", str(bad), "--quiet"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.csv" in lines[0]
    assert expect in lines[0].lower()
    assert "Traceback" not in err


@pytest.mark.parametrize("args,expect", [
    (["--strategy", "nope"], "unknown strategy 'nope'"),
    (["--strategy", "sma_cross", "--param", "fast=abc"], "fast='abc'"),
    (["--strategy", "sma_cross", "--param", "fast=50", "--param", "slow=20"], "fast=50"),
    (["--strategy", "sma_cross", "--param", "speed=3"], "unknown parameter 'speed'"),
    (["--strategy", "sma_cross", "--fees", "lots"], "--fees"),
    (["--strategy", "sma_cross", "--cash", "-5"], "initial_cash"),
    (["--strategy", "sma_cross", "--data", "/nonexistent/x.parquet"], "x.parquet"),
])
def test_bad_arguments_are_one_clear_line(args: list[str], expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["backtest", *args, "--bars", "200", "--quiet"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expect in err, err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from mmats.errors import StrategyError

    with pytest.raises(StrategyError):
        main(["--debug", "backtest", "--strategy", "nope", "--quiet"])


def test_help_teaches_with_an_example() -> None:
    out = subprocess.run([sys.executable, "-m", "mmats_cli.main", "backtest", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "examples:" in out and "--param fast=10" in out and "--fees" in out and "next bar" in out.lower()


def test_audit_verify_flags_tampering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--strategy", "sma_cross", "--bars", "3000", "--quiet", "--param", "fast=5",
                 "--param", "slow=15", "--audit", str(tmp_path / "a.jsonl")]) == 0
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) > 3
    lines[2] = lines[2].replace('"BUY"', '"SELL"') if '"BUY"' in lines[2] else lines[2].replace("1", "2", 1)
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["audit", "verify", str(tmp_path / "a.jsonl")]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_demo_runs_without_shared_data(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ../shared is not reachable from here
    code, out, err = run_cli(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    assert "generated" in out and (tmp_path / "demo" / "report.html").is_file()


def test_audit_verify_reads_the_running_systems_sql_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mmats audit verify --home` checks the system of record, and names the record someone edited."""
    import sqlite3

    from adapters.sql_store import SqlJournal, make_storage
    from mmats.model import Environment

    storage = make_storage(Environment.PAPER, home=tmp_path)
    journal = SqlJournal(storage)
    for i in range(5):
        journal.append("order", {"i": i}, 1_700_000_000_000_000_000 + i)
    storage.close()
    code, out, _ = run_cli(["audit", "verify", "--home", str(tmp_path)], capsys)
    assert code == 0 and "audit OK: 5 records" in out
    db = tmp_path / "paper" / "mmats.db"
    assert db.is_file()
    con = sqlite3.connect(db)  # a tamperer with file access drops the append-only triggers first
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.execute("UPDATE audit SET payload = '{\"i\":99}' WHERE seq = 3")
    con.commit()
    con.close()
    code, out, _ = run_cli(["audit", "verify", str(db)], capsys)
    assert code == 1 and "audit FAILED at record 3" in out


def test_secrets_are_read_from_stdin_listed_by_name_and_kept_per_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import base64
    import io
    import os
    import stat

    from adapters.secrets import SecretStore
    from mmats.model import Environment

    monkeypatch.setenv("MMATS_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    home = str(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("tok-123\n"))
    code, out, _ = run_cli(["secrets", "set", "oanda.token", "--home", home], capsys)
    assert code == 0 and "stored PAPER secret oanda.token" in out and "tok-123" not in out
    assert SecretStore(home, Environment.PAPER).get("oanda.token").reveal() == "tok-123"
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    code, out, _ = run_cli(["secrets", "list", "--home", home], capsys)
    assert out.split() == ["oanda.token"]
    code, out, _ = run_cli(["secrets", "list", "--home", home, "--environment", "LIVE"], capsys)
    assert "no LIVE secrets" in out, "the PAPER value is not visible from LIVE"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run_cli(["secrets", "set", "alpaca.key_id", "--home", home], capsys)
    assert code == 2 and "empty value" in err
    code, _, err = run_cli(["secrets", "delete", "nope", "--home", home], capsys)
    assert code == 2 and "no PAPER secret named 'nope'" in err
    code, out, _ = run_cli(["secrets", "delete", "oanda.token", "--home", home], capsys)
    assert code == 0 and SecretStore(home, Environment.PAPER).names() == []


def test_the_cluster_mmats_up_starts_runs_its_actors_at_normal_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's default (nice 15) hands the CPU to every other process first; a user's own choice stands."""
    from mmats_cli import runtime

    name = "RAY_worker_niceness"  # Ray's own spelling (RayConfig worker_niceness)
    monkeypatch.delenv(name, raising=False)
    runtime._ray_env()
    assert os.environ[name] == "0"
    monkeypatch.setenv(name, "5")
    runtime._ray_env()
    assert os.environ[name] == "5"
