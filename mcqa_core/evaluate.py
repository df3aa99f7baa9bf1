"""Evaluate a LoRA adapter (or a base model) on MedMCQA: letter accuracy, per subject, calibration.

    # the cpu-demo adapter on the offline held-out rows, side by side with its base model
    python -m mcqa_core.evaluate --adapter adapters/cpu-demo --split heldout --compare-base \\
        --output reports/cpu-demo-heldout.json

    # the base model alone, with lm-evaluation-harness's medmcqa prompt (comparable to leaderboards)
    python -m mcqa_core.evaluate --base-model smollm2-135m --split heldout --prompt lm-eval --limit 200

    # position bias: re-ask every question with 3 permutations of its options
    python -m mcqa_core.evaluate --adapter adapters/cpu-demo --split heldout --shuffle-options 3

Writes REPORT.json and REPORT.png (accuracy per subject) beside it, and prints a short table.
The answer is the argmax of the next-token probabilities of A-D after the prompt (one forward pass
per question, `mcqa_core.scoring.score_rows`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

from .data import default_data_dir
from .prompt import LETTERS, OPTION_KEYS

EVAL_SPLITS = ("validation", "heldout")
SHUFFLE_SEED = 0
# The 23 reorderings that actually move an option; the original order is always asked as well.
_PERMUTATIONS = [p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)]


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


def evaluate(loaded, rows: list[dict], *, batch_size: int = 16, compare_base: bool = False, style: str = "course",
             shuffle_options: int = 0, max_prompt_tokens: int = 1024,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Score `rows` with `loaded.model` / `loaded.tokenizer` and return the report (`build_report`'s keys),
    plus `meta`; with `compare_base`, `base` (the same rows with the adapter disabled) and `disagreements`;
    with `shuffle_options=K`, `shuffle` (accuracy and answer consistency under K option permutations).
    `progress(done, total)` counts questions over all passes.
    """
    from .report import build_report
    from .scoring import score_rows

    model, tok = loaded.model, loaded.tokenizer
    if not rows:
        raise ValueError("no rows to evaluate")
    if shuffle_options < 0:
        raise ValueError(f"shuffle_options must be 0 or more, got {shuffle_options}")
    if compare_base and not hasattr(model, "disable_adapter"):
        raise ValueError("compare_base needs a model with a LoRA adapter (load one with --adapter)")
    n = len(rows)
    next_pass = _progress_over(n * (1 + int(compare_base) + shuffle_options), progress)
    score = dict(batch_size=batch_size, max_prompt_tokens=max_prompt_tokens, style=style)

    started = time.perf_counter()
    scores = score_rows(model, tok, rows, progress=next_pass(n), **score)
    seconds = time.perf_counter() - started
    report = build_report(rows, scores)
    report["meta"] = {
        "base_model": getattr(loaded, "base_model", None), "adapter": getattr(loaded, "adapter", None),
        "prompt_style": style, "batch_size": batch_size, "max_prompt_tokens": max_prompt_tokens,
        "rows_shortened": sum(s.shortened for s in scores),
        "seconds": round(seconds, 2), "seconds_per_question": round(seconds / n, 4),
    }

    if compare_base:
        with model.disable_adapter():  # the same loaded weights, LoRA switched off: no second model in memory
            base_scores = score_rows(model, tok, rows, progress=next_pass(n), **score)
        report["base"] = build_report(rows, base_scores)
        report["disagreements"] = [
            {"id": a.id, "adapter_pred": a.pred, "base_pred": b.pred, "gold": a.gold}
            for a, b in zip(scores, base_scores) if a.pred != b.pred
        ]

    if shuffle_options:
        report["shuffle"] = _shuffle_report(model, tok, rows, scores, shuffle_options, score,
                                            next_pass(n * shuffle_options))
    return report


def _shuffle_report(model, tok, rows, scores, k, score_kwargs, progress) -> dict:
    from .scoring import score_rows

    rng = random.Random(SHUFFLE_SEED)  # the same permutations on every run, so reports compare
    orders = [rng.sample(_PERMUTATIONS, k) if k <= len(_PERMUTATIONS) else rng.choices(_PERMUTATIONS, k=k)
              for _ in rows]
    permuted = [permute_options(row, order) for row, order_set in zip(rows, orders) for order in order_set]
    shuffled = score_rows(model, tok, permuted, progress=progress, **score_kwargs)
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


def write_report(report: dict, out_json: str | Path) -> tuple[Path, Path]:
    """REPORT.json and, beside it, REPORT.png (accuracy per subject)."""
    from .report import plot_per_subject

    out_json = Path(out_json)
    out_json.write_text(json.dumps(report, indent=2))
    png = plot_per_subject(report, out_json.with_suffix(".png"))
    return out_json, png


def summary_table(report: dict) -> str:
    """The short table printed at the end of a CLI run."""
    base = report.get("base")
    head = f"{'':28}{'model':>10}" + (f"{'base':>10}" if base else "")
    lines = [head]

    def row(label, key, fmt):
        cells = f"{label:28}{format(report[key], fmt):>10}"
        return cells + (f"{format(base[key], fmt):>10}" if base else "")

    lines += [row("questions", "n", "d"), row("accuracy", "accuracy", ".1%"),
              row('always "A" accuracy', "always_a_accuracy", ".1%"),
              row("mean confidence", "mean_confidence", ".3f"), row("ECE (10 bins)", "ece", ".3f")]
    spread = lambda r: " ".join(f"{L}{r['pred_spread'][L]:.0%}" for L in LETTERS)  # noqa: E731
    lines.append(f"{'predicted letters':28}{spread(report)}" + (f"   base: {spread(base)}" if base else ""))
    lines.append(f"{'gold letters':28}" + " ".join(f"{L}{report['gold_spread'][L]:.0%}" for L in LETTERS))
    if base:
        lines.append(f"{'answers changed by adapter':28}{len(report['disagreements']):>10}")
    if "shuffle" in report:
        sh = report["shuffle"]
        lines.append(f"{'accuracy, options shuffled':28}{sh['accuracy_under_shuffle']:>10.1%}   (k={sh['k']})")
        lines.append(f"{'same option text chosen':28}{sh['consistency']:>10.1%}")
    lines.append("per subject (largest first):")
    for name, s in list(report["per_subject"].items())[:8]:
        extra = f"{base['per_subject'][name]['accuracy']:>10.1%}" if base else ""
        lines.append(f"  {name[:24]:26}{s['accuracy']:>10.1%}{extra}   n={s['n']}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block), exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .prompt import PROMPT_STYLES

    p = _Parser(prog="python -m mcqa_core.evaluate", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", metavar="DIR", help="Adapter folder written by train_adapter.py (its base model "
                   "and prompt version come from its mcqa_run.json).")
    p.add_argument("--base-model", metavar="NAME", help="Base model: hub id, local folder or offline alias "
                   "(smollm2-135m, tiny-random-llama). With --adapter it must match the adapter's base.")
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="Folder with validation.jsonl (HF schema); default: %(default)s (unset: the hub).")
    p.add_argument("--split", default="heldout", metavar="SPLIT",
                   help=f"Rows to score: {' or '.join(EVAL_SPLITS)} (default: %(default)s, the offline stand-in).")
    p.add_argument("--limit", type=_positive_int, help="Score only the first N valid rows.")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="Questions per forward pass (default: 16).")
    p.add_argument("--output", default="report.json", metavar="REPORT.json",
                   help="Report path; the per-subject chart is written beside it as .png (default: %(default)s).")
    p.add_argument("--compare-base", action="store_true",
                   help="Also score with the adapter switched off and list the questions where they disagree.")
    p.add_argument("--prompt", default="course", metavar="STYLE",
                   help=f"Prompt template: {' or '.join(PROMPT_STYLES)} (lm-evaluation-harness's medmcqa prompt) "
                        "(default: %(default)s).")
    p.add_argument("--shuffle-options", type=_count, default=0, metavar="K",
                   help="Re-ask each question with K permutations of its options (position bias).")
    p.add_argument("--max-prompt-tokens", type=_positive_int, default=1024,
                   help="Longer prompts have their question shortened (default: %(default)s).")
    p.add_argument("--no-4bit", dest="load_in_4bit", action="store_false", default=None,
                   help="Load the base in full precision (default: as the adapter was trained; 4-bit for a base).")
    return p


def check_args(args) -> list[str]:
    """Every problem that can be seen before loading anything, as one list."""
    from .prompt import PROMPT_STYLES

    problems = []
    if args.split not in EVAL_SPLITS:
        problems.append(f"unknown split {args.split!r}; choose {' or '.join(EVAL_SPLITS)}")
    if args.prompt not in PROMPT_STYLES:
        problems.append(f"unknown --prompt {args.prompt!r}; choose {' or '.join(PROMPT_STYLES)}")
    if not args.adapter and not args.base_model:
        problems.append("give --adapter DIR (a folder from train_adapter.py) or --base-model NAME (e.g. smollm2-135m)")
    if args.compare_base and not args.adapter:
        problems.append("--compare-base needs --adapter DIR (it switches the adapter off to score the base)")
    parent = Path(args.output).expanduser().resolve().parent
    if not parent.is_dir():
        problems.append(f"--output {args.output}: folder {parent} does not exist; create it (mkdir -p {parent}) "
                        "or choose another path")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = check_args(args)
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2

    # Heavy imports only once the arguments are known to be good: --help and bad flags answer at once.
    import warnings

    from tqdm.auto import tqdm

    from .data import DataError, InvalidRowsWarning, load_split
    from .inference import load_model
    from .modeling import ModelError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InvalidRowsWarning)  # counted and printed below instead
            data = load_split(args.split, args.data_dir, args.limit)
        skipped = (f", {data.skipped} invalid row(s) skipped (e.g. {', '.join(data.skipped_ids)})"
                   if data.skipped else "")
        print(f"[data] {len(data.rows)} rows from {data.source} [{data.split}]{skipped}", file=sys.stderr)
        loaded = load_model(args.adapter, args.base_model, load_in_4bit=args.load_in_4bit)
    except (DataError, ModelError) as e:  # AdapterError is a ModelError: wrong base, other prompt version
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = f"adapter {loaded.adapter} on {loaded.base_model}" if loaded.adapter else f"base model {loaded.base_model}"
    print(f"[model] {what} ({'4-bit' if loaded.load_in_4bit else 'full precision'}, {loaded.device}, "
          f"loaded in {loaded.load_seconds:.1f} s)", file=sys.stderr)

    overlap = None
    if data.split == "validation" and loaded.run.get("data", {}).get("train_split") == "demo-train":
        # demo-train IS validation minus the held-out rows: 3 of 4 of these questions were trained on.
        overlap = (f"adapter {loaded.adapter} was trained on demo-train rows, which are part of validation: "
                   "this accuracy is inflated; use --split heldout")
        print(f"warning: {overlap}", file=sys.stderr)

    bar = tqdm(total=None, unit="q", desc="scoring")

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = evaluate(loaded, data.rows, batch_size=args.batch_size, compare_base=args.compare_base,
                          style=args.prompt, shuffle_options=args.shuffle_options,
                          max_prompt_tokens=args.max_prompt_tokens, progress=progress)
    except ValueError as e:  # e.g. a prompt that cannot fit --max-prompt-tokens even shortened
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    report["meta"].update(split=data.split, source=data.source, rows_invalid_skipped=data.skipped,
                          device=loaded.device, load_in_4bit=loaded.load_in_4bit)
    if overlap:
        report["meta"]["warning"] = overlap
    out_json, png = write_report(report, Path(args.output).expanduser())
    print(summary_table(report))
    print(f"report: {out_json}  chart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
