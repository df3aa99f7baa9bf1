"""An evaluation report drawn: the headline accuracies with their intervals and tests in words, per-subject
bars, the confusion matrix and the wrong answers, each of which opens in Browse."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mcqa_core.evaluation.protocol import protocol_card, protocol_line
from mcqa_core.evaluation.report import describe_interval
from mcqa_core.evaluation.stats import FEW, describe_difference, significant
from mcqa_core.service.reports import (
    changed_answers,
    letter_spreads,
    rule_view,
    subject_table,
    with_statistics,
    wrong_answers,
)
from mcqa_core.service.row_filters import short

from .calibration_view import calibration_ui
from .markdown_text import md_escape
from .navigation import BROWSE
from .operator_gate import server_text
from .overlap_view import overlap_ui, shots_overlap_ui


def _delta_color(test: dict | None) -> str:
    """Green or red only for a difference the paired test can tell from chance; grey otherwise."""
    return "normal" if test and significant(test) else "off"


METRIC_WIDTH = 190  # px: 'Always answer "A"' and its interval on one line each
PANEL_WIDTH = 420  # px: the confusion matrix, the letter table; two fit beside each other from about 1100 px


def _rule_name(report: dict) -> str:
    meta = report.get("meta") or {}
    if meta.get("scoring") != "cloze":
        return "Letter accuracy"
    return "Cloze accuracy per character (acc_norm)" if meta.get("rule") == "acc_norm" else "Cloze accuracy (acc)"


def headline_ui(report: dict, adapter: bool = True) -> None:
    """Base and adapter side by side, each accuracy with its interval beneath it, the delta under the adapter's
    number (coloured only when significant), and in words what is and is not a real difference."""
    acc, always_a, n = report["accuracy"], report["always_a_accuracy"], report["n"]
    base = report.get("base")
    # Four blocks that keep their labels whole: side by side where they fit, two rows on a narrow screen.
    row = st.container(horizontal=True, gap="medium")
    cols = [row.container(width=METRIC_WIDTH) for _ in range(4)]
    if base:
        cols[0].metric("Base model", f"{base['accuracy']:.1%}", help="The same questions with the adapter off")
        cols[0].caption(f"{describe_interval(base['accuracy_ci'])}, {n} questions")
        test, versus = report.get("vs_base"), "base"
    else:
        test, versus = report.get("vs_always_a"), "always-A"
    mine = cols[1 if base else 0]
    points = round((acc - (base["accuracy"] if base else always_a)) * 100, 1)
    mine.metric(
        "Adapter" if adapter else "Base model",
        f"{acc:.1%}",
        f"{points:+.1f} pts vs {versus}" if points else None,  # no arrow on no change
        delta_color=_delta_color(test),
        help=f"{_rule_name(report)} on {n} questions; the delta is coloured only when the paired test says p < 0.05",
    )
    same = "" if points else f"; the same as {versus}"
    mine.caption(f"{describe_interval(report['accuracy_ci'])}, {n} questions{same}")
    cols[2 if base else 1].metric('Always answer "A"', f"{always_a:.1%}", help="The letter A, answered every time")
    cols[2 if base else 1].caption(describe_interval(report["always_a_ci"]))
    if adapter and not base:
        cols[2].metric("Base model", "—", help="Not in this report: run one here with the comparison on")
    cols[3].metric("Mean confidence", f"{report['mean_confidence']:.0%}", help=f"ECE {report['ece']:.3f}")
    lines = []
    if report.get("vs_base"):
        lines.append(f"Against the base model: {describe_difference(report['vs_base'], 'the base model')}.")
    if report.get("vs_always_a"):
        lines.append(f'Against always-"A": {describe_difference(report["vs_always_a"], "always-A")}.')
    st.markdown("  \n".join(lines))
    st.caption('Exact McNemar tests on the same questions; "not distinguishable" means p ≥ 0.05.')


def _subject_bars(report: dict) -> pd.DataFrame:
    """One row per subject and model (this one, and the base when the report has it), for the chart."""
    bars = []
    for r in subject_table(report):
        label = f"{r['subject']} (n={r['n']}{', few' if r['few'] else ''})"
        models = [("this model", "")] + ([("base", "base ")] if r.get("base accuracy") is not None else [])
        for model, prefix in models:  # the base model's columns are "base accuracy", "base low", "base high"
            values = {key: r[prefix + key] for key in ("accuracy", "low", "high")}
            bars.append({"subject": label, "model": model, **values, "n": r["n"]})
    return pd.DataFrame(bars)


def subjects_ui(report: dict) -> None:
    import altair as alt

    df = _subject_bars(report)
    order = list(dict.fromkeys(df["subject"]))
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5), title=None),
            y=alt.Y("subject:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=180)),
            yOffset="model:N",
            color=alt.Color(
                "model:N",
                scale=alt.Scale(
                    domain=["this model", "base"][: 2 if report.get("base") else 1], range=["#e4572e", "#b8c4cc"]
                ),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["subject", "model", alt.Tooltip("accuracy:Q", format=".1%"), "n"],
        )
        .properties(height=max(160, (36 if report.get("base") else 24) * len(order)))
    )
    whiskers = (
        alt.Chart(df)
        .mark_rule(color="#333")
        .encode(
            x="low:Q",
            x2="high:Q",
            y=alt.Y("subject:N", sort=order),
            yOffset="model:N",
            tooltip=["subject", "model", alt.Tooltip("low:Q", format=".1%"), alt.Tooltip("high:Q", format=".1%")],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"x": [report["always_a_accuracy"]]}))
        .mark_rule(strokeDash=[4, 3])
        .encode(x=alt.X("x:Q", title=None))
    )
    st.altair_chart(chart + whiskers + rule, width="stretch")
    st.caption(
        f'Whiskers: 95 % intervals. Dashed line: always-"A" on all these questions. Subjects marked '
        f'"few" have under {FEW} questions: their bars swing widely, so do not rank them.'
    )


def confusion_ui(report: dict) -> None:
    import altair as alt

    labels, matrix = report["confusion"]["labels"], report["confusion"]["matrix"]
    # Plain field names: vega-lite reads quotes and dots in a field name as syntax.
    df = pd.DataFrame(
        [{"gold": g, "pred": p, "count": matrix[i][j]} for i, g in enumerate(labels) for j, p in enumerate(labels)]
    )
    base = alt.Chart(df).encode(
        x=alt.X("pred:N", sort=list(labels), title="model's answer", axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("gold:N", sort=list(labels), title="correct answer"),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="oranges"), legend=None), tooltip=["gold", "pred", "count"]
    )
    text = base.mark_text(fontSize=15).encode(text="count:Q")
    row = st.container(horizontal=True, gap="large")  # side by side where they fit, else one under the other
    with row.container(width=PANEL_WIDTH):
        st.altair_chart((heat + text).properties(height=240), width="stretch")
        st.caption("Rows: the correct answer; columns: the model's. The diagonal is correct.")
    with row.container(width=PANEL_WIDTH):
        spread = pd.DataFrame(letter_spreads(report)).T
        st.dataframe(spread.reindex(columns=list(labels)).map(lambda v: f"{v:.0%}" if pd.notna(v) else "—"))
        st.caption("How often each letter is the model's answer and the correct one.")


def changed_ui(report: dict) -> None:
    """The questions whose answer the adapter changed: fixed, broken, and wrong both ways."""
    changed = changed_answers(report)
    total = sum(len(v) for v in changed.values())
    st.subheader(f"Answers the adapter changed ({total} of {report['n']})")
    if not total:
        st.caption("The adapter and its base give the same letter on every question.")
        return
    tabs = st.tabs(
        [
            f"Fixed ({len(changed['fixed'])})",
            f"Broken ({len(changed['broken'])})",
            f"Wrong both ways ({len(changed['other'])})",
        ]
    )
    for tab, kind in zip(tabs, ("fixed", "broken", "other")):
        with tab:
            rows = [
                {
                    "id": p["id"],
                    "subject": p.get("subject"),
                    "base": p["base_pred"],
                    "adapter": p["pred"],
                    "correct": p["gold"],
                    "question": short(p.get("question", ""), 100),
                }
                for p in changed[kind]
            ]
            if rows:
                st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 280))
            else:
                st.caption("None.")
    st.caption(
        "Fixed: the base was wrong and the adapter is right; broken: the reverse. These two counts are the "
        "discordant pairs of the McNemar test above."
    )


def wrong_ui(report: dict) -> None:
    wrong = wrong_answers(report)
    if not wrong:
        st.success("No wrong answers in this report.")
        return
    df = pd.DataFrame(
        [
            {
                "id": p["id"],
                "subject": p.get("subject"),
                "model": p["pred"],
                "correct": p["gold"],
                "confidence": max(p["probs"]),
                "question": short(p.get("question", ""), 100),
            }
            for p in wrong
        ]
    )
    st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(df), 320),
        column_config={"confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
    )
    by_id = {p["id"]: p for p in wrong}
    row = st.container(horizontal=True, vertical_alignment="bottom")  # the button keeps its whole label
    pick = row.selectbox(
        "Open a wrong answer in Browse",
        list(by_id),
        key="evaluate_wrong",
        format_func=lambda i: f"{by_id[i]['pred']}→{by_id[i]['gold']} · {short(by_id[i].get('question', ''), 90)}",
    )
    if row.button("Open in Browse", key="evaluate_open_browse"):
        st.session_state["browse_focus_id"] = pick
        st.switch_page(BROWSE)


def report_ui(report: dict, where: str, adapter: bool = True) -> None:
    """The whole report under the line that says how it was measured; a cloze report under the rule chosen."""
    st.caption(f"{where} Measured on {md_escape(server_text(protocol_line(protocol_card(report))))}.")
    if "acc_norm" in report:
        rule = st.segmented_control(
            "Cloze rule",
            ["acc", "acc_norm"],
            default="acc",
            key="report_rule",
            help="acc: the option whose tokens are likeliest in sum; acc_norm: per character of the option "
            "(lm-eval's two numbers; long options are not penalised under acc_norm)",
        )
        report = rule_view(report, rule or "acc")
    report = with_statistics(report)
    headline_ui(report, adapter)
    st.subheader("Per subject")
    subjects_ui(report)
    st.subheader("Confusion matrix and letter spreads")
    confusion_ui(report)
    if report.get("base"):
        changed_ui(report)
    overlap_ui(report)
    shots_overlap_ui(report)
    st.subheader("Calibration and abstention")
    calibration_ui(report, adapter)
    st.subheader(f"Wrong answers ({len(wrong_answers(report))})")
    wrong_ui(report)
