"""Ask: type a question (or draw a validation sample), see the model's letter, how sure it is and why."""

import streamlit as st

from app_ui.answer_view import answer_ui, letter_span
from app_ui.bank_upload import current_bank
from app_ui.caches import current_spec, require_model, validation_rows_or_none
from app_ui.markdown_text import md_escape
from app_ui.navigation import through_router
from app_ui.sidebar import TRAIN_HINT
from mcqa_core.data.prompt import CONTEXT_KEY, LETTERS, OPTION_KEYS, row_letters
from mcqa_core.errors import McqaError
from mcqa_core.models.run_record import trained_on_row
from mcqa_core.service.questions import (
    ALWAYS_ASKED,
    ASK_KEYS,
    AskInput,
    answer_question,
    check_input,
    other_letters,
    prepare_prompt,
    stream_explanation,
)
from mcqa_core.service.reports import saved_report, suggested_threshold
from mcqa_core.service.row_filters import random_row
from mcqa_core.service.shared_model import can_compare

INPUT_KEYS = ("ask_question", "ask_context") + tuple(f"ask_{k}" for k in ASK_KEYS)


def _set_inputs(row: dict, bank: str | None = None) -> None:
    st.session_state["ask_question"] = row.get("question", "")
    st.session_state["ask_context"] = row.get(CONTEXT_KEY, "")
    for k in ASK_KEYS:
        st.session_state[f"ask_{k}"] = row.get(k, "")
    # Remember the sample so the answer can be checked against its answer while the text is unchanged.
    st.session_state["ask_source"] = {
        "bank": bank,
        **{key: row.get(key) for key in ("id", "question", *OPTION_KEYS, "cop", "exp", "subject_name", CONTEXT_KEY)},
    }
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
        st.session_state["ask_flash"] = f"No validation rows to draw from: {reason}"
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


def sample_for(row: dict) -> dict | None:
    """The sample (MedMCQA or bank) the inputs came from, while its text is unchanged."""
    src = st.session_state.get("ask_source")
    if not src:
        return None
    same = (src.get("question") or "").strip() == row["question"] and all(
        (src.get(k) or "").strip() == row.get(k, "") for k in ASK_KEYS if k in row or src.get(k)
    )
    return src if same else None


def run_ask(loaded, checked: AskInput, compare: bool) -> dict:
    prompt = prepare_prompt(loaded.tokenizer, checked.row)
    sample = sample_for(checked.row)
    row = dict(checked.row, cop=sample["cop"]) if sample else checked.row
    answers = {"adapter": answer_question(loaded, row, allowed=checked.allowed)}
    if compare:
        answers["base"] = answer_question(loaded, row, adapter=False, allowed=checked.allowed)
    return {
        "inputs": checked.row,
        "allowed": checked.allowed,
        "prompt": prompt,
        "answers": answers,
        "sample": sample,
        "warnings": checked.warnings,
        "explanation": None,
    }


EXPLANATION_CAPTION = "Written by the model after its answer {letter}; not checked. Small models often ramble."


def explanation_ui(loaded, result: dict) -> None:
    ans = result["answers"]["adapter"]
    if st.button(
        "Explain this answer",
        icon=":material/edit_note:",
        key="ask_explain",
        help=f"The model explains its answer, {ans.pred}, starting from that letter and option (greedy, up "
        "to 96 tokens)",
    ):
        written: list[str] = []

        def pieces():  # shown as they come; kept as written for later reruns
            for piece in stream_explanation(loaded, result["prompt"].text, result["inputs"], ans.pred):
                written.append(piece)
                yield md_escape(piece)

        with st.container(border=True):
            st.caption(EXPLANATION_CAPTION.format(letter=ans.pred))
            try:
                st.write_stream(pieces())
                result["explanation"] = "".join(written).strip()
            except McqaError as e:  # a server that stopped answering
                st.error(str(e))
    elif result["explanation"] is not None:
        with st.container(border=True):
            st.caption(EXPLANATION_CAPTION.format(letter=ans.pred))
            st.markdown(md_escape(result["explanation"] or "(the model wrote nothing)"))
    if result["explanation"] and (others := other_letters(result["explanation"], ans.pred, result["allowed"])):
        st.warning(
            f"The explanation names {' and '.join(others)}, but the model's answer is {ans.pred}: it does not "
            "agree with the answer, so do not trust it."
        )
    sample = result["sample"]
    if sample and sample.get("exp"):
        with st.expander(f"{md_escape(sample['bank']) if sample.get('bank') else 'MedMCQA'}'s own explanation"):
            st.markdown(md_escape(sample["exp"]))


def abstain_ui(loaded) -> float | None:
    """The switch that lets the model abstain below a confidence, by default one its saved report suggests."""
    suggested = suggested_threshold(saved_report(loaded.adapter)[0])
    on = st.toggle("Abstain when unsure", key="ask_abstain", help="Below the threshold the model gives no answer")
    if not on:
        return None
    threshold = st.slider("Abstain below confidence", 0.0, 1.0, round(suggested[0] if suggested else 0.5, 2), 0.01,
                          key="ask_threshold")  # fmt: skip
    st.caption(
        f"Suggested {suggested[0]:.2f}: {suggested[1]}." if suggested else "The model has no report to suggest one."
    )
    return threshold


def result_ui(loaded, result: dict, abstain: float | None = None) -> None:
    for w in result["warnings"]:
        st.warning(w)
    if result["prompt"].message:
        st.warning(result["prompt"].message)
    row = result["inputs"]
    answers = result["answers"]
    origin = (result["sample"] or {}).get("bank") or "MedMCQA"  # where a sample's correct answer comes from
    if "base" in answers:
        base, tuned = answers["base"], answers["adapter"]
        if base.pred == tuned.pred:
            st.markdown(f"Base and fine-tuned agree on **{tuned.pred}**.")
        else:
            st.markdown(f"Base and fine-tuned disagree: the adapter changed **{base.pred}** to **{tuned.pred}**.")
        left, right = st.columns(2)
        with left:
            answer_ui(base, row, "Base model (adapter off)", key="ask_base", source=origin, abstain=abstain)
        with right:
            answer_ui(tuned, row, "Fine-tuned (adapter on)", key="ask_tuned", source=origin, abstain=abstain)
    else:
        title = "Fine-tuned model" if loaded.has_adapter else "Base model (no adapter loaded)"
        answer_ui(answers["adapter"], row, title, key="ask_main", source=origin, abstain=abstain)
    sample = result["sample"]
    if sample and not sample.get("bank") and loaded.has_adapter and trained_on_row(loaded.run, sample.get("id")):
        st.caption("The adapter was trained on this validation question (demo-train); held-out questions test it.")
    explanation_ui(loaded, result)
    with st.expander("Exact prompt sent to the model"):
        info = result["prompt"]
        st.code(info.text, language=None)
        st.caption(
            f"{info.n_tokens} tokens{' (question shortened)' if info.shortened else ''}, ending with a line "
            f'break after "### Answer:". The model\'s next-token probabilities for the letters '
            f"{letter_span(row_letters(result['inputs']))} after this text are the answer."
        )


through_router()  # the sidebar even where Streamlit runs this file without app.py
st.title("Ask the model")
loaded = require_model()
if not loaded.has_adapter:
    st.info(
        f"Answering with the base model alone. To see a fine-tuned answer, train an adapter "
        f"(`{TRAIN_HINT}`) and pick it in the sidebar."
    )
restore_inputs()
question, options, context = inputs_ui()
comparable = can_compare(loaded)
compare = st.toggle(
    "Compare with the base model",
    key="ask_compare",
    disabled=not comparable,
    help="Answer twice from the one loaded model: adapter switched off, then on"
    if comparable
    else "Load an adapter in the sidebar to compare it with its base (on a server "
    "backend, also serve the base: docs/serving.md)",
)
abstain = abstain_ui(loaded)
if st.button("Ask", key="ask_submit", type="primary"):
    checked = check_input(question, options, context)
    if not checked.ok:
        for e in checked.errors:
            st.error(e)
        st.session_state.pop("ask_result", None)
    else:
        try:
            with st.spinner("Thinking…"):
                st.session_state["ask_result"] = run_ask(loaded, checked, compare and comparable)
                st.session_state["ask_result"]["spec"] = current_spec()
        except McqaError as e:  # a question too long, a server that stopped answering
            st.error(str(e))
            st.session_state.pop("ask_result", None)

result = st.session_state.get("ask_result")
current = check_input(question, options, context).row
if result is not None and result["inputs"] == current and result.get("spec") == current_spec():
    result_ui(loaded, result, abstain)
elif result is not None:
    st.caption("The question or the model changed since the last answer; press Ask again.")
