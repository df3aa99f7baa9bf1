"""Ask's answer, drawn: one model's answer or two side by side (the adapter and its base, or any two models),
abstention below a threshold, the explanation streamed from the chosen answer, and the exact prompt scored.
It reads the page's `AskResult` and never writes into it; a written explanation is kept beside it, in
`st.session_state["ask_explanation"]` (the page drops it with the answer)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mcqa_core.data.prompt import row_letters
from mcqa_core.errors import McqaError
from mcqa_core.models.run_record import trained_on_row
from mcqa_core.service.ask_request import AskResult
from mcqa_core.service.questions import other_letters, stream_explanation
from mcqa_core.service.reports import saved_report, suggested_threshold

from .answer_view import answer_ui, letter_span
from .markdown_text import md_escape
from .operator_gate import server_text


def model_name(loaded) -> str:
    return Path(loaded.adapter).name if loaded.adapter else f"{server_text(loaded.base_model)} alone"


EXPLANATION_CAPTION = "Written by the model after its answer {letter}; not checked. Small models often ramble."


def explanation_ui(loaded, result: AskResult, prior_note: str | None = None) -> None:
    """`prior_note`: the label for a model measured at the letter prior, shown beside the button and the text."""
    ans = result.answers["adapter"]
    clicked = st.button(
        "Explain this answer",
        icon=":material/edit_note:",
        key="ask_explain",
        help=f"The model explains its answer, {ans.pred}, starting from that letter and option (greedy, up "
        "to 96 tokens)",
    )
    if prior_note:
        st.caption(f":material/warning: {prior_note}")
    if clicked:
        written: list[str] = []

        def pieces():  # shown as they come; kept as written for later reruns
            for piece in stream_explanation(loaded, result.prompt.text, result.inputs, ans.pred):
                written.append(piece)
                yield md_escape(piece)

        with st.container(border=True):
            st.caption(EXPLANATION_CAPTION.format(letter=ans.pred))
            try:
                st.write_stream(pieces())
                st.session_state["ask_explanation"] = "".join(written).strip()
            except McqaError as e:  # a server that stopped answering
                st.error(server_text(e))
    elif st.session_state.get("ask_explanation") is not None:
        with st.container(border=True):
            st.caption(EXPLANATION_CAPTION.format(letter=ans.pred))
            st.markdown(md_escape(st.session_state["ask_explanation"] or "(the model wrote nothing)"))
    explanation = st.session_state.get("ask_explanation")
    if explanation and (others := other_letters(explanation, ans.pred, result.allowed)):
        st.warning(
            f"The explanation names {' and '.join(others)}, but the model's answer is {ans.pred}: it does not "
            "agree with the answer, so do not trust it."
        )
    sample = result.sample
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


def result_ui(loaded, result: AskResult, abstain: float | None = None, prior_note: str | None = None) -> None:
    for w in result.warnings:
        st.warning(w)
    if result.prompt.message:
        st.warning(result.prompt.message)
    row = result.inputs
    answers = result.answers
    origin = (result.sample or {}).get("bank") or "MedMCQA"  # where a sample's correct answer comes from
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
    elif "other" in answers:
        mine, other, name = answers["adapter"], answers["other"], md_escape(result.other_name)
        agree = "agree on" if mine.pred == other.pred else "disagree:"
        st.markdown(f"This model and {name} {agree} **{mine.pred}**" + ("." if mine.pred == other.pred else
                    f" against **{other.pred}**."))  # fmt: skip
        left, right = st.columns(2)
        with left:
            answer_ui(mine, row, f"This model ({md_escape(model_name(loaded))})", key="ask_mine", source=origin,
                      abstain=abstain)  # fmt: skip
        with right:
            answer_ui(other, row, name, key="ask_other", source=origin, abstain=abstain)
    else:
        title = "Fine-tuned model" if loaded.has_adapter else "Base model (no adapter loaded)"
        answer_ui(answers["adapter"], row, title, key="ask_main", source=origin, abstain=abstain)
    sample = result.sample
    if sample and not sample.get("bank") and loaded.has_adapter and trained_on_row(loaded.run, sample.get("id")):
        st.caption("The adapter was trained on this validation question (demo-train); held-out questions test it.")
    explanation_ui(loaded, result, prior_note)
    with st.expander("Exact prompt sent to the model"):
        info = result.prompt  # the text scored, to the character
        st.code(info.text, language=None, wrap_lines=True)  # long lines wrap inside the box
        st.caption(
            f"{info.n_tokens} tokens{' (question shortened)' if info.shortened else ''}, ending with a line "
            f'break after "### Answer:". The model\'s next-token probabilities for the letters '
            f"{letter_span(row_letters(row))} after this text are the answer."
        )
