"""Reports for the Evaluate page: the adapter's saved report, an evaluation through the shared scorer,
wrong answers and per-subject rows; plus the latency summary the app's benchmark prints."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.stats import FEW, PAIRED_CI_METHOD, mcnemar, mcnemar_counts, wilson
from ..models.run_record import REPORT_FILE
from .shared_model import scorer_for


def saved_report(adapter_dir: str | Path | None) -> tuple[dict | None, Path | None]:
    """The adapter's eval_report.json (written at training end) and its path, or (None, expected path)."""
    if not adapter_dir:
        return None, None
    path = Path(adapter_dir).expanduser() / REPORT_FILE
    if not path.exists():
        return None, path
    try:
        return json.loads(path.read_text()), path
    except (OSError, ValueError):
        return None, path


def evaluate_rows(loaded, rows: list[dict], *, compare_base: bool = False, progress=None) -> dict:
    """`mcqa_core.evaluation.passes.evaluate` through the shared scorer: its batches take turns with the
    questions other sessions ask meanwhile."""
    from ..evaluation.passes import evaluate

    scorer = scorer_for(loaded)
    return evaluate(loaded, rows, compare_base=compare_base and scorer.has_base, progress=progress, scorer=scorer)


def wrong_answers(report: dict) -> list[dict]:
    """The report's predictions that missed, most confident first (the most instructive mistakes)."""
    wrong = [p for p in report.get("predictions", []) if p.get("pred") != p.get("gold")]
    return sorted(wrong, key=lambda p: -max(p.get("probs") or [0]))


def changed_answers(report: dict) -> dict[str, list[dict]]:
    """The questions whose answer the adapter changed, against the base on the same rows: `fixed` (the base was
    wrong, the adapter right), `broken` (the reverse) and `other` (both wrong, differently); each prediction
    carries `base_pred` and `base_probs`. Empty lists when the report has no base."""
    base = {p.get("id"): p for p in (report.get("base") or {}).get("predictions", [])}
    out: dict[str, list[dict]] = {"fixed": [], "broken": [], "other": []}
    for p in report.get("predictions", []):
        b = base.get(p.get("id"))
        if b is None or b.get("pred") == p.get("pred"):
            continue
        kind = "fixed" if p.get("pred") == p.get("gold") else "broken" if b.get("pred") == p.get("gold") else "other"
        out[kind].append({**p, "base_pred": b.get("pred"), "base_probs": b.get("probs")})
    return out


def letter_spreads(report: dict) -> dict[str, dict]:
    """How often each letter is answered, by this model and (when the report has it) the base, and how often it
    is correct: rows of the table the Evaluate page shows side by side."""
    base = report.get("base")
    name = "adapter answers" if base else "model answers"
    rows = {name: report["pred_spread"]}
    if base:
        rows["base answers"] = base["pred_spread"]
    rows["correct answers"] = report["gold_spread"]
    return rows


def subject_table(report: dict) -> list[dict]:
    """Per-subject accuracy rows with 95 % intervals (and the base model's where the report has it), largest
    subjects first; `few` marks subjects with too few questions to rank."""
    base = (report.get("base") or {}).get("per_subject", {})
    out = []
    for name, v in report.get("per_subject", {}).items():
        ci = v.get("ci") or wilson(round(v["accuracy"] * v["n"]), v["n"])
        row = {
            "subject": name,
            "n": v["n"],
            "accuracy": v["accuracy"],
            "low": ci[0],
            "high": ci[1],
            "few": v.get("few", v["n"] < FEW),
        }
        if base and name in base:
            b = base[name]
            bci = b.get("ci") or wilson(round(b["accuracy"] * b["n"]), b["n"])
            row.update({"base accuracy": b["accuracy"], "base low": bci[0], "base high": bci[1]})
        out.append(row)
    return sorted(out, key=lambda r: (-r["n"], r["subject"]))


def with_statistics(report: dict) -> dict:
    """The report with its intervals and paired tests, computed from its predictions when it was written
    before they were stored (eval_report.json of older adapters)."""
    out = dict(report)
    preds = report.get("predictions") or []
    correct = [p.get("pred") == p.get("gold") for p in preds]
    n = report.get("n") or len(preds)
    if "accuracy_ci" not in out and n:
        out["accuracy_ci"] = wilson(round(report.get("accuracy", 0) * n), n)
        out["always_a_ci"] = wilson(round(report.get("always_a_accuracy", 0) * n), n)
    if "vs_always_a" not in out and preds:
        out["vs_always_a"] = mcnemar(correct, [p.get("gold") == "A" for p in preds])
    for key in ("vs_always_a", "vs_base"):  # written with the old Wald interval, which could contradict its p
        test = out.get(key) or {}
        if test.get("ci_method") != PAIRED_CI_METHOD and {"a_only", "b_only", "n"} <= test.keys():
            out[key] = mcnemar_counts(test["a_only"], test["b_only"], test["n"])
    base = report.get("base")
    if base and "accuracy_ci" not in base and base.get("n"):
        out["base"] = dict(base, accuracy_ci=wilson(round(base.get("accuracy", 0) * base["n"]), base["n"]))
    if base and "vs_base" not in out and base.get("predictions"):
        base_right = {p.get("id"): p.get("pred") == p.get("gold") for p in base["predictions"]}
        paired = [(c, base_right[p.get("id")]) for c, p in zip(correct, preds) if p.get("id") in base_right]
        if paired:
            out["vs_base"] = mcnemar([a for a, _ in paired], [b for _, b in paired])
    return out
