"""Has it seen the test? The overlap between a report's questions and the adapter's training rows, drawn: the
count, the accuracy on the clean subset beside the full one, and the overlapping ids to download."""

from __future__ import annotations

import streamlit as st

from mcqa_core.evaluation.report import describe_interval

from .markdown_text import md_escape
from .operator_gate import server_text


def overlap_ui(report: dict) -> None:
    """How many of these questions the adapter's training rows already held, and the accuracy without them."""
    block = report.get("overlap")
    if not block:
        return
    if "reason" in block:
        st.caption(f"Train/test overlap not checked: {md_escape(server_text(block['reason']))}.")
        return
    clean, n = block["clean"], report["n"]
    text = (
        f"**{block['overlapping']} of {n}** questions are in the adapter's training rows, "
        f"{md_escape(server_text(block['trained_on']))} "
        f"({len(block['exact'])} with the same text, {len(block['near'])} sharing a {block['ngram']}-gram). "
        f"On the other {clean['n']}: **{clean['accuracy']:.1%}** ({describe_interval(clean['ci'])})"
    )
    if block.get("base_clean"):
        text += f", the base {block['base_clean']['accuracy']:.1%}"
    st.markdown(text + f"; on all {n}: {report['accuracy']:.1%}.")
    if block["overlapping"]:
        ids = "\n".join(["id", *block["exact"], *block["near"]]) + "\n"
        st.download_button(
            "Download the overlapping ids (CSV)", ids, "overlapping-ids.csv", "text/csv", key="overlap_ids"
        )


def shots_overlap_ui(report: dict) -> None:
    """Retrieved examples can repeat their question: how many did, and the accuracy without those questions."""
    block = report.get("shots_overlap")
    if not block:
        return
    clean, n = block["clean"], report["n"]
    text = (
        f"**{block['overlapping']} of {n}** questions had a near-duplicate among their retrieved examples "
        f"({block['rule']}). On the other {clean['n']}: **{clean['accuracy']:.1%}** ({describe_interval(clean['ci'])})"
    )
    if block.get("base_clean"):
        text += f", the base {block['base_clean']['accuracy']:.1%}"
    st.markdown(text + f"; on all {n}: {report['accuracy']:.1%}.")
