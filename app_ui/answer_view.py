"""One answer drawn: the letter and its option, how sure the model is, how long it took, the probability bars."""

from __future__ import annotations

import streamlit as st

from mcqa_core.data.prompt import LETTERS, OPTION_KEYS
from mcqa_core.service.questions import Answer
from mcqa_core.service.row_filters import short

from .markdown_text import md_escape


def probs_line(probs: list[float]) -> str:
    return " · ".join(f"{L} {p:.1%}" for L, p in zip(LETTERS, probs))


def probs_chart_ui(probs: list[float], row: dict, pred: str, gold: str | None = None, key: str = "") -> None:
    import altair as alt
    import pandas as pd

    letters = LETTERS[: len(probs)]
    df = pd.DataFrame(
        {
            "letter": list(letters),
            "probability": probs,
            "option": [short(row.get(k, ""), 80) for k in OPTION_KEYS[: len(probs)]],
            "role": ["model's answer" if L == pred else ("correct answer" if L == gold else "other") for L in letters],
        }
    )
    # The legend names the correct answer only when there is one (a MedMCQA sample, unchanged).
    roles = ["model's answer", "other"] if gold is None else ["model's answer", "correct answer", "other"]
    colors = ["#e4572e", "#b8c4cc"] if gold is None else ["#e4572e", "#2e86ab", "#b8c4cc"]
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X(
                "probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5), title=None
            ),
            y=alt.Y("letter:N", sort=list(letters), title=None, axis=alt.Axis(labelOverlap=False, labelFontSize=13)),
            color=alt.Color(
                "role:N",
                scale=alt.Scale(domain=roles, range=colors[: len(roles)]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["letter", "option", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=40 * len(letters) + 30)
    )
    st.altair_chart(chart, width="stretch", key=f"chart_{key}" if key else None)


def letter_span(letters) -> str:
    """The letters in play as a caption names them: "A and B", "A–C", "A–E"."""
    letters = list(letters)
    return " and ".join(letters) if len(letters) <= 2 else f"{letters[0]}–{letters[-1]}"


def answer_ui(
    answer: Answer, row: dict, title: str | None = None, key: str = "", source: str = "MedMCQA", abstain=None
) -> None:
    """One answer: the letter and option text, how sure, how long it took, the probability bars. `source`
    names where the correct answer comes from (MedMCQA or the bank's file); below an `abstain` confidence the
    model abstains, and its likeliest answer is named as that."""
    if title:
        st.markdown(f"**{title}**")
    option = row[OPTION_KEYS[LETTERS.index(answer.pred)]]
    if abstain is not None and answer.confidence < abstain:
        st.markdown("#### The model abstains")
        st.caption(
            f"Its likeliest answer, {answer.pred}. {md_escape(short(option, 60))}, has confidence "
            f"{answer.confidence:.0%}, below the threshold {abstain:.0%}."
        )
    else:
        st.markdown(f"#### {answer.pred}. {md_escape(option)}")
    verdict = ""
    if answer.gold is not None:
        gold_text = md_escape(short(row[OPTION_KEYS[LETTERS.index(answer.gold)]], 60))
        verdict = (
            " · :green[:material/check_circle: **correct**]"
            if answer.correct
            else f" · :red[:material/cancel: **wrong**]: {md_escape(source)} says **{answer.gold}** ({gold_text})"
        )
    st.markdown(f"Confidence **{answer.confidence:.0%}** · answered in **{answer.seconds:.2f} s**{verdict}")
    probs_chart_ui(answer.probs, row, answer.pred, answer.gold, key=key)
    st.caption(
        f"P(answer): {probs_line(answer.probs)} — the letters {letter_span(LETTERS[: len(answer.probs)])} held "
        f"{answer.letter_mass:.0%} of the "
        "model's next-token probability"
    )
