"""active_inference: beliefs converge on synthetic regimes, actions follow them, EFE matches a hand calculation."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from mmats.engine.strategy_host import LiveBar
from mmats.errors import StrategyError
from mmats.model import AccountState, Environment, MarketType, SignalAction, TradeSignal
from mmats.registry import create_strategy
from mmats.research.runconfig import BacktestConfig, run_backtest
from mmats.strategy import IndicatorDict, StrategyContext
from strategies.active_inference import ActiveInference
from strategies.active_inference_model import (
    DOWN,
    FLAT,
    LONG,
    RANGE,
    SHORT,
    UP,
    MarketObserver,
    Preferences,
    RegimeModel,
    decide,
    expected_free_energy,
    normal_bin_probabilities,
)
from tests.conftest import shared_file

T0, MINUTE = 1_704_067_200_000_000_000, 60_000_000_000
N = 300  # bars per regime
SNR = 0.5  # drift per bar in standard deviations: a strong, clean trend
SEEDS = range(6)


def regime_closes(seed: int, sigma: float = 0.01) -> np.ndarray:
    """Three regimes of N bars: drift up, drift down, no drift (Gaussian log returns, seeded)."""
    rng = np.random.default_rng(seed)
    mu = SNR * sigma
    r = np.concatenate([rng.normal(mu, sigma, N), rng.normal(-mu, sigma, N), rng.normal(0.0, sigma, N)])
    return 100.0 * np.exp(np.cumsum(r))


def run_agent(agent: ActiveInference, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[TradeSignal]]:
    """Beliefs and held exposure after each bar (NaN / 0 while warming up), through on_bar as the engines call it."""
    account = AccountState(T0, "USDT", Decimal(10_000), Decimal(10_000))
    beliefs = np.full((len(closes), 3), np.nan)
    exposure = np.zeros(len(closes), dtype=int)
    signals: list[TradeSignal] = []
    for i, c in enumerate(closes):
        bar = LiveBar(("S/USD", T0 + i * MINUTE, float(c), float(c), float(c), float(c), 1.0))
        ctx = StrategyContext(bar, IndicatorDict(), Environment.BACKTEST, "S/USD", MarketType.CRYPTO, "ai",
                              lambda: account)
        sig = agent.on_bar(ctx)
        if sig is not None:
            signals.append(sig)
        if agent.last_decision is not None:
            beliefs[i] = agent.model.belief
        exposure[i] = agent.exposure
    return beliefs, exposure, signals


# Burn-in after each switch. With stay_prob 0.99 leaving a regime costs ln(0.99 / 0.005) ≈ 5.3 nats of
# prior; the expected evidence between adjacent regimes at SNR 0.5 is about 0.1 nats per bar, so the
# belief needs ~50 bars to move. The first regime also waits out the 100-bar volatility warm-up.
WINDOWS = {UP: (150, N), DOWN: (N + 60, 2 * N), RANGE: (2 * N + 60, 3 * N)}
TARGET = {UP: LONG, DOWN: SHORT, RANGE: FLAT}


@pytest.fixture(scope="module")
def runs() -> list[tuple[np.ndarray, np.ndarray, list[TradeSignal]]]:
    out = []
    for seed in SEEDS:
        agent = create_strategy("active_inference", {"allow_short": True})
        assert isinstance(agent, ActiveInference)
        out.append(run_agent(agent, regime_closes(seed)))
    return out


def test_beliefs_converge_to_the_true_regime(runs: list[tuple[np.ndarray, np.ndarray, list[TradeSignal]]]) -> None:
    # Thresholds: chance is 1/3. Averaged over six seeds, after the burn-in, the true regime must hold
    # most of the posterior mass (>= 0.6, nearly twice chance) and be the most probable regime on >= 75 %
    # of bars; each single run must still put clearly more than chance (>= 0.45) on the truth.
    for regime, (lo, hi) in WINDOWS.items():
        mass = [b[lo:hi, regime].mean() for b, _, _ in runs]
        top = [np.mean(b[lo:hi].argmax(axis=1) == regime) for b, _, _ in runs]
        assert np.mean(mass) >= 0.6, (regime, mass)
        assert np.mean(top) >= 0.75, (regime, top)
        assert min(mass) >= 0.45, (regime, mass)


def test_actions_follow_the_regimes(runs: list[tuple[np.ndarray, np.ndarray, list[TradeSignal]]]) -> None:
    # Long in the up regime, short in the down regime, flat (holding off) in the range.
    for regime, (lo, hi) in WINDOWS.items():
        share = [np.mean(e[lo:hi] == TARGET[regime]) for _, e, _ in runs]
        assert np.mean(share) >= 0.75, (regime, share)
    # The signals are the changes of exposure, as target signals.
    for _, e, sigs in runs:
        changes = int(np.count_nonzero(np.diff(e)))
        assert len(sigs) == changes + (1 if e[0] != FLAT else 0)
        assert {s.action for s in sigs} <= {SignalAction.BUY, SignalAction.SELL, SignalAction.CLOSE}
        assert all(0.0 < s.confidence <= 1.0 and set(s.metadata["beliefs"]) == {"up", "down", "range"}
                   for s in sigs)


def test_long_only_agent_is_flat_in_the_down_regime() -> None:
    agent = create_strategy("active_inference")
    assert isinstance(agent, ActiveInference)
    _, e, sigs = run_agent(agent, regime_closes(0))
    lo, hi = WINDOWS[DOWN]
    assert np.mean(e[lo:hi] == FLAT) >= 0.9 and SHORT not in e
    assert SignalAction.SELL not in {s.action for s in sigs}


def test_same_bars_give_the_same_signals() -> None:
    closes = regime_closes(3)
    a = run_agent(create_strategy("active_inference", {"allow_short": True}), closes)  # type: ignore[arg-type]
    b = run_agent(create_strategy("active_inference", {"allow_short": True}), closes)  # type: ignore[arg-type]
    def key(sigs: list[TradeSignal]) -> list[tuple[SignalAction, float, str]]:
        return [(s.action, s.confidence, s.reasoning) for s in sigs]

    assert key(a[2]) == key(b[2]) and a[2]
    assert np.array_equal(a[0], b[0], equal_nan=True)


def test_learning_moves_the_likelihood_towards_the_data() -> None:
    agent = create_strategy("active_inference", {"allow_short": True})
    fixed = create_strategy("active_inference", {"allow_short": True, "learning_rate": 0})
    assert isinstance(agent, ActiveInference) and isinstance(fixed, ActiveInference)
    prior_up = RegimeModel.expected(agent.model.a_ret)[:, UP].copy()
    closes = regime_closes(1)
    run_agent(agent, closes)
    run_agent(fixed, closes)
    learned_up = RegimeModel.expected(agent.model.a_ret)[:, UP]
    # The data's up drift is 0.5 sd per bar, as the prior assumed: the column stays up-skewed, and moved.
    assert learned_up[4] > learned_up[0] and not np.allclose(learned_up, prior_up, atol=1e-3)
    assert np.allclose(RegimeModel.expected(fixed.model.a_ret)[:, UP], prior_up)
    # Transition counts grew by one per observed bar (joint posteriors sum to 1).
    assert agent.model.b.sum() == pytest.approx(fixed.model.b.sum() + (len(closes) - 1 - 99), rel=1e-9)


# ------------------------------------------------------------------------------------------ the maths


def test_belief_update_is_bayes_rule_by_hand() -> None:
    model = RegimeModel.with_priors(trend_z=0.5, stay_prob=0.9, prior_strength=10.0, vol_prior_strength=10.0,
                                    learning_rate=0.0)
    model.belief = np.array([0.5, 0.3, 0.2])
    a_up = normal_bin_probabilities(0.5)
    a_range = normal_bin_probabilities(0.0)
    # Strong-up bin (4), normal volatility (1, same likelihood in every regime so it cancels).
    pred = [0.9 * 0.5 + 0.05 * 0.3 + 0.05 * 0.2, 0.05 * 0.5 + 0.9 * 0.3 + 0.05 * 0.2,
            0.05 * 0.5 + 0.05 * 0.3 + 0.9 * 0.2]
    like = [a_up[4], a_up[0], a_range[4]]  # the down column mirrors the up one
    unnorm = [p * q for p, q in zip(pred, like, strict=True)]
    post = model.update(4, 1)
    assert post == pytest.approx([u / sum(unnorm) for u in unnorm], rel=1e-12)


def test_expected_free_energy_of_a_tiny_two_state_model_by_hand() -> None:
    # Two regimes, five return bins. Column 0 leans up, column 1 is flat-ish.
    a = np.array([[0.1, 0.2], [0.1, 0.2], [0.2, 0.2], [0.2, 0.2], [0.4, 0.2]])
    b = np.array([[0.8, 0.3], [0.2, 0.7]])
    belief = np.array([0.6, 0.4])
    prefs = Preferences(gain=1.0, loss_aversion=2.0, switch_cost=0.5)

    # Preferred outcomes C: softmax over ln C = [-4, -2, 0, 1, 2] for the bins and 0 for "no P&L".
    raw = [-4.0, -2.0, 0.0, 1.0, 2.0, 0.0]
    z = sum(math.exp(x) for x in raw)
    ln_c = [x - math.log(z) for x in raw]
    zt = 1.0 + math.exp(-0.5)
    ln_turn = [-math.log(zt), -0.5 - math.log(zt)]

    # One step long, from flat: predicted state B·q, outcome A·s, risk KL, ambiguity E[H(A)], turnover.
    s1 = [0.8 * 0.6 + 0.3 * 0.4, 0.2 * 0.6 + 0.7 * 0.4]
    q_o = [a[o, 0] * s1[0] + a[o, 1] * s1[1] for o in range(5)]
    risk = sum(q * (math.log(q) - ln_c[o]) for o, q in enumerate(q_o))
    h = [-sum(a[o, s] * math.log(a[o, s]) for o in range(5)) for s in range(2)]
    ambiguity = s1[0] * h[0] + s1[1] * h[1]
    g_long = expected_free_energy(belief, a, b, (LONG,), FLAT, prefs)
    assert g_long.risk == pytest.approx(risk, rel=1e-12)
    assert g_long.ambiguity == pytest.approx(ambiguity, rel=1e-12)
    assert g_long.turnover == pytest.approx(-ln_turn[1], rel=1e-12)
    assert g_long.total == pytest.approx(risk + ambiguity - ln_turn[1], rel=1e-12)

    # Flat: "no P&L" for sure, so risk is -ln C(none) and ambiguity 0; no turnover.
    g_flat = expected_free_energy(belief, a, b, (FLAT,), FLAT, prefs)
    assert g_flat.total == pytest.approx(-ln_c[5] - ln_turn[0], rel=1e-12)
    assert g_flat.ambiguity == 0.0

    # Two steps, short then flat: the bins mirrored, the second step predicted through B twice.
    s2 = [0.8 * s1[0] + 0.3 * s1[1], 0.2 * s1[0] + 0.7 * s1[1]]
    q_short = [a[4 - o, 0] * s1[0] + a[4 - o, 1] * s1[1] for o in range(5)]
    risk_short = sum(q * (math.log(q) - ln_c[o]) for o, q in enumerate(q_short))
    g_two = expected_free_energy(belief, a, b, (SHORT, FLAT), FLAT, prefs)
    expected = (risk_short + ambiguity - ln_turn[1]) + (-ln_c[5] - ln_turn[1])
    assert g_two.total == pytest.approx(expected, rel=1e-12)
    assert s2[0] + s2[1] == pytest.approx(1.0)

    # Action selection: softmax(-precision * G) over the policies, marginal on the first step.
    d = decide(belief, a, b, FLAT, (LONG, FLAT), 1, prefs, precision=2.0)
    p_long = math.exp(-2.0 * g_long.total) / (math.exp(-2.0 * g_long.total) + math.exp(-2.0 * g_flat.total))
    assert d.probabilities[LONG] == pytest.approx(p_long, rel=1e-12)
    assert d.exposure == (LONG if p_long > 0.5 else FLAT)


def _g_by_rolling_each_policy(belief: np.ndarray, a: np.ndarray, b: np.ndarray, policy: tuple[int, ...],
                              current: int, prefs: Preferences) -> float:
    """G(π) the direct way, an independent check of the shared-prediction scoring: every policy rolls the
    regimes forward itself and scores its own P&L matrix (long: a, short: a flipped, flat: "none")."""
    log_c, log_turn = prefs.log_c_pnl(), prefs.log_c_turnover()
    g, qs, previous = 0.0, belief, current
    for e in policy:
        qs = b @ qs
        pnl = np.zeros((a.shape[0] + 1, a.shape[1]))
        if e == LONG:
            pnl[:-1] = a
        elif e == SHORT:
            pnl[:-1] = a[::-1]
        else:
            pnl[-1] = 1.0
        q_o = pnl @ qs
        g += float(sum(q * (math.log(q) - c) for q, c in zip(q_o, log_c, strict=True) if q > 0))
        logs = np.log(np.where(pnl > 0, pnl, 1.0))
        g += float(-(pnl * logs).sum(axis=0) @ qs)
        g += float(-log_turn[int(e != previous)])
        previous = e
    return g


@pytest.mark.parametrize("seed", range(4))
def test_decide_scores_every_policy_as_rolling_it_alone_would(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = RegimeModel.expected(rng.uniform(0.1, 5.0, (5, 3)))
    b = RegimeModel.expected(rng.uniform(0.1, 5.0, (3, 3)))
    belief = rng.dirichlet(np.ones(3))
    prefs = Preferences(1.0, 1.5, 0.25)
    exposures = (LONG, FLAT, SHORT)
    for current in exposures:
        d = decide(belief, a, b, current, exposures, 3, prefs, precision=4.0)
        pols = [(x, y, z) for x in exposures for y in exposures for z in exposures]
        g = np.array([_g_by_rolling_each_policy(belief, a, b, p, current, prefs) for p in pols])
        q = np.exp(-4.0 * (g - g.min()))
        q /= q.sum()
        for e in exposures:
            assert d.efe[e] == pytest.approx(min(gp for p, gp in zip(pols, g, strict=True) if p[0] == e), rel=1e-12)
            assert d.probabilities[e] == pytest.approx(sum(qp for p, qp in zip(pols, q, strict=True) if p[0] == e),
                                                       rel=1e-9, abs=1e-15)


def test_precision_sharpens_confidence_without_changing_the_choice() -> None:
    a = RegimeModel.expected(RegimeModel.with_priors(0.5, 0.99, 50.0, 200.0, 1.0).a_ret)
    b = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]])
    belief = np.array([0.8, 0.1, 0.1])
    prefs = Preferences(1.0, 1.5, 0.25)
    soft = decide(belief, a, b, FLAT, (LONG, FLAT, SHORT), 2, prefs, precision=1.0)
    sharp = decide(belief, a, b, FLAT, (LONG, FLAT, SHORT), 2, prefs, precision=8.0)
    assert soft.exposure == sharp.exposure == LONG
    assert sharp.confidence > soft.confidence > 1 / 3


def test_observer_bins_returns_by_z_score_and_waits_for_its_warm_up() -> None:
    obs = MarketObserver(vol_fast=2, vol_slow=4)
    closes = [100.0, 101.0, 100.0, 101.0, 100.0]
    out = [obs.update(c) for c in closes]
    assert out[:4] == [None, None, None, None]
    # After 4 returns of +-~1 %: sigma ≈ 1 %, the last return -0.995 % is a z of ≈ -1: the strong-down bin.
    assert out[4] is not None and out[4][0] == 0 and obs.last_z == pytest.approx(-1.0, abs=0.01)
    with pytest.raises(ValueError, match="positive finite price"):
        obs.update(0.0)


@pytest.mark.parametrize("params,needle", [
    ({"vol_slow": 5}, "vol_slow=5 must be greater than vol_fast=10"),
    ({"stay_prob": 0.2}, "stay_prob=0.2"),
    ({"trend_z": 0}, "trend_z=0"),
    ({"loss_aversion": 0.5}, "loss_aversion=0.5"),
    ({"horizon": 4}, "horizon=4 must be 1, 2 or 3"),
    ({"precision": 0}, "precision=0"),
    ({"learning_rate": -1}, "learning_rate=-1"),
    ({"switch_cost": -0.1}, "switch_cost=-0.1"),
    ({"prior_strength": 0}, "prior_strength=0"),
    ({"gain": "lots"}, "gain='lots' is not a valid float"),
])
def test_bad_parameters_are_clear_errors(params: dict[str, object], needle: str) -> None:
    with pytest.raises(StrategyError, match="active_inference") as err:
        create_strategy("active_inference", params)
    assert needle in str(err.value)


def test_backtests_on_real_spy_daily_bars() -> None:
    cfg = BacktestConfig(strategy="active_inference", params={"allow_short": True},
                         data=str(shared_file("stock_SPY_1d.parquet")),
                         commission={"model": "percent", "taker_bps": 5})
    res = run_backtest(cfg)
    assert res.summary["reconciled"], res.summary
    assert res.to_dict()["metrics"]["num_trades"] >= 1
