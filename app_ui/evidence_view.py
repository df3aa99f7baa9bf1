"""Similar questions from the data set, drawn beside an answer (Ask) or a row (Browse): each with its options, its
correct answer, its expert explanation where it has one, its subject and its similarity score, labelled as
retrieved, never as the model's words (`mcqa_core/service/similar_questions.py` finds them)."""

from __future__ import annotations

import streamlit as st

from mcqa_core.data.prompt import OPTION_KEYS, row_letters
from mcqa_core.data.similar_rows import Evidence, Hit
from mcqa_core.service.row_filters import gold_letter

from .markdown_text import md_escape

TITLE = "Similar questions in the data set"


def _options_md(row: dict) -> str:
    gold = gold_letter(row)
    lines = []
    for letter, key in zip(row_letters(row), OPTION_KEYS):
        mark = ":green[:material/check_circle:]" if letter == gold else ":gray[:material/radio_button_unchecked:]"
        lines.append(
            f"{mark} **{letter}.** {md_escape(row[key])}" + ("  — **correct answer**" if letter == gold else "")
        )
    if gold is None:
        lines.append("_This row has no answer key._")
    return "  \n".join(lines)


def _where(hit: Hit) -> str:
    parts = [hit.row.get("subject_name") or "unknown subject", hit.label or "the data set", f"id {hit.row.get('id')}"]
    return " · ".join(md_escape(str(p)) for p in parts)


def _explanation_ui(hit: Hit, label: str) -> None:
    exp = hit.row.get("exp")
    if exp:
        with st.expander(label):
            st.markdown(md_escape(exp))
    else:
        st.caption(f"{md_escape(hit.label or 'The data set')} has no explanation for this question.")


def _itself_ui(hit: Hit, explained_above: bool) -> None:
    with st.container(border=True):
        st.markdown(f":blue-badge[this question] {_where(hit)}")
        st.caption(
            "The question asked is itself this row of the data set. Its answer key and explanation are the data "
            "set's own for this very question, not independent evidence, so it is not counted among the similar "
            "questions below."
        )
        st.markdown(_options_md(hit.row))
        if explained_above:
            st.caption("Its own explanation is shown above.")
        else:
            _explanation_ui(hit, "Its own explanation (the answer key of this question, not independent evidence)")


def _hit_ui(n: int, hit: Hit) -> None:
    with st.container(border=True):
        same = " :orange-badge[the same text, another row]" if hit.same_text else ""
        st.markdown(f":violet-badge[similar question {n}]{same} {_where(hit)}")
        st.caption(
            f"Similarity: BM25 {hit.score:.1f} · it holds {hit.shared_words} of the {hit.query_words} words "
            "of the question asked (common words aside)"
        )
        st.markdown(f"**{md_escape(hit.row.get('question', ''))}**")
        st.markdown(_options_md(hit.row))
        _explanation_ui(hit, f"Expert explanation ({md_escape(hit.label or 'the data set')})")


def explained_above(evidence: Evidence | None, sample: dict | None) -> bool:
    """Whether Ask already shows the question's own explanation (a sample with one, which is the row found)."""
    return bool(
        evidence
        and evidence.itself
        and sample
        and sample.get("exp")
        and str(sample.get("id")) == str(evidence.itself.row.get("id"))
    )


def evidence_ui(
    evidence: Evidence | None, why: str = "", *, itself_shown_above: bool = False, explained: bool = False
) -> None:
    """The block: what it is, the question's own row (unless `itself_shown_above`, as in Browse), then the
    similar rows, most similar first."""
    st.subheader(TITLE, divider="gray")
    if evidence is None:
        st.caption(f"No similar questions: {md_escape(why)}.")
        return
    st.caption(
        f"Retrieved from {md_escape(evidence.source)} ({evidence.searched:,} rows) by word match (BM25), not written "
        "by the model: each is a real row with its answer key and, where it has one, its expert's explanation. "
        "The BM25 score says how close a row is, higher is closer; it compares rows for this question only."
    )
    if evidence.itself is not None and not itself_shown_above:
        _itself_ui(evidence.itself, explained)
    elif evidence.itself is not None:
        st.caption("This row itself is not counted among the similar questions.")
    if not evidence.similar:
        st.caption("No other row shares a word with this question.")
    for n, hit in enumerate(evidence.similar, 1):
        _hit_ui(n, hit)
