"""Ask: type a question (or draw a validation sample), see the model's letter, how sure it is and why."""

from pathlib import Path

import streamlit as st

from app_ui.ask_result_view import abstain_ui, result_ui
from app_ui.bank_upload import current_bank
from app_ui.caches import current_spec, data_dir, get_model, require_model, settings, validation_rows_or_none
from app_ui.claim_view import claim_ui, demo_train_ui, prior_note
from app_ui.evidence_view import evidence_ui, explained_above
from app_ui.markdown_text import md_escape
from app_ui.navigation import through_router
from app_ui.operator_gate import server_text
from app_ui.sidebar import TRAIN_HINT, method_parts
from mcqa_core.data.prompt import CONTEXT_KEY, LETTERS
from mcqa_core.errors import McqaError
from mcqa_core.service.adapters import adapter_spec, find_adapters
from mcqa_core.service.ask_request import SAMPLE_KEYS, AskResult, OtherModel, run_ask
from mcqa_core.service.questions import ALWAYS_ASKED, ASK_KEYS, check_input
from mcqa_core.service.row_filters import random_row
from mcqa_core.service.shared_model import can_compare

INPUT_KEYS = ("ask_question", "ask_context") + tuple(f"ask_{k}" for k in ASK_KEYS)


def _set_inputs(row: dict, bank: str | None = None) -> None:
    st.session_state["ask_question"] = row.get("question", "")
    st.session_state["ask_context"] = row.get(CONTEXT_KEY, "")
    for k in ASK_KEYS:
        st.session_state[f"ask_{k}"] = row.get(k, "")
    # Remember the sample so the answer can be checked against its answer while the text is unchanged.
    st.session_state["ask_source"] = {"bank": bank, **{key: row.get(key) for key in SAMPLE_KEYS}}
    _save_inputs()


def _save_inputs() -> None:
    # Streamlit forgets a page's widget values when another page is shown; keep a copy to restore them.
    st.session_state["ask_saved"] = {k: st.session_state.get(k, "") for k in INPUT_KEYS}


def _question_changed() -> None:
    """A new question typed over a sample: the options only that sample had (E) go, and it is no longer the
    sample (its answer no longer grades it)."""
    src = st.session_state.get("ask_source")
    if src and (src.get("question") or "").strip() != (st.session_state.get("ask_question") or "").strip():
        for k in (*ASK_KEYS[len(ALWAYS_ASKED) :], CONTEXT_KEY):
            if src.get(k) and st.session_state.get(f"ask_{k}") == src.get(k):
                st.session_state[f"ask_{k}"] = ""
        st.session_state.pop("ask_source", None)
    _save_inputs()


def restore_inputs() -> None:
    prefill = st.session_state.pop("ask_prefill", None)
    if prefill is not None:  # "Open in Ask" from Browse
        _set_inputs(prefill, bank=st.session_state.pop("ask_prefill_bank", None))
        return
    for k, v in st.session_state.get("ask_saved", {}).items():
        if k not in st.session_state:
            st.session_state[k] = v


def fill_random_sample() -> None:
    rows, reason = validation_rows_or_none()
    if rows is None:
        st.session_state["ask_flash"] = f"No validation rows to draw from: {server_text(reason)}"
        return
    _set_inputs(random_row(rows))


def fill_random_bank_question() -> None:
    bank = current_bank()
    if bank:
        _set_inputs(random_row(bank["rows"]), bank=bank["name"])


def inputs_ui() -> tuple[str, dict, str]:
    row = st.container(horizontal=True)  # buttons as wide as their labels, wrapping on a narrow screen
    row.button(
        "Random validation sample",
        icon=":material/casino:",
        key="ask_random",
        on_click=fill_random_sample,
        help="Fill the boxes with a random MedMCQA validation question",
    )
    if bank := current_bank():
        row.button(
            f"Random question from {bank['name']}",
            icon=":material/quiz:",
            key="ask_random_bank",
            on_click=fill_random_bank_question,
            help="Your bank, uploaded on Evaluate (this session only)",
        )
    if flash := st.session_state.pop("ask_flash", None):
        st.info(flash)
    question = st.text_area(
        "Question",
        key="ask_question",
        height=110,
        on_change=_question_changed,
        placeholder="e.g. Which vitamin deficiency causes scurvy?",
    )
    with st.expander("Passage (optional)", expanded=bool(st.session_state.get("ask_context"))):
        context = st.text_area(
            "Passage shown before the question",
            key="ask_context",
            height=110,
            on_change=_save_inputs,
            placeholder="An abstract or a clinical vignette (PubMedQA's questions come with one)",
        )
    options = {}
    for pair in ((0, 1), (2, 3), (4,)):  # A B on one row, C D on the next, then E (optional)
        for col, i in zip(st.columns(2), pair):
            label = f"Option {LETTERS[i]}" + (" (optional)" if i == 4 else "")
            options[ASK_KEYS[i]] = col.text_input(label, key=f"ask_{ASK_KEYS[i]}", on_change=_save_inputs)
    return question, options, context


def partner_ui(loaded):
    """Whom to compare with: "base" (the adapter switched off, where it can be), another ready adapter's folder,
    or None."""
    comparable = can_compare(loaded)
    here = str(Path(loaded.adapter).resolve()) if loaded.adapter else None
    found = find_adapters(settings().adapters_dir)
    others = [a for a in found if a.ready and not a.damaged and str(a.path.resolve()) != here]
    choices = (["its base model (adapter off)"] if comparable else []) + [a.name for a in others]
    on = st.toggle(
        "Compare with another model",
        key="ask_compare",
        disabled=not choices,
        help="The same question to two models: the adapter and its base (one loaded model, the adapter switched off), "
        "or any other adapter"
        if choices
        else "Train a second adapter, or load one to compare with its base",
    )
    if not on or not choices:
        return None
    pick = st.selectbox("Compare with", choices, key="ask_compare_with") if len(choices) > 1 else choices[0]
    return "base" if comparable and pick == choices[0] else next(a for a in others if a.name == pick)


def partner_model(partner):
    """What Ask compares with: "base", None, or another adapter loaded into the app's model cache like the first."""
    if partner is None or partner == "base":
        return partner
    return OtherModel(
        partner.name, get_model(adapter_spec(partner.path, settings(), getattr(current_spec(), "backend", None)))
    )


def keep_result(result: AskResult | None) -> None:
    """The answer shown until the next Ask; an explanation belongs to one answer, so a new one drops it."""
    st.session_state.pop("ask_explanation", None)
    if result is None:
        st.session_state.pop("ask_result", None)
    else:
        st.session_state["ask_result"] = result


through_router()  # the sidebar even where Streamlit runs this file without app.py
st.title("Ask the model")
loaded = require_model()
if not loaded.has_adapter:
    st.info(
        f"Answering with the base model alone. To see a fine-tuned answer, train an adapter "
        f"(`{TRAIN_HINT}`) and pick it in the sidebar."
    )
else:
    title, costs = method_parts(loaded.run)
    st.caption(
        f"Answering with {md_escape(Path(loaded.adapter).name)} · method: {md_escape(title)}"
        + (f" · costs: {md_escape(costs)}" if costs else "")
    )
claim = claim_ui(loaded)  # which model answers and what it is measured to do, before the first answer
demo_train_ui(loaded)
restore_inputs()
question, options, context = inputs_ui()
partner = partner_ui(loaded)
abstain = abstain_ui(loaded)
if st.button("Ask", key="ask_submit", type="primary"):
    checked = check_input(question, options, context)
    if not checked.ok:
        for e in checked.errors:
            st.error(e)
        keep_result(None)
    else:
        try:
            with st.spinner("Thinking…"):
                keep_result(
                    run_ask(
                        loaded,
                        checked,
                        source=st.session_state.get("ask_source"),
                        partner=partner_model(partner),
                        data_dir=data_dir(),
                        bank=current_bank(),
                        spec=current_spec(),
                    )
                )
        except McqaError as e:  # a question too long, a server that stopped answering
            st.error(server_text(e))
            keep_result(None)

result = st.session_state.get("ask_result")
if result is not None and not isinstance(result, AskResult):  # a dict kept by a session from before AskResult
    keep_result(None)
    result = None
current = check_input(question, options, context).row
if result is not None and result.answers_to(current, current_spec()):
    result_ui(loaded, result, abstain, prior_note=prior_note(claim))
    evidence_ui(result.evidence, result.evidence_why, explained=explained_above(result.evidence, result.sample))
elif result is not None:
    st.caption("The question or the model changed since the last answer; press Ask again.")
