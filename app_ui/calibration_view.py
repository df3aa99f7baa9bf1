"""Calibration and abstention, drawn: the reliability diagram (confidence bins against accuracy, with counts) and
the risk-coverage curve for the model and its base on one chart each, accuracy at fixed coverages with intervals,
the Brier score beside the ECE, and the threshold a report chose on other rows."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from mcqa_core.evaluation.report import describe_interval

from .markdown_text import md_escape
from .operator_gate import server_text

CHART_HEIGHT = 260
CHART_MIN_WIDTH = 420  # px: narrower, the axes' titles crowd the plot out


def _models(report: dict, adapter: bool) -> dict[str, dict]:
    mine = "adapter" if adapter else "model"
    return {mine: report, **({"base": report["base"]} if report.get("base") else {})}


def reliability_chart(report: dict, adapter: bool = True):
    rows = [
        {"model": name, "confidence": b["confidence"], "accuracy": b["accuracy"], "questions": b["n"]}
        for name, r in _models(report, adapter).items()
        for b in r.get("reliability") or []
        if b["n"]
    ]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray")
    diagonal = diagonal.encode(x="x:Q", y="y:Q")
    scale = alt.Scale(domain=[0, 1])
    bins = alt.Chart(data).encode(
        x=alt.X("confidence:Q", scale=scale, title="mean confidence in the bin"),
        y=alt.Y("accuracy:Q", scale=scale, title="accuracy in the bin"),
        color=alt.Color("model:N", title="model"),
    )
    line = bins.mark_line(strokeWidth=1, opacity=0.6)
    dots = bins.mark_circle(opacity=0.85).encode(
        size=alt.Size("questions:Q", scale=alt.Scale(range=[30, 600]), title="questions in the bin"),
        tooltip=["model", alt.Tooltip("confidence:Q", format=".2f"), alt.Tooltip("accuracy:Q", format=".1%"),
                 "questions"],
    )  # fmt: skip
    return (diagonal + line + dots).properties(height=CHART_HEIGHT)


def risk_coverage_chart(report: dict, adapter: bool = True):
    rows = [
        {"model": name, "coverage": c, "accuracy": a}
        for name, r in _models(report, adapter).items()
        for c, a in (r.get("risk_coverage") or {}).get("curve", [])
    ]
    if not rows:
        return None
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_line()
        .encode(
            x=alt.X("coverage:Q", scale=alt.Scale(domain=[0, 1]), title="share answered (most sure first)"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy of those answered"),
            color="model:N",
        )
        .properties(height=CHART_HEIGHT)
    )


def calibration_ui(report: dict, adapter: bool = True) -> None:
    models = _models(report, adapter)
    if not any(r.get("risk_coverage") for r in models.values()):
        st.caption("This report was written before reports kept calibration bins and the risk-coverage curve.")
        return
    row = st.container(horizontal=True, gap="large")  # side by side where both fit, else one under the other
    left, right = row.container(width=CHART_MIN_WIDTH), row.container(width=CHART_MIN_WIDTH)
    if (chart := reliability_chart(report, adapter)) is not None:
        left.altair_chart(chart, width="stretch")
        left.caption("Dots: equal-width confidence bins, sized by their questions; dashed: perfect calibration.")
    if (chart := risk_coverage_chart(report, adapter)) is not None:
        right.altair_chart(chart, width="stretch")
        right.caption("Answering only the most confident questions: a model that knows when it does not know rises.")
    table = {
        name: {
            "ECE": f"{r['ece']:.3f}",
            "Brier (0 best, 2 worst)": f"{r['brier']:.3f}" if "brier" in r else "—",
            **{
                f"accuracy at {c} coverage": f"{v['accuracy']:.1%} ({describe_interval(v['ci'])})"
                for c, v in (r.get("risk_coverage") or {}).get("at", {}).items()
            },
        }
        for name, r in models.items()
    }
    st.dataframe(pd.DataFrame(table), width="stretch")
    st.caption(
        f"Brier: the squared distance between the answer's probabilities and the right letter, summed over the "
        f'letters; 0 is perfect and 2 the worst. Always answering "A" with certainty scores '
        f"{2 * (1 - report['always_a_accuracy']):.3f} on these {report['n']} questions."
    )
    if ab := report.get("abstain"):
        if ab.get("reported"):
            r = ab["reported"]
            chosen_on = md_escape(server_text(ab["chosen_on"]))  # a bank's file, or a MedMCQA split
            st.markdown(
                f"Answering only above confidence **{ab['threshold']:.3f}** (chosen on {ab['dev_rows']} rows of "
                f"{chosen_on} for {ab['rule']}): it answers **{r['coverage']:.1%}** of these questions "
                f"({describe_interval(r['coverage_ci'])}) and is right on **{r['accuracy']:.1%}** of those "
                f"({describe_interval(r['accuracy_ci'])})."
            )
        else:
            st.markdown(f"Abstention: {md_escape(server_text(ab.get('reason')))}.")
