"""Question banks: a user's own multiple-choice file, or a medical benchmark by name, as rows of MedMCQA's shape
(id, question, opa.., cop, subject_name, exp) with 2 to 5 options, which training, scoring and the app take unchanged.
Bad input is refused with one DataError line; rows that cannot be used are skipped, counted and named."""

from __future__ import annotations

import ast
import difflib
import json
import math
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ...errors import DataError
from ..medmcqa import InvalidRowsWarning, is_heldout, validate_row
from ..prompt import CONTEXT_KEY, MAX_OPTIONS, OPTION_KEYS
from .bank_columns import ANSWER_FORMS, NAMED_FORMATS, ColumnMap, NamedFormat, guess_mapping
from .bank_files import FILE_FORMATS, SPREADSHEETS, read_table

PARTS = ("all", "heldout", "rest")
# "B", " b ", "B.", "(B)", up to J: past E, a row is skipped, never cut to five.
_LETTER = re.compile(r"^\(?\s*([A-Ja-j])\s*\)?\s*\.?$")


@dataclass
class Bank:
    rows: list[dict]
    source: str  # the file path or "hub:<id>"
    format: str  # csv, tsv, json, parquet, a NAMED_FORMATS key, or "hub"
    mapping: dict  # the ColumnMap used, answer_as resolved
    columns: list[str]
    skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)  # the first 5, "id (reason)"

    @property
    def has_answers(self) -> bool:
        return bool(self.rows) and all(r.get("cop") is not None for r in self.rows)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "format": self.format,
            "mapping": self.mapping,
            "rows": len(self.rows),
            "skipped": self.skipped,
        }


def _text(v) -> str | None:  # a cell as stripped text; None, NaN and blanks are missing
    if isinstance(v, float):  # an int column with gaps arrives as floats
        v = None if math.isnan(v) else int(v) if v.is_integer() else v
    return None if v is None else str(v).strip() or None


def _as_int(v) -> int | None:
    number = isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
    return int(v) if number or isinstance(v, str) and v.strip().removeprefix("-").isdecimal() else None


def _index(value, form: str, opts) -> int | None:
    """The 0-based option an answer names, or None when it names none of `opts`."""
    if form == "letter":
        m = _LETTER.match(value.strip()) if isinstance(value, str) else None
        i = ord(m.group(1).upper()) - ord("A") if m else None
    elif form == "text":
        want = " ".join(str(value).split()).casefold()
        i = next((k for k, o in enumerate(opts) if o and " ".join(o.split()).casefold() == want), None)
    else:
        i = _as_int(value)
        i = None if i is None else i - (form == "index1")
    return i if i is not None and 0 <= i < len(opts) else None


def _detect(pairs: list, column: str) -> str:
    """How a column names answers, from (answer, options) pairs: the form all of them fit, else one that at
    least 3 in 4 fit (the others name no option and are skipped); refused when it cannot be told."""
    ints = [_as_int(v) for v, _ in pairs]
    fits = {
        "letter": sum(bool(_LETTER.match(str(v).strip())) for v, _ in pairs),
        "index": len(ints) - ints.count(None),
        "text": sum(_index(v, "text", o) is not None for v, o in pairs),
    }
    form = next((k for k, n in fits.items() if n == len(pairs)), max(fits, key=fits.get))
    if 4 * fits[form] < 3 * len(pairs):
        seen = ", ".join(repr(v) for v in list(dict.fromkeys(str(v) for v, _ in pairs))[:2])
        raise DataError(
            f"cannot tell how answer column {column!r} names the answer (e.g. {seen}): not all letters, "
            f"numbers or option texts; fix the column or pass --answer-as {'|'.join(ANSWER_FORMS)}"
        )
    if form != "index" or 0 in ints:
        return "index0" if form == "index" else form
    if any(i == len(opts) for i, (_, opts) in zip(ints, pairs)):
        return "index1"
    raise DataError(
        f"the numbers in answer column {column!r} may count options from 0 or from 1; "
        "pass --answer-as index0 or --answer-as index1"
    )


def _listed(value):
    """A list or dict kept as text in a CSV cell: JSON (`["a", "b"]`) or Python's repr (pandas: `['a', 'b']`)."""
    if not isinstance(value, str) or value.strip()[:1] not in ("[", "{"):
        return value
    try:
        return json.loads(value)
    except ValueError:
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return value


def _passage(value) -> str | None:
    """A context cell as text: a string, a list of paragraphs, or PubMedQA's {"contexts": [...]} (joined by
    lines, as lm-evaluation-harness's pubmedqa task joins them)."""
    value = _listed(value)
    if isinstance(value, dict):
        value = value.get("contexts", value.get("text"))
    if isinstance(value, (list, tuple)):
        value = "\n".join(t for v in value if (t := _text(v)))
    return _text(value)


def _options(record: dict, m: ColumnMap) -> list | str:
    """The row's options (None marks a gap), or why it has none."""
    if m.options_fixed:
        return list(m.options_fixed)
    if m.option_cols:
        opts = [record.get(c) for c in m.option_cols]
    else:
        opts = _listed(record.get(m.options_col))
        opts = [opts[k] for k in sorted(opts)] if isinstance(opts, dict) else opts
        if not isinstance(opts, (list, tuple)):
            return f"{m.options_col} is not a list of options"
        if opts and all(isinstance(d, dict) for d in opts):  # HEAD-QA: [{"aid": 1, "atext": ..}, ..]
            opts = sorted(opts, key=lambda d: d["aid"]) if all(isinstance(d.get("aid"), int) for d in opts) else opts
            opts = [
                d.get("atext", d.get("text", ([v for v in d.values() if isinstance(v, str)] + [None])[0])) for d in opts
            ]
    opts = [_text(o) for o in opts]
    while opts and opts[-1] is None:  # a 5-column file may hold 4-option rows
        opts.pop()
    return opts if len(opts) <= MAX_OPTIONS else f"{len(opts)} options (at most {MAX_OPTIONS})"


def rows_from_records(
    records: list[dict], mapping: ColumnMap, source: str, fmt: str, columns: list[str] | None = None
) -> Bank:
    """Records (one dict per question) as a Bank of valid rows; the others are skipped, counted and named."""
    if not records:
        raise DataError(f"{source} holds no questions; check the file or the split")
    columns, m = list(columns or dict.fromkeys(k for r in records for k in r)), mapping
    if m.answer_as not in (None, *ANSWER_FORMS):
        raise DataError(f"unknown answer_as {m.answer_as!r}; choose one of {', '.join(ANSWER_FORMS)}")
    if not m.question or (bool(m.option_cols) + bool(m.options_col) + bool(m.options_fixed)) != 1:
        what = "the question column" if not m.question else "either option columns or one column of option lists"
        raise DataError(f"{source}: name {what} (the columns found are {', '.join(columns)})")
    used = [m.question, *(m.option_cols or []), m.options_col, m.answer, m.subject, m.id, m.explanation, m.context]
    missing = [c for c in used if c is not None and c not in columns]
    if missing:
        named = ", ".join(
            repr(c) + "".join(f" (did you mean {x!r}?)" for x in difflib.get_close_matches(c, columns, 1))
            for c in missing
        )
        raise DataError(f"{source} has no column {named}; the columns found are {', '.join(columns)}")
    ids = [_text(r.get(m.id)) for r in records] if m.id else [f"row-{n}" for n in range(1, len(records) + 1)]
    twice = [i for i, n in Counter(ids).items() if n > 1 and i is not None]
    if twice:
        raise DataError(
            f"{source} repeats the ids {', '.join(twice[:3])}{' ...' if len(twice) > 3 else ''} in column "
            f"{m.id!r}: ids must be unique; fix them, or rename column {m.id!r} in the file (to source_id, say) "
            "so that no id column is read and the rows are numbered row-1, row-2, ..."
        )
    opts = [_options(r, m) for r in records]
    pairs = [(r[m.answer], o) for r, o in zip(records, opts) if isinstance(o, list) and _text(r.get(m.answer))]
    form = (m.answer_as or _detect(pairs, m.answer)) if m.answer else None
    rows, bad = [], []
    for n, (record, rid, options) in enumerate(zip(records, ids, opts), 1):
        row, value = {"id": rid or f"row-{n}", "question": _text(record.get(m.question))}, record.get(m.answer)
        if isinstance(options, list):
            row.update({k: o for k, o in zip(OPTION_KEYS, options) if o is not None})
            row["cop"] = _index(value, form, options) if m.answer and _text(value) else None
        reason = options if isinstance(options, str) else validate_row(row, options=None, need_answer=False)
        if reason is None and m.answer and row["cop"] is None:
            reason = f"answer {value!r} is not one of its {len(options)} options" if _text(value) else "no answer"
        if reason is not None:
            bad.append(f"{row['id']} ({reason})")
            continue
        row |= {k: v for k, c in (("subject_name", m.subject), ("exp", m.explanation)) if (v := _text(record.get(c)))}
        if m.context and (passage := _passage(record.get(m.context))):
            row[CONTEXT_KEY] = passage
        rows.append(row)
    if not rows:
        raise DataError(f"no usable question in {source}: {len(bad)} rows skipped, e.g. {', '.join(bad[:3])}")
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} invalid row(s) in {source}: {shown}", InvalidRowsWarning, stacklevel=2)
    return Bank(
        rows=rows,
        source=source,
        format=fmt,
        mapping=asdict(replace(m, answer_as=form)),
        columns=columns,
        skipped=len(bad),
        skipped_ids=bad[:5],
    )


def load_bank(source: str, mapping: ColumnMap | None = None, *, split: str | None = None) -> Bank:
    """A named format (a NAMED_FORMATS key, read from the hub), a local file, or a hub id "org/name", as a Bank.
    Without a mapping: the named format's, else guess_mapping's."""
    named, path = NAMED_FORMATS.get(source), Path(source).expanduser()
    if named is None and (
        path.exists()
        or path.suffix.lower() in (*FILE_FORMATS, *SPREADSHEETS)
        or not re.fullmatch(r"[\w.-]+/[\w.-]+", source)
    ):
        records, fmt = read_table(path)
        return rows_from_records(records, mapping or guess_mapping(list(records[0])), str(path.resolve()), fmt)
    from ...hub import OFFLINE_HINT, hub_reachable

    fmt, named = (source, named) if named else ("hub", NamedFormat(source, [None], "train", mapping))
    mapping, split = mapping or named.mapping, split or named.split
    if not hub_reachable():
        where = f"{source} ({named.hub})" if fmt != "hub" else f"{source} (no such file here, so read as a hub id)"
        raise DataError(f"cannot load {where}: {OFFLINE_HINT} A file in that format loads offline: pass its path.")
    import datasets

    records = []
    for config in named.configs:
        try:
            ds = datasets.load_dataset(named.hub, config, split=split)
        except Exception as e:  # the hub raises many types: connection, missing config or split
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:150]
            raise DataError(
                f"could not load {named.hub} {config or ''} [{split}] from the Hugging Face hub "
                f"({reason}); check the name and split, or download the file and pass its path"
            ) from None
        tag = len(named.configs) > 1 and mapping and mapping.subject  # MMLU's configs are its subjects
        records += [{**r, tag: r.get(tag) or config} if tag else r for r in ds]
    columns = list(dict.fromkeys(k for r in records for k in r))
    return rows_from_records(records, mapping or guess_mapping(columns), f"hub:{named.hub}", fmt, columns)


def select_part(bank: Bank, part: str) -> Bank:
    """All rows, the held-out quarter (sha256(id) % 4 == 0, the offline MedMCQA rule), or the rest."""
    if part not in PARTS:
        raise DataError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    rows = bank.rows if part == "all" else [r for r in bank.rows if is_heldout(r["id"]) == (part == "heldout")]
    if not rows:
        raise DataError(f"{bank.source} has no {part} rows among its {len(bank.rows)}; use part all or a larger bank")
    return replace(bank, rows=rows)
