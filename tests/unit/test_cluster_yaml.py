"""cluster.yaml: valid for Ray's cluster launcher, and its nodes advertise the markets MMATS pins actors to.

Offline: Ray's own config preparation and JSON-schema validation (an internal API, the one `ray up` runs),
no cluster, no SSH. The worker start command is run through bash with `ray` replaced by `printf`, so the
shell that picks each worker's market is checked, not just its text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from actors import supervisor
from mmats.model import MarketType

ROOT = Path(__file__).resolve().parents[2]
MARKET_KEYS = {f"market_{m.value}" for m in MarketType}  # market_crypto, market_forex, market_stock
RESOURCES = re.compile(r"--resources=(?:'([^']*)'|\"([^\"]*)\"|(\S+))")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert isinstance(config, dict)
    return config


def _ray_start(commands: list[str]) -> str:
    starts = [c for c in commands if "ray start" in c]
    assert len(starts) == 1, f"expected one `ray start` command, got {starts}"
    return starts[0]


def _run_worker_start(command: str, own_ips: str) -> str:
    """The worker start command as a worker with ``hostname -I`` = own_ips runs it; prints ray's argv."""
    assert "hostname -I" in command
    cmd = command.replace("hostname -I", f"echo {own_ips}")
    cmd = re.sub(r"\S*\bray (start|stop)\b", r"printf '%s\\n' \1", cmd)
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the worker start command"
    out = subprocess.run([bash, "-c", f"export RAY_HEAD_IP=10.9.9.9; {cmd}"], capture_output=True, text=True,
                         timeout=10, check=True)
    return out.stdout


def _worker_resources(config: dict[str, Any], ip: str) -> dict[str, float]:
    argv = _run_worker_start(_ray_start(config["worker_start_ray_commands"]), f"192.168.1.5 {ip} fe80::1").splitlines()
    assert "--address=10.9.9.9:6379" in argv, argv
    found = [a.split("=", 1)[1] for a in argv if a.startswith("--resources=")]
    assert len(found) == 1, argv
    resources: dict[str, float] = json.loads(found[0])
    return resources


def test_ray_launcher_accepts_it(raw: dict[str, Any]) -> None:
    assert raw["cluster_name"] == "mmats"
    assert raw["provider"]["type"] == "local"
    assert "min_workers" not in raw  # rejected by the current schema (old examples still show it)
    prepared = prepare_config(raw)
    validate_config(prepared)  # raises on any schema violation
    node = prepared["available_node_types"][prepared["head_node_type"]]
    workers = raw["provider"]["worker_ips"]
    assert node["min_workers"] == node["max_workers"] == prepared["max_workers"] == len(workers)
    with pytest.raises(jsonschema.ValidationError, match="min_workers"):
        validate_config({**prepared, "min_workers": 1})


def test_head_advertises_crypto_and_keeps_dashboard_on_loopback(raw: dict[str, Any]) -> None:
    head = _ray_start(raw["head_start_ray_commands"])
    assert "--head" in head and "--port=6379" in head
    assert "--dashboard-host=127.0.0.1" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head  # how the head brings up worker_ips
    match = RESOURCES.search(head)
    assert match, head
    resources = json.loads(next(g for g in match.groups() if g is not None))
    assert resources == {"market_crypto": 1}


def test_each_worker_advertises_one_market(raw: dict[str, Any]) -> None:
    per_worker = {ip: _worker_resources(raw, ip) for ip in raw["provider"]["worker_ips"]}
    for ip, resources in per_worker.items():
        assert len(resources) == 1 and set(resources) <= MARKET_KEYS, (ip, resources)
        assert all(v >= 1 for v in resources.values()), (ip, resources)
    markets = [k for r in per_worker.values() for k in r]
    assert sorted(markets) == ["market_forex", "market_stock"]
    assert _worker_resources(raw, "10.0.0.99") == {}  # unmapped worker: joins without a market


def test_supervisor_placement_pins_every_market_to_its_node(raw: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    head = json.loads(next(g for g in RESOURCES.search(_ray_start(raw["head_start_ray_commands"])).groups()
                           if g is not None))
    nodes = [head] + [_worker_resources(raw, ip) for ip in raw["provider"]["worker_ips"]]
    cluster: dict[str, float] = {"CPU": 6.0}
    for node in nodes:
        for key, value in node.items():
            cluster[key] = cluster.get(key, 0) + value
    assert set(cluster) - {"CPU"} == MARKET_KEYS
    monkeypatch.setattr(supervisor.ray, "cluster_resources", lambda: dict(cluster))  # no ray.init
    for market in MarketType:
        key = f"market_{market.value}"
        assert supervisor.placement(market) == {"resources": {key: 0.001}}
        assert sum(1 for node in nodes if node.get(key)) == 1  # exactly one node hosts that market
    monkeypatch.setattr(supervisor.ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert supervisor.placement("forex") == {}  # a cluster without market nodes: anywhere


def test_nodes_run_the_venv_the_setup_creates(raw: dict[str, Any]) -> None:
    setup = " ".join(raw["setup_commands"])
    venv = re.search(r"-m venv (\S+)", setup)
    assert venv, setup
    assert "pip install" in setup and ".[venues]" in setup
    assert raw["file_mounts"].get("~/mmats") == "."
    for cmd in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]:
        assert f"{venv.group(1)}/bin/ray " in cmd, cmd
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, cmd
