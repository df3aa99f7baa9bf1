"""`mcqa-eval --leaderboard`: every adapter under the adapters folder, and each base model they were trained on,
scored on the same rows with the same protocol (a saved report is reused when its rows, protocol and weights are
the same), ranked, with every pair tested (`mcqa_core/evaluation/leaderboard.py`) and each adapter's training method
and what it cost beside its accuracy."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import McqaError, SettingsError
from ..evaluation.report import reports_dir
from ..models.adapter_folders import find_adapters
from ..models.run_record import REPORT_FILE, rows_seen_text
from .eval_run import load_scorer, measure_with_bar, open_rows, protocol_of

ADAPTERS_DIR_ENV = "MCQA_ADAPTERS_DIR"  # the app's setting of the same name


def adapters_root(args) -> Path:
    return Path(args.adapters_dir or os.environ.get(ADAPTERS_DIR_ENV) or "adapters").expanduser()


def leaderboard_problems(args) -> list[str]:
    if not args.leaderboard:
        return []
    problems = [f"--leaderboard scores every adapter: drop {f}" for f, v in (("--adapter", args.adapter),) if v]
    problems += [f"--leaderboard and {f} do not go together" for f, v in (("--suite", args.suite),) if v]
    if args.backend != "local":
        problems.append("--leaderboard loads each adapter in this process: use --backend local")
    root = adapters_root(args)
    if not any(a.ready and a.run for a in find_adapters(root)):
        problems.append(
            f"no trained adapter under {root}; train one (mcqa-train --preset cpu-demo) or give --adapters-dir"
        )
    return problems


def board_folder(args, split: str) -> Path:
    if args.output:
        return Path(args.output).expanduser()
    return reports_dir() / f"leaderboard-{split}{'-' + str(args.limit) if args.limit else ''}"


def run_leaderboard(args) -> int:
    """Score what has no reusable report (an adapter with its base switched off when that base is still missing),
    then rank and test, every model with the flags' protocol on the same rows."""
    from ..evaluation.leaderboard import BOARD_FILE, board, reusable_report, weights_signature
    from ..evaluation.report import write_report
    from ..models.run_record import write_json_atomic

    protocol = protocol_of(args, compare_base=False, shuffle_options=0, abstain=None)
    data = open_rows(args, protocol)
    ids = [str(r.get("id")) for r in data.rows]
    want = protocol.wanted(len(ids))
    folder = board_folder(args, data.split)
    folder.mkdir(parents=True, exist_ok=True)
    adapters = [a for a in find_adapters(adapters_root(args)) if a.ready]
    entries, bases, skipped = [], {}, []

    def skip(name: str, reason: str) -> None:  # one bad folder is named, and the rest are still ranked
        print(f"[leaderboard] {name}: skipped: {reason}", file=sys.stderr)
        skipped.append({"name": name, "reason": reason})

    def base_name(model: str) -> str:
        return f"base {Path(model).name}"

    def base_file(model: str) -> Path:
        return folder / f"{base_name(model).replace(' ', '-')}.json"

    def scored(adapter, base, with_base: bool, signature=None) -> dict:
        scorer, _, context = load_scorer(args, {}, adapter=adapter, base_model=base)
        context |= {"weights": signature} if signature is not None else {}
        return measure_with_bar(scorer, data, replace(protocol, compare_base=with_base), context)

    all_bases = dict.fromkeys(filter(None, [*(a.base_model for a in adapters), args.base_model]))
    for base in all_bases:
        if (found := reusable_report(base_file(base), want, ids, None)) is not None:
            bases[base] = (found, base_file(base), True)
    for a in adapters:
        if a.damaged or not a.run:  # seen from the folder alone, before anything loads
            skip(a.name, a.problem or "no mcqa_run.json")
            continue
        sig = weights_signature(a.path)
        mine = folder / f"{a.name}.json"
        trained = ((a.run.get("data") or {}).get("report_split"),)
        source, report = mine, reusable_report(mine, want, ids, sig)
        if report is None and (report := reusable_report(a.path / REPORT_FILE, want, ids, None, None, *trained)):
            source = a.path / REPORT_FILE  # the report training wrote, on these very rows
        if a.base_model not in bases and report is not None:
            for source in (mine, a.path / REPORT_FILE):
                if (b := reusable_report(source, want, ids, None, "base", *trained)) is not None:
                    bases[a.base_model] = (b, source, True)
                    break
        reused = report is not None
        if report is None or a.base_model not in bases:
            print(f"[leaderboard] {a.name}: scoring {len(data.rows)} questions", file=sys.stderr)
            try:
                full = scored(str(a.path), None, a.base_model not in bases, sig)
            except McqaError as e:  # a base that is gone or does not fit, rows it cannot hold
                skip(a.name, str(e))
                continue
            write_report(full, mine)
            if a.base_model not in bases:
                bases[a.base_model] = (full["base"], mine, False)
            report, reused, source = {k: v for k, v in full.items() if k != "base"}, False, mine
        else:
            print(f"[leaderboard] {a.name}: reused a saved report on the same rows and protocol", file=sys.stderr)
        run = a.run
        entries.append({"name": a.name, "kind": "adapter", "base_model": a.base_model, "run": run, "report": report,
                        "trained_on": rows_seen_text(run), "reused": reused, "report_file": str(source)})  # fmt: skip
    for base in all_bases:
        if base not in bases and base != args.base_model:  # only skipped adapters were trained on it
            continue
        if base not in bases:  # only a --base-model no adapter was trained on
            print(f"[leaderboard] {base_name(base)}: scoring {len(data.rows)} questions", file=sys.stderr)
            try:
                full = scored(None, base, False)
            except McqaError as e:
                skip(base_name(base), str(e))
                continue
            write_report(full, base_file(base))
            bases[base] = (full, base_file(base), False)
        report, path, reused = bases[base]
        entries.append({"name": base_name(base), "kind": "base", "base_model": base, "report": report,
                        "reused": reused, "report_file": str(path)})  # fmt: skip
    if len(entries) < 2:
        left_out = f" ({len(skipped)} skipped: {', '.join(s['name'] for s in skipped)})" if skipped else ""
        raise SettingsError(f"a leaderboard needs two models at least{left_out}; train another adapter")
    result = board(entries, want) | {"skipped": skipped}
    write_json_atomic(folder / BOARD_FILE, result)
    print(board_table(result))
    print(f"leaderboard: {folder / BOARD_FILE}")
    return 0


def board_table(b: dict) -> str:
    """The board as the CLI prints it: the ranking with each entry's method and costs, then each pair's
    difference, p and Holm-adjusted p."""
    from ..evaluation.leaderboard import METHOD_SETTING
    from ..training.method_costs import COST_HEADERS, cost_cells, cost_text, memory_note

    costs = cost_text(COST_HEADERS)
    lines = [f"{'#':>2}  {'model':34}{'n':>6}  {'accuracy (95% interval)':26}{costs}settings that differ"]
    for rank, e in enumerate(b["entries"], 1):
        ci = e["accuracy_ci"]
        shown = {k: v for k, v in e["settings"].items() if k != METHOD_SETTING}  # the method has its own column
        settings = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in shown.items())
        name = e["name"] + (" *" if e.get("reused") else "")
        cells = cost_text(cost_cells(e.get("method") or "?", e.get("costs")))
        accuracy = f"{e['accuracy']:6.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"
        lines.append(f"{rank:>2}  {name[:33]:34}{e['n']:>6}  {accuracy:26}{cells}{settings}".rstrip())
    lines.append("* reused a saved report on the same rows and protocol")
    lines += [f"skipped {s['name']}: {s['reason']}" for s in b.get("skipped") or []]
    if note := memory_note([e.get("costs") for e in b["entries"]]):
        lines.append(note)
    lines.append(f"pairs (exact McNemar on the same questions; {b['correction']}):")
    for p in b["pairs"]:
        if not p["test"]:
            lines.append(f"  {p['a']} vs {p['b']}: no question in common")
            continue
        t = p["test"]
        verdict = "different" if p["significant"] else "not distinguishable"
        lines.append(
            f"  {p['a'][:28]:28} vs {p['b'][:28]:28} {t['difference'] * 100:+6.1f} points  p = {t['p_value']:.2g}  "
            f"Holm p = {p['p_holm']:.2g}  {verdict}"
        )
    return "\n".join(lines)
