"""The suites scored with `mcqa-eval --suite`, drawn: the table of sets with intervals and paired tests, the
macro average, and each set's report."""

from __future__ import annotations

import json

import streamlit as st

from mcqa_core.evaluation.protocol import protocol_line
from mcqa_core.evaluation.report import reports_dir
from mcqa_core.service.reports import suite_rows, suite_summaries

from .markdown_text import md_escape
from .operator_gate import server_rows, server_text
from .report_view import report_ui


def suites_ui() -> None:
    """The suites scored with `mcqa-eval --suite`: one table per suite, and each set's report opened below it."""
    found = suite_summaries()
    if not found:
        st.info(
            "No suite has been scored yet. From a terminal: `mcqa-eval --adapter adapters/NAME --suite medical "
            "--compare-base` (MedMCQA, MedQA, PubMedQA, MMLU's medical subjects, HEAD-QA; offline, the sets the "
            f"hub holds are listed as not available). Reports are read from `{server_text(reports_dir())}/`."
        )
        return
    labels = [f"{s['suite']} · {path.parent.name}" for path, s in found]
    picked = st.selectbox("Suite", range(len(found)), format_func=labels.__getitem__, key="evaluate_suite")
    path, summary = found[picked]
    if summary.get("protocol"):
        line = server_text(f"{protocol_line(summary['protocol'])}; {path}")
        st.caption(f"Every set measured on {md_escape(line)}.")
    rows = server_rows(suite_rows(summary))  # a set's reason may name its file
    percent = st.column_config.NumberColumn(format="percent")
    config = {k: percent for k in ("accuracy", "acc_norm", "base")}
    config |= {
        "difference (points)": st.column_config.NumberColumn(format="%+.1f"),
        "p": st.column_config.NumberColumn(format="%.2g"),
    }
    st.dataframe(rows, hide_index=True, width="stretch", column_config=config)
    st.caption("Each set: Wilson 95 % intervals, the exact McNemar test against the base on the same questions.")
    scored = [e for e in summary["sets"] if e.get("status") == "scored"]
    if not scored:
        return
    name = st.selectbox("Open a set's report", [e["name"] for e in scored], key="evaluate_suite_set")
    entry = next(e for e in scored if e["name"] == name)
    try:
        report = json.loads((path.parent / entry["report"]).read_text())
    except (OSError, ValueError) as e:
        st.error(md_escape(server_text(f"Cannot read {path.parent / entry['report']} ({e}); score the suite again.")))
        return
    report_ui(report, f"Suite {md_escape(summary['suite'])}, set {md_escape(name)}.", bool(report.get("base")))
