"""Evaluate a LoRA adapter (or a base model) on MedMCQA: letter accuracy, per subject, calibration.

    # the cpu-demo adapter on the offline held-out rows, side by side with its base model
    mcqa-eval --adapter adapters/cpu-demo --split heldout --compare-base --output reports/cpu-demo-heldout.json

    # the base model alone, with lm-evaluation-harness's medmcqa prompt (comparable to leaderboards)
    mcqa-eval --base-model smollm2-135m --split heldout --prompt lm-eval --limit 200

    # position bias: re-ask every question with 3 permutations of its options
    mcqa-eval --adapter adapters/cpu-demo --split heldout --shuffle-options 3

    # through an OpenAI-compatible server (vLLM, llama.cpp's llama-server) that serves the model as "mcqa"
    mcqa-eval --backend openai --endpoint http://localhost:8000/v1 --model mcqa --adapter adapters/cpu-demo

Writes REPORT.json and REPORT.png (accuracy per subject) beside it, and prints a short table.
The answer is the argmax of the next-token probabilities of A-D after the prompt (one forward pass
per question).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from ..command_line import Parser, add_fields, command, flag_name, unwritable_problem
from ..data.banks.bank_flags import BankColumns, mapping_problems
from ..data.banks.bank_rows import PARTS
from ..data.medmcqa import SCORED_SPLITS
from ..data.prompt import option_count
from ..errors import ModelError, SettingsError, WriteError, disk_full, refuse
from ..evaluation.report import reports_dir
from ..evaluation.selective import parse_rule
from ..setting_fields import field_problems
from .eval_run import load_scorer, measure_with_bar, open_rows, prompt_room_problem, protocol_of
from .eval_settings import EvalArgs
from .leaderboard_command import leaderboard_problems, run_leaderboard
from .overlap_check import adapter_overlap
from .suite_command import run_suite, suite_problems


def parse_args(argv: list[str] | None = None) -> EvalArgs:
    p = Parser(prog="mcqa-eval", description=__doc__)
    add_fields(p, EvalArgs, exclude=BankColumns)
    add_fields(p.add_argument_group("your own questions (with --bank)"), BankColumns)
    return EvalArgs(**vars(p.parse_args(argv)))


def check_args(args: EvalArgs) -> list[str]:
    """Every problem that can be seen before loading anything, as one list."""
    problems = mapping_problems(args, args.bank)
    splits = PARTS if args.bank else SCORED_SPLITS
    if args.split is not None and args.split not in splits:
        problems.append(
            f"unknown split {args.split!r}; choose {' or '.join(splits)}"
            + ("" if args.bank else " (or pass --bank FILE for your own questions)")
        )
    problems += field_problems(args, lambda f: f"--{flag_name(f)}")
    if args.backend == "openai":
        problems += [
            f"--backend openai needs {flag}"
            for flag, value in (
                ("--endpoint URL", args.endpoint),
                ("--model NAME (as the server names it)", args.model),
            )
            if not value
        ]
        if args.scoring == "cloze":
            problems.append("--scoring cloze needs --backend local: it reads each option's tokens from the model")
        if args.compare_base and not args.base_served_model:
            problems.append("--compare-base with --backend openai needs --base-served-model NAME")
    elif not args.adapter and not args.base_model and not args.leaderboard:
        problems.append("give --adapter DIR (a folder from train_adapter.py) or --base-model NAME (e.g. smollm2-135m)")
    elif args.compare_base and not args.adapter:
        problems.append("--compare-base needs --adapter DIR (it switches the adapter off to score the base)")
    if args.shot_selection == "similar" and not args.shots:
        problems.append("--shot-selection similar picks each question's examples: give --shots K as well")
    elif args.shot_selection == "similar" and args.abstain:
        problems.append("--abstain chooses its threshold with one set of examples: use --shot-selection random")
    if args.abstain is not None and parse_rule(args.abstain) is None:
        problems.append(
            f"--abstain {args.abstain!r}: give coverage=C or accuracy=A with C, A in (0, 1], e.g. coverage=0.8"
        )
    elif args.abstain and args.bank and (args.split or "all") != "heldout":
        problems.append("--abstain chooses its threshold on the bank's other rows: score --split heldout")
    if args.suite:
        return problems + suite_problems(args)
    if args.leaderboard:
        return problems + leaderboard_problems(args)
    return problems + _output_problems(args)


def default_output(args: EvalArgs) -> Path:
    """reports/NAME[-BANK]-SPLIT.json: NAME is the adapter folder's name or the base model's last path part."""
    name = (
        Path(args.adapter).expanduser().resolve().name
        if args.adapter
        else Path(args.base_model or args.model or "model").name
    )
    bank = f"-{Path(args.bank).stem}" if args.bank else ""
    return reports_dir() / f"{name}{bank}-{args.split or ('all' if args.bank else 'heldout')}.json"


def _output_problems(args: EvalArgs) -> list[str]:
    """The report path is checked before any scoring, so finished work is never lost to a bad path."""
    out = Path(args.output).expanduser() if args.output else default_output(args)
    flag = f"--output {args.output}" if args.output else f"the default report {out}"
    if out.is_dir():
        return [f"{flag} is a folder; give a file name such as {out / 'report.json'}"]
    if out.exists() and not args.overwrite:
        return [f"{flag} already exists; pass --overwrite to replace it, or choose another --output"]
    parent = out.resolve().parent
    # /proc, /sys, a path under a regular file: named now, not after the scoring
    unwritable = unwritable_problem(parent, flag)
    if unwritable:
        return [unwritable + ("" if args.output else " (pass --output FILE)")]
    if args.output and not parent.is_dir():
        return [
            f"--output {args.output}: folder {parent} does not exist; create it (mkdir -p {parent}) or choose "
            "another path"
        ]
    return []


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    refuse(SettingsError, "evaluate", check_args(args))
    from ..models.inference import read_adapter_info

    # a missing or damaged adapter is refused before the data is read and torch is imported
    adapter_run = read_adapter_info(args.adapter, args.base_model) if args.adapter else {}
    if args.backend == "local":  # a read-only model cache is named before the rows are read, not after
        from ..models.inference import base_for
        from ..models.loading import cache_problem

        base = base_for(adapter_run, args.base_model) if adapter_run.get("base_model") else args.base_model
        refuse(ModelError, "evaluate", [p for p in [base and cache_problem(base)] if p])

    if args.suite:
        return run_suite(args, adapter_run)
    if args.leaderboard:
        return run_leaderboard(args)
    # Heavy imports only once the arguments are known to be good: --help and bad flags answer at once.
    from ..evaluation.report import summary_table
    from ..models.run_record import split_overlap_warning

    protocol = protocol_of(args)
    data = open_rows(args, protocol)
    skipped = f", {data.skipped} invalid row(s) skipped (e.g. {', '.join(data.skipped_ids)})" if data.skipped else ""
    print(f"[data] {len(data.rows)} rows from {data.source} [{data.split}]{skipped}", file=sys.stderr)
    _check_shuffle(args.shuffle_options, data.rows)
    if data.threshold_rows:
        print(f"[abstain] choosing the threshold on {len(data.threshold_rows)} rows of {data.threshold_source}",
              file=sys.stderr)  # fmt: skip
    if room := prompt_room_problem(args, adapter_run):  # with the tokenizer alone, before the model loads
        raise SettingsError(f"cannot evaluate: {room}")
    scorer, _, context = load_scorer(args, adapter_run)
    overlap = split_overlap_warning(adapter_run, data.split) if args.adapter else None
    if overlap:
        print(f"warning: {overlap}", file=sys.stderr)
        context["warning"] = overlap
    report = measure_with_bar(scorer, data, protocol, context)
    if near := report.get("shots_overlap"):
        clean = near["clean"]
        print(f"[shots] {near['overlapping']} of {report['n']} questions had a near-duplicate among their examples; "
              f"accuracy on the other {clean['n']}: {clean['accuracy']:.1%}", file=sys.stderr)  # fmt: skip
    if args.adapter and (overlap_found := adapter_overlap(adapter_run, data.rows, report)) is not None:
        report["overlap"] = overlap_found
    out = Path(args.output).expanduser() if args.output else default_output(args)
    print(summary_table(report))  # before the write: the numbers are seen even when the disk refuses the file
    out_json, png = save_report(report, out)
    print(f"report: {out_json}  chart: {png}")
    return 0


def save_report(report: dict, out: Path) -> tuple[Path, Path]:
    """write_report, and where `out` refuses it at write time (a full disk, a folder gone read-only), the report
    kept in the temp folder or reports/ instead, named in one WriteError: minutes of scoring are never lost."""
    from ..evaluation.report import write_report

    before = _inode(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_report(report, out)
    except OSError as e:
        why, full = e.strerror or f"{type(e).__name__}: {e}", disk_full(e)
    if _inode(out) not in (None, before):  # the JSON landed (a new file replaces atomically); only the chart failed
        raise WriteError(f"the report is saved at {out}, but its chart {out.with_suffix('.png')} could not be "
                         f"written ({why}); free space in {out.parent} and evaluate again for the chart")  # fmt: skip
    fix = "free space" if full else f"make {out.parent} writable"
    for folder in dict.fromkeys((Path(tempfile.gettempdir()), reports_dir().absolute())):
        if kept := _kept_in(folder, report, out.stem):
            chart = "" if kept.with_suffix(".png").exists() else " (without its chart)"
            raise WriteError(f"the report could not be written to {out} ({why}); it is kept at {kept}{chart}: "
                             f"{fix}, then move it there: mv {kept} {out}")  # fmt: skip
    print(json.dumps(report, indent=2, default=str))  # nowhere to write: the report itself, for a redirect to keep
    raise WriteError(f"the report could not be written to {out} ({why}), nor to the temp folder or "
                     f"{reports_dir()}; it is printed above as JSON: {fix}, then evaluate again")  # fmt: skip


def _kept_in(folder: Path, report: dict, stem: str) -> Path | None:
    """The report written to a new file in `folder` (its chart beside it where that fits too), or None."""
    from ..evaluation.report import write_report

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f"{stem}-", suffix=".json")
        os.close(fd)
    except OSError:
        return None
    kept = Path(name)
    try:
        write_report(report, kept)
    except OSError:
        if not kept.exists() or not kept.stat().st_size:  # the JSON itself did not fit: no empty file left behind
            kept.unlink(missing_ok=True)
            return None
    return kept


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _check_shuffle(k: int, rows: list[dict]) -> None:
    """--shuffle-options past the orders there are would re-ask the same orders again, for nothing."""
    from ..evaluation.measure import shuffle_limit

    if rows and k > (most := shuffle_limit(rows)):
        fewest = min(map(option_count, rows))
        raise SettingsError(
            f"--shuffle-options {k}: a question with {fewest} options has only {most} other orders; "
            f"pass --shuffle-options {most} or less"
        )


if __name__ == "__main__":
    sys.exit(main())
