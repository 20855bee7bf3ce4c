"""Every ``mmats`` command and subcommand, fed bad input, answers with one ``error:`` line and a non-zero
exit, never a traceback (issue 14).

The commands are enumerated from the argparse tree, so a new command is covered the day it is added: it
must get a base command line in ``base_argv`` (a test fails until it has one), and the generic bad
inputs (an unknown flag, a non-number for each numeric option, an unusable path for each output flag, a
missing file or a folder for each input path, no running system) are derived from its own options. The
cases the issue names are listed one by one below. Commands that talk to a running system get the fake
actor system of ``test_control`` (no Ray starts here); nothing in this file starts a Ray cluster: every
case fails before one would be needed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmats_cli import runtime
from mmats_cli.boundary import OUTPUT_FLAGS, describe
from mmats_cli.main import build_parser, main
from tests.unit.test_cli import good_csv
from tests.unit.test_control import System, _actor_error

INPUT_PATHS = {"data": "--data", "config": "--config", "risk_config": "--risk-config", "result": "--result"}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                           argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaves(child, (*path, name))


LEAVES = dict(leaves(build_parser()))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-bad")
    (d / "FILE").write_text("a file where a folder is expected\n")
    (d / "folder").mkdir()
    csv = good_csv(d / "bars.csv", 400)
    assert main(["backtest", "--strategy", "sma_cross", "--data", str(csv), "--quiet", "--param", "fast=5",
                 "--param", "slow=20", "--json", str(d / "result.json")]) == 0
    (d / "boom.py").write_text(
        "from strategies.sma_cross import SmaCross\n\n\nclass Boom(SmaCross):\n"
        "    def on_bar(self, context):\n        return 1 / 0\n")
    (d / "syntax.py").write_text("def broken(:\n")
    return {"dir": d, "csv": csv, "result": d / "result.json", "file": d / "FILE", "folder": d / "folder",
            "boom": d / "boom.py", "syntax": d / "syntax.py"}


def base_argv(path: tuple[str, ...], f: dict[str, Path]) -> list[str]:
    """A command line of each command that the bad inputs below then break, one thing at a time."""
    d = f["dir"]
    research = ["--strategy", "sma_cross", "--data", str(f["csv"]), "--grid", "fast=5", "--param", "slow=20",
                "--quiet"]
    table: dict[tuple[str, ...], list[str]] = {
        ("backtest",): ["--strategy", "sma_cross", "--data", str(f["csv"]), "--quiet"],
        ("demo",): ["--out", str(d / "demo")],
        ("audit", "verify"): ["--home", str(d / "home")],
        ("data", "validate"): [str(f["csv"])],
        ("strategies",): [],
        ("up",): ["--home", str(d / "home")],
        ("status",): [], ("risk",): [], ("down",): [], ("orders",): [],
        ("strategy", "list"): [],
        ("strategy", "submit"): ["sma_cross", "--symbol", "SYNTH/USDT"],
        ("strategy", "enable"): ["s1"], ("strategy", "disable"): ["s1"],
        ("strategy", "replace"): ["s1", "--param", "fast=5"],
        ("kill",): ["soft", "--reason", "test"],
        ("signals", "export"): [],
        ("mode",): ["advisory"],
        ("sweep",): research, ("walkforward",): [*research, "--windows", "2"],
        ("montecarlo",): ["--result", str(f["result"]), "--runs", "10", "--quiet"],
        ("report",): [str(f["result"]), "--html", str(d / "r.html")],
        ("secrets", "set"): ["x.token", "--home", str(d / "home")],
        ("secrets", "list"): ["--home", str(d / "home")],
        ("secrets", "delete"): ["x.token", "--home", str(d / "home")],
    }
    return [*path, *table[path]]


def _set(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replaced when present, appended otherwise)."""
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
        return out
    return [*out, flag, value]


def _positional(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(not a.option_strings and a.dest == dest for a in parser._actions)


def generic_cases(f: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    for path, parser in LEAVES.items():
        name = " ".join(path)
        base = base_argv(path, f)
        yield f"{name}: unknown flag", [*base, "--no-such-flag"]
        for a in parser._actions:
            if not a.option_strings or a.nargs == 0:
                continue
            flag = a.option_strings[-1] if a.option_strings[-1].startswith("--") else a.option_strings[0]
            if a.type in (int, float):
                yield f"{name}: {flag} abc", _set(base, flag, "abc")
            if a.dest in OUTPUT_FLAGS:
                yield f"{name}: {flag} folder", _set(base, flag, str(f["folder"]))
                yield f"{name}: {flag} under a file", _set(base, flag, str(f["file"] / "x.out"))
                yield f"{name}: {flag} in /proc", _set(base, flag, "/proc/mmats-x.out")
            if a.dest in INPUT_PATHS:
                yield f"{name}: {flag} missing", _set(base, flag, str(f["dir"] / "missing.file"))
                yield f"{name}: {flag} folder", _set(base, flag, str(f["folder"]))
        for dest in ("path", "result"):
            if _positional(parser, dest):
                i = base.index(str(f["csv"] if dest == "path" and path == ("data", "validate") else f["result"])) \
                    if path != ("audit", "verify") else len(base)
                for label, value in (("missing", str(f["dir"] / "missing.file")), ("folder", str(f["folder"]))):
                    yield f"{name}: {dest} {label}", [*base[:i], value, *base[i + 1:]]


def issue_cases(f: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    """(what, argv, a piece of the expected line): each case issue 14 names."""
    d = f["dir"]
    bt = ["backtest", "--strategy", "sma_cross", "--data", str(f["csv"]), "--quiet"]
    return [
        ("strategy raising in a backtest names bar and time",
         ["backtest", "--strategy", f"{f['boom']}:Boom", "--data", str(f["csv"]), "--quiet"], "at bar"),
        ("--json DIR", [*bt, "--json", str(f["folder"])], "is a folder"),
        ("--report FILE/x.html", [*bt, "--report", str(f["file"] / "x.html")], "is a file, not a folder"),
        ("--audit FILE/a.jsonl", [*bt, "--audit", str(f["file"] / "a.jsonl")], "is a file, not a folder"),
        ("--report /proc/x.html", [*bt, "--report", "/proc/x.html"], "/proc"),
        ("report --pdf FILE/x.pdf", ["report", str(f["result"]), "--pdf", str(f["file"] / "x.pdf")], "--pdf"),
        ("strategy disable nope", ["strategy", "disable", "nope"], "unknown strategy 'nope'"),
        ("strategy enable nope", ["strategy", "enable", "nope"], "unknown strategy 'nope'"),
        ("strategy submit missing file", ["strategy", "submit", f"{d / 'missing.py'}:X", "--symbol", "SYNTH/USDT"],
         "not found"),
        ("strategy submit syntax error", ["strategy", "submit", f"{f['syntax']}:X", "--symbol", "SYNTH/USDT"],
         "SyntaxError"),
        ("strategy submit --param fast=abc", ["strategy", "submit", "sma_cross", "--symbol", "SYNTH/USDT",
                                              "--param", "fast=abc"], "fast='abc'"),
        ("strategy submit refused by the actor system", ["strategy", "submit", "sma_cross", "--symbol",
                                                         "SYNTH/USDT", "--id", "s9"], "market mismatch"),
        ("audit verify missing.jsonl", ["audit", "verify", str(d / "missing.jsonl")], "no such journal file"),
        ("up --config with an unusable home", ["up", "--home", str(f["file"] / "home")], "is a file"),
        ("up --data missing", ["up", "--data", str(d / "missing.parquet")], "no such bar file"),
        ("up --config missing", ["up", "--config", str(d / "missing.yaml")], "missing.yaml"),
    ]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage + one error line, status 2
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_system(monkeypatch: pytest.MonkeyPatch) -> System:
    system = System()
    monkeypatch.setattr(runtime, "connect", lambda address: system.client())
    return system


def assert_one_error_line(code: int, out: str, err: str, what: str) -> None:
    assert "Traceback" not in out + err, f"{what}: traceback shown\n{err}"
    assert code != 0, f"{what}: exit status 0\n{out}{err}"
    if code == 2 and "usage:" in err:  # argparse's own answer
        return
    assert code == 2, f"{what}: exit status {code}, not 2 (a user mistake taken for a bug?)\n{err}"
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], f"{what}: not one error line\n{err}"


def test_every_command_has_a_base_command_line(files: dict[str, Path]) -> None:
    missing = []
    for path in LEAVES:
        try:
            base_argv(path, files)
        except KeyError:
            missing.append(" ".join(path))
    assert not missing, f"add a base command line for {missing} to base_argv"
    assert len(LEAVES) >= 20


def test_generic_bad_inputs_of_every_command(files: dict[str, Path], fake_system: System,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cases = list(generic_cases(files))
    assert len(cases) > 60
    for what, argv in cases:
        code, out, err = run(argv, capsys)
        assert_one_error_line(code, out, err, what)


def test_every_command_of_a_running_system_says_when_none_runs(files: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from control.problems import Unavailable

    def nothing(address: str | None) -> Any:
        raise Unavailable("MMATS is not running (no actor 'mmats_supervisor' in namespace 'mmats'): start it "
                          "with `mmats up`")

    monkeypatch.setattr(runtime, "connect", nothing)
    remote = [p for p, parser in LEAVES.items()  # the commands that talk to a running system
              if any(a.dest == "address" and "the cluster `mmats up` started" in (a.help or "")
                     for a in parser._actions)]
    assert len(remote) >= 10
    for path in remote:
        code, out, err = run(base_argv(path, files), capsys)
        assert_one_error_line(code, out, err, " ".join(path))
        assert "mmats up" in err


@pytest.mark.parametrize("index", range(16))
def test_the_cases_issue_14_names(index: int, files: dict[str, Path], fake_system: System,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    cases = issue_cases(files)
    what, argv, expect = cases[index]
    code, out, err = run(argv, capsys)
    assert_one_error_line(code, out, err, what)
    assert expect in err, f"{what}: {err}"


def test_issue_cases_are_all_run() -> None:
    assert len(issue_cases({k: Path("/x") for k in ("dir", "csv", "result", "file", "folder", "boom",
                                                     "syntax")})) == 16


def test_a_strategy_error_names_strategy_bar_and_utc_time(files: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["backtest", "--strategy", f"{files['boom']}:Boom", "--data", str(files["csv"]), "--quiet"],
                       capsys)
    assert code == 2
    line = err.strip()
    assert line.startswith("error: strategy boom raised at bar ") or line.startswith("error: strategy ")
    assert "Z): ZeroDivisionError: division by zero" in line and "2024-01-01T" in line


def test_remote_errors_are_unwrapped_to_their_cause() -> None:
    assert describe(_actor_error(FileNotFoundError(2, "No such file or directory", "/x/bars.csv"))) == \
        "/x/bars.csv: no such file or folder"
    from mmats.errors import StrategyError

    assert describe(_actor_error(StrategyError("unknown strategy 'x'"))) == "unknown strategy 'x'"
    assert describe(_actor_error(ZeroDivisionError("division by zero"))) is None  # a bug stays a bug


def test_a_bug_is_one_line_and_the_traceback_only_with_debug(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import mmats_cli.main as cli

    def broken(args: argparse.Namespace) -> int:
        return 1 // 0

    monkeypatch.setattr(cli, "cmd_strategies", broken)
    code, _, err = run(["strategies"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: internal error (ZeroDivisionError") and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["strategies", "--debug"])  # --debug is accepted anywhere on the line


def test_the_cli_checks_the_api_token_for_mutations(fake_system: System, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    import control.auth as auth

    good = "a-good-token-of-enough-length"
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(auth, "published_digest", lambda ns, sup: auth.token_digest(good))
    monkeypatch.setenv("MMATS_API_TOKEN", "wrong-token-wrong-token")
    for argv in (["kill", "soft", "--reason", "x"], ["mode", "advisory"], ["strategy", "disable", "s1"], ["down"]):
        code, out, err = run(argv, capsys)
        assert_one_error_line(code, out, err, " ".join(argv))
        assert "MMATS_API_TOKEN is not this system's API token" in err
    assert not [c for c, _ in fake_system.supervisor.calls if c in ("kill", "set_strategy_enabled", "down")]
    code, out, _ = run(["status"], capsys)  # reading needs no token
    assert code == 0
    monkeypatch.setenv("MMATS_API_TOKEN", good)
    code, out, err = run(["kill", "soft", "--reason", "drill"], capsys)
    assert code == 0, err
    assert out.startswith("kill switch SOFT") and "(manual: drill)" in out
    code, out, err = run(["kill", "soft", "--reason", "drill", "--json"], capsys)
    assert json.loads(out)["kill_switch"]["state"] == "SOFT"
