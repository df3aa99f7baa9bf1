"""The leaderboards `mcqa-eval --leaderboard` saved, drawn: the ranking with intervals, each adapter's training
method and what it cost, and the settings that differ, every pair's paired test with Holm's correction, and any two
entries side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mcqa_core.evaluation.protocol import protocol_line
from mcqa_core.evaluation.report import describe_interval
from mcqa_core.evaluation.stats import describe_difference
from mcqa_core.service.leaderboards import entry_report, pair_rows, ranking_rows, saved_leaderboards, side_by_side
from mcqa_core.service.row_filters import short
from mcqa_core.training.method_costs import memory_note

from .markdown_text import md_escape
from .operator_gate import server_text

RIGHT = {"first": "the first", "second": "the second", "neither": "neither"}
# The costs a leaderboard entry carries (mcqa_run.json's `costs`), as numbers the table can sort, and their formats.
COST_COLUMNS = {
    "trainable parameters": ("trainable_parameters", "compact"),
    "trainable share": ("trainable_share", "percent"),
    "peak memory": ("peak_memory_bytes", "bytes"),
    "tokens/s": ("tokens_per_second", "%.0f"),
    "train time (s)": ("train_seconds", "%.1f"),
    "saved": ("saved_bytes", "bytes"),
}


def ranking_with_costs(board: dict) -> list[dict]:
    """The ranking with each entry's method beside its name and its costs beside its accuracy (blank for a base
    model, or a run older than the costs); the method is not repeated among the settings that differ."""
    out = []
    for row, entry in zip(ranking_rows(board), board["entries"]):
        costs = entry.get("costs") or {}
        spent = {column: costs.get(key) for column, (key, _) in COST_COLUMNS.items()}
        shown = {}
        for column, value in row.items():
            if column != "peft_method":
                shown[column] = value
            if column == "model":
                shown["method"] = entry.get("method") or ("base" if entry["kind"] == "base" else "?")  # older boards
            elif column == "n":
                shown |= spent
        out.append(shown)
    return out


def leaderboard_ui() -> None:
    found = saved_leaderboards()
    if not found:
        st.info(
            "No leaderboard has been scored yet. From a terminal: `mcqa-eval --leaderboard` scores every adapter "
            "under adapters/ and their base models on the same rows (saved reports are reused), ranks them and "
            "tests every pair."
        )
        return
    labels = [path.parent.name for path, _ in found]
    picked = st.selectbox("Leaderboard", range(len(found)), format_func=labels.__getitem__, key="evaluate_board")
    path, board = found[picked]
    line = server_text(f"{protocol_line(board['protocol'])}; {path}")
    st.caption(f"Every model measured on {md_escape(line)}.")
    formats = {"accuracy": "percent"} | {column: fmt for column, (_, fmt) in COST_COLUMNS.items()}
    st.dataframe(
        ranking_with_costs(board),
        hide_index=True,
        width="stretch",
        column_config={column: st.column_config.NumberColumn(format=fmt) for column, fmt in formats.items()},
    )
    if note := memory_note([e.get("costs") for e in board["entries"]]):
        st.caption(md_escape(note[0].upper() + note[1:]) + ".")
    st.markdown("**Every pair** (exact McNemar on the same questions, Holm's correction over all pairs)")
    st.dataframe(
        pair_rows(board),
        hide_index=True,
        width="stretch",
        column_config={
            "difference (points)": st.column_config.NumberColumn(format="%+.1f"),
            "p": st.column_config.NumberColumn(format="%.2g"),
            "Holm p": st.column_config.NumberColumn(format="%.2g"),
        },
    )
    compare_ui(board)


def compare_ui(board: dict) -> None:
    """Any two entries: both accuracies, the paired test, both letter spreads, the questions they disagree on."""
    names = [e["name"] for e in board["entries"]]
    st.subheader("Two side by side")
    left, right = st.columns(2)
    first = left.selectbox("First", names, index=0, key="board_first")
    second = right.selectbox("Second", names, index=min(1, len(names) - 1), key="board_second")
    if first == second:
        st.caption("Choose two different models.")
        return
    entries = {e["name"]: e for e in board["entries"]}
    reports = [entry_report(entries[first]), entry_report(entries[second])]
    if any(r is None for r in reports):
        st.error("A saved report of this leaderboard is missing or unreadable: score the leaderboard again.")
        return
    for column, name, report in zip((left, right), (first, second), reports):
        column.metric(name, f"{report['accuracy']:.1%}")
        column.caption(f"{describe_interval(report['accuracy_ci'])}, {report['n']} questions")
    both = side_by_side(*reports)
    st.markdown(f"The first against the second: {describe_difference(both['test'], md_escape(second))}.")
    spreads = pd.DataFrame({first: reports[0]["pred_spread"], second: reports[1]["pred_spread"],
                            "correct answers": reports[0]["gold_spread"]}).T  # fmt: skip
    st.dataframe(spreads.map(lambda v: f"{v:.0%}"), width="stretch")
    rows = both["disagree"]
    subjects = sorted({r["subject"] for r in rows})
    chosen = st.multiselect("Subjects", subjects, key="board_subjects", placeholder="every subject")
    shown = [r for r in rows if not chosen or r["subject"] in chosen]
    st.caption(
        f"{len(rows)} of {both['questions']} questions answered differently; right: the first on "
        f"{sum(r['right'] == 'first' for r in rows)}, the second on {sum(r['right'] == 'second' for r in rows)}."
    )
    st.dataframe(
        [dict(r, question=short(r["question"], 100), right=RIGHT[r["right"]]) for r in shown],
        hide_index=True,
        width="stretch",
    )
