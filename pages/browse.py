"""Browse: the MedMCQA validation split, filtered and searched, one sample at a time with its answer."""

from pathlib import Path

import pandas as pd
import streamlit as st

from app_ui.answer_view import answer_ui
from app_ui.bank_upload import current_bank
from app_ui.caches import current_model, data_dir, validation_rows_or_none
from app_ui.evidence_view import evidence_ui
from app_ui.markdown_text import md_escape
from app_ui.navigation import ASK, through_router
from app_ui.operator_gate import is_operator, rows_source, server_text
from mcqa_core.data.medmcqa import SHARED_DATA_HINT
from mcqa_core.data.prompt import CONTEXT_KEY, OPTION_KEYS, row_letters
from mcqa_core.errors import McqaError
from mcqa_core.models.run_record import trained_on_row
from mcqa_core.service.questions import answer_question
from mcqa_core.service.row_filters import (
    ALL,
    choice_types,
    filter_rows,
    find_row,
    gold_letter,
    page_count,
    page_rows,
    short,
    subjects,
    topics,
)
from mcqa_core.service.similar_questions import similar_questions

PAGE_SIZES = (10, 20, 50)


def rows_ui() -> tuple[list[dict], str]:
    """The validation rows, or a message that says how to point the app at data (then stop)."""
    rows, source = validation_rows_or_none()
    if rows is not None:
        return rows, source
    where = data_dir()
    if where is None:
        why = "the Hugging Face hub is unreachable"
    elif not Path(where).expanduser().is_dir():
        why = f"the folder {md_escape(server_text(where))} does not exist"
    else:
        why = f"the folder {md_escape(server_text(where))} holds no usable validation.jsonl"
    operator = is_operator()
    st.info(
        f"No MedMCQA validation rows are available here ({why}).\n\n"
        "Point the app at a folder holding `validation.jsonl` (Hugging Face schema): "
        + ("type it below, or " if operator else "the app's operator can ")
        + f"start the app with `MCQA_DATA_DIR={SHARED_DATA_HINT} streamlit run app.py`, or "
        f"`streamlit run app.py -- --data-dir {SHARED_DATA_HINT}`."
    )
    st.caption(f"What went wrong: {md_escape(server_text(source))}")
    if not operator:  # a folder on the server, typed by whoever reaches the page
        st.stop()
    folder = st.text_input("MedMCQA data folder", key="browse_data_dir", placeholder=SHARED_DATA_HINT).strip()
    if folder and folder != st.session_state.get("app_data_dir"):  # rerun once per new folder, never in a loop
        st.session_state["app_data_dir"] = folder
        st.rerun()
    st.stop()


def filters_ui(rows: list[dict]) -> dict:
    c1, c2, c3 = st.columns([2, 2, 1])
    subject = c1.selectbox("Subject", [ALL] + subjects(rows), key="browse_subject")
    topic_choices = [ALL] + topics(rows, subject)
    if st.session_state.get("browse_topic") not in topic_choices:
        st.session_state["browse_topic"] = ALL  # the subject changed under it
    topic = c2.selectbox("Topic", topic_choices, key="browse_topic")
    choice = c3.selectbox("Choice type", [ALL] + choice_types(rows), key="browse_choice")
    search = st.text_input(
        "Search question, options or id", key="browse_search", placeholder="words that must all appear, any case"
    )
    return {"subject": subject, "topic": topic, "choice_type": choice, "search": search}


def pagination_ui(n_rows: int) -> tuple[int, int]:
    row = st.container(horizontal=True, vertical_alignment="bottom")  # fixed widths, wrapping on a narrow screen
    size = row.selectbox("Rows per page", PAGE_SIZES, index=1, key="browse_page_size", width=140)
    pages = page_count(n_rows, size)
    if st.session_state.get("browse_page", 1) > pages:
        st.session_state["browse_page"] = pages  # the filters shrank the list
    # At most 180 px wide: Streamlit then draws no "Press Enter to apply" over its digits and +/- buttons.
    page = row.number_input("Page", min_value=1, max_value=pages, step=1, key="browse_page", width=150)
    row.caption(f"Page {page} of {pages}")
    return int(page), size


def table_ui(rows: list[dict]) -> None:
    df = pd.DataFrame(
        {
            "answer": [gold_letter(r) for r in rows],
            "question": [short(r["question"], 160) for r in rows],
            "subject": [r.get("subject_name") or "" for r in rows],
            "topic": [r.get("topic_name") or "" for r in rows],
            "explained": [bool(r.get("exp")) for r in rows],
            "id": [r["id"] for r in rows],  # last: the detail below names it too
        }
    )
    # Rows taller than 4 rem wrap their text: the question reads whole in its 400 px column.
    text = st.column_config.TextColumn
    sizes = {"answer": text(width="small"), "question": text(width="large")}
    st.dataframe(
        df, hide_index=True, width="stretch", height=min(38 + 70 * len(rows), 460), row_height=70, column_config=sizes
    )


def source_name() -> str | None:
    """The bank's file name while Browse shows the uploaded bank; None for MedMCQA."""
    bank = current_bank()
    return bank["name"] if bank and (st.session_state.get("browse_source") or "").startswith("Your questions") else None


def detail_ui(row: dict, where: str) -> None:
    gold, bank = gold_letter(row), source_name()
    origin = md_escape(bank) if bank else "MedMCQA"
    with st.container(border=True):
        st.caption(
            " · ".join(
                md_escape(str(x))
                for x in (
                    row.get("subject_name") or "Unknown subject",
                    row.get("topic_name") or "no topic",
                    f"{row.get('choice_type') or 'unknown'} choice",
                    f"id {row.get('id')}",
                )
            )
        )
        if row.get(CONTEXT_KEY):
            with st.expander("Passage", expanded=True):
                st.markdown(md_escape(row[CONTEXT_KEY]))
        st.markdown(f"##### {md_escape(row['question'])}")
        for letter, key in zip(row_letters(row), OPTION_KEYS):
            mark = ":green[:material/check_circle:]" if letter == gold else ":gray[:material/radio_button_unchecked:]"
            text = f"**{letter}.** {md_escape(row[key])}"
            st.markdown(f"{mark} {text}{'  — **correct answer**' if letter == gold else ''}")
        exp = row.get("exp")
        with st.expander(f"Explanation ({origin})", expanded=bool(exp)):
            st.markdown(md_escape(exp) if exp else f"_{origin} has no explanation for this question._")
        buttons = st.container(horizontal=True)  # as wide as their labels, wrapping on a narrow screen
        if buttons.button("Ask the model", icon=":material/smart_toy:", key=f"browse_ask_{where}", type="primary"):
            loaded = current_model()
            if loaded is None:
                st.info("No model is loaded: pick one in the sidebar.")
            else:
                try:
                    with st.spinner("Thinking…"):
                        st.session_state["browse_answer"] = {"id": row["id"], "answer": answer_question(loaded, row)}
                except McqaError as e:  # a question too long, a server that stopped answering
                    st.error(server_text(e))
        if buttons.button("Open in Ask", icon=":material/open_in_new:", key=f"browse_open_in_ask_{where}"):
            st.session_state["ask_prefill"] = row
            st.session_state["ask_prefill_bank"] = bank
            st.switch_page(ASK)
        shown = st.session_state.get("browse_answer")
        if shown and shown["id"] == row["id"]:
            answer_ui(
                shown["answer"], row, "The model's answer against the correct one", key="browse_answer", source=origin
            )
            loaded = current_model()
            if loaded is not None and loaded.has_adapter and bank is None and trained_on_row(loaded.run, row["id"]):
                st.caption(
                    "The adapter was trained on this question (demo-train), so this answer is not a test "
                    "of generalisation; held-out questions are."
                )
    more = "The rows most like this one in the same data, with their answers and explanations"
    if st.toggle("Similar questions", key=f"browse_similar_{where}", help=more):
        evidence_ui(*similar_questions(row, data_dir(), current_bank() if bank else None), itself_shown_above=True)


def source_ui() -> tuple[list[dict], str]:
    """MedMCQA's validation rows, or the bank uploaded on Evaluate (this session only)."""
    bank = current_bank()
    if bank is None:
        st.title("Browse MedMCQA validation")
        return rows_ui()
    medmcqa, yours = "MedMCQA validation", f"Your questions ({bank['name']})"
    choice = st.segmented_control("Questions", [medmcqa, yours], default=medmcqa, key="browse_source")
    st.title(f"Browse {choice or medmcqa}")
    if choice == yours:
        return bank["rows"], f"{bank['name']} (uploaded, this session only)"
    return rows_ui()


through_router()  # the sidebar even where Streamlit runs this file without app.py
rows, source = source_ui()
source = rows_source(source)  # a visitor reads no server folder

focus_id = st.session_state.get("browse_focus_id")
if focus_id is not None:  # opened from Evaluate's wrong answers
    row = find_row(rows, focus_id)
    if st.button("Back to the list", icon=":material/arrow_back:", key="browse_back"):
        st.session_state.pop("browse_focus_id", None)
        st.rerun()
    if row is None:
        st.info(f"Question {focus_id} is not in the rows from {md_escape(source)}. Go back to the list.")
        st.stop()
    detail_ui(row, "focus")
    st.stop()

filters = filters_ui(rows)
matched = filter_rows(rows, **filters)
st.caption(f"{len(matched):,} of {len(rows):,} questions match · source: {md_escape(source)}")
if not matched:
    st.info('No question matches these filters. Clear the search or choose "All" subjects.')
    st.stop()
if st.session_state.get("browse_filters_seen") != filters:  # new filters start at the first page
    st.session_state["browse_filters_seen"] = filters
    st.session_state["browse_page"] = 1
page, size = pagination_ui(len(matched))
shown_rows = page_rows(matched, page, size)
table_ui(shown_rows)
ids = [r["id"] for r in shown_rows]
by_id = {r["id"]: r for r in shown_rows}
pick = st.selectbox(
    "Open a question",
    ids,
    key="browse_row",
    format_func=lambda i: f"{gold_letter(by_id[i])} · {short(by_id[i]['question'], 100)}",
)
detail_ui(by_id[pick], "list")
