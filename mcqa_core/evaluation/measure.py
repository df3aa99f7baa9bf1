"""The one way a number is measured: `measure(scorer, rows, protocol)` runs every pass the protocol asks for (the
model's answers; the same rows with the adapter switched off; the rows re-asked with their options shuffled, for
position bias; the rows an abstention threshold is chosen on) and returns the complete report, its `meta` written
once. The evaluate, suite and leaderboard commands, the app and the training report all call it.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict

from ..data.prompt import LETTERS, OPTION_KEYS, option_count, shots_of
from ..errors import McqaError
from .clean_subset import shots_overlap_block
from .cloze_scoring import OptionScore
from .eval_rows import EvalRows
from .protocol import EvalProtocol, protocol_card
from .report import build_report
from .report_types import Report
from .scorers import Scorer
from .selective import abstention
from .stats import mcnemar

SHUFFLE_SEED = 0


def _moves(n: int) -> list[tuple[int, ...]]:
    """The reorderings of n options that actually move one (23 for four); the original is asked as well."""
    return [p for p in itertools.permutations(range(n)) if p != tuple(range(n))]


def shuffle_limit(rows: list[dict]) -> int:
    """The most distinct reorderings every row has (23 for four options): the largest K that shuffles sensibly."""
    return min(math.factorial(option_count(r)) for r in rows) - 1 if rows else 0


def permute_options(row: dict, order: tuple[int, ...]) -> dict:
    """The row with option `order[i]` shown at position i, and `cop` following its option."""
    out = dict(row)
    for new_pos, old_pos in enumerate(order):
        out[OPTION_KEYS[new_pos]] = row[OPTION_KEYS[old_pos]]
    out["cop"] = order.index(int(row["cop"]))
    return out


def _chosen_text(row: dict, letter: str) -> str:
    return row[OPTION_KEYS[LETTERS.index(letter)]]


def _progress_over(total: int, progress: Callable[[int, int], None] | None):
    """A per-call progress callback that reports against the total of every pass, for one bar."""
    state = {"offset": 0}

    def for_pass(n_rows: int):
        offset = state["offset"]
        state["offset"] += n_rows
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, total)

    return for_pass


def measure(
    scorer: Scorer,
    data: EvalRows,
    protocol: EvalProtocol,
    *,
    progress: Callable[[int, int], None] | None = None,
    context: dict | None = None,
) -> Report:
    """The report of `protocol` on `data` (`report.build_report`'s keys and `meta`); with `compare_base`, `base`
    (the same rows with the adapter disabled), `vs_base` and `disagreements`; with `shuffle_options=K`,
    `shuffle`; with cloze scoring, `acc_norm` (`base` has its own); with an abstention rule and rows to choose
    it on, `abstain`. `context` (the device, the weights' signature, the suite) joins `meta`. `progress(done,
    total)` counts questions over all passes."""
    rows, k = data.rows, protocol.shuffle_options
    if not rows:
        raise McqaError("no rows to evaluate")
    if k < 0:
        raise McqaError(f"shuffle_options must be 0 or more, got {k}")
    if k > (most := shuffle_limit(rows)):
        raise McqaError(f"shuffle_options {k} is over the {most} distinct orders these rows have")
    if protocol.compare_base and not scorer.has_base:
        raise McqaError(
            "compare_base needs a model with an adapter (load one with --adapter), or a server "
            "that also serves the base model (--base-served-model)"
        )
    n, shots = len(rows), data.shots
    next_pass = _progress_over(n * (1 + int(protocol.compare_base) + k), progress)

    started = time.perf_counter()
    scores = scorer.score(rows, progress=next_pass(n), shots=shots)
    seconds = time.perf_counter() - started
    report = _with_acc_norm(build_report(rows, scores), rows, scores)
    meta = {
        **scorer.describe(),
        "rows_shortened": sum(s.shortened for s in scores),
        "seconds": round(seconds, 2),
        "seconds_per_question": round(seconds / n, 4),
        "split": data.split,
        "source": data.source,
        "rows_invalid_skipped": data.skipped,
        "fewshot": data.fewshot,
        **({"bank": data.bank} if data.bank else {}),
        "eval_protocol": asdict(protocol),
        **(context or {}),
    }
    report["meta"] = meta | {"protocol": protocol_card({"n": n, "meta": meta})}  # the card beside every number

    if protocol.compare_base:
        # the same loaded weights, the adapter switched off: no second model in memory
        base_scores = scorer.score(rows, adapter=False, progress=next_pass(n), shots=shots)
        report["base"] = _with_acc_norm(build_report(rows, base_scores), rows, base_scores)
        report["vs_base"] = mcnemar([bool(s.correct) for s in scores], [bool(s.correct) for s in base_scores])
        if "acc_norm" in report:
            hits = [[bool(s.normed().correct) for s in side] for side in (scores, base_scores)]
            report["acc_norm"]["vs_base"] = mcnemar(*hits)
        report["disagreements"] = [
            {"id": a.id, "adapter_pred": a.pred, "base_pred": b.pred, "gold": a.gold}
            for a, b in zip(scores, base_scores)
            if a.pred != b.pred
        ]

    if near := data.fewshot.get("rows_with_near_duplicate_shots"):
        report["shots_overlap"] = shots_overlap_block(report, near)
    if k:
        each = shots if isinstance(shots, str) else [shots_of(shots, i) for i in range(n) for _ in range(k)]
        report["shuffle"] = _shuffle_report(scorer, rows, scores, k, next_pass(n * k), each)
    if protocol.abstain and data.threshold_rows:
        chosen_on = scorer.score(data.threshold_rows, shots=shots)
        report["abstain"] = abstention(chosen_on, scores, protocol.abstain, data.threshold_source)
    return report


def _with_acc_norm(report: dict, rows: list[dict], scores) -> dict:
    """Cloze scores carry a second rule, lm-eval's acc_norm: its own report (intervals, subjects, calibration)
    under `acc_norm`, with the exact McNemar test against acc on the same questions."""
    if scores and isinstance(scores[0], OptionScore):
        normed = [s.normed() for s in scores]
        report["acc_norm"] = build_report(rows, normed)
        report["acc_norm"]["vs_acc"] = mcnemar([bool(s.correct) for s in normed], [bool(s.correct) for s in scores])
    return report


def _shuffle_report(scorer, rows, scores, k, progress, shots) -> dict:
    rng = random.Random(SHUFFLE_SEED)  # the same permutations on every run, so reports compare
    orders = []
    for row in rows:
        moves = _moves(option_count(row))
        orders.append(rng.sample(moves, k))  # k is at most shuffle_limit(rows)
    permuted = [permute_options(row, order) for row, order_set in zip(rows, orders) for order in order_set]
    shuffled = scorer.score(permuted, progress=progress, shots=shots)
    consistent = 0
    for i, (row, first) in enumerate(zip(rows, scores)):
        texts = {_chosen_text(row, first.pred)}
        texts.update(_chosen_text(permuted[i * k + j], shuffled[i * k + j].pred) for j in range(k))
        consistent += len(texts) == 1
    return {
        "k": k,
        "accuracy_under_shuffle": sum(s.correct for s in shuffled) / len(shuffled),
        # Same option TEXT chosen in the original order and every permutation: 1.0 means no position bias.
        "consistency": consistent / len(rows),
        "seed": SHUFFLE_SEED,
    }
