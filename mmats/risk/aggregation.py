"""Combining signals that several strategies send for the same symbol in the same bar.

The result is again a ``TradeSignal`` (a target exposure), so everything downstream is unchanged, plus
its attribution: which strategies produced it and with what share, so P&L and rejections can be
traced back. Output order is deterministic (symbols in first-seen order, strategies sorted), which
the backtest/paper parity depends on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from mmats.model import SignalAction, TradeSignal


class AggregationMode(StrEnum):
    CONSENSUS = "CONSENSUS"
    WEIGHTED = "WEIGHTED"
    PRIORITY = "PRIORITY"
    INDEPENDENT = "INDEPENDENT"


@dataclass(frozen=True, slots=True)
class AggregatedSignal:
    signal: TradeSignal
    strategies: tuple[str, ...]
    shares: tuple[float, ...]
    mode: AggregationMode

    @property
    def symbol(self) -> str:
        return self.signal.symbol

    def attribution(self) -> dict[str, float]:
        return dict(zip(self.strategies, self.shares, strict=True))


def aggregate(
    signals: Sequence[TradeSignal],
    mode: AggregationMode | str = AggregationMode.INDEPENDENT,
    *,
    consensus_threshold: float = 0.5,
    weights: Mapping[str, float] | None = None,
    priorities: Mapping[str, int] | None = None,
    min_net_exposure: float = 0.05,
) -> list[AggregatedSignal]:
    """One bar's signals in, the signals to act on out. HOLDs are ignored.

    CONSENSUS: act if strictly more than ``consensus_threshold`` of the strategies agree on a direction.
    WEIGHTED: target = sum(weight x confidence x target) / sum(weight x confidence); |target| below
    ``min_net_exposure`` means flat. PRIORITY: the highest priority strategy wins (ties: strategy id).
    INDEPENDENT: every signal stands alone.
    """
    m = AggregationMode(str(mode).upper())
    groups: dict[str, list[TradeSignal]] = {}
    for s in signals:
        if s.action is not SignalAction.HOLD:
            groups.setdefault(s.symbol, []).append(s)
    out: list[AggregatedSignal] = []
    for group in groups.values():
        group = sorted(group, key=lambda s: (s.strategy_id, s.signal_id))
        if m is AggregationMode.INDEPENDENT:
            out += [AggregatedSignal(s, (s.strategy_id,), (1.0,), m) for s in group]
        elif m is AggregationMode.PRIORITY:
            pr = priorities or {}
            best = max(group, key=lambda s: (pr.get(s.strategy_id, 0), _neg(s.strategy_id)))
            out.append(AggregatedSignal(best, (best.strategy_id,), (1.0,), m))
        elif m is AggregationMode.CONSENSUS:
            agg = _consensus(group, consensus_threshold)
            if agg is not None:
                out.append(agg)
        else:
            agg = _weighted(group, weights or {}, min_net_exposure)
            if agg is not None:
                out.append(agg)
    return out


def _neg(text: str) -> tuple[int, ...]:
    """Sort key that makes the lexicographically *smallest* id win a max()."""
    return tuple(-ord(c) for c in text)


def _direction(s: TradeSignal) -> int:
    return 1 if s.action is SignalAction.BUY else (-1 if s.action is SignalAction.SELL else 0)


def _combined_id(mode: AggregationMode, group: Sequence[TradeSignal]) -> str:
    key = "|".join(f"{s.strategy_id}:{s.signal_id}" for s in group)
    return f"{mode.value.lower()}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _consensus(group: list[TradeSignal], threshold: float) -> AggregatedSignal | None:
    votes: dict[int, list[TradeSignal]] = {}
    for s in group:
        votes.setdefault(_direction(s), []).append(s)
    ranked = sorted(votes.items(), key=lambda kv: -len(kv[1]))
    if len(ranked) > 1 and len(ranked[0][1]) == len(ranked[1][1]):
        return None
    direction, agree = ranked[0]
    if len(agree) / len(group) <= threshold:
        return None
    n = len(agree)
    base = agree[0]
    stops = [s.stop_loss for s in agree if s.stop_loss is not None]
    targets = [s.take_profit for s in agree if s.take_profit is not None]
    sig = replace(
        base,
        strategy_id="agg:consensus",
        signal_id=_combined_id(AggregationMode.CONSENSUS, group),
        position_size=sum(s.position_size for s in agree) / n,
        confidence=sum(s.confidence for s in agree) / n,
        stop_loss=(max(stops) if direction > 0 else min(stops)) if stops and direction else None,
        take_profit=(min(targets) if direction > 0 else max(targets)) if targets and direction else None,
        reasoning=f"consensus of {n}/{len(group)}: " + ", ".join(s.strategy_id for s in agree),
        metadata={"attribution": {s.strategy_id: 1 / n for s in agree}},
    )
    return AggregatedSignal(sig, tuple(s.strategy_id for s in agree), tuple(1 / n for _ in agree),
                            AggregationMode.CONSENSUS)


def _weighted(group: list[TradeSignal], weights: Mapping[str, float], min_net: float) -> AggregatedSignal | None:
    ws = [weights.get(s.strategy_id, 1.0) * s.confidence for s in group]
    total = sum(ws)
    if total <= 0:
        return None
    net = sum(w * s.target_exposure for w, s in zip(ws, group, strict=True)) / total
    shares = tuple(w / total for w in ws)
    strat_w = [weights.get(s.strategy_id, 1.0) for s in group]
    conf = sum(w * s.confidence for w, s in zip(strat_w, group, strict=True)) / (sum(strat_w) or 1.0)
    if abs(net) < min_net:
        action, size = SignalAction.CLOSE, 0.0
    else:
        action, size = (SignalAction.BUY if net > 0 else SignalAction.SELL), min(abs(net), 1.0)
    sig = TradeSignal(
        action=action, symbol=group[0].symbol, position_size=size, confidence=min(max(conf, 0.0), 1.0),
        reasoning=f"weighted target {net:+.3f} from " + ", ".join(s.strategy_id for s in group),
        metadata={"attribution": dict(zip((s.strategy_id for s in group), shares, strict=True))},
        strategy_id="agg:weighted", signal_id=_combined_id(AggregationMode.WEIGHTED, group),
    )
    return AggregatedSignal(sig, tuple(s.strategy_id for s in group), shares, AggregationMode.WEIGHTED)
