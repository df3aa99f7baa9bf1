"""The Streamlit pieces for a user's own question bank: upload, column mapping with a live preview of the
rows and of the first prompt as the model reads it. The bank lives in this session only (never written
into the repository); Evaluate scores it and Browse shows it."""

from __future__ import annotations

import hashlib

import streamlit as st

from mcqa_core.data.banks.bank_columns import ANSWER_FORMS, ColumnMap, guess_mapping
from mcqa_core.data.banks.bank_files import MAX_UPLOAD_MB
from mcqa_core.data.banks.bank_rows import rows_from_records
from mcqa_core.data.prompt import format_prompt
from mcqa_core.errors import DataError
from mcqa_core.service.uploads import read_upload

from .markdown_text import md_escape

BANK_STATE = "app_bank"  # {"name", "rows", "describe"}: the bank in use, shared by Evaluate and Browse
NONE = "(none)"
DETECT = "detect"
UPLOAD_TYPES = ["csv", "tsv", "json", "jsonl", "parquet", "xlsx", "xls"]  # Excel too, to say what to do with it


@st.cache_data(show_spinner="Reading the file…", max_entries=4)
def _read(name: str, digest: str, _data: bytes) -> tuple[list[dict], list[str], str]:
    return read_upload(name, _data)  # cached by name and content; the bytes themselves are not hashed again


def current_bank() -> dict | None:
    return st.session_state.get(BANK_STATE)


def _pick(label: str, columns: list[str], guess: str | None, key: str, optional: bool = False) -> str | None:
    choices = ([NONE] if optional else []) + columns
    index = choices.index(guess) if guess in choices else 0
    value = st.selectbox(label, choices, index=index, key=key)
    return None if value == NONE else value


def mapping_ui(columns: list[str]) -> ColumnMap:
    """Which column is what; defaults guessed from the names."""
    guess = guess_mapping(columns)
    c1, c2 = st.columns(2)
    with c1:
        question = _pick("Question column", columns, guess.question, "bank_question")
    modes = ["separate columns", "one list or dict column", "the same for every question"]
    one_column = c2.radio(
        "Options are",
        modes,
        horizontal=True,
        index=2 if guess.options_fixed else 1 if guess.options_col and not guess.option_cols else 0,
        key="bank_options_mode",
    )
    options_fixed = None
    if one_column == modes[2]:
        typed = st.text_input(
            "The options, in order, separated by commas",
            ", ".join(guess.options_fixed or ["yes", "no", "maybe"]),
            key="bank_options_fixed",
            help="PubMedQA's are yes, no, maybe: the answer column then holds one of them",
        )
        option_cols, options_col = None, None
        options_fixed = [o.strip() for o in typed.split(",") if o.strip()] or None
    elif one_column == modes[0]:
        option_cols = st.multiselect(
            "Option columns, in order (A, B, ...)",
            columns,
            default=[c for c in guess.option_cols or [] if c in columns],
            key="bank_option_cols",
        )
        options_col = None
    else:
        option_cols, options_col = None, _pick("Options column", columns, guess.options_col, "bank_options_col")
    c3, c4, c5, c6 = st.columns(4, vertical_alignment="bottom")  # the boxes in one line, however labels wrap
    with c3:
        answer = _pick("Answer column", columns, guess.answer, "bank_answer", optional=True)
    answer_as = c4.selectbox(
        "Answer given as",
        [DETECT, *ANSWER_FORMS],
        key="bank_answer_as",
        help="letter (A-E), the option's text, or its index counted from 0 or from 1",
    )
    with c5:
        subject = _pick("Subject column", columns, guess.subject, "bank_subject", optional=True)
    with c6:
        context = _pick("Passage column", columns, guess.context, "bank_context", optional=True)
    return ColumnMap(
        question=question,
        option_cols=option_cols,
        options_col=options_col,
        answer=answer,
        answer_as=None if answer_as == DETECT else answer_as,
        subject=subject,
        id=guess.id,
        explanation=guess.explanation,
        context=context,
        options_fixed=options_fixed,
    )


def bank_ui():
    """Upload, map, preview; returns the Bank (also kept in the session for Browse) or None."""
    upload = st.file_uploader(
        f"Your question bank: CSV, TSV, JSON/JSONL or Parquet, up to {MAX_UPLOAD_MB} MB",
        type=UPLOAD_TYPES,
        key="bank_file",
        help="One question per row, 2-5 options. It stays in this browser session only.",
    )
    if upload is None:
        st.caption(
            "Columns are mapped on the next step: question, options (separate columns, one list or dict "
            "column, or the same for every question), answer (letter, text or index), an optional subject and "
            "an optional passage shown before the question."
        )
        return None
    data = upload.getvalue()
    try:
        records, columns, fmt = _read(upload.name, hashlib.sha256(data).hexdigest(), data)
    except DataError as e:
        st.error(str(e))
        return None
    st.caption(f"{md_escape(upload.name)}: {len(records):,} rows, columns: {md_escape(', '.join(columns))}")
    st.dataframe(records[:5], hide_index=True, width="stretch")
    mapping = mapping_ui(columns)
    if missing := mapping.unmapped():  # nothing is wrong yet: the user has not chosen
        st.info(f"Choose {' and '.join(missing)} above to read the questions.")
        return None
    try:
        bank = rows_from_records(records, mapping, source=upload.name, fmt=fmt, columns=columns)
    except DataError as e:
        st.error(str(e))
        return None
    skipped = f"; {bank.skipped} skipped (e.g. {md_escape(', '.join(bank.skipped_ids[:3]))})" if bank.skipped else ""
    answers = f"answers as {bank.mapping.get('answer_as')}" if bank.has_answers else "no answers (ask and browse only)"
    st.success(f"{len(bank.rows):,} questions ready, {answers}{skipped}.")
    with st.expander("The first question exactly as the model reads it"):
        st.code(format_prompt(bank.rows[0]), language=None, wrap_lines=True)
    st.session_state[BANK_STATE] = {"name": upload.name, "rows": bank.rows, "describe": bank.describe()}
    return bank
