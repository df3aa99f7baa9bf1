"""The Train page's live charts: the training loss on an axis that fits its values, and the letter accuracy on the
dev rows with the base model and always-"A" beside it."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from mcqa_core.service import train_launcher as runs

CHART_WIDTH = 460  # px: a chart with its legend beside it


def charts_ui(v: runs.RunView) -> None:
    row = st.container(horizontal=True, gap="large")  # side by side where they fit, else one under the other
    left, right = row.container(width=CHART_WIDTH), row.container(width=CHART_WIDTH)
    with left:
        st.markdown("**Training loss**")
        if len(v.losses) == 1:  # one point draws an empty chart with a "0.000000" axis
            st.caption(f"Step {v.losses[0][0]}: loss {v.losses[0][1]:.4f}; the line draws from the next log.")
        elif v.losses:
            st.altair_chart(loss_chart(v.losses), width="stretch")
    with right:
        st.markdown("**Letter accuracy on the dev rows**")
        if len(v.evals) == 1:
            step, _, acc = v.evals[0]
            who = "the base model, before the first step" if step == 0 else f"step {step}"
            score = f"{acc:.1%}" if isinstance(acc, (int, float)) else "—"
            st.caption(f"{score} on the dev rows ({who}); the line draws from the next evaluation.")
        elif v.evals:
            df = pd.DataFrame([(s, a) for s, _, a in v.evals], columns=["step", "accuracy"]).set_index("step")
            if v.base_accuracy is not None:
                df["base model (step 0)"] = v.base_accuracy
            if v.always_a is not None:
                df['always "A"'] = v.always_a
            st.line_chart(df, height=220)


def loss_chart(losses: list[tuple[int, float]]) -> alt.Chart:
    """The loss per step on an axis from its lowest to its highest value (from zero, a loss of 2.1 to 2.3 is a
    flat line)."""
    df = pd.DataFrame(losses, columns=["step", "loss"])
    return (
        alt.Chart(df, height=220)
        .mark_line(point=True)
        .encode(x=alt.X("step:Q", title="optimizer step"), y=alt.Y("loss:Q", scale=alt.Scale(zero=False)))
    )
