"""Reports for the Evaluate page: the adapter's saved report, an evaluation through the shared scorer,
wrong answers and per-subject rows; plus the latency summary the app's benchmark prints."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.report_types import Report, report_problems
from ..evaluation.stats import FEW, PAIRED_CI_METHOD, mcnemar, mcnemar_counts, wilson
from ..models.run_record import REPORT_FILE
from .shared_model import scorer_for


def saved_report(adapter_dir: str | Path | None) -> tuple[Report | None, Path | None]:
    """The adapter's eval_report.json (written at training end) and its path, or (None, expected path) when it is
    missing or not a report."""
    if not adapter_dir:
        return None, None
    path = Path(adapter_dir).expanduser() / REPORT_FILE
    if not path.exists():
        return None, path
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, path
    return (None if report_problems(report) else report), path


def evaluate_rows(
    loaded,
    rows: list[dict],
    *,
    compare_base: bool = False,
    progress=None,
    shots: int = 0,
    shot_selection: str = "random",
    scoring: str = "letter",
    split: str = "heldout",
    bank=None,
    data_dir=None,
) -> tuple[dict, list[dict]]:
    """`measure` through the shared scorer of the `scoring` kind (its batches take turns with the questions other
    sessions ask meanwhile), with `shots` examples (`shot_selection`) from `bank`'s other rows or MedMCQA's.
    Returns the report and the rows reported (a bank's examples are never among them)."""
    from ..evaluation.eval_rows import given_rows
    from ..evaluation.measure import measure
    from ..evaluation.protocol import EvalProtocol

    scorer = scorer_for(loaded, scoring)
    source = bank.source if bank is not None else "MedMCQA"
    protocol = EvalProtocol(
        split=split,
        source=source if bank is not None else None,
        shots=shots,
        shot_selection=shot_selection,
        scoring=scoring,
        compare_base=compare_base and scorer.has_base,
    )
    pool = bank.rows if bank is not None else None
    data = given_rows(rows, protocol, split=split, source=source, pool=pool, bank=bank, data_dir=data_dir)
    return measure(scorer, data, protocol, progress=progress), data.rows


def rule_view(report: dict, rule: str) -> dict:
    """A cloze report as drawn under one rule: itself (acc), or its acc_norm part with the base's acc_norm and
    their paired test in the places the views read."""
    if rule != "acc_norm" or "acc_norm" not in report:
        return report
    view = dict(report["acc_norm"], meta=dict(report.get("meta") or {}, rule="acc_norm"))
    if report.get("base"):
        view |= {"base": report["base"]["acc_norm"], "vs_base": report["acc_norm"]["vs_base"]}
        view["disagreements"] = report.get("disagreements", [])
    return view


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


def suite_summaries(folder: str | Path | None = None) -> list[tuple[Path, dict]]:
    """The suite summaries under the reports folder (`mcqa-eval --suite`), newest first."""
    from ..evaluation.report import reports_dir
    from ..evaluation.suite import SUMMARY_FILE

    found = []
    for path in Path(folder or reports_dir()).glob(f"*/{SUMMARY_FILE}"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("kind") == "suite":
            found.append((path, summary))
    return sorted(found, key=lambda ps: ps[0].stat().st_mtime, reverse=True)


def suite_rows(summary: dict) -> list[dict]:
    """The suite table as rows: each set's accuracy and interval, the base's and the paired test where scored,
    the reason where not, then the macro average."""
    out = []
    for e in summary.get("sets", []):
        row = {"set": e["name"], "n": e.get("n"), "accuracy": e.get("accuracy")}
        row["interval"] = _interval(e.get("accuracy_ci"))
        if "acc_norm" in e:
            row |= {"acc_norm": e["acc_norm"], "acc_norm interval": _interval(e.get("acc_norm_ci"))}
        if "base_accuracy" in e:
            row |= {"base": e["base_accuracy"], "base interval": _interval(e.get("base_ci"))}
            row |= {"difference (points)": e["vs_base"]["difference"] * 100, "p": e["vs_base"]["p_value"]}
        row["status"] = "scored" if e.get("status") == "scored" else e.get("reason")
        out.append(row)
    macro, base = summary.get("macro"), summary.get("macro_base")
    if macro:
        row = {"set": f"macro average ({macro['sets']} sets)", "accuracy": macro["accuracy"]}
        row["interval"] = _interval(macro["ci"])
        if base:
            row |= {"base": base["accuracy"], "base interval": _interval(base["ci"])}
            row["difference (points)"] = (macro["accuracy"] - base["accuracy"]) * 100
        out.append(row | {"status": "normal approximation over the sets"})
    return out


def _interval(ci) -> str | None:
    return f"{ci[0]:.1%} to {ci[1]:.1%}" if ci else None


def suggested_threshold(report: dict | None) -> tuple[float, str] | None:
    """A confidence below which Ask abstains, and where it comes from: the report's --abstain threshold (chosen
    on the dev slice), else the confidence at which the report answered 80 % of its questions."""
    if not report:
        return None
    ab = report.get("abstain") or {}
    if ab.get("threshold") is not None and ab.get("reported"):
        r = ab["reported"]
        return ab["threshold"], (
            f"chosen on {ab['chosen_on']} for {ab['rule']}: on the report's {report['n']} questions it answers "
            f"{r['coverage']:.0%}, {r['accuracy']:.0%} of them right"
        )
    at = ((report.get("risk_coverage") or {}).get("at") or {}).get("80%")
    if not at or "threshold" not in at:
        return None
    return at["threshold"], (
        f"the report's 80 % coverage: its {at['k']} most confident of {report['n']} questions were "
        f"{at['accuracy']:.0%} right"
    )
