"""The control service without Ray: one SystemClient behind the HTTP routes and the CLI, typed errors.

The actor system is replaced by plain objects answering ``handle.method.remote(...)`` with awaitables, so
these tests exercise the client's own rules (what is checked before an actor is asked, the operator
two-step, how actor failures are typed), the route -> status mapping and the CLI's printing.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from control.problems import (
    AlreadyExists,
    ControlError,
    InvalidInput,
    NotAllowed,
    NotFound,
    Refused,
    Unavailable,
    UnknownOrder,
    UnknownStrategy,
    http_status,
)
from control.service import SystemClient
from control.transport import LogBuffer
from mmats.errors import ConfigError, MmatsError

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------ the layout


def test_neither_the_cli_nor_the_routes_call_actors_directly() -> None:
    """Every actor call goes through SystemClient: no `.remote(` in mmats_cli/ or control/routes/."""
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("mmats_cli", "control/routes")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if ".remote(" in line]
    assert not offenders, offenders
    assert any(".remote(" in p.read_text() for p in (ROOT / "control").glob("*.py")), "the check looks at real code"


def test_the_cli_command_modules_do_not_import_main() -> None:
    for name in ("research", "runtime", "secrets_cli", "args"):
        tree = ast.parse((ROOT / "mmats_cli" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "mmats_cli.main" not in imported, name


def test_the_entry_point_stays_thin_and_the_control_package_small() -> None:
    assert len((ROOT / "serve_app.py").read_text().splitlines()) < 150
    for p in sorted((ROOT / "control").rglob("*.py")):
        text = p.read_text()
        assert len(text.splitlines()) <= 600, p
        for node in ast.parse(text).body:
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None and node.end_lineno - node.lineno < 400, (p, node.name)


# ---------------------------------------------------------------------------------- typed errors


@pytest.mark.parametrize(("error", "status"), [
    (Refused, 400), (UnknownStrategy, 404), (UnknownOrder, 404), (NotFound, 404), (AlreadyExists, 409),
    (NotAllowed, 409), (InvalidInput, 422), (Unavailable, 503), (ControlError, 500)])
def test_each_error_type_has_one_http_status(error: type[ControlError], status: int) -> None:
    exc = error("what went wrong")
    assert http_status(exc) == status
    assert isinstance(exc, MmatsError), "the CLI prints it as one error line"


# --------------------------------------------------------------------------- a fake actor system


class _Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        async def answer() -> Any:
            return self.fn(*args, **kwargs)

        return answer()


class FakeActor:
    """An actor handle: ``handle.name.remote(...)`` awaits ``methods[name](...)``; calls are recorded."""

    def __init__(self, **methods: Callable[..., Any]) -> None:
        self.methods = methods
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> _Method:
        if name not in self.__dict__.get("methods", {}):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            return self.methods[name](*args, **kwargs)

        return _Method(record)


def _actor_error(cause: Exception) -> Exception:
    import ray

    return ray.exceptions.RayTaskError("method", "traceback", cause)


def _raise(exc: Exception) -> Any:
    raise exc


ORDERS = [{"client_order_id": "a1", "symbol": "SYNTH/USDT", "strategy_id": "s1", "status": "FILLED",
           "created": "2024-01-01T00:00:00Z", "filled_quantity": "1"}]
VENUES = [{"venue": "binance", "breaker": "half_open", "last_reconcile": "2024-01-01T00:00:05Z",
           "last_error": "HTTP 503 from binance", "orders_unknown": 2, "calls": 10}]


class System:
    """Just enough of a running system for the control service."""

    def __init__(self) -> None:
        self.gatekeeper = FakeActor(
            mode=lambda: {"mode": "advisory", "allow_operator": True},
            request_operator=lambda: {"token": "tok-1", "expires_in_s": 60.0},
            confirm_operator=lambda t: {"mode": "operator", "allow_operator": True} if t == "tok-1" else _raise(
                _actor_error(ValueError("operator confirmation token is missing, wrong or expired"))),
            set_advisory=lambda reason: {"mode": "advisory", "allow_operator": True},
            risk_utilization=lambda: {"equity": 1000.0, "gross_exposure": 250.0, "net_exposure": 250.0,
                                      "items": [{"limit": "max_position_pct", "scope": "symbol:SYNTH/USDT",
                                                 "level": "global", "limit_value": 0.5, "current": 0.25,
                                                 "utilization_pct": 50.0}],
                                      "by_symbol": [{"name": "SYNTH/USDT", "notional": 250.0, "pct_of_equity": 0.25}],
                                      "by_market": []})
        self.router = FakeActor(orders=lambda *a: ORDERS, open_orders=lambda: [], cancel_order=lambda cid: False)
        self.portfolio = FakeActor(status=lambda: {"positions": []}, strategy_stats=lambda: {})
        self.supervisor = FakeActor(
            handles=lambda: {"gatekeeper": self.gatekeeper, "router": self.router, "portfolio": self.portfolio,
                             "feeds": {}, "strategies": {"s1": object()}},
            get_config=lambda: {"config": {"environment": "PAPER", "feeds": [
                {"venue": "replay", "market": "crypto", "generated_symbols": ["SYNTH/USDT"]}], "strategies": []}},
            list_strategies=lambda: [{"id": "s1", "ref": "sma_cross", "params": {}, "enabled": True}],
            set_strategy_enabled=lambda *a: {"id": a[0], "closes": []},
            submit_strategy=lambda spec: _raise(_actor_error(ConfigError("strategy s9: market mismatch"))),
            kill=lambda state, reason: {"kill_switch": {"state": state, "reason": reason}},
            status=lambda: {"environment": "LIVE", "mode": "operator", "kill_switch": "RUNNING", "uptime_s": 1.0,
                            "portfolio": {"equity": "1000", "cash": "1000", "total_pnl": "0", "daily_pnl": "0",
                                          "fees": "0", "positions": []},
                            "strategies": [], "feeds": {}, "venues": VENUES, "dry_run_orders": ["BUY 1 X [c1]"]})

    def client(self) -> SystemClient:
        client = SystemClient("test_supervisor", "tests", LogBuffer(echo=False))
        client._sup = self.supervisor
        return client


@pytest.fixture
def system() -> System:
    return System()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------------------- SystemClient


def test_unknown_strategy_is_refused_before_the_supervisor_is_asked(system: System) -> None:
    client = system.client()
    with pytest.raises(UnknownStrategy, match="ghost"):
        run(client.set_strategy_enabled("ghost", True))
    assert "set_strategy_enabled" not in [name for name, _ in system.supervisor.calls]
    run(client.set_strategy_enabled("s1", False, close_positions=True, reason="test"))
    assert ("set_strategy_enabled", ("s1", False, True, "test")) in system.supervisor.calls


def test_submit_checks_reference_symbols_and_id_then_types_the_actors_refusal(system: System) -> None:
    client = system.client()
    spec = {"id": "s9", "ref": "sma_cross", "symbols": ["SYNTH/USDT"]}
    with pytest.raises(Refused, match="unknown strategy 'nope'"):
        run(client.submit_strategy({**spec, "ref": "nope"}))
    with pytest.raises(Refused, match="ZZZ"):
        run(client.submit_strategy({**spec, "symbols": ["ZZZ"]}))
    with pytest.raises(AlreadyExists):
        run(client.submit_strategy({**spec, "id": "s1"}))
    with pytest.raises(Refused, match="market mismatch"):  # the supervisor's ConfigError, by its type
        run(client.submit_strategy(spec))


def test_operator_mode_takes_two_steps(system: System) -> None:
    client = system.client()
    step1 = run(client.set_mode("operator"))
    assert step1["confirmation_required"] and step1["confirm_token"] == "tok-1" and step1["mode"] == "advisory"
    with pytest.raises(Refused, match="expired"):
        run(client.set_mode("operator", "wrong"))
    assert run(client.set_mode("operator", "tok-1"))["mode"] == "operator"
    assert [n for n, _ in system.gatekeeper.calls].count("confirm_operator") == 2


def test_orders_unknown_and_final_orders_are_typed(system: System) -> None:
    client = system.client()
    with pytest.raises(UnknownOrder):
        run(client.cancel_order("zz"))
    with pytest.raises(NotAllowed, match="FILLED"):
        run(client.cancel_order("a1"))
    with pytest.raises(InvalidInput):
        run(client.cancel_orders())


def test_an_actor_that_is_gone_is_unavailable_and_forgotten(system: System) -> None:
    import ray

    client = system.client()
    system.supervisor.methods["kill"] = lambda *a: _raise(ray.exceptions.RayActorError())
    with pytest.raises(Unavailable):
        run(client.set_kill("SOFT", "test"))
    assert client._sup is None, "the next call looks the supervisor up again"


# ------------------------------------------------------------------------------------------ HTTP


@pytest.fixture
def http(system: System) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from control.app import fastapi_app
    from control.auth import configure_auth, token_digest
    from control.hub import Hub
    from control.routes.deps import REPLICA, bind

    hub = Hub(system.client())
    hub.task = type("Idle", (), {"done": lambda self: False})()  # type: ignore[assignment]  # no poller here
    configure_auth(token_digest("t" * 20), all_endpoints=False)
    bind(hub)
    with TestClient(fastapi_app, raise_server_exceptions=False) as tc:
        yield tc
    REPLICA.hub = None


def test_routes_answer_typed_errors_as_problems(http: Any) -> None:
    auth = {"Authorization": "Bearer " + "t" * 20}
    r = http.post("/api/v1/strategies/ghost/enable", headers=auth)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "unknown strategy 'ghost'"
    r = http.post("/api/v1/strategies", json={"id": "s1", "ref": "sma_cross", "symbols": ["SYNTH/USDT"]}, headers=auth)
    assert r.status_code == 409
    assert http.delete("/api/v1/orders/a1", headers=auth).status_code == 409
    assert http.post("/api/v1/mode", json={"mode": "operator", "confirm_token": "x"}, headers=auth).status_code == 400
    assert http.post("/api/v1/mode", json={"mode": "operator"}).status_code == 401
    assert http.get("/api/v1/risk/utilization").json()["items"][0]["utilization_pct"] == 50.0


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(system: System, monkeypatch: pytest.MonkeyPatch) -> System:
    from mmats_cli import runtime

    monkeypatch.setattr(runtime, "connect", lambda address: system.client())
    return system


def test_cli_mode_status_and_risk_go_through_the_same_client(cli: System, capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    assert main(["mode", "operator", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["confirm_token"] == "tok-1" and "mmats mode operator --confirm tok-1" in out["next"]
    assert main(["mode", "operator", "--confirm", "bad"]) == 2
    assert "expired" in capsys.readouterr().err
    assert main(["strategy", "enable", "ghost"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown strategy 'ghost'"
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("venues:"):].splitlines()
    assert re.split(r"\s{2,}", table[1].strip()) == ["venue", "breaker", "last reconcile", "unknown orders",
                                                    "last error"]
    assert re.split(r"\s{2,}", table[2].strip()) == ["binance", "half_open", "2024-01-01T00:00:05Z", "2",
                                                    "HTTP 503 from binance"]
    assert "BUY 1 X [c1]" in out
    assert main(["risk"]) == 0
    out = capsys.readouterr().out
    assert "max_position_pct" in out and "50.0 %" in out and "SYNTH/USDT 250.00 (25.00%)" in out


def test_cli_status_without_venues_prints_no_table(cli: System, capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    status = cli.supervisor.methods["status"]
    cli.supervisor.methods["status"] = lambda: {**status(), "venues": [], "dry_run_orders": []}
    assert main(["status"]) == 0
    assert "venues" not in capsys.readouterr().out


ALLOCATION = {"method": "inverse_vol", "weights": {"s1": 0.25, "s2": 0.75}, "allocation": {"s1": 0.5, "s2": 0.75},
              "total": 1.0, "rebalance_every": "1d", "lookback": "30d", "next_due": "2024-01-03T00:00:00Z",
              "last_rebalance": "2024-01-02T00:00:00Z", "rebalances": 2, "changes": 1,
              "history": [{"time": "2024-01-02T00:00:00Z", "method": "inverse_vol", "reason": "scheduled every 1d",
                           "previous": {"s1": 0.5, "s2": 0.5}, "weights": {"s1": 0.25, "s2": 0.75},
                           "detail": {"s1": {"samples": 24, "volatility": 0.02}}}]}


def test_allocation_over_http_and_in_cli_status(cli: System, http: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from mmats_cli.main import main

    cli.gatekeeper.methods["allocation_status"] = lambda: ALLOCATION
    body = http.get("/api/v1/allocation").json()
    assert body["method"] == "inverse_vol" and body["weights"] == {"s1": 0.25, "s2": 0.75}
    assert body["history"][0]["previous"] == {"s1": 0.5, "s2": 0.5} and body["next_due"] == "2024-01-03T00:00:00Z"
    status = cli.supervisor.methods["status"]
    cli.supervisor.methods["status"] = lambda: {**status(), "allocation": ALLOCATION}
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "allocation: inverse_vol, every 1d over 30d, next 2024-01-03T00:00:00Z, 1 change(s) in 2 rebalance(s)" in out
    rows = out[out.index("allocation:"):].splitlines()
    assert re.split(r"\s{2,}", rows[2].strip()) == ["s1", "0.2500", "0.5000"]
    assert "last change 2024-01-02T00:00:00Z: scheduled every 1d" in out
    cli.supervisor.methods["status"] = lambda: {**status(), "allocation": {"method": None, "weights": {}}}
    assert main(["status"]) == 0
    assert "allocation" not in capsys.readouterr().out


def test_up_dry_run_is_a_config_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run passes dry_run: true to the config, which the kernel accepts only for LIVE."""
    from mmats_cli.main import build_parser, main

    args = build_parser().parse_args(["up", "--dry-run"])
    assert args.dry_run is True
    assert "final send" in build_parser()._subparsers._group_actions[0].choices["up"].format_help()  # type: ignore
    assert main(["up", "--dry-run", "--home", str(tmp_path)]) == 2  # the demo config is PAPER
    assert "dry_run: only for environment LIVE" in capsys.readouterr().err


# --------------------------------------------------------------------------------- config files


@pytest.mark.parametrize(("name", "text"), [("c.yaml", "strategy: sma_cross\nparams: {fast: 4}\n"),
                                            ("c.toml", 'strategy = "sma_cross"\n[params]\nfast = 4\n'),
                                            ("c.json", '{"strategy": "sma_cross", "params": {"fast": 4}}')])
def test_one_reader_for_every_config_file(tmp_path: Path, name: str, text: str) -> None:
    from mmats.system_config import read_config_file
    from mmats_cli.args import build_run_config
    from mmats_cli.main import build_parser

    (tmp_path / name).write_text(text)
    assert read_config_file(tmp_path / name) == {"strategy": "sma_cross", "params": {"fast": 4}}
    args = build_parser().parse_args(["backtest", "--config", str(tmp_path / name), "--param", "slow=9"])
    assert build_run_config(args)["params"] == {"fast": 4, "slow": 9}


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    from mmats.system_config import load_system_config, read_config_file

    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "empty.yml").write_text("")
    with pytest.raises(ConfigError, match="list.yaml: top level must be a mapping"):
        read_config_file(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="bad.json: cannot parse"):
        load_system_config(str(tmp_path / "bad.json"), env={})
    with pytest.raises(ConfigError, match="config file not found"):
        read_config_file(tmp_path / "missing.toml")
    assert read_config_file(tmp_path / "empty.yml") == {}
