"""Answer or abstain, and calibration you can see: the risk-coverage curve (the accuracy of the k most confident
answers, for every k), accuracy at fixed coverages with intervals, a confidence threshold chosen on other rows
and applied unchanged, the reliability diagram's bins and the Brier score."""

from __future__ import annotations

from .stats import wilson

COVERAGES = (0.5, 0.8, 0.9)  # the coverages every report states accuracy at
CURVE_POINTS = 100  # the curve is kept at this many coverages (1 % steps), not at every k
RELIABILITY_BINS = 10


def _ranked(confidences: list[float], correct: list[bool]) -> list[bool]:
    """Answers from the most confident down; ties keep the report's row order (stable)."""
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    return [bool(correct[i]) for i in order]


def risk_coverage(confidences: list[float], correct: list[bool]) -> dict:
    """`curve`: [coverage, accuracy of the most confident answers at it] at 1 % steps (the exact k = ceil(c n));
    `at`: accuracy with its Wilson interval at each of COVERAGES; `aurc`: the area under the risk (1 - accuracy)
    against coverage over every k (lower is better: confident answers are the right ones)."""
    n = len(confidences)
    if not n:
        return {"curve": [], "at": {}, "aurc": None}
    hits, running = _ranked(confidences, correct), []
    confs = sorted(confidences, reverse=True)
    total = 0
    for h in hits:
        total += h
        running.append(total)

    def top(k: int) -> tuple[int, int]:
        return running[k - 1], k

    curve = []
    for step in range(1, CURVE_POINTS + 1):
        k = max(1, -(-step * n // CURVE_POINTS))
        right, k = top(k)
        curve.append([round(k / n, 4), round(right / k, 4)])
    at = {}
    for c in COVERAGES:
        right, k = top(max(1, -(-round(c * 1000) * n // 1000)))
        # threshold: the k-th answer's confidence (answering at or above it keeps at least these k)
        at[f"{c:.0%}"] = {"k": k, "accuracy": right / k, "ci": wilson(right, k), "threshold": confs[k - 1]}
    aurc = sum(1 - running[k - 1] / k for k in range(1, n + 1)) / n
    return {"curve": curve, "at": at, "aurc": round(aurc, 4)}


def threshold_for(confidences: list[float], correct: list[bool], *, accuracy=None, coverage=None) -> float | None:
    """The confidence threshold that, on these rows, keeps `coverage` of them, or the lowest threshold whose kept
    answers are at least `accuracy` right (None when no threshold reaches it)."""
    ranked = sorted(zip(confidences, correct), key=lambda p: -p[0])
    if coverage is not None:
        k = max(1, min(len(ranked), -(-round(coverage * 1000) * len(ranked) // 1000)))
        return ranked[k - 1][0]
    best, right = None, 0
    for k, (conf, hit) in enumerate(ranked, 1):
        right += bool(hit)
        if right / k >= accuracy and (k == len(ranked) or ranked[k][0] < conf):  # never split tied confidences
            best = conf
    return best


def at_threshold(confidences: list[float], correct: list[bool], threshold: float) -> dict:
    """What answering only at or above `threshold` gives on these rows: coverage and accuracy, each with its
    interval (abstentions are neither right nor wrong)."""
    kept = [bool(h) for c, h in zip(confidences, correct) if c >= threshold]
    n, k = len(confidences), len(kept)
    return {
        "threshold": threshold,
        "answered": k,
        "coverage": k / n if n else float("nan"),
        "coverage_ci": wilson(k, n),
        "accuracy": sum(kept) / k if k else float("nan"),
        "accuracy_ci": wilson(sum(kept), k),
    }


def reliability(confidences: list[float], correct: list[bool], bins: int = RELIABILITY_BINS) -> list[dict]:
    """Equal-width confidence bins (the ECE's): each with its count, mean confidence and accuracy (empty bins
    are listed with n = 0)."""
    out = [{"low": b / bins, "high": (b + 1) / bins, "n": 0, "confidence": None, "accuracy": None} for b in range(bins)]
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidences):
        members[min(int(c * bins), bins - 1)].append(i)
    for b, idx in enumerate(members):
        if idx:
            out[b] |= {
                "n": len(idx),
                "confidence": sum(confidences[i] for i in idx) / len(idx),
                "accuracy": sum(bool(correct[i]) for i in idx) / len(idx),
            }
    return out


def brier(probs: list[list[float]], gold: list[int]) -> float:
    """The multi-class Brier score: the mean over questions of the squared distance between the probabilities and
    the one-hot answer (0 is perfect; always 1/k on k options gives 1 - 1/k)."""
    if not probs:
        return float("nan")
    return sum(sum((p - (j == g)) ** 2 for j, p in enumerate(ps)) for ps, g in zip(probs, gold)) / len(probs)


def parse_rule(rule: str) -> tuple[str, float] | None:
    """ "coverage=0.8" or "accuracy=0.6" as (kind, target); None when it is neither."""
    kind, _, value = (rule or "").partition("=")
    try:
        target = float(value)
    except ValueError:
        return None
    return (kind, target) if kind in ("coverage", "accuracy") and 0 < target <= 1 else None


def abstention(dev: list, reported: list, rule: str, chosen_on: str) -> dict:
    """The threshold `rule` picks on the `dev` scores, applied unchanged to the `reported` ones (LetterScores)."""
    kind, target = parse_rule(rule)
    conf = [s.confidence for s in dev]
    hits = [bool(s.correct) for s in dev]
    threshold = threshold_for(conf, hits, **{kind: target})
    out = {"rule": rule, "chosen_on": chosen_on, "dev_rows": len(dev), "threshold": threshold}
    if threshold is None:
        return out | {"reason": f"no threshold reaches {kind} {target:.0%} on {chosen_on}"}
    out["dev"] = at_threshold(conf, hits, threshold)
    out["reported"] = at_threshold([s.confidence for s in reported], [bool(s.correct) for s in reported], threshold)
    return out
