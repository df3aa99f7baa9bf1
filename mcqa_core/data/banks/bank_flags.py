"""The flags that name a bank and map its columns, shared by `mcqa-eval` and `mcqa-train`: the same names
on the command line, in YAML settings and in `mcqa_run.json`. Flags left unset are guessed from the
file's columns (or taken from a named format)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from ...setting_fields import setting
from .bank_rows import (
    ANSWER_FORMS,
    NAMED_FORMATS,
    Bank,
    ColumnMap,
    guess_mapping,
    load_bank,
    read_table,
    rows_from_records,
)

FLAG_TO_MAP = {
    "question_col": "question",
    "option_cols": "option_cols",
    "options_col": "options_col",
    "answer_col": "answer",
    "answer_as": "answer_as",
    "subject_col": "subject",
    "context_col": "context",
}


@dataclass
class BankColumns:
    bank: str | None = setting(
        None,
        "Your own questions instead of MedMCQA's: a CSV/TSV/JSON/JSONL/Parquet file, a "
        "hub id, or a named set (medmcqa, medqa, mmlu-medical, pubmedqa, headqa). Training "
        "reports on its held-out quarter (sha256(id) % 4 == 0) or on --eval-bank.",
        metavar="PATH_OR_NAME",
    )
    question_col: str | None = setting(
        None, "Bank column holding the question (default: guessed from the names).", metavar="NAME"
    )
    option_cols: list | None = setting(
        None, "Bank columns holding the options, in order: A,B,C (2 to 5).", metavar="A,B,C"
    )
    options_col: str | None = setting(
        None, "Or one bank column holding a list of options, or a dict of them.", metavar="NAME"
    )
    answer_col: str | None = setting(
        None, "Bank column holding the answer (none: the bank has no answers).", metavar="NAME"
    )
    answer_as: str | None = setting(
        None,
        "How the answer is written: letter, text, index0 or index1 (default: "
        "detected; refused when 0- and 1-based both fit).",
        choices=ANSWER_FORMS,
    )
    subject_col: str | None = setting(None, "Bank column holding a subject, for per-subject accuracy.", metavar="NAME")
    context_col: str | None = setting(
        None, "Bank column holding a passage shown before the question (an abstract, a vignette).", metavar="NAME"
    )


def given_mapping(columns: BankColumns) -> dict:
    """The ColumnMap fields the user set, by ColumnMap name."""
    return {
        FLAG_TO_MAP[f.name]: getattr(columns, f.name)
        for f in fields(BankColumns)
        if f.name in FLAG_TO_MAP and getattr(columns, f.name) is not None
    }


def open_bank(source: str, columns: BankColumns) -> Bank:
    """A bank from a file, a hub id or a named set, with the flags given laid over the guessed mapping."""
    given = given_mapping(columns)
    if not given or source in NAMED_FORMATS:
        base = NAMED_FORMATS[source].mapping if source in NAMED_FORMATS else None
        return load_bank(source, replace(base, **given) if base and given else base)
    path = Path(source).expanduser()
    if not path.exists():  # a hub id: the flags are the whole mapping
        return load_bank(source, ColumnMap(**given))
    records, fmt = read_table(path)
    columns = list(dict.fromkeys(k for r in records for k in r))
    guessed = guess_mapping(columns)  # the fields left unset
    if "option_cols" in given:
        guessed = replace(guessed, options_col=None)
    if "options_col" in given:
        guessed = replace(guessed, option_cols=None)
    return rows_from_records(records, replace(guessed, **given), str(path.resolve()), fmt, columns)


def mapping_problems(columns: BankColumns, bank: str | None, flag: str = "--bank") -> list[str]:
    given = [
        f"--{f.name.replace('_', '-')}"
        for f in fields(BankColumns)
        if f.name in FLAG_TO_MAP and getattr(columns, f.name) is not None
    ]
    if given and not bank:
        return [f"{', '.join(given)} map a bank's columns: they need {flag} FILE"]
    if columns.option_cols is not None and columns.options_col is not None:
        return ["give --option-cols or --options-col, not both"]
    return []
