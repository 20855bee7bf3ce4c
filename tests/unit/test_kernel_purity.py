"""The kernel rule of DESIGN.md: mmats/ never imports Ray, the actors, adapters, HTTP clients or DB drivers."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {
    "ray", "actors", "adapters", "serve_app", "mmats_cli", "redis", "sqlalchemy", "psycopg", "psycopg2",
    "asyncpg", "httpx", "requests", "aiohttp", "urllib3", "ccxt", "oandapyV20", "alpaca", "ib_async",
    "ib_insync", "fastapi", "starlette", "socket", "http",
}
KERNEL = Path(__file__).resolve().parents[2] / "mmats"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_kernel_imports_nothing_outside_the_kernel() -> None:
    offenders = []
    files = sorted(KERNEL.rglob("*.py"))
    assert len(files) > 5
    for f in files:
        for line, mod in _imports(f):
            if mod.split(".")[0] in FORBIDDEN:
                offenders.append(f"{f.relative_to(KERNEL.parent)}:{line} imports {mod}")
    assert not offenders, "kernel purity broken:\n" + "\n".join(offenders)


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom ray import serve\n")
    assert (2, "ray") in _imports(bad)
