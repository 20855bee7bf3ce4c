"""Find a strategy class by short name or by ``path/to/file.py:ClassName`` / ``package.module:ClassName``.

Loading a user's file executes it, exactly as importing it would: only load strategies you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TypeVar

from mmats.errors import StrategyError
from mmats.strategy import IStrategy

BUILTIN: dict[str, str] = {
    "sma_cross": "strategies.sma_cross:SmaCross",
    "rsi_reversion": "strategies.rsi_reversion:RsiReversion",
    "donchian_breakout": "strategies.donchian_breakout:DonchianBreakout",
}

T = TypeVar("T")


def load_strategy_class(ref: str) -> type[IStrategy]:
    """Resolve a reference to an ``IStrategy`` subclass, with an error that lists what would work."""
    target = BUILTIN.get(ref, ref)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN))
        raise StrategyError(f"unknown strategy {ref!r}: use one of {known} or path/to/file.py:ClassName")
    return load_object(target, IStrategy)  # type: ignore[type-abstract]


def load_object(ref: str, base: type[T]) -> type[T]:
    """``path/to/file.py:Class`` or ``package.module:Class``, checked to be a subclass of ``base``.

    The one loader for every user-supplied class (strategies, custom paper venues), so every one of
    them fails the same way: one line naming the file, the class and what is wrong.
    """
    if ":" not in ref:
        raise StrategyError(f"{ref!r}: expected path/to/file.py:ClassName or package.module:ClassName")
    where, _, cls_name = ref.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise StrategyError(f"file not found: {where}")
        mod_name = f"mmats_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise StrategyError(f"cannot load file {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file is input: report, don't crash
            raise StrategyError(f"file {where} failed to import: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise StrategyError(f"cannot import module {where!r}: {exc}") from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise StrategyError(f"{where} has no class {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise StrategyError(f"{where}:{cls_name} is not a {base.__name__} subclass")
    return cls


def create_strategy(ref: str, params: dict[str, object] | None = None) -> IStrategy:
    strategy = load_strategy_class(ref)()
    strategy.initialize(params or {})
    return strategy
