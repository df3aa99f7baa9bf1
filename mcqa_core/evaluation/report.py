"""The accuracy report: how often the model is right, where, and how sure it is.

`build_report(rows, scores)` turns letter scores (`mcqa_core.evaluation.letter_scoring.score_rows`) into a plain
dict that the CLI writes as JSON and the app draws; its keys are `report_types.AccuracyReport`'s.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from ..data.prompt import LETTERS
from ..models.run_record import measured_accuracy
from .report_types import AccuracyReport
from .selective import brier, reliability, risk_coverage
from .stats import FEW, describe_difference, mcnemar, wilson

REPORTS_DIR = "reports"  # the default home of mcqa-eval's reports (ignored by git), created on first use
REPORTS_DIR_ENV = "MCQA_REPORTS_DIR"


def reports_dir() -> Path:
    """Where mcqa-eval writes reports by default and the app looks for suites: $MCQA_REPORTS_DIR, else reports/."""
    import os

    return Path(os.environ.get(REPORTS_DIR_ENV) or REPORTS_DIR)


ECE_BINS = 10
QUESTION_CHARS = 200  # enough to recognise a question in the report without copying the data set


def _share(counts: Counter, n: int, labels) -> dict:
    return {L: (counts[L] / n if n else 0.0) for L in labels}


def _grouped_accuracy(rows, scores, key: str) -> dict:
    groups: dict[str, list[bool]] = defaultdict(list)
    for row, s in zip(rows, scores):
        groups[str(row.get(key) or "unknown")].append(bool(s.correct))
    # Largest groups first: the small ones are the least trustworthy and read last.
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {
        name: {
            "n": len(hits),
            "accuracy": sum(hits) / len(hits),
            "ci": wilson(sum(hits), len(hits)),
            "few": len(hits) < FEW,
        }
        for name, hits in ordered
    }


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of (bin share) x |bin accuracy - bin mean confidence|.

    A confidence of exactly 1.0 falls in the last bin; empty bins contribute nothing.
    """
    n = len(confidences)
    if n == 0:
        return float("nan")
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(confidences):
        members[min(int(c * bins), bins - 1)].append(i)
    ece = 0.0
    for idx in members.values():
        acc = sum(correct[i] for i in idx) / len(idx)
        conf = sum(confidences[i] for i in idx) / len(idx)
        ece += len(idx) / n * abs(acc - conf)
    return ece


def build_report(rows: list[dict], scores) -> AccuracyReport:
    """The report for `scores` (one LetterScore per row, same order). Every row must carry its gold `cop`."""
    if len(rows) != len(scores):
        raise ValueError(f"{len(rows)} rows but {len(scores)} scores")
    if any(s.gold is None for s in scores):
        raise ValueError("every scored row needs its gold answer (cop) for a report")
    n = len(scores)
    labels = LETTERS[: max((len(s.probs) for s in scores), default=4)]  # A-D for MedMCQA, up to E for a bank
    index = {L: i for i, L in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for s in scores:
        matrix[index[s.gold]][index[s.pred]] += 1
    correct = [bool(s.correct) for s in scores]
    confidences = [s.confidence for s in scores]
    predictions = []
    for row, s in zip(rows, scores):
        d = s.to_dict()
        d["subject"] = row.get("subject_name")
        d["question"] = str(row.get("question", ""))[:QUESTION_CHARS]
        predictions.append(d)
    always_a = [s.gold == "A" for s in scores]
    return {
        "n": n,
        "accuracy": sum(correct) / n if n else float("nan"),
        "accuracy_ci": wilson(sum(correct), n),  # Wilson 95 %
        "always_a_accuracy": sum(always_a) / n if n else float("nan"),
        "always_a_ci": wilson(sum(always_a), n),
        "vs_always_a": mcnemar(correct, always_a) if n else None,  # exact McNemar, same questions
        "per_subject": _grouped_accuracy(rows, scores, "subject_name"),
        "per_choice_type": _grouped_accuracy(rows, scores, "choice_type"),
        "confusion": {"labels": list(labels), "matrix": matrix},  # rows = gold letter, columns = predicted
        "pred_spread": _share(Counter(s.pred for s in scores), n, labels),
        "gold_spread": _share(Counter(s.gold for s in scores), n, labels),
        "mean_confidence": sum(confidences) / n if n else float("nan"),
        "ece": expected_calibration_error(confidences, correct),
        "brier": brier([s.probs for s in scores], [index[s.gold] for s in scores]),
        "reliability": reliability(confidences, correct),
        "risk_coverage": risk_coverage(confidences, correct),
        "predictions": predictions,
    }


def measured_interval(run: dict) -> tuple[float, int, list[float]] | None:
    """(accuracy, questions, 95 % interval) a run record claims; the interval stored with its report, or
    computed from the two numbers for records written before intervals were stored."""
    acc, rows = measured_accuracy(run)
    if not isinstance(acc, (int, float)) or not rows:
        return None
    return acc, rows, (run.get("metrics") or {}).get("report_ci") or wilson(round(acc * rows), rows)


def plot_per_subject(report: dict, png_path: str | Path) -> Path:
    """A horizontal bar chart of accuracy per subject (with the base model beside it when the report
    holds a `base` comparison), the always-"A" accuracy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers, and never a Streamlit/Tk backend by accident
    import matplotlib.pyplot as plt

    subjects = list(report["per_subject"])
    base = report.get("base")
    height = max(2.5, 0.35 * len(subjects) * (2 if base else 1) + 1.2)
    fig, ax = plt.subplots(figsize=(10, height))
    ys = list(range(len(subjects)))
    labels = [
        f"{s} (n={report['per_subject'][s]['n']}{', few' if report['per_subject'][s].get('few') else ''})"
        for s in subjects
    ]

    def whiskers(groups):  # distances from each bar's end to its 95 % interval, as matplotlib wants them
        accs = [groups.get(s, {}).get("accuracy", 0.0) for s in subjects]
        cis = [groups.get(s, {}).get("ci") or [a, a] for s, a in zip(subjects, accs)]
        return accs, [[a - lo for a, (lo, _) in zip(accs, cis)], [hi - a for a, (_, hi) in zip(accs, cis)]]

    if base:
        w = 0.4
        accs, err = whiskers(report["per_subject"])
        ax.barh(
            [y - w / 2 for y in ys],
            accs,
            height=w,
            xerr=err,
            capsize=2,
            label=f"adapter ({report['accuracy']:.1%})",
            color="tab:blue",
        )
        accs, err = whiskers(base["per_subject"])
        ax.barh(
            [y + w / 2 for y in ys],
            accs,
            height=w,
            xerr=err,
            capsize=2,
            label=f"base ({base['accuracy']:.1%})",
            color="tab:gray",
        )
    else:
        accs, err = whiskers(report["per_subject"])
        ax.barh(ys, accs, xerr=err, capsize=2, color="tab:blue", label=f"model ({report['accuracy']:.1%})")
    ax.axvline(
        report["always_a_accuracy"],
        color="tab:red",
        linestyle="--",
        label=f'always "A" ({report["always_a_accuracy"]:.1%})',
    )
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()  # largest subject on top
    ax.set_xlim(0, 1)
    ax.set_xlabel("letter accuracy")
    ax.set_title(f"Accuracy per subject ({report['n']} questions; whiskers: 95 % intervals)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # never over a bar
    fig.tight_layout()
    path = Path(png_path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: dict, out_json: str | Path) -> tuple[Path, Path]:
    """REPORT.json and, beside it, REPORT.png (accuracy per subject)."""
    from ..models.run_record import write_json_atomic
    from .protocol import protocol_card

    out_json = Path(out_json)
    meta = report.setdefault("meta", {})
    meta.setdefault("protocol", protocol_card(report))  # `measure` writes it; a report built elsewhere gets it here
    write_json_atomic(out_json, report)
    png = plot_per_subject(report, out_json.with_suffix(".png"))
    return out_json, png


def describe_interval(ci, digits: int = 1) -> str:
    """An accuracy's interval in words, as the app shows it: "95 % interval 27.1% to 32.6%"."""
    return f"95 % interval {ci[0]:.{digits}%} to {ci[1]:.{digits}%}"


def _ci(interval) -> str:
    lo, hi = interval
    return f"[{lo:.1%}, {hi:.1%}]"


def summary_table(report: dict) -> str:
    """The short table printed at the end of a CLI run, each accuracy with its 95 % interval."""
    from .protocol import protocol_card, protocol_line

    base = report.get("base")
    head = f"{'':28}{'model':>10}{'':18}" + (f"{'base':>10}" if base else "")
    lines = [f"protocol: {protocol_line(protocol_card(report))}", head]

    def row(label, key, fmt, ci_key=None):
        cells = f"{label:28}{format(report[key], fmt):>10}{(' ' + _ci(report[ci_key])) if ci_key else '':18}"
        if base:
            cells += f"{format(base[key], fmt):>10}" + (f" {_ci(base[ci_key])}" if ci_key else "")
        return cells

    lines += [
        row("questions", "n", "d"),
        row("accuracy (95% interval)" if "acc_norm" not in report else "acc (95% interval)", "accuracy", ".1%",
            "accuracy_ci"),
    ]  # fmt: skip
    if "acc_norm" in report:
        norm, base_norm = report["acc_norm"], (base or {}).get("acc_norm")
        lines.append(
            f"{'acc_norm (95% interval)':28}{norm['accuracy']:>10.1%} {_ci(norm['accuracy_ci']):17}"
            + (f"{base_norm['accuracy']:>10.1%} {_ci(base_norm['accuracy_ci'])}" if base_norm else "")
        )
    lines += [
        row('always "A" accuracy', "always_a_accuracy", ".1%", "always_a_ci"),
        row("mean confidence", "mean_confidence", ".3f"),
        row("ECE (10 bins)", "ece", ".3f"),
        row("Brier score", "brier", ".3f"),
    ]
    spread = lambda r, key: " ".join(f"{L}{v:.0%}" for L, v in r[key].items())  # noqa: E731
    lines.append(
        f"{'predicted letters':28}{spread(report, 'pred_spread')}"
        + (f"   base: {spread(base, 'pred_spread')}" if base else "")
    )
    lines.append(f"{'gold letters':28}{spread(report, 'gold_spread')}")
    if report.get("vs_always_a"):
        lines.append(f"{'vs always-A':28}{describe_difference(report['vs_always_a'], 'always-A')}")
    if base:
        lines.append(f"{'vs the base model':28}{describe_difference(report['vs_base'], 'the base model')}")
        lines.append(f"{'answers changed by adapter':28}{len(report['disagreements']):>10}")
    rc, base_rc = report.get("risk_coverage") or {}, (base or {}).get("risk_coverage") or {}
    for c, v in (rc.get("at") or {}).items():
        b = (base_rc.get("at") or {}).get(c)
        lines.append(
            f"{'accuracy at ' + c + ' coverage':28}{v['accuracy']:>10.1%} {_ci(v['ci']):17}"
            + (f"{b['accuracy']:>10.1%} {_ci(b['ci'])}" if b else "")
            + f"   (the {v['k']} most confident)"
        )
    if (ab := report.get("abstain")) and ab.get("reported"):
        r = ab["reported"]
        lines.append(
            f"{'answering above ' + format(ab['threshold'], '.3f'):28}{r['accuracy']:>10.1%} {_ci(r['accuracy_ci']):17}"
            f"   coverage {r['coverage']:.1%} {_ci(r['coverage_ci'])} (threshold for {ab['rule']} on {ab['chosen_on']})"
        )
    elif ab:
        lines.append(f"{'abstention':28}{ab.get('reason')}")
    if "shuffle" in report:
        sh = report["shuffle"]
        lines.append(f"{'accuracy, options shuffled':28}{sh['accuracy_under_shuffle']:>10.1%}   (k={sh['k']})")
        lines.append(f"{'same option text chosen':28}{sh['consistency']:>10.1%}")
    lines.append(f"per subject (largest first; * fewer than {FEW} questions: too few to rank):")
    for name, s in list(report["per_subject"].items())[:8]:
        b = base["per_subject"].get(name) if base else None
        extra = f"{b['accuracy']:>10.1%} {_ci(b['ci']) if 'ci' in b else ''}" if b else ""
        mark = "*" if s.get("few") else " "
        lines.append(
            f"  {name[:24]:26}{s['accuracy']:>10.1%} {_ci(s['ci']) if 'ci' in s else '':17}{extra}   n={s['n']}{mark}"
        )
    return "\n".join(lines)
