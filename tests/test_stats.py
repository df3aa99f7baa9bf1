"""Intervals and paired tests against values computed independently (a published worked example, the exact
binomial sum written out, a Monte Carlo run of the paired interval's definition), their agreement with each
other on every small table, and the report carrying them."""

from __future__ import annotations

import math

import pytest

from mcqa_core.evaluation.stats import describe_difference, mcnemar, mcnemar_counts, significant, wilson


def test_wilson_matches_newcombes_worked_example():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553 to 0.3662 (method 3, Wilson).
    assert wilson(81, 263) == pytest.approx([0.2553, 0.3662], abs=5e-5)
    assert wilson(0, 10)[0] == 0.0 and 0.27 < wilson(0, 10)[1] < 0.28  # 0/10 -> 0 to 0.2775
    assert all(math.isnan(x) for x in wilson(0, 0))


def _exact_two_sided(k: int, n: int) -> float:
    """Two-sided exact binomial p-value at 1/2, summed by hand."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("a_only,b_only", [(10, 0), (7, 3), (12, 12), (1, 9), (30, 18)])
def test_mcnemar_is_the_exact_binomial_on_discordant_pairs(a_only, b_only):
    same = 50
    a = [True] * a_only + [False] * b_only + [True] * same + [False] * same
    b = [False] * a_only + [True] * b_only + [True] * same + [False] * same
    test = mcnemar(a, b)
    assert (test["a_only"], test["b_only"], test["n"]) == (a_only, b_only, len(a))
    assert test["p_value"] == pytest.approx(_exact_two_sided(a_only, a_only + b_only), rel=1e-9)
    assert test["difference"] == pytest.approx((a_only - b_only) / len(a))
    lo, hi = test["ci"]
    assert lo < test["difference"] < hi or a_only == b_only


def _agrees(test: dict) -> bool:
    lo, hi = test["ci"]
    return (lo <= 0 <= hi) == (test["p_value"] >= 0.05) and lo <= test["difference"] <= hi and -1 <= lo < hi <= 1


def test_the_paired_interval_excludes_zero_exactly_when_the_exact_test_rejects_on_every_small_table():
    tables = [(a, b, n) for a in range(41) for b in range(41) for n in (max(a + b, 1), 100)]
    for a, b, n in tables:
        test = mcnemar_counts(a, b, n)
        assert _agrees(test), (a, b, n, test)
        assert test["p_value"] == pytest.approx(_exact_two_sided(a, a + b), rel=1e-9), (a, b)


def test_the_paired_interval_agrees_with_the_test_at_the_edge_of_significance_on_large_tables():
    from scipy.stats import binom

    for m in (50, 137, 400, 1074, 3000):
        critical = int(binom.isf(0.025, m, 0.5))  # the one-sided tail crosses 2.5 % between these counts
        for a in range(critical - 2, critical + 3):
            for n in (m, 4 * m):
                assert _agrees(mcnemar_counts(a, m - a, n)), (a, m, n)
                assert _agrees(mcnemar_counts(m - a, a, n)), (m - a, m, n)


def test_the_paired_interval_is_its_definition_computed_by_simulation():
    # Fay and Lumbard (2021): the lower limit is the 2.5 % quantile of T (2B - 1), B ~ Beta(x, m - x + 1), T ~
    # Beta(m, n - m + 1) above 0 and Beta(m + 1, n - m) below; the upper limit mirrors it.
    import numpy as np

    rng = np.random.default_rng(0)
    draws = 400_000
    for x, m, n in [(1, 7, 32), (15, 20, 20), (40, 60, 1074), (9, 11, 161)]:
        b = rng.beta(x, m - x + 1, draws)
        t_low = rng.beta(m, n - m + 1, draws)
        t_high = rng.beta(m + 1, n - m, draws) if n > m else np.ones(draws)
        lower = min(np.quantile(t_low * (2 * b - 1), 0.025), np.quantile(t_high * (2 * b - 1), 0.025))
        assert mcnemar_counts(x, m - x, n)["ci"][0] == pytest.approx(lower, abs=2e-3), (x, m, n)


def test_the_issues_contradictions_cannot_happen_any_more():
    # 32 questions, 1 vs 6 discordant: a Wald interval of -30.9 to -0.4 beside p = 0.12.
    test = mcnemar_counts(1, 6, 32)
    assert test["p_value"] == pytest.approx(0.125) and test["ci"][0] < 0 < test["ci"][1]
    assert describe_difference(test, "the base model").startswith("not distinguishable from the base model")
    # 100 questions answered alike: an honest interval, as wide as 0 disagreements in 100 allow, not +0.0 to +0.0.
    same = mcnemar([True] * 40 + [False] * 60, [True] * 40 + [False] * 60)
    upper = 1 - 0.025 ** (1 / 100)  # Clopper-Pearson upper limit of 0 of 100
    assert same["p_value"] == 1.0 and same["ci"] == pytest.approx([-upper, upper])
    assert "95 % interval -3.6 to +3.6, p = 1" in describe_difference(same, "the base model")
    assert not significant(same) and significant(mcnemar_counts(10, 0, 10))


def test_the_words_say_what_is_and_is_not_significant():
    clear = mcnemar([True] * 20 + [False] * 80, [False] * 20 + [False] * 80)
    assert describe_difference(clear, "the base model").startswith("+20.0 points over the base model (95 % interval")
    assert "p < 0.001" in describe_difference(clear, "the base model")
    tie = mcnemar([True, False] * 20, [False, True] * 20)
    assert describe_difference(tie, "always-A").startswith("not distinguishable from always-A (+0.0 points")


def test_the_report_carries_intervals_tests_and_few_marks():
    from mcqa_core.evaluation.letter_scoring import LetterScore
    from mcqa_core.evaluation.report import build_report

    rows = [{"id": str(i), "subject_name": "Big" if i < 60 else "Small", "question": "q"} for i in range(70)]
    scores = [
        LetterScore(str(i), [0.7, 0.1, 0.1, 0.1] if i % 2 else [0.1, 0.7, 0.1, 0.1], 1.0, gold="A" if i % 3 else "B")
        for i in range(70)
    ]
    report = build_report(rows, scores)
    correct = sum(s.correct for s in scores)
    assert report["accuracy_ci"] == pytest.approx(wilson(correct, 70))
    assert report["vs_always_a"]["n"] == 70 and 0 <= report["vs_always_a"]["p_value"] <= 1
    assert report["per_subject"]["Big"]["few"] is False and report["per_subject"]["Small"]["few"] is True
    assert report["per_subject"]["Small"]["ci"] == pytest.approx(wilson(sum(s.correct for s in scores[60:]), 10))


def test_a_report_saved_before_shows_the_compatible_interval_and_the_base_models():
    from mcqa_core.service.reports import with_statistics

    wald = {"difference": -5 / 32, "ci": [-0.309, -0.004], "p_value": 0.125, "a_only": 1, "b_only": 6, "n": 32}
    old = {
        "n": 32,
        "accuracy": 0.25,
        "accuracy_ci": wilson(8, 32),
        "always_a_accuracy": 0.4,
        "always_a_ci": wilson(13, 32),
        "vs_always_a": wald,
        "vs_base": dict(wald),
        "base": {"n": 32, "accuracy": 0.40625},
    }
    shown = with_statistics(old)
    for key in ("vs_always_a", "vs_base"):
        assert shown[key] == mcnemar_counts(1, 6, 32) and shown[key]["ci"][0] < 0 < shown[key]["ci"][1]
    assert shown["base"]["accuracy_ci"] == pytest.approx(wilson(13, 32))
    assert old["vs_always_a"] is wald and "accuracy_ci" not in old["base"]  # the saved dict is left as read
