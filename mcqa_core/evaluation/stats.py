"""How sure a measured accuracy is: Wilson 95 % intervals, and exact McNemar tests for two answer sets on
the same questions (adapter vs base model, model vs always-"A"), from scipy rather than by hand.

The interval of a paired difference is the Wald interval for paired proportions (Agresti, "Categorical
Data Analysis", 10.1): simple, and within a few tenths of a point of the score-based ones at n >= 100.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95
FEW = 30  # fewer questions than this: a group's accuracy is shown, but marked as too few to rank


def wilson(correct: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """[low, high] Wilson score interval of correct / n ([nan, nan] for n = 0)."""
    if n == 0:
        return [math.nan, math.nan]
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def mcnemar(a: list[bool], b: list[bool], confidence: float = CONFIDENCE) -> dict:
    """Paired comparison of two answer sets on the same questions: the accuracy difference a - b with its
    interval, the discordant counts, and the exact (binomial) McNemar p-value."""
    from scipy.stats import binomtest, norm

    if len(a) != len(b) or not a:
        raise ValueError(f"need two answer sets of the same non-zero length, got {len(a)} and {len(b)}")
    n = len(a)
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    discordant = a_only + b_only
    p_value = binomtest(a_only, discordant, 0.5).pvalue if discordant else 1.0
    diff = (a_only - b_only) / n
    se = math.sqrt(max(discordant - (a_only - b_only) ** 2 / n, 0.0)) / n
    z = norm.ppf(0.5 + confidence / 2)
    ci = [float(max(-1.0, diff - z * se)), float(min(1.0, diff + z * se))]
    return {"difference": diff, "ci": ci, "p_value": float(p_value),
            "a_only": a_only, "b_only": b_only, "n": n, "test": "McNemar, exact (binomial on the discordant pairs)"}


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
