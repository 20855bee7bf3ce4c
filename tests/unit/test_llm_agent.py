"""The LLM agent strategy on LangChain's own fake chat models: decisions, fallbacks, rate limit, replay cache.

No network: the models are langchain_core's fakes, small subclasses of them that count or record calls,
and one real chat model pointed at a closed port on 127.0.0.1 (an unreachable endpoint).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from actors.stores import signal_view
from mmats.audit import InMemoryJournal, verify_records
from mmats.engine.strategy_host import LiveBar, StrategyHost
from mmats.errors import StrategyError
from mmats.model import AccountState, Environment, MarketType, SignalAction, TradeSignal
from mmats.registry import create_strategy
from mmats.research.runconfig import BacktestConfig, run_backtest
from mmats.strategy import IndicatorDict, StrategyContext
from strategies.llm_agent import LlmAgent, decision_phase
from strategies.llm_agent_support import (
    AnswerRejected,
    CallTimedOut,
    DecisionCache,
    LlmDecision,
    RateLimiter,
    TimeBoxedCaller,
    check_stops,
    parse_decision,
)
from tests.conftest import shared_file

FAKE = "langchain_core.language_models.fake_chat_models.FakeListChatModel"
HERE = "tests.unit.test_llm_agent"


class CountingChatModel(FakeListChatModel):
    """FakeListChatModel that counts every call made to it, across instances (each run builds its own)."""

    calls: ClassVar[int] = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        type(self).calls += 1
        return super()._call(*args, **kwargs)


class RecordingChatModel(FakeListChatModel):
    """FakeListChatModel that keeps the messages it was sent."""

    seen: ClassVar[list[list[BaseMessage]]] = []

    def _call(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> str:
        type(self).seen.append(list(messages))
        return super()._call(messages, *args, **kwargs)


class UnreachableChatModel(BaseChatModel):
    """A chat model whose endpoint is down: it connects to a closed port on 127.0.0.1."""

    port: int

    @property
    def _llm_type(self) -> str:
        return "unreachable"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
            pass
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="{}"))])


class ToolCallingChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that supports tool binding, so ``with_structured_output`` works on it."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer(action: str = "BUY", size: float = 0.5, confidence: float = 0.8, rationale: str = "trend up",
           **extra: Any) -> str:
    return json.dumps({"action": action, "size": size, "confidence": confidence, "rationale": rationale, **extra})


def agent(responses: list[str] | None = None, model_class: str = FAKE, **params: Any) -> LlmAgent:
    kwargs = params.pop("model_kwargs", {"responses": responses or [answer()]})
    s = create_strategy("llm_agent", {"model_class": model_class, "model_kwargs": kwargs,
                                      "max_calls_per_minute": 0, **params})
    assert isinstance(s, LlmAgent)
    return s


T0 = 1_704_067_200_000_000_000  # 2024-01-01 UTC
MINUTE = 60_000_000_000


def context(i: int, close: float = 100.0, indicators: dict[str, float] | None = None) -> StrategyContext:
    bar = LiveBar(("BTC/USDT", T0 + i * MINUTE, close - 0.5, close + 1.0, close - 1.0, close, 10.0))
    account = AccountState(T0 + i * MINUTE, "USDT", Decimal(10_000), Decimal(10_000))
    return StrategyContext(bar, IndicatorDict(indicators or {}), Environment.PAPER, "BTC/USDT", MarketType.CRYPTO,
                           "llm", lambda: account)


def llm_meta(sig: TradeSignal | None) -> dict[str, Any]:
    assert sig is not None
    meta = sig.metadata["llm"]
    assert isinstance(meta, dict)
    return meta


# ------------------------------------------------------------------------------------------ decisions


def test_a_valid_answer_becomes_the_signal_it_describes() -> None:
    s = agent([answer("BUY", 0.4, 0.9, "breakout above the range", stop_loss=95.0, take_profit=112.5)])
    sig = s.on_bar(context(0, close=100.0))
    assert sig is not None
    assert (sig.action, sig.position_size, sig.stop_loss, sig.take_profit, sig.confidence) == (
        SignalAction.BUY, 0.4, 95.0, 112.5, 0.9)
    assert sig.reasoning == "llm: breakout above the range"
    meta = llm_meta(sig)
    assert meta["model"] == "FakeListChatModel" and meta["fallback"] is False and meta["reason"] is None
    assert meta["cached"] is False and meta["latency_ms"] >= 0


def test_answers_wrapped_in_prose_or_code_fences_are_read() -> None:
    d = parse_decision('Sure! Here it is:\n```json\n{"action": "sell", "size": 1, "confidence": 0.3, '
                       '"rationale": "a {brace} in text"}\n```\nGood luck.')
    assert (d.action, d.size, d.rationale) == ("SELL", 1.0, "a {brace} in text")


@pytest.mark.parametrize(("text", "reason"), [
    ("I think the market will go up.", "not JSON"),
    ('{"action": "BUY", "size": 1.5, "confidence": 0.5, "rationale": "x"}', "size"),
    ('{"action": "MOON", "size": 0.5, "confidence": 0.5, "rationale": "x"}', "action"),
    ('{"action": "BUY", "size": 0.5, "rationale": "x"}', "confidence"),
    ('{"action": "BUY", "size": 0.5, "confidence": 0.5, "rationale": "x", "stop_loss": Infinity}', "stop_loss"),
    ('{"action": "BUY", "size": 0.5, "confidence": 0.5, "rationale": "x", "stop_loss": 101}', "not below"),
    ('{"action": "SELL", "size": 0.5, "confidence": 0.5, "rationale": "x", "take_profit": 120}', "not below"),
])
def test_an_invalid_answer_falls_back_to_hold_with_the_reason(text: str, reason: str) -> None:
    s = agent([text])
    sig = s.on_bar(context(0, close=100.0))
    assert sig is not None and sig.action is SignalAction.HOLD
    meta = llm_meta(sig)
    assert meta["fallback"] is True and meta["fallback_rule"] == "hold"
    assert meta["reason"].startswith("invalid_answer: ") and reason in meta["reason"], meta["reason"]
    assert reason in sig.reasoning


def test_stops_are_checked_against_the_price() -> None:
    ok = LlmDecision(action="SELL", size=1, stop_loss=105, take_profit=90, confidence=1, rationale="")
    check_stops(ok, 100.0)
    with pytest.raises(AnswerRejected, match="stop_loss 105.0 is not below"):
        check_stops(ok.model_copy(update={"action": "BUY"}), 100.0)


def test_a_slow_answer_falls_back_on_timeout_within_about_the_timeout() -> None:
    s = agent([answer()], model_kwargs={"responses": [answer()], "sleep": 3.0}, timeout_s=0.3)
    t0 = time.perf_counter()
    sig = s.on_bar(context(0))
    elapsed = time.perf_counter() - t0
    assert sig is not None and sig.action is SignalAction.HOLD
    assert llm_meta(sig)["reason"] == "timeout" and llm_meta(sig)["fallback"] is True
    # the model sleeps 3 s: the answer comes back at the timeout, well before the model would
    assert 0.3 <= elapsed < 2.5, elapsed
    assert 300 <= llm_meta(sig)["latency_ms"] < 2500


def test_hung_calls_do_not_pile_up_threads() -> None:
    s = agent(model_kwargs={"responses": [answer()], "sleep": 2.0}, timeout_s=0.05)
    reasons = [llm_meta(s.on_bar(context(i)))["reason"] for i in range(6)]
    assert reasons[:4] == ["timeout"] * 4
    assert all(r.startswith("timeout: 4 earlier calls still running") for r in reasons[4:]), reasons


def test_calls_reuse_one_worker_thread_until_one_times_out() -> None:
    caller = TimeBoxedCaller(0.2)
    threads = [caller.call(threading.get_ident) for _ in range(3)]
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
    with pytest.raises(CallTimedOut):
        caller.call(lambda: time.sleep(0.6))
    assert caller.stuck == 1
    after = caller.call(threading.get_ident)  # a new worker: the stuck one is still sleeping
    assert after != threads[0]
    time.sleep(0.6)
    assert caller.stuck == 0  # the stuck worker finished its call and exited


def test_an_unreachable_model_falls_back_with_the_error() -> None:
    s = agent(model_class=f"{HERE}.UnreachableChatModel", model_kwargs={"port": closed_port()})
    sig = s.on_bar(context(0))
    assert sig is not None and sig.action is SignalAction.HOLD
    reason = llm_meta(sig)["reason"]
    assert reason.startswith("error: ConnectionRefusedError"), reason


def test_the_rate_limit_falls_back_without_calling_the_model() -> None:
    CountingChatModel.calls = 0
    s = agent(model_class=f"{HERE}.CountingChatModel", max_calls_per_minute=2)
    sigs = [s.on_bar(context(i)) for i in range(4)]
    assert [llm_meta(x)["reason"] for x in sigs] == [None, None, "rate_limited", "rate_limited"]
    assert [x.action for x in sigs if x] == [SignalAction.BUY, SignalAction.BUY, SignalAction.HOLD, SignalAction.HOLD]
    assert CountingChatModel.calls == 2 and s.stats["model_calls"] == 2


def test_the_rate_limit_is_a_sliding_minute() -> None:
    now = [0.0]
    lim = RateLimiter(2, clock=lambda: now[0])
    assert lim.try_acquire()
    now[0] = 30.0
    assert lim.try_acquire() and not lim.try_acquire()
    now[0] = 59.9
    assert not lim.try_acquire()
    now[0] = 60.0  # the call at 0 s left the window, the one at 30 s has not
    assert lim.try_acquire() and not lim.try_acquire()
    assert RateLimiter(0).try_acquire()  # 0: no limit


def test_every_n_bars_asks_the_model_only_on_those_bars() -> None:
    CountingChatModel.calls = 0
    s = agent(model_class=f"{HERE}.CountingChatModel", every_n_bars=3)
    out = [s.on_bar(context(i)) for i in range(9)]
    phase = decision_phase("BTC/USDT", 3)
    assert [i for i, x in enumerate(out) if x is not None] == [phase, phase + 3, phase + 6]
    assert CountingChatModel.calls == 3
    assert decision_phase("BTC/USDT", 1) == 0  # every bar


def test_a_strategy_on_many_symbols_spreads_its_model_calls_over_the_bars() -> None:
    """Ten symbols asking every 5th bar: a few on each bar, none twice in five, the same phases each run."""
    symbols = [f"S{i}/USDT" for i in range(10)]
    per_bar = [[s for s in symbols if k % 5 == decision_phase(s, 5)] for k in range(10)]
    assert sum(len(x) for x in per_bar[:5]) == 10  # each symbol once in every five bars
    assert per_bar[:5] == per_bar[5:]
    assert max(len(x) for x in per_bar) <= 3  # not all ten on one bar
    assert [decision_phase(s, 5) for s in symbols] == [zlib.crc32(s.encode()) % 5 for s in symbols]


def test_the_prompt_carries_the_latest_bars_indicators_position_and_instructions() -> None:
    RecordingChatModel.seen = []
    s = agent(model_class=f"{HERE}.RecordingChatModel", history_bars=3, indicators=["SMA_5", "BBANDS_20_2"],
              instructions="Never go short.")
    ind = {"SMA_5": 101.0, "BBANDS_20_2": 100.0, "BBANDS_20_2.upper": 104.0, "BBANDS_20_2.middle": 100.0,
           "BBANDS_20_2.lower": 96.0}
    for i in range(5):
        s.on_bar(context(i, close=100.0 + i, indicators=ind))
    system, user = RecordingChatModel.seen[-1]
    assert system.type == "system" and "Never go short." in str(system.content)
    assert '"action"' in str(system.content)  # the schema is in the instructions
    state = json.loads(str(user.content).split("\n", 1)[1])
    assert [b[4] for b in state["bars"]] == [102.0, 103.0, 104.0]  # the last three closes
    assert state["bars"][-1][0] == "2024-01-01T00:04:00Z" and state["time"] == "2024-01-01T00:04:00Z"
    assert state["indicators"] == {"BBANDS_20_2": 100.0, "BBANDS_20_2.lower": 96.0, "BBANDS_20_2.middle": 100.0,
                                   "BBANDS_20_2.upper": 104.0, "SMA_5": 101.0}
    assert state["position"] == {"quantity": 0.0, "avg_price": 0.0, "unrealized_pnl": 0.0}
    assert state["account"]["equity"] == 10_000.0
    assert s.get_required_indicators() == ["SMA_5", "BBANDS_20_2"]


def test_structured_output_is_used_where_the_model_supports_it() -> None:
    call = {"name": "LlmDecision", "id": "1",
            "args": {"action": "SELL", "size": 0.25, "confidence": 0.6, "rationale": "lower highs"}}
    bad = {**call, "args": {"action": "SELL", "size": 2.0, "confidence": 0.6, "rationale": "x"}}
    msgs = iter([AIMessage(content="", tool_calls=[call]), AIMessage(content="", tool_calls=[bad])])
    s = agent(model_class=f"{HERE}.ToolCallingChatModel", model_kwargs={"messages": msgs})
    assert s._structured_chat is not None
    sig = s.on_bar(context(0))
    assert sig is not None and (sig.action, sig.position_size, sig.confidence) == (SignalAction.SELL, 0.25, 0.6)
    assert llm_meta(sig)["fallback"] is False
    sig = s.on_bar(context(1))
    assert sig is not None and sig.action is SignalAction.HOLD
    assert llm_meta(sig)["reason"].startswith("invalid_answer: schema:"), llm_meta(sig)["reason"]


# ------------------------------------------------------------------------------------- configuration


def test_a_model_class_that_cannot_be_imported_names_the_extra_to_install() -> None:
    with pytest.raises(StrategyError, match=r"cannot import model_class 'langchain_notinstalled\.ChatX'.*mmats\[llm\]"):
        agent(model_class="langchain_notinstalled.ChatX")


@pytest.mark.parametrize(("params", "message"), [
    ({"model_class": ""}, "exactly one of model"),
    ({"model": "openai:gpt-4o-mini"}, "exactly one of model"),
    ({"model_class": "collections.OrderedDict"}, "is not a LangChain chat model"),
    ({"model_kwargs": {"responses": "x", "bogus": 1}}, r"FakeListChatModel\(\*\*model_kwargs\) failed"),
    ({"timeout_s": 0}, "timeout_s=0.0"),
    ({"every_n_bars": 0}, "every_n_bars=0"),
    ({"history_bars": 0}, "history_bars=0"),
    ({"max_calls_per_minute": -1}, "max_calls_per_minute=-1"),
    ({"indicators": ["SMA_x"]}, "indicators: SMA_x"),
    ({"fallback": "no_such_rule"}, "fallback='no_such_rule'"),
    ({"fallback": "llm_agent"}, "not llm_agent itself"),
    ({"fallback_params": {"fast": 3}}, "fallback is 'hold'"),
    ({"cache_path": "/nonexistent-dir/cache.jsonl"}, "does not exist"),
    ({"model_kwargs": "{responses: x}"}, "model_kwargs=.* is not a JSON object"),
    ({"model_kwargs": "[1, 2]"}, "must be a mapping"),
])
def test_bad_parameters_are_refused_at_load(params: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"model_class": FAKE, "model_kwargs": {"responses": [answer()]}}
    with pytest.raises(StrategyError, match=message):
        create_strategy("llm_agent", {**base, **params})


def test_a_provider_model_name_needs_langchain_or_names_what_is_missing() -> None:
    try:
        import langchain  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(StrategyError, match="pip install langchain"):
            create_strategy("llm_agent", {"model": "openai:gpt-4o-mini"})
    else:  # langchain present: an unknown provider is refused at load with langchain's own reason
        with pytest.raises(StrategyError, match="model='nosuchprovider:x'"):
            create_strategy("llm_agent", {"model": "nosuchprovider:x"})


# ----------------------------------------------------------------------------- backtest, cache, audit


def spy_config(params: dict[str, Any]) -> BacktestConfig:
    return BacktestConfig(strategy="llm_agent", params=params, data=str(shared_file("stock_SPY_1d.parquet")),
                          end="2003-12-31")


RESPONSES = [answer("BUY", 1.0, 0.7, "long"), answer("HOLD", 0.0, 0.5, "wait"), "not an answer",
             answer("CLOSE", 0.0, 0.6, "flat"), answer("SELL", 1.0, 0.4, "short"), answer("HOLD", 0, 0.5, "wait")]


def signals_of(journal: InMemoryJournal) -> list[dict[str, Any]]:
    """Signal records without what legitimately differs between runs (latency, cache flag)."""
    out = []
    for rec in journal.records():
        if rec.kind == "signal":
            p = json.loads(json.dumps(rec.payload))
            p["metadata"]["llm"].pop("latency_ms")
            p["metadata"]["llm"].pop("cached")
            out.append({"ts": rec.ts_ns, **p})
    return out


def test_a_second_backtest_replays_from_the_cache_without_calling_the_model(tmp_path: Path) -> None:
    cache = tmp_path / "llm-cache.jsonl"
    params = {"model_class": f"{HERE}.CountingChatModel", "model_kwargs": {"responses": RESPONSES},
              "indicators": ["SMA_20", "RSI_14"], "every_n_bars": 4, "max_calls_per_minute": 0,
              "cache_path": str(cache)}
    CountingChatModel.calls = 0
    j1 = InMemoryJournal()
    r1 = run_backtest(spy_config(params), journal=j1)
    first_calls = CountingChatModel.calls
    assert first_calls > 300 and len(DecisionCache(cache)) == first_calls
    CountingChatModel.calls = 0
    j2 = InMemoryJournal()
    r2 = run_backtest(spy_config(params), journal=j2)
    assert CountingChatModel.calls == 0
    s1, s2 = signals_of(j1), signals_of(j2)
    assert s1 == s2 and len(s1) == first_calls
    cached = [rec.payload["metadata"]["llm"]["cached"] for rec in j2.records() if rec.kind == "signal"]
    assert all(cached)
    assert r1.summary["final_equity"] == r2.summary["final_equity"] and len(r1.fills) == len(r2.fills) > 50
    # Another model is another question: nothing is reused.
    other = {**params, "model_class": FAKE}
    j3 = InMemoryJournal()
    run_backtest(spy_config(other), journal=j3)
    assert not any(rec.payload["metadata"]["llm"]["cached"] for rec in j3.records() if rec.kind == "signal")


def test_a_torn_last_cache_line_is_skipped(tmp_path: Path) -> None:
    cache = tmp_path / "c.jsonl"
    c = DecisionCache(cache)
    d = LlmDecision(action="BUY", size=1, confidence=1, rationale="x")
    c.put("X", "2024-01-01T00:00:00Z", "h1", "m", answer=d)
    with cache.open("a") as fh:
        fh.write('{"symbol": "X", "bar_ti')
    again = DecisionCache(cache)
    assert len(again) == 1 and again.skipped_lines == 1
    assert again.get("X", "2024-01-01T00:00:00Z", "h1") == {
        "symbol": "X", "bar_time": "2024-01-01T00:00:00Z", "prompt_hash": "h1", "model": "m", "answer": d.model_dump()}


def test_the_backtest_audit_records_every_decision_with_its_llm_provenance() -> None:
    params = {"model_class": FAKE, "model_kwargs": {"responses": RESPONSES}, "every_n_bars": 5,
              "max_calls_per_minute": 0}
    j = InMemoryJournal()
    res = run_backtest(spy_config(params), journal=j)
    records = list(j.records())
    assert verify_records([r.to_dict() for r in records]).ok
    signals = [r.payload for r in records if r.kind == "signal"]
    # no indicators: every 5th bar from the symbol's phase on
    symbol = {r.payload["symbol"] for r in records if r.kind == "signal"}.pop()
    assert len(signals) == len(range(decision_phase(symbol, 5), res.summary["bars"], 5))
    by_action: dict[str, int] = {}
    for p in signals:
        by_action[p["action"]] = by_action.get(p["action"], 0) + 1
        assert set(p["metadata"]["llm"]) >= {"model", "fallback", "reason", "latency_ms", "cached"}
    fallbacks = [p for p in signals if p["metadata"]["llm"]["fallback"]]
    assert fallbacks and all(p["action"] == "HOLD" for p in fallbacks)
    assert all(p["metadata"]["llm"]["reason"].startswith("invalid_answer: not JSON") for p in fallbacks)
    assert len(fallbacks) == len(signals) // 6 + (1 if len(signals) % 6 > 2 else 0)
    # HOLDs (from the model and from the fallback) are journaled; only BUY/SELL/CLOSE reach risk and orders.
    assert by_action["HOLD"] > by_action["BUY"] > 0
    decisions = [r for r in records if r.kind == "risk_decision"]
    assert 0 < len(decisions) <= by_action["BUY"] + by_action["SELL"] + by_action["CLOSE"]


def test_a_named_rule_decides_when_the_model_cannot(tmp_path: Path) -> None:
    """With the model unreachable on every bar, the agent with fallback sma_cross trades exactly as sma_cross."""
    rule = {"fast": 10, "slow": 30}
    params = {"model_class": f"{HERE}.UnreachableChatModel", "model_kwargs": {"port": closed_port()},
              "max_calls_per_minute": 0, "fallback": "sma_cross", "fallback_params": rule}
    j = InMemoryJournal()
    agent_run = run_backtest(spy_config(params), journal=j)
    plain = run_backtest(BacktestConfig(strategy="sma_cross", params=rule,
                                        data=str(shared_file("stock_SPY_1d.parquet")), end="2003-12-31"))
    assert len(plain.fills) > 10
    assert [(f.ts_ns, f.side, f.quantity, f.price) for f in agent_run.fills] == [
        (f.ts_ns, f.side, f.quantity, f.price) for f in plain.fills]
    assert agent_run.summary["final_equity"] == plain.summary["final_equity"]
    signals = [r.payload for r in j.records() if r.kind == "signal"]
    trades = [p for p in signals if p["action"] != "HOLD"]
    assert trades and all(p["reasoning"].startswith("fallback to sma_cross (error: ConnectionRefusedError")
                          for p in trades)
    assert all(p["metadata"]["llm"]["fallback_rule"] == "sma_cross" for p in signals)


def test_the_live_host_passes_decisions_and_holds_with_their_provenance_to_the_gatekeeper() -> None:
    """The paper/live path: StrategyHost emits every decision (HOLD included) as a PendingSignal, and the
    gatekeeper's audit payload (signal_view) carries the llm record."""
    params = {"model_class": FAKE, "model_kwargs": {"responses": [answer("BUY", 0.5, 0.8, "up"), "garbage"]},
              "max_calls_per_minute": 0, "indicators": ["SMA_3"]}
    host = StrategyHost("llm-1", "llm_agent", params, ["BTC/USDT"], MarketType.CRYPTO, Environment.PAPER)
    host.warm_up([("BTC/USDT", T0 + i * MINUTE, 100.0, 101.0, 99.0, 100.0 + i, 5.0) for i in range(3)])
    live = [("BTC/USDT", T0 + i * MINUTE, 100.0, 101.0, 99.0, 100.0 + i, 5.0) for i in range(3, 6)]
    out, _ = host.on_bars(live)
    # the warm-up asked nothing, so the live bars get the model's answers from the first
    assert [p.signal.action for p in out] == [SignalAction.BUY, SignalAction.HOLD, SignalAction.BUY]
    assert host.signals_emitted == 2  # only the BUYs count as trading signals
    views = [signal_view(p.strategy_id, p.signal, p.price) for p in out]
    assert [v["metadata"]["llm"]["fallback"] for v in views] == [False, True, False]
    assert views[1]["metadata"]["llm"]["reason"].startswith("invalid_answer: not JSON")
    assert views[0]["metadata"]["llm"]["model"] == "FakeListChatModel"
    assert "metadata" not in signal_view("x", TradeSignal(SignalAction.BUY, "X", metadata={"bar_price": 1.0}), 1.0)


def test_mapping_parameters_may_come_as_json_text_from_the_command_line() -> None:
    s = create_strategy("llm_agent", {"model_class": FAKE, "model_kwargs": json.dumps({"responses": [answer("SELL")]}),
                                      "fallback": "sma_cross", "fallback_params": '{"fast": 3, "slow": 8}'})
    assert isinstance(s, LlmAgent)
    sig = s.on_bar(context(0, indicators={"SMA_3": 1.0, "SMA_8": 2.0}))
    assert sig is not None and sig.action is SignalAction.SELL
    assert s.get_required_indicators() == ["SMA_3", "SMA_8"]


def test_an_actor_warming_up_on_history_does_not_ask_the_model_then_asks_with_that_history() -> None:
    """A start, restart or hot replace replays past bars whose signals are discarded: no model call is
    made (or paid, or counted against the rate limit) for them; the first live bar's prompt still shows
    the bars the warm-up kept."""
    from mmats.engine.strategy_host import StrategyHost

    RecordingChatModel.seen = []
    params = {"model_class": f"{HERE}.RecordingChatModel", "model_kwargs": {"responses": [answer()]},
              "max_calls_per_minute": 1, "history_bars": 3}
    host = StrategyHost("agent", "llm_agent", params, ["BTC/USDT"], MarketType.CRYPTO, Environment.PAPER)
    bars = [("BTC/USDT", T0 + i * MINUTE, 99.5 + i, 101.0 + i, 99.0 + i, 100.0 + i, 10.0) for i in range(50)]
    host.warm_up(bars[:40])
    strat = host.strategies["BTC/USDT"]
    assert isinstance(strat, LlmAgent)
    assert RecordingChatModel.seen == [] and strat.stats["model_calls"] == 0 and strat.stats["replayed"] == 40
    signals, _ = host.on_bars(bars[40:41])
    assert len(RecordingChatModel.seen) == 1 and strat.stats["model_calls"] == 1  # the rate limit was not spent
    assert [s.signal.metadata["llm"]["fallback"] for s in signals] == [False]
    state = json.loads(str(RecordingChatModel.seen[0][1].content).split("\n", 1)[1])
    assert [b[4] for b in state["bars"]] == [138.0, 139.0, 140.0]  # two warm-up bars and the live one


def test_a_backtest_context_is_not_replaying() -> None:
    assert context(0).replaying is False


def test_a_live_host_asks_the_model_for_a_bar_times_symbols_together_with_the_same_decisions() -> None:
    from mmats.engine.strategy_host import StrategyHost

    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    params = {"model_class": FAKE, "max_calls_per_minute": 0, "model_kwargs": {"responses": [
        answer("BUY", 0.5, 0.8, "up"), "garbage", answer("CLOSE", 0.0, 0.6, "flat")]}}
    bars = [(s, T0 + i * MINUTE, 100.0, 101.0, 99.0, 100.0 + i + k, 5.0) for i in range(4)
            for k, s in enumerate(symbols)]
    runs = []
    for together in (True, False):
        host = StrategyHost("llm", "llm_agent", params, symbols, MarketType.CRYPTO, Environment.PAPER)
        assert host._together  # several symbols of an io_bound strategy
        host._together = together
        out, _ = host.on_bars(bars)
        runs.append([(p.signal.symbol, p.ts_ns, p.signal.action, p.signal.metadata["llm"]["fallback"]) for p in out])
    assert runs[0] == runs[1] and len(runs[0]) == 12
    assert {a for _, _, a, _ in runs[0]} == {SignalAction.BUY, SignalAction.HOLD, SignalAction.CLOSE}
