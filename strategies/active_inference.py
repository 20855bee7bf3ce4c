"""Active Inference agent: infer the market regime bar by bar, hold the exposure with least expected free energy.

The maths lives in ``strategies/active_inference_model.py``; docs/active-inference.md derives it. This
class only feeds closes to the observer and the regime model and turns a change of chosen exposure into
a target signal: long -> BUY, short -> SELL, flat -> CLOSE; an unchanged exposure sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmats.errors import StrategyError
from mmats.model import SignalAction, TradeSignal
from mmats.strategy import IStrategy, StrategyContext
from strategies.active_inference_model import (
    FLAT,
    LONG,
    REGIMES,
    SHORT,
    Decision,
    MarketObserver,
    Preferences,
    RegimeModel,
    decide,
)

_ACTIONS = {LONG: SignalAction.BUY, SHORT: SignalAction.SELL, FLAT: SignalAction.CLOSE}
_NAMES = {LONG: "long", SHORT: "short", FLAT: "flat"}


class ActiveInference(IStrategy):
    """A discrete generative model of regimes; actions minimise expected free energy.

    Deterministic: nothing is sampled (the decision is the most probable exposure under the policy
    posterior), so the same bars always give the same signals, in a backtest and live alike.
    """

    name = "active_inference"
    version = "1.0.0"
    author = "MMATS"
    description = ("Active Inference: Bayesian beliefs over up/down/range regimes from discretised returns "
                   "and volatility, learned online; the exposure minimising expected free energy is held.")
    default_params: ClassVar[Mapping[str, Any]] = {
        "vol_fast": 10, "vol_slow": 100,
        "trend_z": 0.5, "stay_prob": 0.99, "prior_strength": 50.0, "vol_prior_strength": 200.0,
        "learning_rate": 1.0,
        "gain": 1.0, "loss_aversion": 1.5, "switch_cost": 0.25, "precision": 4.0, "horizon": 2,
        "allow_short": False, "size": 1.0,
    }

    def __init__(self) -> None:
        super().__init__()
        self._configured = False
        self._reset()

    def validate_params(self) -> None:
        p = self.params

        def need(ok: bool, text: str) -> None:
            if not ok:
                raise StrategyError(f"active_inference: {text}")

        need(p["vol_fast"] >= 2, f"vol_fast={p['vol_fast']} must be >= 2 bars")
        need(p["vol_slow"] > p["vol_fast"], f"vol_slow={p['vol_slow']} must be greater than vol_fast={p['vol_fast']}")
        need(0 < p["trend_z"] <= 3, f"trend_z={p['trend_z']} must be in (0, 3] standard deviations")
        need(1 / len(REGIMES) < p["stay_prob"] < 1,
             f"stay_prob={p['stay_prob']} must be in (1/3, 1): regimes must persist more than chance")
        need(p["prior_strength"] > 0, f"prior_strength={p['prior_strength']} must be > 0 pseudo-counts")
        need(p["vol_prior_strength"] > 0, f"vol_prior_strength={p['vol_prior_strength']} must be > 0 pseudo-counts")
        need(p["learning_rate"] >= 0, f"learning_rate={p['learning_rate']} must be >= 0 (0: no learning)")
        need(p["gain"] > 0, f"gain={p['gain']} must be > 0 nats per return step")
        need(p["loss_aversion"] >= 1, f"loss_aversion={p['loss_aversion']} must be >= 1")
        need(p["switch_cost"] >= 0, f"switch_cost={p['switch_cost']} must be >= 0 nats")
        need(p["precision"] > 0, f"precision={p['precision']} must be > 0")
        need(p["horizon"] in (1, 2, 3), f"horizon={p['horizon']} must be 1, 2 or 3 steps")
        need(0 < p["size"] <= 1, f"size={p['size']} must be in (0, 1]")
        self._configured = True
        self._reset()

    def _reset(self) -> None:
        p = self.params
        self.observer = MarketObserver(p["vol_fast"], p["vol_slow"])
        self.model = RegimeModel.with_priors(p["trend_z"], p["stay_prob"], p["prior_strength"],
                                             p["vol_prior_strength"], p["learning_rate"])
        self.prefs = Preferences(p["gain"], p["loss_aversion"], p["switch_cost"])
        self.exposures = (LONG, FLAT, SHORT) if p["allow_short"] else (LONG, FLAT)
        self.exposure = FLAT
        self.last_decision: Decision | None = None

    def get_required_indicators(self) -> list[str]:
        if not self._configured:
            self.validate_params()
        return []

    def on_bar(self, context: StrategyContext) -> TradeSignal | None:
        obs = self.observer.update(context.bar.close)
        if obs is None:
            return None
        belief = self.model.update(*obs)
        p = self.params
        decision = decide(belief, RegimeModel.expected(self.model.a_ret), RegimeModel.expected(self.model.b),
                          self.exposure, self.exposures, p["horizon"], self.prefs, p["precision"])
        self.last_decision = decision
        if decision.exposure == self.exposure:
            return None
        self.exposure = decision.exposure
        beliefs = {name: round(float(q), 4) for name, q in zip(REGIMES, belief, strict=True)}
        efe = {_NAMES[e]: round(g, 4) for e, g in decision.efe.items()}
        action = _ACTIONS[decision.exposure]
        return TradeSignal(
            action, context.symbol, p["size"],
            confidence=min(1.0, max(0.0, decision.confidence)),
            reasoning=(f"{_NAMES[decision.exposure]}: P(regime) "
                       + " ".join(f"{k}={v:.2f}" for k, v in beliefs.items())
                       + f"; G {efe}"),
            metadata={"beliefs": beliefs, "efe": efe, "z": round(self.observer.last_z, 4),
                      "vol_ratio": round(self.observer.last_vol_ratio, 4)},
        )

    def on_order_rejected(self, order: object, reason: str) -> None:
        # The new exposure was refused: believe we are flat, so the next decision re-evaluates from there.
        self.exposure = FLAT
