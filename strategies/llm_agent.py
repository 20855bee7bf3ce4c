"""A language model decides, through LangChain's chat-model interface; a rule decides when it cannot.

Every ``every_n_bars`` bars the model gets a compact market state (the latest ``history_bars`` bars, the
indicators listed in ``indicators``, the position and the account) and must answer one ``LlmDecision``
(action, size, stop loss, take profit, confidence, rationale). Whatever goes wrong (an answer outside
the schema, no answer within ``timeout_s``, the rate limit, an exception from the model) ends in the
``fallback`` rule's decision (HOLD by default) instead, so a model can never stall or break the bar loop.

Every decision (HOLD included) is returned as a signal whose ``metadata["llm"]`` says where it came
from: ``{model, fallback, reason, latency_ms, cached}``; the engines journal HOLD signals too, so a
fallback that changed nothing is still in the audit trail.

LangChain is imported only when the strategy is initialised: ``mmats/`` stays free of it, and a user
without the ``llm`` extra gets an error that says what to install.
"""

from __future__ import annotations

import importlib
import json
import time
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError, ValidationError
from mmats.indicators import parse_spec
from mmats.model import Order, SignalAction, TradeSignal, datetime_to_ns, iso
from mmats.strategy import IStrategy, StrategyContext
from strategies.llm_agent_support import (
    AnswerRejected,
    CallsStuck,
    CallTimedOut,
    DecisionCache,
    LlmDecision,
    RateLimiter,
    TimeBoxedCaller,
    bar_row,
    build_prompt,
    check_stops,
    market_state,
    message_text,
    parse_decision,
    prompt_hash,
    validate_decision,
)

INSTALL_HINT = "install the llm extra: pip install 'mmats[llm]' (langchain-core), plus the provider's package"


def build_chat_model(model: str, model_class: str, model_kwargs: Mapping[str, Any]) -> tuple[Any, str]:
    """The configured LangChain chat model and the id it is known by in the audit and the cache."""
    if bool(model) == bool(model_class):
        raise StrategyError("llm_agent: give exactly one of model ('provider:model-name') and model_class "
                            "(dotted path to a LangChain chat-model class)")
    try:
        from langchain_core.language_models import BaseChatModel
    except ImportError:
        raise StrategyError(f"llm_agent needs LangChain's chat-model interface: {INSTALL_HINT}") from None
    kwargs = dict(model_kwargs)
    if model:
        try:
            from langchain.chat_models import init_chat_model  # type: ignore[import-not-found]
        except ImportError:
            raise StrategyError(
                f"llm_agent: model={model!r} is resolved by langchain's init_chat_model: pip install langchain "
                "and the provider's package (e.g. langchain-openai), or give model_class instead") from None
        try:
            chat = init_chat_model(model, **kwargs)
        except Exception as exc:  # a provider package missing, an unknown provider, a bad kwarg
            raise StrategyError(f"llm_agent: model={model!r}: {type(exc).__name__}: {exc}") from None
        return chat, model
    module_name, sep, cls_name = model_class.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise StrategyError(f"llm_agent: model_class={model_class!r} must be a dotted path like "
                            "'langchain_openai.ChatOpenAI'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyError(f"llm_agent: cannot import model_class {model_class!r} ({exc}); {INSTALL_HINT}") from None
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseChatModel)):
        raise StrategyError(f"llm_agent: model_class {model_class!r} is not a LangChain chat model "
                            "(a langchain_core BaseChatModel subclass)")
    try:
        chat = cls(**kwargs)
    except Exception as exc:  # pydantic's error names the bad or missing field
        raise StrategyError(f"llm_agent: {cls_name}(**model_kwargs) failed: {type(exc).__name__}: {exc}") from None
    name = kwargs.get("model") or kwargs.get("model_name")
    return chat, f"{cls_name}:{name}" if isinstance(name, str) and name else cls_name


def _structured(chat: Any) -> Any | None:
    """The model bound to the decision schema, where the model supports structured output."""
    try:
        return chat.with_structured_output(LlmDecision, include_raw=True)
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return None


def decision_phase(symbol: str, every_n_bars: int) -> int:
    """Which bar of each ``every_n_bars`` a symbol's instance asks the model on, counted from its first bar.

    Spread by symbol (a stable hash, the same in a backtest and live): a strategy on ten symbols then asks
    for two or three of them on each bar, where all ten on the same bar would put every call, its cost
    and the load on the model's endpoint on one bar in five, and reach a rate limit as one burst."""
    return 0 if every_n_bars == 1 else zlib.crc32(symbol.encode()) % every_n_bars


class LlmAgent(IStrategy):
    name = "llm_agent"
    io_bound = True  # each call waits on the model: a live host asks for a bar time's symbols at once
    version = "1.0.0"
    author = "MMATS"
    description = "A LangChain chat model decides on a compact market state; a rule decides when it cannot."
    default_params: ClassVar[Mapping[str, Any]] = {
        "model": "",
        "model_class": "",
        "model_kwargs": {},
        "instructions": "",
        "indicators": [],
        "history_bars": 20,
        "every_n_bars": 1,
        "timeout_s": 5.0,
        "max_calls_per_minute": 30,
        "cache_path": "",
        "fallback": "hold",
        "fallback_params": {},
    }

    def __init__(self) -> None:
        super().__init__()
        self._chat: Any = None
        self._structured_chat: Any = None
        self.model_id = ""
        self._indicator_specs: list[str] = []
        self._indicator_keys: list[str] = []
        self._fallback: IStrategy | None = None
        self._bars: deque[list[Any]] = deque(maxlen=20)
        self._n = 0
        self._phase = -1  # decision_phase of its symbol, from its first bar (an instance sees one symbol)
        self._cache = DecisionCache(None)
        self._limiter = RateLimiter(0)
        self._caller = TimeBoxedCaller(5.0)
        #: what happened so far: model calls made, cache hits, fallbacks by reason kind
        self.stats: dict[str, int] = {"model_calls": 0, "cache_hits": 0, "fallbacks": 0, "replayed": 0}

    # ----------------------------------------------------------------------------------- parameters

    def validate_params(self) -> None:
        p = self.params
        for key in ("model", "model_class", "instructions", "cache_path", "fallback"):
            if not isinstance(p[key], str):
                raise StrategyError(f"llm_agent: {key}={p[key]!r} must be a string")
        for key in ("model_kwargs", "fallback_params"):
            if isinstance(p[key], str):  # from the command line: --param 'model_kwargs={"temperature": 0}'
                try:
                    p[key] = json.loads(p[key]) if p[key].strip() else {}
                except json.JSONDecodeError as exc:
                    raise StrategyError(f"llm_agent: {key}={p[key]!r} is not a JSON object: {exc.msg}") from None
            if not isinstance(p[key], Mapping):
                raise StrategyError(f"llm_agent: {key}={p[key]!r} must be a mapping")
        if p["history_bars"] < 1 or p["history_bars"] > 500:
            raise StrategyError(f"llm_agent: history_bars={p['history_bars']} must be in 1..500")
        if p["every_n_bars"] < 1:
            raise StrategyError(f"llm_agent: every_n_bars={p['every_n_bars']} must be >= 1")
        if not 0 < p["timeout_s"] <= 600:
            raise StrategyError(f"llm_agent: timeout_s={p['timeout_s']} must be in (0, 600]")
        if p["max_calls_per_minute"] < 0:
            raise StrategyError(f"llm_agent: max_calls_per_minute={p['max_calls_per_minute']} must be >= 0 "
                                "(0: no limit)")
        specs = p["indicators"]
        if isinstance(specs, str):
            specs = [s for s in (x.strip() for x in specs.split(",")) if s]
        if not isinstance(specs, list | tuple) or not all(isinstance(s, str) for s in specs):
            raise StrategyError(f"llm_agent: indicators={p['indicators']!r} must be a list of indicator specs")
        keys: list[str] = []
        for s in specs:
            try:
                keys += parse_spec(s).outputs
            except ValidationError as exc:
                raise StrategyError(f"llm_agent: indicators: {exc}") from None
        self._indicator_specs, self._indicator_keys = list(specs), keys
        self._fallback = self._build_fallback(p["fallback"], dict(p["fallback_params"]))
        self._chat, self.model_id = build_chat_model(p["model"], p["model_class"], p["model_kwargs"])
        self._structured_chat = _structured(self._chat)
        self._cache = DecisionCache(p["cache_path"] or None)
        self._limiter = RateLimiter(p["max_calls_per_minute"])
        self._caller = TimeBoxedCaller(p["timeout_s"])
        self._bars = deque(maxlen=p["history_bars"])
        self._n = 0
        self._phase = -1  # decision_phase of its symbol, from its first bar (an instance sees one symbol)

    @staticmethod
    def _build_fallback(ref: str, params: dict[str, Any]) -> IStrategy | None:
        if ref.lower() == "hold":
            if params:
                raise StrategyError("llm_agent: fallback_params given but fallback is 'hold'")
            return None
        if ref == LlmAgent.name or ref.endswith(":LlmAgent"):
            raise StrategyError("llm_agent: fallback must be a rule-based strategy, not llm_agent itself")
        from mmats.registry import create_strategy

        try:
            return create_strategy(ref, params)
        except StrategyError as exc:
            raise StrategyError(f"llm_agent: fallback={ref!r}: {exc}") from None

    def get_required_indicators(self) -> list[str]:
        own = list(self._indicator_specs)
        if self._fallback is not None:
            own += [s for s in self._fallback.get_required_indicators() if s not in own]
        return own

    # ---------------------------------------------------------------------------------------- bars

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        bar = context.bar
        ts_ns = datetime_to_ns(context.time)
        self._bars.append(bar_row(ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume))
        # The fallback rule sees every bar, so its state (e.g. a previous cross) is current when needed.
        rule_signal = None
        if self._fallback is not None:
            self._fallback.strategy_id = self.strategy_id
            rule_signal = self._fallback.on_bar(context)
        n = self.params["every_n_bars"]
        if self._n == 0:
            self._phase = decision_phase(context.symbol, n)
        self._n += 1
        if (self._n - 1) % n != self._phase:
            return None
        if context.replaying:  # history at a start: the decision would be discarded, so no model call
            self.stats["replayed"] += 1
            return None
        return self._decide(context, ts_ns, rule_signal)

    def _decide(self, context: StrategyContext, ts_ns: int, rule_signal: TradeSignal | None) -> TradeSignal:
        symbol = context.symbol
        ind = context.indicators
        account = context.account
        pos = account.position(symbol)
        position = {"quantity": 0.0, "avg_price": 0.0, "unrealized_pnl": 0.0} if pos is None else {
            "quantity": float(pos.quantity), "avg_price": float(pos.avg_price),
            "unrealized_pnl": float(pos.unrealized_pnl)}
        acct = {"equity": float(account.equity), "cash": float(account.cash),
                "realized_pnl": float(account.realized_pnl), "unrealized_pnl": float(account.unrealized_pnl)}
        state = market_state(symbol, list(self._bars), {k: ind[k] for k in self._indicator_keys}, position, acct)
        system, user = build_prompt(state, self.params["instructions"])
        phash = prompt_hash(self.model_id, system, user)
        bar_time = iso(ts_ns)

        cached = self._cache.get(symbol, bar_time, phash)
        if cached is not None:
            self.stats["cache_hits"] += 1
            if "answer" in cached:
                try:
                    decision = validate_decision(cached["answer"])
                    check_stops(decision, context.bar.close)
                    return self._from_decision(symbol, decision, 0.0, cached=True)
                except AnswerRejected as exc:
                    return self._fall_back(symbol, rule_signal, f"invalid_answer: {exc}", 0.0, cached=True)
            return self._fall_back(symbol, rule_signal, f"invalid_answer: {cached['invalid']}", 0.0, cached=True)

        if not self._limiter.try_acquire():
            return self._fall_back(symbol, rule_signal, "rate_limited", 0.0)
        started = time.perf_counter()
        try:
            self.stats["model_calls"] += 1
            decision = self._caller.call(lambda: self._ask(system, user))
            check_stops(decision, context.bar.close)
        except CallTimedOut:
            return self._fall_back(symbol, rule_signal, "timeout", _ms(started))
        except CallsStuck as exc:  # refused before calling: not a model call
            self.stats["model_calls"] -= 1
            return self._fall_back(symbol, rule_signal, f"timeout: {exc}", _ms(started))
        except AnswerRejected as exc:
            self._cache.put(symbol, bar_time, phash, self.model_id, invalid=str(exc))
            return self._fall_back(symbol, rule_signal, f"invalid_answer: {exc}", _ms(started))
        except Exception as exc:  # unreachable endpoint, auth, provider error: the rule decides instead
            return self._fall_back(symbol, rule_signal, f"error: {type(exc).__name__}: {exc}"[:500], _ms(started))
        self._cache.put(symbol, bar_time, phash, self.model_id, answer=decision)
        return self._from_decision(symbol, decision, _ms(started), cached=False)

    def _ask(self, system: str, user: str) -> LlmDecision:
        messages = [("system", system), ("human", user)]
        if self._structured_chat is not None:
            out = self._structured_chat.invoke(messages)
            if out.get("parsing_error") is not None:
                raise AnswerRejected(f"schema: {out['parsing_error']}"[:500])
            parsed = out.get("parsed")
            if parsed is None:
                raw = out.get("raw")
                return parse_decision(message_text(getattr(raw, "content", "")))
            return validate_decision(parsed)
        reply = self._chat.invoke(messages)
        return parse_decision(message_text(getattr(reply, "content", reply)))

    # ------------------------------------------------------------------------------------- signals

    def _meta(self, fallback: bool, reason: str | None, latency_ms: float, cached: bool) -> dict[str, Any]:
        return {"llm": {"model": self.model_id, "fallback": fallback, "reason": reason,
                        "latency_ms": latency_ms, "cached": cached}}

    def _from_decision(self, symbol: str, d: LlmDecision, latency_ms: float, cached: bool) -> TradeSignal:
        meta = self._meta(False, None, latency_ms, cached)
        return TradeSignal(SignalAction(d.action), symbol, d.size, stop_loss=d.stop_loss, take_profit=d.take_profit,
                           confidence=d.confidence, reasoning=f"llm: {d.rationale}", metadata=meta)

    def _fall_back(self, symbol: str, rule_signal: TradeSignal | None, reason: str, latency_ms: float,
                   cached: bool = False) -> TradeSignal:
        self.stats["fallbacks"] += 1
        meta = self._meta(True, reason, latency_ms, cached)
        rule = self.params["fallback"]
        meta["llm"]["fallback_rule"] = rule
        if rule_signal is None:
            return TradeSignal(SignalAction.HOLD, symbol, 0.0, reasoning=f"fallback to {rule} ({reason})",
                               metadata=meta)
        return TradeSignal(rule_signal.action, symbol, rule_signal.position_size, stop_loss=rule_signal.stop_loss,
                           take_profit=rule_signal.take_profit, confidence=rule_signal.confidence,
                           reasoning=f"fallback to {rule} ({reason}): {rule_signal.reasoning}",
                           metadata={**rule_signal.metadata, **meta})

    def on_order_filled(self, order: Order) -> None:
        if self._fallback is not None:
            self._fallback.on_order_filled(order)

    def on_order_rejected(self, order: Order, reason: str) -> None:
        if self._fallback is not None:
            self._fallback.on_order_rejected(order, reason)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 1)
