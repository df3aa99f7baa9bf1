"""Intervals and paired tests against values computed independently (a published worked example, and the
exact binomial sum written out), and the report carrying them."""

from __future__ import annotations

import math

import pytest

from mcqa_core.evaluation.stats import describe_difference, mcnemar, wilson


def test_wilson_matches_newcombes_worked_example():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553 to 0.3662 (method 3, Wilson).
    assert wilson(81, 263) == pytest.approx([0.2553, 0.3662], abs=5e-5)
    assert wilson(0, 10)[0] == 0.0 and 0.27 < wilson(0, 10)[1] < 0.28  # 0/10 -> 0 to 0.2775
    assert all(math.isnan(x) for x in wilson(0, 0))


def _exact_two_sided(k: int, n: int) -> float:
    """Two-sided exact binomial p-value at 1/2, summed by hand."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
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


def test_the_words_say_what_is_and_is_not_significant():
    clear = mcnemar([True] * 20 + [False] * 80, [False] * 20 + [False] * 80)
    assert describe_difference(clear, "the base model").startswith("+20.0 points over the base model (95 % interval")
    assert "p < 0.001" in describe_difference(clear, "the base model")
    tie = mcnemar([True, False] * 20, [False, True] * 20)
    assert describe_difference(tie, "always-A").startswith("not distinguishable from always-A (+0.0 points")


def test_the_report_carries_intervals_tests_and_few_marks():
    from mcqa_core.evaluation.report import build_report
    from mcqa_core.evaluation.scoring import LetterScore

    rows = [{"id": str(i), "subject_name": "Big" if i < 60 else "Small", "question": "q"} for i in range(70)]
    scores = [LetterScore(str(i), [0.7, 0.1, 0.1, 0.1] if i % 2 else [0.1, 0.7, 0.1, 0.1], 1.0,
                          gold="A" if i % 3 else "B") for i in range(70)]
    report = build_report(rows, scores)
    correct = sum(s.correct for s in scores)
    assert report["accuracy_ci"] == pytest.approx(wilson(correct, 70))
    assert report["vs_always_a"]["n"] == 70 and 0 <= report["vs_always_a"]["p_value"] <= 1
    assert report["per_subject"]["Big"]["few"] is False and report["per_subject"]["Small"]["few"] is True
    assert report["per_subject"]["Small"]["ci"] == pytest.approx(
        wilson(sum(s.correct for s in scores[60:]), 10))
