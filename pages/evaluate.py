"""Evaluate: how good is the loaded model? Its saved report, or one run here, against always-"A" and the base."""

import json
from pathlib import Path

import streamlit as st

from app_ui.bank_upload import bank_ui
from app_ui.caches import current_spec, data_dir, load_rows, require_model
from app_ui.leaderboard_view import leaderboard_ui
from app_ui.markdown_text import md_escape
from app_ui.navigation import through_router
from app_ui.operator_gate import is_operator, policy, server_text
from app_ui.report_view import report_ui
from app_ui.sidebar import TRAIN_HINT
from app_ui.suite_view import suites_ui
from mcqa_core.data.banks.bank_rows import select_part
from mcqa_core.data.medmcqa import REPORT_SPLITS, SHARED_DATA_HINT
from mcqa_core.data.prompt import SCORINGS
from mcqa_core.errors import DataError, McqaError
from mcqa_core.evaluation.fewshot import SHOT_SELECTIONS
from mcqa_core.models.run_record import split_overlap_warning
from mcqa_core.service.reports import evaluate_rows, saved_report
from mcqa_core.service.uploads import results_csv
from mcqa_core.training.status_files import CURVES_FILE

MAX_APP_SHOTS = 5  # MMLU's and LLaMA-Factory's; more would crowd the app's 512-token prompts


def compare_toggle(column, loaded, key: str) -> bool:
    if not loaded.has_adapter:  # never a switch drawn "on" that cannot be used
        column.caption("The base model alone is loaded: there is no adapter to compare it with.")
        return False
    return column.toggle(
        "Compare with base", value=True, key=key, help="Score again with the adapter switched off: the base model"
    )


def protocol_ui(loaded, key: str) -> dict:
    """How the questions are asked: K solved examples first (the same for all, or each question's most similar),
    and letter or cloze scoring; `evaluate_rows`' keywords."""
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")  # a wrapped label leaves the boxes in line
    shots = c1.number_input(
        "Solved examples first (shots)",
        min_value=0,
        max_value=MAX_APP_SHOTS,
        value=0,
        key=f"{key}_shots",
        help="K-shot: K questions with their answers before each one, drawn with a fixed seed from rows that are "
        "not reported (MedMCQA's dev slice or train split; the bank's other rows)",
    )
    selection = c2.segmented_control(
        "Examples",
        SHOT_SELECTIONS,
        default="random",
        key=f"{key}_shot_selection",
        disabled=not shots,
        help="random: the same K for every question; similar: each question's K most similar rows (BM25), which "
        "can repeat the question: the report gives the accuracy without those too",
    )
    local = loaded.model is not None  # a server gives letter probabilities only
    scoring = c3.segmented_control(
        "Scoring",
        SCORINGS,
        default="letter",
        key=f"{key}_scoring",
        disabled=not local,
        help="letter: the probability of A-D as the next token (what the adapter learned); cloze: the likelihood "
        "of each option's text after the question, summed (acc) and per character (acc_norm), as lm-eval reports",
    )
    if not local:
        c3.caption("Cloze scoring reads each option's tokens from the model: it needs the model in this process.")
    return {
        "shots": int(shots),
        "shot_selection": selection or "random",
        "scoring": scoring if local and scoring else "letter",
    }


def row_cap() -> int | None:
    """A visitor's evaluations share one answer queue with every session: at most this many questions each."""
    return None if is_operator() else policy().visitor_max_rows


def cap_caption(cap: int | None) -> None:
    if cap is not None:
        st.caption(f"Up to {cap:,} questions per evaluation for visitors; the operator may score every row.")


def default_split(loaded) -> str:
    data = (loaded.run or {}).get("data") or {}
    split = data.get("report_split") or data.get("eval_split")
    return split if split in REPORT_SPLITS else "heldout"


def run_ui(loaded) -> None:
    """N samples, the split, base comparison; runs the evaluation with a progress bar."""
    c1, c2, c3 = st.columns([1, 1, 2])
    split = c1.selectbox(
        "Split",
        REPORT_SPLITS,
        index=REPORT_SPLITS.index(default_split(loaded)),
        key="evaluate_split",
        help="heldout: the offline rows no adapter trains on; validation: all of MedMCQA's",
    )
    cap = row_cap()
    n = c2.number_input(
        "Questions",
        min_value=1,
        max_value=cap,
        value=min(50, cap or 50),
        step=10,
        key="evaluate_n",
        help="The first N rows of the split (always the same ones, so runs compare); more than "
        "the split holds: all of them",
    )
    compare = compare_toggle(c3, loaded, "evaluate_compare")
    asked = protocol_ui(loaded, "evaluate")
    cap_caption(cap)
    if loaded.has_adapter and (overlap := split_overlap_warning(loaded.run, split)):
        st.warning(overlap)
    if not st.button("Run evaluation", key="evaluate_run", type="primary"):
        return
    try:
        rows = load_rows(split, data_dir())[0][: int(n)]
    except DataError as e:
        why = md_escape(server_text(e))
        st.info(f"No {split} rows to evaluate on: {why}\n\nPoint the app at data: `MCQA_DATA_DIR={SHARED_DATA_HINT}`.")
        return
    if (scored := scored_ui(loaded, rows, compare, split=split, **asked)) is not None:
        report, rows = scored
        st.session_state["evaluate_result"] = {"spec": current_spec(), "report": report, "split": split, "rows": rows}


def scored_ui(loaded, rows: list[dict], compare: bool, **protocol) -> tuple[dict, list[dict]] | None:
    """The report on `rows` (and the rows reported) with a progress bar; None (the reason shown) when scoring
    fails. `protocol`: shots, scoring, split, bank (`evaluate_rows`)."""
    bar = st.progress(0.0, text=f"Scoring {len(rows)} questions…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{done}/{total} questions scored")

    try:
        return evaluate_rows(loaded, rows, compare_base=compare, progress=progress, data_dir=data_dir(), **protocol)
    except McqaError as e:  # a question too long, a server that stopped answering
        st.error(server_text(e))
        return None
    finally:
        bar.empty()


def bank_run_ui(loaded) -> None:
    """A user's bank: upload and map it, score it with a progress bar (Cancel stops it), show the report and
    offer the results as CSV and the report as JSON."""
    bank = bank_ui()
    if bank is None:
        return
    if not bank.has_answers:
        st.info("This bank has no answer column, so it can be browsed and asked (Browse, Ask) but not scored.")
        return
    chosen = bank_choice_ui(loaded, bank)
    if chosen is None:
        return
    bank, part, rows, compare = chosen
    asked = protocol_ui(loaded, "bank")
    buttons = st.container(horizontal=True)  # each as wide as its label
    run = buttons.button("Run on your questions", key="bank_run", type="primary")
    if buttons.button("Cancel", key="bank_cancel", help="Stops a run in progress"):
        st.info("Cancelled: no report was kept.")
    elif run:
        protocol = dict(asked, split=part, bank=bank)
        if (scored := scored_ui(loaded, rows, compare, **protocol)) is None:
            return
        report, rows = scored
        result = {"spec": current_spec(), "report": report, "rows": rows, "name": bank.source}
        st.session_state["evaluate_bank_result"] = result
    ran = st.session_state.get("evaluate_bank_result")
    if ran is not None and ran["spec"] == current_spec() and ran["name"] == bank.source:
        bank_report_ui(ran, loaded.has_adapter)


def bank_choice_ui(loaded, bank):
    """Which part of the bank, how many of its questions, whether to compare: (bank part, its name, rows, compare)
    or None."""
    trained_on = Path(str((((loaded.run or {}).get("data") or {}).get("bank") or {}).get("source", ""))).name
    seen = loaded.has_adapter and trained_on == Path(bank.source).name
    if seen:
        st.warning(
            "This adapter was trained on this bank (all but its held-out quarter): score the held-out "
            "part for an honest number."
        )
    c0, c1, c2 = st.columns([1, 1, 2])
    part = c0.selectbox(
        "Part",
        ["heldout", "all"] if seen else ["all", "heldout"],
        key="bank_part",
        help="heldout: the quarter with sha256(id) % 4 == 0, which training on a bank never uses",
    )
    try:
        bank = select_part(bank, part)
    except DataError as e:
        st.error(str(e))
        return None
    most = min(len(bank.rows), cap) if (cap := row_cap()) else len(bank.rows)
    n = c1.number_input(
        "Questions",
        min_value=1,
        max_value=most,
        value=most,
        step=50,
        key=f"bank_n_{part}",
        help="The first N questions of the part, in file order",
    )
    compare = compare_toggle(c2, loaded, "bank_compare")
    cap_caption(cap if cap and cap < len(bank.rows) else None)
    return bank, part, bank.rows[: int(n)], compare


def bank_report_ui(ran: dict, adapter: bool) -> None:
    report_ui(ran["report"], f"Run here on {ran['report']['n']} questions of {md_escape(ran['name'])}.", adapter)
    downloads_ui(ran, ran["name"].rsplit(".", 1)[0], "bank")


def downloads_ui(ran: dict, stem: str, key: str) -> None:
    """The scored questions as CSV (with the base's letters when compared) and the report as JSON."""
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download results (CSV)",
        results_csv(ran["report"], ran["rows"]),
        file_name=f"{stem}-results.csv",
        mime="text/csv",
        key=f"{key}_download_csv",
    )
    d2.download_button(
        "Download the report (JSON)",
        server_text(json.dumps(ran["report"], indent=2)),  # its meta names the adapter's and the data's folders
        file_name=f"{stem}-report.json",
        mime="application/json",
        key=f"{key}_download_json",
    )


through_router()  # the sidebar even where Streamlit runs this file without app.py
st.title("Evaluate")
loaded = require_model()
saved, saved_path = saved_report(loaded.adapter)


def this_models_run() -> dict | None:
    ran = st.session_state.get("evaluate_result")
    return ran if ran is not None and ran["spec"] == current_spec() else None  # not another model's report


source = st.segmented_control(
    "Questions", ["MedMCQA", "Your questions", "Suites", "Leaderboard"], default="MedMCQA", key="evaluate_source"
)
if source == "Your questions":
    bank_run_ui(loaded)
    st.stop()
if source == "Suites":
    suites_ui()
    st.stop()
if source == "Leaderboard":
    leaderboard_ui()
    st.stop()

with st.expander("Run an evaluation here", expanded=saved is None and this_models_run() is None):
    run_ui(loaded)
ran = this_models_run()

if ran is not None:
    report_ui(
        ran["report"], f"Run here on the first {ran['report']['n']} {ran['split']} questions.", loaded.has_adapter
    )
    downloads_ui(ran, f"medmcqa-{ran['split']}", "evaluate")
elif saved is not None:
    report_ui(saved, f"Report written at training end: {server_text(saved_path)}", loaded.has_adapter)
    if not saved.get("base"):
        st.info(
            "This report was written before training reports scored the base model too: run an evaluation "
            "above with the comparison on to see the two side by side."
        )
    if saved_path.with_suffix(".png").exists():
        with st.expander("The report's figure (eval_report.png)"):
            st.image(str(saved_path.with_suffix(".png")))
    if (saved_path.parent / CURVES_FILE).exists():
        with st.expander("Training curves (loss and letter accuracy per step)"):
            st.image(str(saved_path.parent / CURVES_FILE))
else:
    if loaded.has_adapter:
        st.info(f"This adapter has no evaluation report yet ({server_text(saved_path)} is missing): run one above.")
    else:
        st.info(
            "The base model has no saved report: run one above, or train an adapter "
            f"(`{TRAIN_HINT}`); its folder then holds eval_report.json."
        )
