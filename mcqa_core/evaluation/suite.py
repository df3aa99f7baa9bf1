"""Suites: several question sets scored with one model and one protocol, one report per set and a summary with one
row per set (accuracy and interval, the base beside it with the paired test) and the macro average over the sets.

A suite is a YAML file (`suites/medical.yaml` is `--suite medical`). A set whose rows cannot be had here (the hub
offline, no such file) is listed as not available, and the others still run. The command is `cli/suite_command.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..data.banks.bank_columns import NAMED_FORMATS
from ..data.banks.bank_flags import BankColumns, given_mapping, open_bank
from ..data.banks.bank_rows import load_bank, select_part
from ..data.medmcqa import load_split
from ..errors import DataError, SettingsError
from ..settings_file import read_settings_file
from .stats import CONFIDENCE

SUITES_DIR = Path(__file__).resolve().parent / "suites"
SUMMARY_FILE = "summary.json"
NOT_HERE = "not available here: needs the hub or --bank FILE"
_COLUMN_KEYS = {f.name for f in fields(BankColumns)} - {"bank"}
_SET_KEYS = ("name", "bank", "split", "subject", "format")


@dataclass
class SuiteSet:
    name: str
    bank: str | None = None  # a named set, a hub id or a local file; None: MedMCQA from the data folder
    split: str | None = None  # MedMCQA's split (default validation), or the bank's part (default all)
    subject: str | None = None  # only this subject's rows (MMLU's six medical subjects from one set)
    format: str | None = None  # a local file in a named set's shape (NAMED_FORMATS: its columns)
    columns: dict = field(default_factory=dict)  # BankColumns flags: question_col, options_col, ...


@dataclass
class Suite:
    name: str
    sets: list[SuiteSet]
    source: str


@dataclass
class SetRows:
    set: SuiteSet
    rows: list[dict]
    split: str
    source: str
    bank: object = None  # the Bank a bank set came from (its other rows give the K-shot examples)
    problem: str | None = None  # why the set is not scored; None when it is


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def read_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a YAML file; anything malformed is one SettingsError naming the set and key."""
    builtin = SUITES_DIR / f"{name_or_path}.yaml"
    path = builtin if builtin.is_file() else Path(name_or_path).expanduser()
    origin = f"--suite {name_or_path}"
    if not path.is_file():
        raise SettingsError(f"{origin}: no such suite; built in: {', '.join(suite_names())}, or give a YAML file")
    raw = read_settings_file(path, origin)
    sets = raw.get("sets")
    if not isinstance(sets, list) or not sets or set(raw) - {"name", "sets"}:
        raise SettingsError(f"{origin}: a suite file holds `name` and a non-empty list `sets` ({path})")
    out, seen = [], set()
    for n, entry in enumerate(sets, 1):
        where = f"{origin}: set {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SettingsError(f"{where} needs a `name`")
        if entry["name"] in seen:
            raise SettingsError(f"{where}: the name {entry['name']!r} is given twice; names must be unique")
        seen.add(entry["name"])
        unknown = set(entry) - set(_SET_KEYS) - _COLUMN_KEYS
        if unknown:
            known = ", ".join([*_SET_KEYS[1:], *sorted(_COLUMN_KEYS)])
            raise SettingsError(f"{where} ({entry['name']}): unknown key {sorted(unknown)[0]!r}; known: {known}")
        if entry.get("format") not in (None, *NAMED_FORMATS):
            named = ", ".join(NAMED_FORMATS)
            raise SettingsError(f"{where} ({entry['name']}): unknown format {entry['format']!r}; choose {named}")
        bank = entry.get("bank")
        if bank and not builtin.is_file() and (path.parent / bank).exists():  # files named beside the suite file
            bank = str(path.parent / bank)
        columns = {k: v for k, v in entry.items() if k in _COLUMN_KEYS}
        picked = [entry.get(k) for k in _SET_KEYS[2:]]
        out.append(SuiteSet(entry["name"], bank, *picked, columns))
    return Suite(str(raw.get("name") or path.stem), out, str(path))


def load_set(s: SuiteSet, data_dir, limit: int | None, banks: dict) -> SetRows:
    """The set's rows (the first `limit`), or the reason it cannot be scored here. `banks` keeps each bank read
    once per suite (MMLU's six subjects are one file)."""
    try:
        if s.bank is None:
            data = load_split(s.split or "validation", data_dir, limit)
            return SetRows(s, data.rows, data.split, data.source)
        key = (s.bank, s.format, tuple(sorted(s.columns.items())))
        if key not in banks:
            given = BankColumns(**s.columns)
            if s.format:  # a named set's columns, the set's own flags laid over them
                banks[key] = load_bank(s.bank, replace(NAMED_FORMATS[s.format].mapping, **given_mapping(given)))
            else:
                banks[key] = open_bank(s.bank, given)
        bank = banks[key]
        rows = select_part(bank, s.split or "all").rows
        if s.subject is not None:
            rows = [r for r in rows if r.get("subject_name") == s.subject]
        if not rows:
            return SetRows(s, [], s.split or "all", bank.source, bank, f"no {s.subject} rows in {bank.source}")
        if not bank.has_answers:
            return SetRows(s, [], s.split or "all", bank.source, bank, f"{bank.source} has no answers to score")
        return SetRows(s, rows[:limit] if limit else rows, s.split or "all", bank.source, bank)
    except DataError as e:
        unreachable = any(w in str(e) for w in ("hub", "does not exist", "no such file", "not found", "cannot load"))
        return SetRows(s, [], s.split or "", s.bank or "MedMCQA", None, NOT_HERE if unreachable else str(e))


def set_entry(loaded: SetRows, report: dict | None, report_file: str | None) -> dict:
    """The summary's row for one set: its accuracy and interval, and the base's with the paired test."""
    entry = {"name": loaded.set.name, "source": loaded.source, "split": loaded.split}
    if report is None:
        return entry | {"status": "not scored", "reason": loaded.problem}
    entry |= {"status": "scored", "report": report_file, "n": report["n"]}
    entry |= {"accuracy": report["accuracy"], "accuracy_ci": report["accuracy_ci"]}
    if "acc_norm" in report:
        entry |= {"acc_norm": report["acc_norm"]["accuracy"], "acc_norm_ci": report["acc_norm"]["accuracy_ci"]}
    if report.get("base"):
        entry |= {"base_accuracy": report["base"]["accuracy"], "base_ci": report["base"]["accuracy_ci"]}
        entry["vs_base"] = report["vs_base"]
    return entry


def macro_average(entries: list[dict], key: str = "accuracy") -> dict | None:
    """The unweighted mean over the scored sets, with a normal-approximation interval from each set's binomial
    variance (the sets are independent samples)."""
    scored = [e for e in entries if e.get("status") == "scored" and key in e]
    if not scored:
        return None
    k = len(scored)
    mean = sum(e[key] for e in scored) / k
    se = math.sqrt(sum(e[key] * (1 - e[key]) / e["n"] for e in scored)) / k
    from scipy.stats import norm

    z = norm.ppf(0.5 + CONFIDENCE / 2)
    return {"sets": k, "accuracy": mean, "ci": [max(0.0, mean - z * se), min(1.0, mean + z * se)]}


def summary(suite: Suite, entries: list[dict], protocol: dict) -> dict:
    out = {"kind": "suite", "suite": suite.name, "suite_file": suite.source, "protocol": protocol, "sets": entries}
    out["macro"] = macro_average(entries)
    if any("base_accuracy" in e for e in entries):
        out["macro_base"] = macro_average(entries, "base_accuracy")
    if any("acc_norm" in e for e in entries):
        out["macro_acc_norm"] = macro_average(entries, "acc_norm")
    return out


def _pct(x: float, ci=None) -> str:
    return f"{x:6.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def suite_table(s: dict) -> str:
    """The summary as the CLI prints it: one row per set, then the macro average."""
    base = "macro_base" in s
    head = f"{'set':28}{'n':>6}  {'model (95% interval)':26}" + (
        f"{'base (95% interval)':26}{'difference':>12}" if base else ""
    )
    from .protocol import protocol_line

    lines = [
        f"suite {s['suite']}: {protocol_line(s['protocol'])}" if s.get("protocol") else f"suite {s['suite']}",
        head,
    ]
    for e in s["sets"]:
        if e["status"] != "scored":
            lines.append(f"{e['name'][:27]:28}{'-':>6}  {e['reason']}")
            continue
        row = f"{e['name'][:27]:28}{e['n']:>6}  {_pct(e['accuracy'], e['accuracy_ci']):26}"
        if "base_accuracy" in e:
            t = e["vs_base"]
            row += f"{_pct(e['base_accuracy'], e['base_ci']):26}{t['difference'] * 100:+11.1f}  p = {t['p_value']:.2g}"
        if "acc_norm" in e:
            row += f"   acc_norm {_pct(e['acc_norm'], e['acc_norm_ci'])}"
        lines.append(row)
    if s.get("macro"):
        m = s["macro"]
        label = f"macro average ({m['sets']} set{'s' if m['sets'] > 1 else ''})"
        row = f"{label:28}{'':6}  {_pct(m['accuracy'], m['ci']):26}"
        if base and s.get("macro_base"):
            b = s["macro_base"]
            row += f"{_pct(b['accuracy'], b['ci']):26}{(m['accuracy'] - b['accuracy']) * 100:+11.1f}"
        lines.append(row)
    return "\n".join(lines)
