"""What the LLM agent needs besides the model itself: the answer schema, the prompt, the cache, the rate limit.

Nothing here imports LangChain, so the schema, the prompt and the replay cache are testable (and usable
by tools that read a cache file) without the ``llm`` extra installed.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from mmats.errors import StrategyError
from mmats.model import iso


class LlmDecision(BaseModel):
    """One trading decision as the model must state it.

    ``size`` is the target exposure as a fraction of the strategy's allocated capital (the engine's
    ``TradeSignal.position_size``); stops are absolute prices.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    action: Literal["BUY", "SELL", "CLOSE", "HOLD"] = Field(
        description="BUY: be long `size`; SELL: be short `size`; CLOSE: be flat; HOLD: change nothing")
    size: float = Field(ge=0.0, le=1.0, description="target exposure, fraction of allocated capital (0..1)")
    stop_loss: float | None = Field(default=None, gt=0, description="absolute stop-loss price, or null")
    take_profit: float | None = Field(default=None, gt=0, description="absolute take-profit price, or null")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure you are (0..1)")
    rationale: str = Field(max_length=2000, description="one or two sentences: why")


class AnswerRejected(Exception):
    """The model answered, but not with a decision that fits ``LlmDecision``."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _first_json_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (models often wrap JSON in prose or code fences)."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for j in range(start, len(text)):
            ch = text[j]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:j + 1]
        start = text.find("{", start + 1)
    return None


def _schema_error(exc: PydanticValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "answer"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate_decision(value: Any) -> LlmDecision:
    """A structured-output result (a model instance or a dict) checked against the schema."""
    if isinstance(value, LlmDecision):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, Mapping) and isinstance(value.get("action"), str):
        value = {**value, "action": value["action"].strip().upper()}
    try:
        return LlmDecision.model_validate(value)
    except PydanticValidationError as exc:
        raise AnswerRejected(f"schema: {_schema_error(exc)}") from None


def check_stops(d: LlmDecision, price: float) -> None:
    """Stops on the wrong side of the price would fire at once: an answer that cannot mean what it says."""
    if d.action == "BUY":
        if d.stop_loss is not None and d.stop_loss >= price:
            raise AnswerRejected(f"stop_loss {d.stop_loss} is not below the price {price} of a BUY")
        if d.take_profit is not None and d.take_profit <= price:
            raise AnswerRejected(f"take_profit {d.take_profit} is not above the price {price} of a BUY")
    elif d.action == "SELL":
        if d.stop_loss is not None and d.stop_loss <= price:
            raise AnswerRejected(f"stop_loss {d.stop_loss} is not above the price {price} of a SELL")
        if d.take_profit is not None and d.take_profit >= price:
            raise AnswerRejected(f"take_profit {d.take_profit} is not below the price {price} of a SELL")


def parse_decision(text: str) -> LlmDecision:
    """A free-text answer to a decision: the first JSON object in it, validated against the schema."""
    raw = _first_json_object(text)
    if raw is None:
        raise AnswerRejected(f"not JSON: {text[:120]!r}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise AnswerRejected(f"not JSON: {exc.msg} at char {exc.pos}") from None
    return validate_decision(data)


def message_text(content: Any) -> str:
    """The text of a chat message's ``content`` (a string, or a list of content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return str(content)


# ------------------------------------------------------------------------------------------- prompt

SYSTEM_PROMPT = """You are the decision step of an automated trading strategy. You see one instrument's \
latest bars, the indicators computed on them, the strategy's position and its account. Decide what the \
strategy's position should be after this bar.

Answer with ONE JSON object and nothing else, matching this JSON schema:
{schema}

Rules: BUY means "be long `size` of allocated capital", SELL "be short `size`", CLOSE "be flat", HOLD \
"change nothing". stop_loss and take_profit are absolute prices (or null). confidence is between 0 and 1."""


def _num(x: float) -> float | None:
    """Eight significant digits: enough for any venue's tick, and the same text on every run."""
    if not math.isfinite(x):
        return None
    return float(f"{x:.8g}")


def bar_row(ts_ns: int, open_: float, high: float, low: float, close: float, volume: float) -> list[Any]:
    """One bar as the prompt shows it (computed once per bar, however many prompts it appears in)."""
    return [iso(ts_ns), _num(open_), _num(high), _num(low), _num(close), _num(volume)]


def market_state(
    symbol: str,
    bars: Sequence[list[Any]],
    indicators: Mapping[str, float],
    position: Mapping[str, float],
    account: Mapping[str, float],
) -> dict[str, Any]:
    """The compact state the model decides on (``bars`` are ``bar_row`` lists, oldest first); every number
    rounded so that the prompt text (and so the replay cache key) is the same on every run."""
    return {
        "symbol": symbol,
        "time": bars[-1][0] if bars else None,
        "bar_fields": ["time", "open", "high", "low", "close", "volume"],
        "bars": list(bars),
        "indicators": {k: _num(v) for k, v in sorted(indicators.items())},
        "position": {k: _num(v) for k, v in position.items()},
        "account": {k: _num(v) for k, v in account.items()},
    }


@lru_cache(maxsize=16)
def system_prompt(instructions: str = "") -> str:
    """The instructions and the answer schema: the same text for every bar of a run."""
    schema = json.dumps(LlmDecision.model_json_schema(), sort_keys=True)
    system = SYSTEM_PROMPT.format(schema=schema)
    return system + "\n\n" + instructions if instructions else system


def build_prompt(state: Mapping[str, Any], instructions: str = "") -> tuple[str, str]:
    """(system text, user text) of one decision request."""
    user = "Market state (JSON):\n" + json.dumps(state, sort_keys=True, separators=(",", ":"))
    return system_prompt(instructions), user


def prompt_hash(model_id: str, system: str, user: str) -> str:
    return hashlib.sha256("\x1e".join((model_id, system, user)).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------- cache


class DecisionCache:
    """Model answers by (symbol, bar time, prompt hash), in memory and appended to a JSON-lines file.

    The prompt hash covers the model id and the whole prompt (bars, indicators, position, account), so
    a hit is exactly the question asked before: a second backtest over the same bars replays the first
    one's answers without calling the model. Only answers are stored (valid ones, and invalid ones with
    the reason they failed); timeouts, errors and rate limits are conditions of a run, not answers, and
    are asked again next time. A torn last line (a crash mid-write) is skipped on load.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._entries: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.skipped_lines = 0
        if self.path is not None:
            if self.path.is_dir():
                raise StrategyError(f"llm_agent: cache_path {self.path} is a directory, expected a file")
            if not self.path.parent.is_dir():
                raise StrategyError(f"llm_agent: cache_path {self.path}: directory {self.path.parent} does not exist")
            if self.path.exists():
                self._load(self.path)

    def _load(self, path: Path) -> None:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                    key = (rec["symbol"], rec["bar_time"], rec["prompt_hash"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.skipped_lines += 1
                    continue
                if not all(isinstance(k, str) for k in key) or not ("answer" in rec or "invalid" in rec):
                    self.skipped_lines += 1
                    continue
                self._entries[key] = rec

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, symbol: str, bar_time: str, phash: str) -> dict[str, Any] | None:
        return self._entries.get((symbol, bar_time, phash))

    def put(self, symbol: str, bar_time: str, phash: str, model_id: str, *, answer: LlmDecision | None = None,
            invalid: str | None = None) -> None:
        rec: dict[str, Any] = {"symbol": symbol, "bar_time": bar_time, "prompt_hash": phash, "model": model_id}
        if answer is not None:
            rec["answer"] = answer.model_dump()
        else:
            rec["invalid"] = invalid or "invalid"
        with self._lock:
            self._entries[(symbol, bar_time, phash)] = rec
            if self.path is not None:
                # One write per line in append mode: instances sharing the file never interleave a line.
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")


# -------------------------------------------------------------------------------------- rate limit


class RateLimiter:
    """At most ``max_calls`` model calls in any 60 s of wall time (0: no limit)."""

    def __init__(self, max_calls_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_calls = max_calls_per_minute
        self.clock = clock
        self._calls: deque[float] = deque()

    def try_acquire(self) -> bool:
        if self.max_calls <= 0:
            return True
        now = self.clock()
        calls = self._calls
        while calls and now - calls[0] >= 60.0:
            calls.popleft()
        if len(calls) >= self.max_calls:
            return False
        calls.append(now)
        return True


# ----------------------------------------------------------------------------------------- timeout


class CallTimedOut(Exception):
    pass


class CallsStuck(Exception):
    pass


class _Worker:
    """A daemon thread that runs the calls handed to it, one at a time, until retired or idle a minute."""

    IDLE_EXIT_S = 60.0

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="llm-agent-call", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE_EXIT_S)
            except queue.Empty:
                job = None
            if job is None:
                return
            job.run()

    def submit(self, fn: Callable[[], Any]) -> _Job:
        job = _Job(fn)
        self._jobs.put(job)
        return job

    def retire(self) -> None:
        """Exit after the call it is running (a stuck worker serves no further call)."""
        self._jobs.put(None)


class _Job:
    __slots__ = ("done", "error", "fn", "value")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # handed to the caller, whatever it is
            self.error = exc
        finally:
            self.done.set()


class TimeBoxedCaller:
    """Runs a blocking call on a worker thread and waits at most ``timeout_s`` for it.

    A model that hangs cannot stall the bar loop beyond the timeout: its worker is left to finish (or
    not) in the background and the next call gets a new one. One worker is otherwise reused from call
    to call (starting a thread per call was most of a fake model's cost on a busy actor process). Once
    ``max_stuck`` timed-out calls are still running, new calls are refused at once rather than piling up
    threads behind a dead endpoint.
    """

    def __init__(self, timeout_s: float, max_stuck: int = 4) -> None:
        self.timeout_s = timeout_s
        self.max_stuck = max_stuck
        self._stuck: list[threading.Thread] = []
        self._worker: _Worker | None = None

    @property
    def stuck(self) -> int:
        self._stuck = [t for t in self._stuck if t.is_alive()]
        return len(self._stuck)

    def call(self, fn: Callable[[], Any]) -> Any:
        if self.stuck >= self.max_stuck:
            raise CallsStuck(f"{len(self._stuck)} earlier calls still running")
        worker = self._worker
        if worker is None or not worker.thread.is_alive():  # none yet, or it exited idle
            worker = self._worker = _Worker()
        job = worker.submit(fn)
        if not job.done.wait(self.timeout_s):
            worker.retire()
            self._worker = None
            self._stuck.append(worker.thread)
            raise CallTimedOut(f"no answer within {self.timeout_s:g} s")
        if job.error is not None:
            raise job.error
        return job.value
