"""How sure a measured accuracy is: Wilson 95 % intervals, and exact McNemar tests for two answer sets on
the same questions (adapter vs base model, model vs always-"A"), from scipy rather than by hand.

The interval of a paired difference is Fay and Lumbard's (Statistics in Medicine 40:1147, 2021; R's
exact2x2::mcnemarExactDP, by its authors): it excludes 0 exactly when the exact McNemar test rejects, and
unlike an interval conditional on the number of disagreements it counts the uncertainty in that number too.
"""

from __future__ import annotations

import math
from functools import lru_cache

CONFIDENCE = 0.95
FEW = 30  # fewer questions than this: a group's accuracy is shown, but marked as too few to rank
PAIRED_CI_METHOD = "Fay-Lumbard 2021, compatible with the exact McNemar test"
_NODES = 64  # Gauss-Legendre nodes per integral: far finer than the tenth of a point shown


def wilson(correct: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """[low, high] Wilson score interval of correct / n ([nan, nan] for n = 0)."""
    if n == 0:
        return [math.nan, math.nan]
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


@lru_cache(maxsize=1)
def _legendre():
    import numpy as np

    return np.polynomial.legendre.leggauss(_NODES)


def _upper_tail(x: int, m: int) -> float:
    """P(X >= x) for X ~ Bin(m, 1/2): the exact one-sided McNemar p-value for x of m discordant pairs."""
    from scipy.special import bdtrc

    return float(bdtrc(x - 1, m, 0.5)) if m else 1.0


def _lower_bound(x: int, m: int, n: int, tail: float) -> float:
    """Lower limit of the difference (x - (m - x)) / n from x of m discordant pairs among n: the `tail`
    quantile of D = T (2B - 1), T ~ Beta(m + 1, n - m) below 0 and Beta(m, n - m + 1) above (the
    discordant share), B ~ Beta(x, m - x + 1) (its direction). P(D <= 0) is the exact tail P(X >= x), so
    the limit lies above 0 exactly when the one-sided exact test rejects at `tail`."""
    from scipy.optimize import brentq
    from scipy.special import betainc, betaincinv

    if x == 0:  # B is 0, so D = -T
        return -1.0 if m == n else -float(betaincinv(m + 1, n - m, 1 - tail))
    nodes, weights = _legendre()
    at_zero = _upper_tail(x, m)

    def below(d: float) -> float:  # P(D <= d), integrated over T's quantiles
        a, b = (m, n - m + 1) if d > 0 else (m + 1, n - m)
        if d == 0:
            return at_zero
        if b == 0:  # T is 1 when every pair is discordant
            return float(betainc(x, m - x + 1, max(0.5 + d / 2, 0.0)))
        start = float(betainc(a, b, abs(d)))  # T <= |d| puts D below d for d > 0, above it for d < 0
        t = betaincinv(a, b, start + (1 - start) * (nodes + 1) / 2)
        inner = betainc(x, m - x + 1, (0.5 + d / (2 * t)).clip(0.0, 1.0))
        return (start if d > 0 else 0.0) + (1 - start) / 2 * float(weights @ inner)

    positive = at_zero < tail
    root = float(brentq(lambda d: below(d) - tail, *((0.0, 1.0) if positive else (-1.0, 0.0)), xtol=1e-10))
    # The sign is the exact test's, even for a root within brentq's tolerance of 0.
    return max(root, math.ulp(0.0)) if positive else min(root, 0.0)


def mcnemar_counts(a_only: int, b_only: int, n: int, confidence: float = CONFIDENCE) -> dict:
    """The paired comparison from its counts: a right where b is wrong `a_only` times, the reverse `b_only`
    times, of `n` questions. The p-value is exact (twice the smaller binomial tail of the discordant pairs at
    1/2, which is scipy's two-sided binomtest there); the interval is compatible with it."""
    a_only, b_only, n = int(a_only), int(b_only), int(n)
    if min(a_only, b_only) < 0 or a_only + b_only > n or n < 1:
        raise ValueError(f"no such table: a_only={a_only}, b_only={b_only} of n={n}")
    m = a_only + b_only
    tail = (1 - confidence) / 2
    p_value = min(1.0, 2 * min(_upper_tail(a_only, m), _upper_tail(b_only, m)))
    # The upper limit is the lower limit of the same table read the other way round.
    ci = [_lower_bound(a_only, m, n, tail), -_lower_bound(b_only, m, n, tail)]
    return {
        "difference": (a_only - b_only) / n,
        "ci": ci,
        "p_value": p_value,
        "a_only": a_only,
        "b_only": b_only,
        "n": n,
        "test": "McNemar, exact (binomial on the discordant pairs)",
        "ci_method": PAIRED_CI_METHOD,
    }


def mcnemar(a: list[bool], b: list[bool], confidence: float = CONFIDENCE) -> dict:
    """Paired comparison of two answer sets on the same questions: the accuracy difference a - b with its
    interval, the discordant counts, and the exact (binomial) McNemar p-value."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need two answer sets of the same non-zero length, got {len(a)} and {len(b)}")
    a_only = sum(bool(x) and not y for x, y in zip(a, b))
    b_only = sum(bool(y) and not x for x, y in zip(a, b))
    return mcnemar_counts(a_only, b_only, len(a), confidence)


def significant(test: dict, alpha: float = 1 - CONFIDENCE) -> bool:
    return test["p_value"] < alpha


def describe_difference(test: dict, other: str) -> str:
    """The comparison in words, e.g. "+1.8 points over the base model (95 % interval +0.2 to +3.4), p = 0.03"."""
    d, (lo, hi) = test["difference"] * 100, [x * 100 for x in test["ci"]]
    p = test["p_value"]
    p_text = f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"
    if not significant(test):
        return f"not distinguishable from {other} ({d:+.1f} points, 95 % interval {lo:+.1f} to {hi:+.1f}, {p_text})"
    side = "over" if d > 0 else "below"
    return f"{d:+.1f} points {side} {other} (95 % interval {lo:+.1f} to {hi:+.1f}), {p_text}"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest times (m - i + 1), kept monotone and
    at most 1. Rejecting where the adjusted p < alpha holds the family-wise error at alpha over all m tests."""
    m = len(p_values)
    order = sorted(range(m), key=p_values.__getitem__)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
