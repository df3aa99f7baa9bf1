"""Our scorers against lm-evaluation-harness on the same held-out rows and the same local model, in one run.

lm-eval (0.4.13, `HFLM`) runs its own `medmcqa` task offline: a task YAML written to a temporary folder reads
the rows from a JSONL file. Letter scoring (`--scoring letter`, the default) is lm-eval's task as it ships:
its `doc_to_text` (its `utils_medmcqa.py`, copied) and choices A-D, against ours,
`mcqa_core.evaluation.letter_scoring.score_rows`. Cloze scoring (`--scoring cloze`) is the same task with the question
alone (`doc_to_text: "Question: {{question}}\\nAnswer:"`) and each option's text as a choice, metrics `acc` and
`acc_norm`, against ours, `mcqa_core.evaluation.cloze_scoring.score_options`. Both use the same prompt
(`style="lm-eval"`).

`--shots K` puts K solved examples before every question: ours draws them (`mcqa_core.evaluation.fewshot.
shots_for`, a fixed seed, from the dev slice), and lm-eval gets the same examples in the same order, written to
a second JSONL declared as its `train` split (`fewshot_split: train`, `num_fewshot: K`, sampler `first_n`). Per
question the script checks that lm-eval's context and continuations are the text ours scores, then compares the
answers: the letter with lm-eval's argmax (letter), or lm-eval's argmax of the summed log-likelihoods (`acc`) and
of those divided by each choice's length in characters (`acc_norm`, as lm-eval's `process_results` computes it)
with ours (cloze).

lm-eval is timed inside its log-likelihood requests only (not task building or metrics). Ours is timed as a
whole (tokenizing included), on the same fp32 weights. Letter: as score_rows runs by default (bf16 matmuls on a
CPU that has them, close calls again in fp32) and, for reference, with `bf16=False`; lm-eval runs each distinct
context once (its one-token-continuation cache), so both make one forward pass per question. Cloze: fp32 only
(score_options' default; bf16 saves nothing there), while lm-eval runs every (context, option) pair whole. Both
sides see the same batch size (questions for ours, requests for lm-eval).

    pip install -r requirements-bench.txt   # lm-eval: for this benchmark only, never a runtime need

    # SmolLM2-135M full precision, the first 200 held-out rows, letter scoring, no examples
    python bench/lm_eval_compare.py

    # five examples before each question; cloze scoring (acc and acc_norm)
    python bench/lm_eval_compare.py --shots 5
    python bench/lm_eval_compare.py --scoring cloze --shots 5

    # fewer rows and one repeat (a quick look), lm-eval in bf16 instead (a like-for-like dtype check)
    python bench/lm_eval_compare.py --rows 48 --repeats 1 --lm-eval-dtype bfloat16

    # quick mode (what tests/test_benchmarks.py runs): the tiny random Llama, 8 rows, seconds; without lm-eval
    # installed (CI does not install it) only our side runs, so our half of the script is checked everywhere
    python bench/lm_eval_compare.py --quick
    python bench/lm_eval_compare.py --quick --scoring cloze --shots 2

Targets (2 CPU cores), for every --scoring and --shots: per question, at least 99 % of the answers identical to
lm-eval's (the letter, or the acc and the acc_norm answer), on prompts identical to lm-eval's; our time at most
half of lm-eval's (ratio >= 2.0) on the same rows and precision (fp32; for letter, ours as it runs by default).
Each side runs --repeats times, alternating, and the best time counts (the machine may be shared: the load
average is printed with every figure; compare only ratios from one run).
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
AGREEMENT_TARGET = 0.99  # share of questions whose answer must equal lm-eval's
CLOZE_TEXT = "Question: {{question}}\nAnswer:"  # mcqa_core.data.prompt.CLOZE_TEMPLATES["lm-eval"], in Jinja
CLOZE_CHOICES = "{{[opa, opb, opc, opd]}}"
TARGET_DELIMITER = " "  # lm-eval's default, between a context and each continuation


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
        "--shots",
        type=int,
        default=0,
        help="Solved examples before each question, the same list in the same order on both sides, drawn by "
        "shots_for from the dev slice (default: %(default)s).",
    )
    p.add_argument(
        "--scoring",
        default="letter",
        choices=("letter", "cloze"),
        help="letter: P(A..D) after the options (score_rows); cloze: each option's text after the question, "
        "acc and acc_norm (score_options, fp32) (default: %(default)s).",
    )
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
        help="Letter scoring: skip our fp32 reference run, score_rows(bf16=False) (it shows how much of the gain "
        "is bf16).",
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


def argmax(xs) -> int:
    """The first index of the largest value, as numpy's argmax (lm-eval's) picks it."""
    return max(range(len(xs)), key=xs.__getitem__)


def verdict(agree: int, n: int) -> str:
    return "" if agree == n else " OK (>= 99%)" if agree >= AGREEMENT_TARGET * n else " MISSED"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_task(folder: Path, rows: list[dict], shots: list[dict], scoring: str) -> None:
    """The rows (and the examples, as the `train` split) as JSONL and a task YAML that is lm-eval's medmcqa task
    but for where the rows come from, with the question alone and the options' texts as choices for cloze."""
    import lm_eval

    write_jsonl(folder / "rows.jsonl", rows)
    files = f"    validation: {json.dumps(str(folder / 'rows.jsonl'))}\n"
    if shots:
        write_jsonl(folder / "shots.jsonl", shots)
        files += f"    train: {json.dumps(str(folder / 'shots.jsonl'))}\n"
    if scoring == "letter":
        shutil.copy(Path(lm_eval.__file__).parent / "tasks" / "medmcqa" / "utils_medmcqa.py", folder)
        prompt = "doc_to_text: !function utils_medmcqa.doc_to_text\ndoc_to_choice: ['A', 'B', 'C', 'D']\n"
        metrics = ("acc",)
    else:
        prompt = f"doc_to_text: {json.dumps(CLOZE_TEXT)}\ndoc_to_choice: {json.dumps(CLOZE_CHOICES)}\n"
        metrics = ("acc", "acc_norm")
    fewshot = f"fewshot_split: train\nnum_fewshot: {len(shots)}\nfewshot_config:\n  sampler: first_n\n" if shots else ""
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n{files}"
        "output_type: multiple_choice\n"
        "test_split: validation\n"
        f"{prompt}"
        "doc_to_target: cop\n"
        f"{fewshot}"
        "metric_list:\n"
        + "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n" for m in metrics)
    )


def run_lm_eval(lm, task_manager, limit: int | None = None) -> tuple[float, list[dict]]:
    """(seconds spent in its log-likelihood requests, its logged samples in row order: `arguments` holds each
    choice's (context, continuation), `filtered_resps` each choice's (log-likelihood, is greedy))."""
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
    return sum(spent), sorted(out["samples"][TASK], key=lambda s: s["doc_id"])


def chosen_shots(record: dict, data_dir) -> list[dict]:
    """The example rows shots_for put before each question, in its order, as they are in the dev slice."""
    from mcqa_core.data.medmcqa import load_split

    if not record.get("shot_ids"):
        return []
    by_id = {r["id"]: r for r in load_split(record["shots_from"], data_dir).rows}  # demo-dev for held-out rows
    return [by_id[i] for i in record["shot_ids"]]


def prompt_check(samples: list[dict], scored: list[dict], scoring: str, shots_text: str) -> int:
    """Questions whose lm-eval context is our prompt to the character and whose continuations are ours."""
    from mcqa_core.data.prompt import cloze_continuations, format_prompt, letter_prefix, row_letters

    same = 0
    for s, row in zip(samples, scored):
        ours = format_prompt(row, "lm-eval", scoring, shots_text)
        conts = (
            cloze_continuations(row, "lm-eval")
            if scoring == "cloze"
            else [letter_prefix(L, "lm-eval") for L in row_letters(row)]
        )
        same += [tuple(a[:2]) for a in s["arguments"]] == [(ours, c) for c in conts]
    return same


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
    from mcqa_core.evaluation.cloze_scoring import score_options
    from mcqa_core.evaluation.cpu_precision import CLOSE_CALL, bf16_pays
    from mcqa_core.evaluation.fewshot import shots_for
    from mcqa_core.evaluation.letter_scoring import DEFAULT_MAX_PROMPT_TOKENS, score_rows
    from mcqa_core.models.inference import load_model
    from mcqa_core.models.loading import resolve_model

    cloze = args.scoring == "cloze"
    print(cpu_line(), flush=True)
    print(f"start: {load_line()}", flush=True)
    rows = load_split("heldout", args.data_dir, args.rows).rows
    shots_text, record = shots_for(rows, args.shots, "lm-eval", data_dir=args.data_dir, scoring=args.scoring)
    scored = rows
    shots = chosen_shots(record, args.data_dir)
    loaded = load_model(None, args.model, load_in_4bit=False, device="cpu")
    model, tok = loaded.model.float(), loaded.tokenizer  # fp32 as lm-eval's, whatever the checkpoint holds
    if cloze:  # score_options runs fp32 by default: bf16 saves nothing for cloze (its docstring)
        scorer, default = "score_options", "fp32"
        ours = {default: False}
    else:
        scorer, default = "score_rows", "bf16 + fp32 close calls" if bf16_pays(model) else "fp32"
        ours = {default: bf16_pays(model), **({"fp32 (bf16=False)": False} if args.fp32 and bf16_pays(model) else {})}

    def score(some: list[dict], batch_size: int, bf16):
        if cloze:
            kw = dict(batch_size=batch_size, style="lm-eval", bf16=bool(bf16), shots=shots_text)
            return score_options(model, tok, some, **kw)
        return score_rows(model, tok, some, batch_size=batch_size, style="lm-eval", bf16=bf16, shots=shots_text)

    path = resolve_model(args.model)
    lm = None
    if lm_eval is not None:
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        lm = HFLM(pretrained=path, backend="causal", device="cpu", dtype=args.lm_eval_dtype, batch_size=args.batch_size)
    tokens = sum(
        len(encode_prompt(tok, r, DEFAULT_MAX_PROMPT_TOKENS, "lm-eval", args.scoring, shots_text).ids) for r in scored
    )
    theirs_line = (
        f"lm-eval {lm_eval.__version__} in {args.lm_eval_dtype}" if lm is not None else f"lm-eval skipped ({missing})"
    )
    shots_line = (
        f"{args.shots} shots from {record['shots_from']} (ids {', '.join(map(str, record['shot_ids']))})"
        if args.shots
        else "0 shots"
    )
    print(
        f"model {args.model} ({path}), fp32 weights, {len(rows)} held-out rows, {args.scoring} scoring, {shots_line}, "
        f"{tokens} prompt tokens, batch {args.batch_size}; {theirs_line}; ours: {', '.join(ours)}",
        flush=True,
    )

    folder = Path(tempfile.mkdtemp(prefix="mcqa-lm-eval-"))
    try:
        if lm is not None:
            write_task(folder, rows, shots, args.scoring)
            manager = TaskManager(include_path=str(folder), include_defaults=False)
            # warm-up, untimed: first-call allocations and kernel selection on both sides
            run_lm_eval(lm, manager, limit=2)
        for bf16 in ours.values():
            score(scored[:2], 2, bf16)
        times: dict[str, list[float]] = {"lm-eval": [], **{k: [] for k in ours}}
        scores = {}
        for rep in range(args.repeats):
            line = []
            if lm is not None:
                seconds, samples = run_lm_eval(lm, manager)
                times["lm-eval"].append(seconds)
                line.append(f"lm-eval {seconds:.1f} s")
            for key, bf16 in ours.items():
                started = time.perf_counter()
                scores[key] = score(scored, args.batch_size, bf16)
                times[key].append(time.perf_counter() - started)
                line.append(f"ours {key} {times[key][-1]:.1f} s")
            print(f"run {rep + 1}: {', '.join(line)}; {load_line()}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    best = {k: min(v) for k, v in times.items() if v}
    n = len(rows)
    golds = [LETTERS[int(r["cop"])] for r in rows]
    shortened = sum(bool(s.shortened) for s in scores[default])
    print()
    if lm is None:
        for key in ours:
            print(f"{f'ours, {scorer}, {key}':<42} {best[key]:7.3f} s  (lm-eval not run: no ratio, no answer check)")
        print(f"{shortened} of our prompts shortened to fit")
        if cloze:
            acc, norm = (sum(p == g for p, g in zip(preds, golds)) / n for preds in cloze_preds(scores[default]))
            print(f"accuracy: ours acc {acc:.1%}, acc_norm {norm:.1%}")
        else:
            print(f"accuracy: ours {sum(bool(s.correct) for s in scores[default]) / n:.1%}")
        print(f"end: {load_line()}")
        return 0
    lls = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    print(
        f"lm-eval, log-likelihood requests ({args.lm_eval_dtype:<8}) {best['lm-eval']:7.3f} s  (best of {args.repeats})"
    )
    same = prompt_check(samples, scored, args.scoring, shots_text)
    print(
        f"prompt identical on {same}/{n} questions{verdict(same, n)} (lm-eval's context and continuations; "
        f"{shortened} of ours shortened to fit)"
    )
    for key in ours:
        ratio = best["lm-eval"] / best[key]
        if key != default:
            target = " (reference)"
        elif args.lm_eval_dtype != "float32":
            target = (
                " (lm-eval in bf16, ours in fp32: the target is against lm-eval in fp32)"
                if cloze
                else " (same dtype on both sides; the target is against lm-eval in fp32)"
            )
        else:
            target = f" (target >= 2.0x) {'OK' if ratio >= 2.0 else 'MISSED'}"
        print(f"{f'ours, {scorer}, {key}':<42} {best[key]:7.3f} s  lm-eval/ours {ratio:.2f}x{target}")
        if cloze:
            cloze_lines(scores[key], samples, lls)
            continue
        theirs_probs = [torch.softmax(torch.tensor(ll), -1).tolist() for ll in lls]
        theirs_pred = [LETTERS[argmax(p)] for p in theirs_probs]
        agree = sum(s.pred == p for s, p in zip(scores[key], theirs_pred))
        diff = max(abs(a - b) for s, p in zip(scores[key], theirs_probs) for a, b in zip(s.probs, p))
        close = sum(top_two_gap(s.probs) < CLOSE_CALL for s in scores[key])
        print(
            f"    same letter as lm-eval's argmax on {agree}/{n} questions{verdict(agree, n)}; "
            f"largest probability difference {diff:.2g}; {close} close calls (top two within {CLOSE_CALL})"
        )
    if cloze:
        acc, norm = (sum(p == g for p, g in zip(preds, golds)) / n for preds in cloze_preds(scores[default]))
        t_acc, t_norm = (
            sum(LETTERS[i] == g for i, g in zip(preds, golds)) / n for preds in lm_eval_cloze_preds(samples, lls)
        )
        print(f"accuracy: lm-eval acc {t_acc:.1%}, acc_norm {t_norm:.1%}; ours acc {acc:.1%}, acc_norm {norm:.1%}")
    else:
        acc_theirs = sum(LETTERS[argmax(ll)] == g for ll, g in zip(lls, golds)) / n
        acc_ours = sum(bool(s.correct) for s in scores[default]) / n
        print(f"accuracy: lm-eval {acc_theirs:.1%}, ours {acc_ours:.1%}")
    print(f"end: {load_line()}")
    return 0


def cloze_preds(scores) -> tuple[list[str], list[str]]:
    """Our acc and acc_norm answers."""
    return [s.pred for s in scores], [s.normed().pred for s in scores]


def lm_eval_choice_chars(sample: dict) -> list[int]:
    """lm-eval's acc_norm divisor: each choice's length in characters, as `doc_to_choice` gives the choice, so
    without the target delimiter its continuation starts with (ConfigurableTask.process_results)."""
    return [len(a[1].removeprefix(TARGET_DELIMITER)) for a in sample["arguments"]]


def lm_eval_cloze_preds(samples: list[dict], lls: list[list[float]]) -> tuple[list[int], list[int]]:
    """lm-eval's acc answer (argmax of the log-likelihoods) and acc_norm answer (argmax of each divided by its
    choice's characters), as option indices."""
    norm = [argmax([x / c for x, c in zip(ll, lm_eval_choice_chars(s))]) for s, ll in zip(samples, lls)]
    return [argmax(ll) for ll in lls], norm


def cloze_lines(scores, samples: list[dict], lls: list[list[float]]) -> None:
    from mcqa_core.data.prompt import LETTERS

    n = len(scores)
    acc_theirs, norm_theirs = lm_eval_cloze_preds(samples, lls)
    acc_ours, norm_ours = cloze_preds(scores)
    acc = sum(o == LETTERS[t] for o, t in zip(acc_ours, acc_theirs))
    norm = sum(o == LETTERS[t] for o, t in zip(norm_ours, norm_theirs))
    diff = max(abs(a - b) for s, ll in zip(scores, lls) for a, b in zip(s.logliks, ll))
    print(
        f"    same acc answer as lm-eval on {acc}/{n} questions{verdict(acc, n)}; "
        f"largest log-likelihood difference {diff:.2g} nats"
    )
    print(f"    same acc_norm answer as lm-eval on {norm}/{n} questions{verdict(norm, n)}")
    divisors = sum(s.chars != lm_eval_choice_chars(t) for s, t in zip(scores, samples))
    if divisors:  # why acc_norm may differ where acc does not: what each side divides by
        ours_rule = sum(
            LETTERS[argmax([x / c for x, c in zip(s.logliks, lm_eval_choice_chars(t))])] == LETTERS[p]
            for s, t, p in zip(scores, samples, norm_theirs)
        )
        print(
            f"    our acc_norm divides by other lengths than lm-eval's on {divisors}/{n} questions (ours "
            f"{scores[0].chars}, lm-eval {lm_eval_choice_chars(samples[0])} on the first); our log-likelihoods "
            f"divided by lm-eval's lengths give its acc_norm answer on {ours_rule}/{n}"
        )


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
