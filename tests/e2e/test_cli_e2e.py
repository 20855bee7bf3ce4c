"""The CLI and the control service against a running system (issue 14, points 4 and 8).

A strategy that fails is disabled with an alert (in /api/v1/risk/alerts and `mmats status`); submitting one
that fails during warm-up is refused with the reason and a non-zero exit; PUT params merges.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SYMBOL, Api, default_strategies

BOOM = Path(tempfile.mkdtemp(prefix="mmats-e2e-boom-")) / "boom.py"
BOOM.write_text("from strategies.sma_cross import SmaCross\n\n\nclass Boom(SmaCross):\n"
                "    def on_bar(self, context):\n        return 1 / 0\n")
E2E_STRATEGIES = [*default_strategies(),
                  {"id": "boom", "ref": f"{BOOM}:Boom", "symbols": [SYMBOL], "params": {"fast": 2, "slow": 4},
                   "allocation": 0.1}]


@pytest.fixture
def cli(mmats_api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    from control.service import SystemClient
    from control.transport import LogBuffer
    from mmats_cli import runtime

    monkeypatch.setattr(runtime, "connect", lambda address: SystemClient(f"{mmats_api.system}_supervisor", "tests",
                                                                         LogBuffer(echo=False)))
    return mmats_api


def test_a_failing_strategy_is_disabled_with_an_alert_shown_by_status(cli: Api,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    def alert() -> Any:
        rows = cli.get("/api/v1/risk/alerts").json()["items"]
        return [a for a in rows if a["kind"] == "strategy_disabled" and "boom" in a["message"]]

    found = cli.wait_for(alert, 60, 0.5, "the strategy_disabled alert of boom")
    assert "ZeroDivisionError" in found[0]["message"] and found[0]["level"] == "ERROR"
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "DISABLED" in out and "strategy_disabled: boom" in out


def test_submitting_a_strategy_that_fails_during_warm_up_exits_non_zero(cli: Api,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    cli.wait_for(lambda: cli.get("/api/v1/status").json()["feeds"], 30, 0.5, "bars on the feed")
    cli.wait_for(lambda: cli.get("/api/v1/status").json()["feeds"][0]["published"] > 40, 60, 0.5,
                 "40 bars of history")
    code = main(["strategy", "submit", f"{BOOM}:Boom", "--id", "boom2", "--symbol", SYMBOL, "--param", "fast=2",
                 "--param", "slow=4"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "failed during warm-up" in err and "ZeroDivisionError" in err
    assert "Traceback" not in err
    assert "boom2" not in {s["id"] for s in cli.get("/api/v1/strategies").json()["items"]}


def test_put_params_merges_onto_the_running_ones(cli: Api) -> None:
    r = cli.auth.put("/api/v1/strategies/sma_fast/params", json={"params": {"fast": 4}})
    assert r.status_code == 200, r.text
    assert r.json()["params"] == {"fast": 4, "slow": 12}
    r = cli.auth.put("/api/v1/strategies/sma_fast/params", json={"params": {"fast": 3}, "reset": True})
    assert r.status_code == 200, r.text
    assert r.json()["params"] == {"fast": 3}  # the others from the strategy's defaults


def test_strategy_replace_from_the_cli(cli: Api, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from mmats_cli.main import main

    before = cli.get("/api/v1/strategies/rsi_rev").json()
    assert main(["strategy", "replace", "rsi_rev", "--param", "period=10"]) == 0
    out = capsys.readouterr().out
    assert f"strategy rsi_rev replaced: version {before['version'] + 1}" in out
    after = cli.get("/api/v1/strategies/rsi_rev").json()
    assert after["params"]["period"] == 10 and after["version"] == before["version"] + 1
    # new code that does not load: one line, rc 2, and the running version untouched
    broken = tmp_path / "broken.py"
    broken.write_text("from strategies.rsi_reversion import RsiReversion\n\nclass Next(RsiReversion:\n    pass\n")
    assert main(["strategy", "replace", "rsi_rev", "--ref", f"{broken}:Next"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.py, line 3" in err and "Traceback" not in err
    assert cli.get("/api/v1/strategies/rsi_rev").json()["version"] == after["version"]
    assert main(["strategy", "replace", "rsi_rev"]) == 2
    assert "give --ref and/or --param" in capsys.readouterr().err
