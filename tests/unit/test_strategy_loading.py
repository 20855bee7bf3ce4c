"""A strategy file that does not load says which file, which line and what the contract lacks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mmats.errors import StrategyError
from mmats.registry import create_strategy, load_strategy_class

GOOD = '''
from mmats.model import TradeSignal
from mmats.strategy import IStrategy, StrategyContext

LOADS = globals().setdefault("LOADS", 0) + 1


class Good(IStrategy):
    name = "good"
    default_params = {"n": 1}

    def get_required_indicators(self) -> list[str]:
        return []

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        return None
'''

CASES = [
    ("syntax.py", "x = 1\ndef broken(:\n    pass\n", "Good", ["syntax.py, line 2", "SyntaxError"]),
    ("raises.py", "import math\n\nVALUE = 1 / 0\n", "Good", ["raises.py, line 3", "ZeroDivisionError"]),
    ("imports.py", "import no_such_package_xyz\n", "Good", ["imports.py, line 1", "no_such_package_xyz"]),
    ("abstract.py", "from mmats.strategy import IStrategy\n\n\nclass Good(IStrategy):\n    name = 'g'\n", "Good",
     ["abstract.py:Good (line 4)", "does not implement the IStrategy contract", "get_required_indicators",
      "on_bar"]),
    ("plain.py", "class Good:\n    pass\n", "Good", ["plain.py:Good (line 1)", "not an IStrategy subclass",
                                                     "mmats.strategy.IStrategy"]),
    ("noclass.py", GOOD, "Missing", ["has no class 'Missing'"]),
]


@pytest.mark.parametrize(("name", "source", "cls", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_strategy_file_is_one_clear_error(tmp_path: Path, name: str, source: str, cls: str,
                                                 expected: list[str]) -> None:
    path = tmp_path / name
    path.write_text(source)
    with pytest.raises(StrategyError) as info:
        load_strategy_class(f"{path}:{cls}")
    for text in expected:
        assert text in str(info.value), str(info.value)


def test_a_missing_file_and_an_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(StrategyError, match="file not found"):
        load_strategy_class(f"{tmp_path}/nope.py:X")
    with pytest.raises(StrategyError, match="use one of .*sma_cross.* or path/to/file.py:ClassName"):
        load_strategy_class("nope")


def test_a_file_runs_once_per_content_and_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "good.py"
    path.write_text(GOOD)
    first = load_strategy_class(f"{path}:Good")
    assert load_strategy_class(f"{path}:Good") is first  # not executed twice (module-level side effects)
    assert create_strategy(f"{path}:Good").params == {"n": 1}
    path.write_text(GOOD.replace('{"n": 1}', '{"n": 2}'))
    later = time.time() + 5
    os.utime(path, (later, later))  # an edited file (a hot replace after editing it) is loaded again
    again = load_strategy_class(f"{path}:Good")
    assert again is not first and create_strategy(f"{path}:Good").params == {"n": 2}
