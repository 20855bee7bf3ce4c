"""The maths of the Active Inference trading agent: observations, beliefs, learning and expected free energy.

Pure numpy, no strategy or engine types, so each piece can be checked by hand (docs/active-inference.md
derives every formula used here). Three parts:

- ``MarketObserver`` turns closes into two discrete observations per bar: the bar's log return as a
  z-score (5 bins) and the ratio of fast to slow volatility (3 bins).
- ``RegimeModel`` is the generative model: hidden regimes (up, down, range), Dirichlet counts for the
  likelihoods ``a_ret`` / ``a_vol`` and the transitions ``b``, the Bayesian filter and the online learning.
- ``expected_free_energy`` / ``policy_posterior`` score exposure policies (long, flat, short sequences)
  by risk plus ambiguity, and a softmax with precision turns those scores into policy probabilities.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]

REGIMES = ("up", "down", "range")
UP, DOWN, RANGE = 0, 1, 2
#: Standard-normal quintile boundaries: a driftless random walk puts 1/5 of its z-scores in each bin,
#: so "range" is the regime whose return observations carry no directional information.
RET_CUTS = (-0.8416212335729143, -0.2533471031357997, 0.2533471031357997, 0.8416212335729143)
#: Return bins as signed steps: strong down, down, flat, up, strong up.
RET_STEPS = (-2, -1, 0, 1, 2)
#: Fast/slow volatility ratio boundaries: calm, normal, turbulent (about -20 % / +25 % around 1).
VOL_CUTS = (0.8, 1.25)
#: Prior shape of the volatility likelihood, the same in every regime: mostly "normal".
VOL_PRIOR = (0.15, 0.70, 0.15)
#: Exposures an agent may choose; 0 is flat.
LONG, FLAT, SHORT = 1, 0, -1
#: Outcome index of "no P&L" (flat) in the P&L modality, after the five signed return bins.
NONE_OUTCOME = len(RET_STEPS)
_EPS = 1e-16


def _bin(value: float, cuts: tuple[float, ...]) -> int:
    return sum(1 for c in cuts if value >= c)


def normal_bin_probabilities(mean: float, cuts: tuple[float, ...] = RET_CUTS) -> Vector:
    """P(z in each bin) for z ~ N(mean, 1): the prior shape of a regime's return likelihood."""
    cdf = [0.5 * (1.0 + math.erf((c - mean) / math.sqrt(2.0))) for c in cuts]
    edges = [0.0, *cdf, 1.0]
    return np.array([edges[i + 1] - edges[i] for i in range(len(cuts) + 1)], dtype=np.float64)


class MarketObserver:
    """Discretised returns and volatility from closes, one bar at a time (no look-ahead: bar t uses 0..t).

    The return observation is the bar's log return over the slow volatility (a z-score): one bar, so
    successive observations share no returns and the filter may treat them as independent given the
    regime, as its model assumes. Volatilities are exponentially weighted root mean squares of one-bar
    log returns (zero mean, as is usual for returns at these horizons), seeded with the plain mean of
    the first ``vol_slow`` squares.
    """

    def __init__(self, vol_fast: int, vol_slow: int) -> None:
        self._a_fast = 2.0 / (vol_fast + 1)
        self._a_slow = 2.0 / (vol_slow + 1)
        self.warmup_returns = vol_slow
        self._prev_log = math.nan
        self._var_fast = self._var_slow = 0.0
        self._n = 0
        self.last_z = math.nan
        self.last_vol_ratio = math.nan

    def update(self, close: float) -> tuple[int, int] | None:
        """The (return bin, volatility bin) observation of this bar, or None while warming up."""
        if not (close > 0 and math.isfinite(close)):
            raise ValueError(f"active_inference: close {close!r} must be a positive finite price")
        log_close, prev = math.log(close), self._prev_log
        self._prev_log = log_close
        if math.isnan(prev):
            return None
        ret = log_close - prev
        r2 = ret * ret
        self._n += 1
        if self._n <= self.warmup_returns:
            # Plain means seed both averages, so the first emitted ratio is not biased by a zero start.
            self._var_fast += (r2 - self._var_fast) / self._n
            self._var_slow += (r2 - self._var_slow) / self._n
        else:
            self._var_fast += self._a_fast * (r2 - self._var_fast)
            self._var_slow += self._a_slow * (r2 - self._var_slow)
        if self._n < self.warmup_returns:
            return None
        sigma = math.sqrt(self._var_slow)
        self.last_z = ret / sigma if sigma > 0 else 0.0
        self.last_vol_ratio = math.sqrt(self._var_fast) / sigma if sigma > 0 else 1.0
        return _bin(self.last_z, RET_CUTS), _bin(self.last_vol_ratio, VOL_CUTS)


@dataclass
class RegimeModel:
    """Hidden regimes with Dirichlet-count likelihoods and transitions, filtered and learned online.

    Columns are states: ``a_ret[o, s]`` counts return bin ``o`` seen in regime ``s``; ``b[s', s]`` counts
    moves from ``s`` to ``s'``. The expected matrices are the counts normalised per column.
    """

    a_ret: Vector
    a_vol: Vector
    b: Vector
    learning_rate: float = 1.0
    belief: Vector = field(default_factory=lambda: np.full(len(REGIMES), 1.0 / len(REGIMES)))

    @classmethod
    def with_priors(cls, trend_z: float, stay_prob: float, prior_strength: float, vol_prior_strength: float,
                    learning_rate: float) -> RegimeModel:
        """Priors that give the regimes their meaning; learning then refines them.

        Trend regimes expect the return z-score centred at +/- ``trend_z``, the range regime at 0;
        regimes persist with probability ``stay_prob``. The volatility likelihood starts with the same
        shape in every regime and a stronger concentration: a regime that has never been credited keeps
        its prior, so with a weak or ill-shaped volatility prior the first regime believed in would soon
        "explain" normal volatility better than the others and capture the belief for that reason alone
        (a self-reinforcing artefact of online learning, seen on synthetic data with no volatility
        differences between regimes).
        """
        a_ret = np.column_stack([normal_bin_probabilities(trend_z), normal_bin_probabilities(-trend_z),
                                 normal_bin_probabilities(0.0)]) * prior_strength
        a_vol = np.tile(np.array(VOL_PRIOR)[:, None], (1, len(REGIMES))) * vol_prior_strength
        n = len(REGIMES)
        b = np.full((n, n), (1.0 - stay_prob) / (n - 1))
        np.fill_diagonal(b, stay_prob)
        return cls(a_ret=a_ret, a_vol=a_vol, b=b * prior_strength, learning_rate=learning_rate)

    @staticmethod
    def expected(counts: Vector) -> Vector:
        """The mean of a Dirichlet per column: counts over their column total."""
        out: Vector = counts / counts.sum(axis=0, keepdims=True)
        return out

    def update(self, ret_bin: int, vol_bin: int) -> Vector:
        """One bar of Bayesian filtering, then learning: posterior ∝ A[o, :] · (B · prior)."""
        a_ret, a_vol, b = self.expected(self.a_ret), self.expected(self.a_vol), self.expected(self.b)
        prior = self.belief
        likelihood = a_ret[ret_bin] * a_vol[vol_bin]
        posterior = likelihood * (b @ prior)
        total = float(posterior.sum())
        posterior = posterior / total if total > 0 else np.full(len(REGIMES), 1.0 / len(REGIMES))
        if self.learning_rate > 0:
            # Joint posterior of (s_t, s_t-1): it is what a transition count should be credited with.
            joint = likelihood[:, None] * b * prior[None, :]
            joint_total = float(joint.sum())
            if joint_total > 0:
                self.b += self.learning_rate * joint / joint_total
            self.a_ret[ret_bin] += self.learning_rate * posterior
            self.a_vol[vol_bin] += self.learning_rate * posterior
        self.belief = posterior
        return posterior


@dataclass(frozen=True)
class Preferences:
    """Log-preferences over outcomes (nats), before normalisation into the preferred distribution C.

    ``gain`` per return step earned by the position, ``loss_aversion`` times that per step lost, 0 for
    no P&L (flat); a change of exposure costs ``switch_cost``.
    """

    gain: float
    loss_aversion: float
    switch_cost: float

    def log_c_pnl(self) -> Vector:
        steps = np.array([*RET_STEPS, 0], dtype=np.float64)
        log_c = np.where(steps > 0, self.gain * steps, self.loss_aversion * self.gain * steps)
        return _log_softmax(log_c)

    def log_c_turnover(self) -> Vector:
        """Outcome 0: the exposure was kept; outcome 1: it changed (fees and slippage paid)."""
        return _log_softmax(np.array([0.0, -self.switch_cost]))


def _log_softmax(x: Vector) -> Vector:
    shifted = x - x.max()
    out: Vector = shifted - math.log(float(np.exp(shifted).sum()))
    return out


@dataclass(frozen=True)
class EfeTerms:
    """Expected free energy of one policy, with its decomposition summed over the horizon."""

    risk: float
    ambiguity: float
    turnover: float

    @property
    def total(self) -> float:
        return self.risk + self.ambiguity + self.turnover


def step_terms(belief: Vector, a_ret: Vector, b: Vector, exposures: tuple[int, ...], horizon: int,
               log_c: Vector) -> list[dict[int, tuple[float, float]]]:
    """(risk, ambiguity) of holding each exposure at each step ahead, ``log_c`` the P&L preferences.

    What the agent holds changes its P&L, not the market: the predicted regimes ``b^τ · belief`` are the
    same under every policy, so each (step, exposure) pair is scored once and a policy's G is a sum of
    its steps' entries (``efe_of``). The three exposures read one prediction of the market's return
    bins, ``a_ret · q_τ``: long earns them as they are, short mirrored (same probabilities against the
    reversed preferences, and the same column entropies), flat earns "none" for sure (risk −ln C(none),
    no ambiguity). The vectors have three entries: plain floats, as numpy's per-call cost would be most
    of the work.
    """
    a_rows: list[list[float]] = a_ret.tolist()
    b_rows: list[list[float]] = b.tolist()
    lc: list[float] = log_c.tolist()
    n_ret = len(a_rows)
    lc_long, lc_short = lc[:n_ret], lc[n_ret - 1::-1]
    # H of each regime's column of a_ret: the ambiguity of a position in that regime, long or short.
    entropy = [-sum(row[j] * math.log(row[j]) for row in a_rows if row[j] > 0) for j in range(len(b_rows))]
    flat = (-lc[NONE_OUTCOME], 0.0)
    out: list[dict[int, tuple[float, float]]] = []
    qs: list[float] = belief.tolist()
    for _ in range(horizon):
        qs = [_dot(row, qs) for row in b_rows]
        q_ret = [_dot(row, qs) for row in a_rows]
        logs = [math.log(max(q, _EPS)) if q > 0 else 0.0 for q in q_ret]  # 0 · ln 0 = 0
        ambiguity = _dot(entropy, qs)
        terms: dict[int, tuple[float, float]] = {}
        for e in exposures:
            if e == FLAT:
                terms[e] = flat
            else:
                prefs = lc_long if e == LONG else lc_short
                terms[e] = (sum(q * (lq - c) for q, lq, c in zip(q_ret, logs, prefs, strict=True) if q > 0),
                            ambiguity)
        out.append(terms)
    return out


def _dot(x: list[float], y: list[float]) -> float:
    total = 0.0
    for a, b in zip(x, y, strict=True):
        total += a * b
    return total


def efe_of(terms: list[dict[int, tuple[float, float]]], policy: tuple[int, ...], current: int,
           log_c_turn: Vector) -> EfeTerms:
    """A policy's G from the per-step terms of ``step_terms``, plus its turnover from ``current`` on."""
    risk = ambiguity = turnover = 0.0
    previous = current
    for row, exposure in zip(terms, policy, strict=True):
        r, a = row[exposure]
        risk += r
        ambiguity += a
        # The turnover outcome is certain given the policy, so its KL from C is -ln C(outcome).
        turnover += float(-log_c_turn[int(exposure != previous)])
        previous = exposure
    return EfeTerms(risk, ambiguity, turnover)


def expected_free_energy(belief: Vector, a_ret: Vector, b: Vector, policy: tuple[int, ...], current: int,
                         prefs: Preferences) -> EfeTerms:
    """G(π) = Σ_τ KL[Q(o_τ|π) ‖ C] + E_Q(s_τ|π) H[P(o_τ|s_τ)] over the P&L and turnover modalities.

    ``a_ret`` and ``b`` are the expected (normalised) matrices. The market observations themselves
    arrive whatever the agent holds, so their risk and ambiguity are the same for every policy and
    are left out: only the outcomes the policy changes can rank the policies.
    """
    terms = step_terms(belief, a_ret, b, tuple(dict.fromkeys(policy)), len(policy), prefs.log_c_pnl())
    return efe_of(terms, policy, current, prefs.log_c_turnover())


@functools.cache
def policies(exposures: tuple[int, ...], horizon: int) -> tuple[tuple[int, ...], ...]:
    """Every sequence of exposures over the horizon (3 exposures, 2 steps: 9 policies)."""
    return tuple(itertools.product(exposures, repeat=horizon))


@functools.lru_cache(maxsize=256)
def _preference_logs(prefs: Preferences) -> tuple[Vector, Vector]:
    """ln C of the P&L and turnover outcomes: fixed by the parameters, so computed once per agent."""
    return prefs.log_c_pnl(), prefs.log_c_turnover()


@dataclass(frozen=True)
class Decision:
    exposure: int
    confidence: float
    #: marginal probability of each exposure as the next step, keyed by exposure
    probabilities: dict[int, float]
    #: G of the best policy starting with each exposure
    efe: dict[int, float]


def policy_posterior(g: Vector, precision: float) -> Vector:
    """q(π) = softmax(-γ G(π)): precision γ sets how sharply lower free energy wins."""
    out: Vector = np.exp(_log_softmax(-precision * g))
    return out


def decide(belief: Vector, a_ret: Vector, b: Vector, current: int, exposures: tuple[int, ...], horizon: int,
           prefs: Preferences, precision: float) -> Decision:
    """The next exposure: the one with the largest marginal policy probability (ties keep the current one)."""
    pols = policies(exposures, horizon)
    log_c, log_c_turn = _preference_logs(prefs)
    terms = step_terms(belief, a_ret, b, exposures, horizon, log_c)
    g = np.array([efe_of(terms, p, current, log_c_turn).total for p in pols])
    q_pi = policy_posterior(g, precision)
    marginal = {e: 0.0 for e in exposures}
    best_g = {e: math.inf for e in exposures}
    for p, q, gp in zip(pols, q_pi, g, strict=True):
        marginal[p[0]] += float(q)
        best_g[p[0]] = min(best_g[p[0]], float(gp))
    # Ties keep what is held, then prefer flat: a coin flip is no reason to pay for a trade.
    order = sorted(exposures, key=lambda e: (-marginal[e], e != current, e != FLAT))
    chosen = order[0]
    return Decision(chosen, marginal[chosen], marginal, best_g)
