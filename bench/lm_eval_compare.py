"""Our letter scorer against lm-evaluation-harness on the same held-out rows and the same local model, in one run.

lm-eval (0.4.13, `HFLM`) runs its own `medmcqa` task offline: a task YAML written to a temporary folder reads
the rows from a JSONL file, with lm-eval's `doc_to_text` (its `utils_medmcqa.py`, copied) and choices A-D.
It is timed inside its log-likelihood requests only (not task building or metrics). Ours is
`mcqa_core.evaluation.scoring.score_rows` with the same prompt (`style="lm-eval"`), timed as a whole
(tokenizing included), on the same fp32 weights: as it runs by default (bf16 matmuls on a CPU that has them,
close calls again in fp32) and, for reference, with `bf16=False`. Both sides see the same batch size; lm-eval
runs each distinct context once (its one-token-continuation cache), so both make one forward pass per question.

    pip install -r requirements-bench.txt   # lm-eval: for this benchmark only, never a runtime need

    # SmolLM2-135M full precision, the first 200 held-out rows
    python bench/lm_eval_compare.py

    # fewer rows and one repeat (a quick look), lm-eval in bf16 instead (a like-for-like dtype check)
    python bench/lm_eval_compare.py --rows 48 --repeats 1 --lm-eval-dtype bfloat16

    # quick mode (what tests/test_benchmarks.py runs): the tiny random Llama, 8 rows, seconds; without lm-eval
    # installed (CI does not install it) only our side runs, so our half of the script is checked everywhere
    python bench/lm_eval_compare.py --quick

Target (2 CPU cores): our time at most half of lm-eval's (ratio >= 2.0), with the same letter as lm-eval's
argmax on every question. Each side runs --repeats times, alternating, and the best time counts (the
machine may be shared: the load average is printed with every figure; compare only ratios from one run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.machine import cpu_line, load_line  # noqa: E402

LM_EVAL_VERSION = "0.4.13"
TASK = "mcqa_medmcqa_local"


def build_parser() -> argparse.ArgumentParser:
    from mcqa_core.data.medmcqa import default_data_dir
    from mcqa_core.models.loading import OFFLINE_MODEL, TINY_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default=None, help=f"Base model, full precision (default: {OFFLINE_MODEL}; --quick: {TINY_MODEL})."
    )
    p.add_argument("--data-dir", default=default_data_dir(), help="MedMCQA folder (default: %(default)s).")
    p.add_argument("--rows", type=int, default=None, help="First N held-out rows, the same for both (default: 200).")
    p.add_argument("--batch-size", type=int, default=None, help="Questions per forward pass, both sides (default: 16).")
    p.add_argument("--repeats", type=int, default=None, help="Timed runs of each side, best counts (default: 2).")
    p.add_argument(
        "--lm-eval-dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="lm-eval's weights (default: %(default)s, as its HFLM runs a model on CPU by default).",
    )
    p.add_argument(
        "--no-fp32",
        dest="fp32",
        action="store_false",
        help="Skip our fp32 reference run, score_rows(bf16=False) (it shows how much of the gain is bf16).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="Check the script in seconds: the tiny random Llama, 8 rows, batch 4, 1 repeat; our side only "
        "when lm-eval is not installed (flags given still win).",
    )
    return p


def fill_defaults(args) -> None:
    from mcqa_core.models.loading import OFFLINE_MODEL, TINY_MODEL

    chosen = (
        dict(model=TINY_MODEL, rows=8, batch_size=4, repeats=1)
        if args.quick
        else dict(model=OFFLINE_MODEL, rows=200, batch_size=16, repeats=2)
    )
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def top_two_gap(probs: list[float]) -> float:
    second, first = sorted(probs)[-2:]
    return first - second


def write_task(folder: Path, rows: list[dict]) -> None:
    """The rows as JSONL and a task YAML that is lm-eval's medmcqa task but for where the rows come from."""
    import lm_eval

    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(Path(lm_eval.__file__).parent / "tasks" / "medmcqa" / "utils_medmcqa.py", folder)
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {json.dumps(str(data))}\n"
        "output_type: multiple_choice\n"
        "test_split: validation\n"
        "doc_to_text: !function utils_medmcqa.doc_to_text\n"
        "doc_to_target: cop\n"
        "doc_to_choice: ['A', 'B', 'C', 'D']\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )


def run_lm_eval(lm, task_manager, limit: int | None = None) -> tuple[float, list[list[float]]]:
    """(seconds spent in its log-likelihood requests, the four log-likelihoods of each question in row order)."""
    from lm_eval import simple_evaluate

    spent = []
    plain = lm.loglikelihood

    def timed(requests, *args, **kwargs):
        started = time.perf_counter()
        try:
            return plain(requests, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    lm.loglikelihood = timed  # simple_evaluate calls getattr(lm, "loglikelihood")
    try:
        out = simple_evaluate(
            model=lm, tasks=[TASK], task_manager=task_manager, log_samples=True, limit=limit, bootstrap_iters=0
        )
    finally:
        del lm.loglikelihood
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    return sum(spent), [[float(r[0]) for r in s["filtered_resps"]] for s in samples]


def main(args) -> int:
    fill_defaults(args)
    missing = f"lm-eval is not installed: pip install -r requirements-bench.txt (lm-eval=={LM_EVAL_VERSION})"
    try:
        import lm_eval
    except ImportError:
        if not args.quick:
            print(missing)
            return 2
        lm_eval = None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from mcqa_core.data.features import encode_prompt
    from mcqa_core.data.medmcqa import load_split
    from mcqa_core.data.prompt import LETTERS
    from mcqa_core.evaluation.cpu_precision import CLOSE_CALL, bf16_pays
    from mcqa_core.evaluation.scoring import DEFAULT_MAX_PROMPT_TOKENS, score_rows
    from mcqa_core.models.inference import load_model
    from mcqa_core.models.loading import resolve_model

    print(cpu_line(), flush=True)
    print(f"start: {load_line()}", flush=True)
    rows = load_split("heldout", args.data_dir, args.rows).rows
    loaded = load_model(None, args.model, load_in_4bit=False, device="cpu")
    model, tok = loaded.model.float(), loaded.tokenizer  # fp32 as lm-eval's, whatever the checkpoint holds
    default = "bf16 + fp32 close calls" if bf16_pays(model) else "fp32"
    ours = {default: None, **({"fp32 (bf16=False)": False} if args.fp32 and bf16_pays(model) else {})}
    path = resolve_model(args.model)
    lm = None
    if lm_eval is not None:
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        lm = HFLM(pretrained=path, backend="causal", device="cpu", dtype=args.lm_eval_dtype, batch_size=args.batch_size)
    tokens = sum(len(encode_prompt(tok, r, DEFAULT_MAX_PROMPT_TOKENS, "lm-eval").ids) for r in rows)
    theirs_line = (
        f"lm-eval {lm_eval.__version__} in {args.lm_eval_dtype}" if lm is not None else f"lm-eval skipped ({missing})"
    )
    print(
        f"model {args.model} ({path}), fp32 weights, {len(rows)} held-out rows, {tokens} prompt tokens, "
        f"batch {args.batch_size}; {theirs_line}; ours: {', '.join(ours)}",
        flush=True,
    )

    folder = Path(tempfile.mkdtemp(prefix="mcqa-lm-eval-"))
    try:
        if lm is not None:
            write_task(folder, rows)
            manager = TaskManager(include_path=str(folder), include_defaults=False)
            # warm-up, untimed: first-call allocations and kernel selection on both sides
            run_lm_eval(lm, manager, limit=2)
        for bf16 in ours.values():
            score_rows(model, tok, rows[:2], batch_size=2, style="lm-eval", bf16=bf16)
        times: dict[str, list[float]] = {"lm-eval": [], **{k: [] for k in ours}}
        scores = {}
        for rep in range(args.repeats):
            line = []
            if lm is not None:
                seconds, lls = run_lm_eval(lm, manager)
                times["lm-eval"].append(seconds)
                line.append(f"lm-eval {seconds:.1f} s")
            for key, bf16 in ours.items():
                started = time.perf_counter()
                scores[key] = score_rows(model, tok, rows, batch_size=args.batch_size, style="lm-eval", bf16=bf16)
                times[key].append(time.perf_counter() - started)
                line.append(f"ours {key} {times[key][-1]:.1f} s")
            print(f"run {rep + 1}: {', '.join(line)}; {load_line()}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    best = {k: min(v) for k, v in times.items() if v}
    n = len(rows)
    print()
    if lm is None:
        for key in ours:
            print(f"ours, score_rows, {key:<24} {best[key]:7.3f} s  (lm-eval not run: no ratio, no letter check)")
        print(f"accuracy: ours {sum(bool(s.correct) for s in scores[default]) / n:.1%}")
        print(f"end: {load_line()}")
        return 0
    theirs_probs = [torch.softmax(torch.tensor(ll), -1).tolist() for ll in lls]
    theirs_pred = [LETTERS[max(range(len(p)), key=p.__getitem__)] for p in theirs_probs]
    print(
        f"lm-eval, log-likelihood requests ({args.lm_eval_dtype:<8}) {best['lm-eval']:7.1f} s  (best of {args.repeats})"
    )
    for key in ours:
        ratio = best["lm-eval"] / best[key]
        if key != default:
            target = " (reference)"
        elif args.lm_eval_dtype != "float32":
            target = " (same dtype on both sides; the target is against lm-eval in fp32)"
        else:
            target = f" (target >= 2.0x) {'OK' if ratio >= 2.0 else 'MISSED'}"
        agree = sum(s.pred == p for s, p in zip(scores[key], theirs_pred))
        diff = max(abs(a - b) for s, p in zip(scores[key], theirs_probs) for a, b in zip(s.probs, p))
        close = sum(top_two_gap(s.probs) < CLOSE_CALL for s in scores[key])
        print(f"ours, score_rows, {key:<24} {best[key]:7.1f} s  lm-eval/ours {ratio:.2f}x{target}")
        print(
            f"    same letter as lm-eval's argmax on {agree}/{n} questions{'' if agree == n else ' MISSED'}; "
            f"largest probability difference {diff:.2g}; {close} close calls (top two within {CLOSE_CALL})"
        )
    acc_theirs = sum(p == LETTERS[int(r["cop"])] for p, r in zip(theirs_pred, rows)) / n
    acc_ours = sum(bool(s.correct) for s in scores[default]) / n
    print(f"accuracy: lm-eval {acc_theirs:.1%}, ours {acc_ours:.1%}")
    print(f"end: {load_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
