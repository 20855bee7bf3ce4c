"""The LLM agent in the paper actor system: every decision, HOLDs and fallbacks included, reaches the audit
chain with its llm provenance (LangChain's FakeListChatModel; no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.integration.test_runtime_ray import SYMBOL, run_system, stop, system_config

pytest.importorskip("langchain_core")

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

FAKE = "langchain_core.language_models.fake_chat_models.FakeListChatModel"


def answer(action: str, size: float, rationale: str) -> str:
    return json.dumps({"action": action, "size": size, "confidence": 0.6, "rationale": rationale})


def test_paper_audit_chain_carries_every_llm_decision_and_fallback(tmp_path: Path) -> None:
    from adapters.sql_store import make_storage
    from mmats.model import Environment

    params = {"model_class": FAKE, "max_calls_per_minute": 0, "every_n_bars": 3, "indicators": ["RSI_14"],
              "model_kwargs": {"responses": [answer("BUY", 0.5, "up"), "no idea", answer("CLOSE", 0, "flat"),
                                             answer("HOLD", 0, "wait")]}}
    strategies = [{"id": "agent", "ref": "llm_agent", "symbols": [SYMBOL], "params": params}]
    cfg = system_config(strategies, 400, home=str(tmp_path))
    sup, handles = run_system(cfg)
    try:
        health = ray.get(handles["strategies"]["agent"].health.remote())
        orders = ray.get(handles["router"].orders.remote(strategy_id="agent"))
    finally:
        stop(sup, handles)
    assert health["errors_total"] == 0, health
    storage = make_storage(Environment.PAPER, home=str(tmp_path))
    assert storage.verify_audit().ok
    signals = [r.payload for r in storage.audit_records() if r.kind == "signal"]
    assert len(signals) > 60
    llm: list[dict[str, Any]] = [p["metadata"]["llm"] for p in signals]
    assert all(m["model"] == "FakeListChatModel" and m["cached"] is False for m in llm)
    fallbacks = [p for p in signals if p["metadata"]["llm"]["fallback"]]
    assert fallbacks and all(p["action"] == "HOLD" for p in fallbacks)
    assert all(p["metadata"]["llm"]["reason"] == "invalid_answer: not JSON: 'no idea'" for p in fallbacks)
    actions = {p["action"] for p in signals}
    assert actions == {"BUY", "CLOSE", "HOLD"}
    assert any(o["status"] == "FILLED" for o in orders)
    # HOLDs are recorded decisions, not orders: every order comes from a BUY or CLOSE.
    assert len(orders) <= sum(p["action"] != "HOLD" for p in signals)
