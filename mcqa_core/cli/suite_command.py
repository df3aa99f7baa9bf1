"""`mcqa-eval --suite NAME|FILE`: every set of a suite scored by one loaded model with one protocol, a report per set
and `summary.json` in one folder, and the suite's table printed (`mcqa_core/evaluation/suite.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DataError, SettingsError
from ..evaluation.report import reports_dir
from ..evaluation.suite import SUMMARY_FILE, Suite, read_suite
from .eval_run import load_scorer, measure_with_bar, protocol_of


def suite_folder(args, suite: Suite) -> Path:
    """--output DIR, else reports/suite-SUITE-MODEL/ (MODEL: the adapter folder's name or the base's last part)."""
    if args.output:
        return Path(args.output).expanduser()
    model = Path(args.adapter).expanduser().resolve().name if args.adapter else Path(args.base_model or "model").name
    return reports_dir() / f"suite-{suite.name}-{model}"


def suite_problems(args) -> list[str]:
    """What is wrong with --suite and its flags, before any data or model is read."""
    if not args.suite:
        return []
    problems = [
        f"--suite names its own sets: drop {f}" for f, v in (("--bank", args.bank), ("--split", args.split)) if v
    ]
    if args.shuffle_options:
        problems.append("--shuffle-options is not run in a suite; score one set with it instead")
    try:
        suite = read_suite(args.suite)
    except SettingsError as e:
        return [*problems, str(e)]
    folder = suite_folder(args, suite)
    if folder.is_file():
        problems.append(f"--output {folder} is a file; a suite writes a folder of reports")
    elif (folder / SUMMARY_FILE).exists() and not args.overwrite:
        problems.append(f"{folder / SUMMARY_FILE} already exists; pass --overwrite to replace it, or choose --output")
    return problems


def run_suite(args, adapter_run: dict) -> int:
    """Read every set first (offline, the hub's are listed as not available), then load the model once and score
    the available sets in turn, each with the flags' protocol."""
    import warnings

    from ..data.medmcqa import InvalidRowsWarning, default_data_dir
    from ..evaluation.eval_rows import given_rows
    from ..evaluation.protocol import protocol_card
    from ..evaluation.report import write_report
    from ..evaluation.suite import load_set, set_entry, suite_table, summary
    from ..models.run_record import write_json_atomic

    suite, data_dir, banks = read_suite(args.suite), args.data_dir or default_data_dir(), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InvalidRowsWarning)
        sets = [load_set(s, data_dir, args.limit, banks) for s in suite.sets]
    for loaded_set in sets:
        what = f"{len(loaded_set.rows)} rows from {loaded_set.source} [{loaded_set.split}]"
        print(f"[data] {loaded_set.set.name}: {loaded_set.problem or what}", file=sys.stderr)
    if not any(s.problem is None for s in sets):
        raise DataError(f"no set of suite {suite.name} can be scored here ({sets[0].problem}); see the lines above")
    folder = suite_folder(args, suite)
    folder.mkdir(parents=True, exist_ok=True)
    scorer, _, context = load_scorer(args, adapter_run)
    entries, card = [], None
    for s in sets:
        if s.problem is not None:
            entries.append(set_entry(s, None, None))
            continue
        protocol = protocol_of(args, split=s.split, source=s.source, abstain=None)
        pool = s.bank.rows if s.bank is not None else None
        data = given_rows(s.rows, protocol, split=s.split, source=s.source, pool=pool, bank=s.bank, data_dir=data_dir)
        print(f"[suite] {s.set.name}: scoring {len(data.rows)} questions", file=sys.stderr)
        report = measure_with_bar(scorer, data, protocol, context | {"suite": suite.name, "suite_set": s.set.name})
        write_report(report, folder / f"{s.set.name}.json")
        card = card or protocol_card(report)
        entries.append(set_entry(s, report, f"{s.set.name}.json"))
    shared = {k: v for k, v in (card or {}).items() if k not in ("split", "source", "rows", "shots_from")}
    result = summary(suite, entries, shared)
    write_json_atomic(folder / SUMMARY_FILE, result)
    print(suite_table(result))
    print(f"reports: {folder}/  summary: {folder / SUMMARY_FILE}")
    return 0
