"""Find a strategy class by short name or by ``path/to/file.py:ClassName`` / ``package.module:ClassName``.

Loading a user's file executes it, exactly as importing it would: only load strategies you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from mmats.errors import StrategyError
from mmats.strategy import IStrategy

BUILTIN: dict[str, str] = {
    "sma_cross": "strategies.sma_cross:SmaCross",
    "rsi_reversion": "strategies.rsi_reversion:RsiReversion",
    "donchian_breakout": "strategies.donchian_breakout:DonchianBreakout",
    "macd_trend": "strategies.macd_trend:MacdTrend",
    "bollinger_reversion": "strategies.bollinger_reversion:BollingerReversion",
    "active_inference": "strategies.active_inference:ActiveInference",
    "vumanchu_cipher": "strategies.vumanchu_cipher:VuManChuCipher",
    "llm_agent": "strategies.llm_agent:LlmAgent",
}

T = TypeVar("T")
#: user files already executed, by module name: (mtime_ns, size) of the content run, and the module
_LOADED: dict[str, tuple[tuple[int, int], ModuleType]] = {}


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
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        cached = _LOADED.get(mod_name)
        if cached is not None and cached[0] == version:  # imported once per content, as `import` does
            return _class_in(cached[1], where, cls_name, base)
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise StrategyError(f"cannot load file {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file is input: report, don't crash
            sys.modules.pop(mod_name, None)
            line = _line_in(path, exc)
            at = f", line {line}" if line else ""
            raise StrategyError(f"file {where}{at} failed to import: {type(exc).__name__}: {exc}") from exc
        _LOADED[mod_name] = (version, module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise StrategyError(f"cannot import module {where!r}: {exc}") from exc
    return _class_in(module, where, cls_name, base)


def _class_in(module: ModuleType, where: str, cls_name: str, base: type[T]) -> type[T]:
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise StrategyError(f"{where} has no class {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        kind = base.__name__
        raise StrategyError(f"{where}:{cls_name}{_defined_at(cls)} is not {_article(kind)} {kind} subclass: "
                            f"derive it from {base.__module__}.{kind}")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise StrategyError(f"{where}:{cls_name}{_defined_at(cls)} does not implement the {base.__name__} "
                            f"contract: it lacks {missing}")
    return cls


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of the user's file where its import failed: a syntax error's own, else the innermost
    frame of the traceback that is in that file."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.lineno
    target, line = str(path.resolve()), None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if str(Path(frame.f_code.co_filename).resolve()) == target:
            line = lineno
    return line


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


def _defined_at(obj: object) -> str:
    try:
        return f" (line {inspect.getsourcelines(obj)[1]})"  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def create_strategy(ref: str, params: dict[str, object] | None = None) -> IStrategy:
    strategy = load_strategy_class(ref)()
    strategy.initialize(params or {})
    return strategy
