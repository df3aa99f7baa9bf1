"""Evaluate: how good is the loaded model? Its saved report, or one run here, against always-"A" and the base."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app_ui.bank_upload import bank_ui
from app_ui.caches import current_spec, data_dir, load_rows, require_model
from app_ui.markdown_text import md_escape
from app_ui.navigation import BROWSE, through_router
from app_ui.sidebar import TRAIN_HINT
from mcqa_core.data.banks import select_part
from mcqa_core.data.medmcqa import SHARED_DATA_HINT
from mcqa_core.errors import DataError, McqaError
from mcqa_core.evaluation.report import describe_interval
from mcqa_core.evaluation.stats import FEW, describe_difference
from mcqa_core.models.run_record import split_overlap_warning
from mcqa_core.service.reports import evaluate_rows, saved_report, subject_table, with_statistics, wrong_answers
from mcqa_core.service.row_filters import short
from mcqa_core.service.uploads import results_csv
from mcqa_core.training.status_files import CURVES_FILE

SPLITS = ("heldout", "validation")


def default_split(loaded) -> str:
    data = (loaded.run or {}).get("data") or {}
    split = data.get("report_split") or data.get("eval_split")
    return split if split in SPLITS else "heldout"


def run_ui(loaded) -> None:
    """N samples, the split, base comparison; runs the evaluation with a progress bar."""
    c1, c2, c3 = st.columns([1, 1, 2])
    split = c1.selectbox("Split", SPLITS, index=SPLITS.index(default_split(loaded)), key="evaluate_split",
                         help="heldout: the offline rows no adapter trains on; validation: all of MedMCQA's")
    n = c2.number_input("Questions", min_value=1, value=50, step=10, key="evaluate_n",
                        help="The first N rows of the split (always the same ones, so runs compare); more than "
                             "the split holds: all of them")
    compare = c3.toggle("Compare with the base model", value=loaded.has_adapter, key="evaluate_compare",
                        disabled=not loaded.has_adapter, help="Score again with the adapter switched off")
    if loaded.has_adapter and (overlap := split_overlap_warning(loaded.run, split)):
        st.warning(overlap)
    if not st.button("Run evaluation", key="evaluate_run", type="primary"):
        return
    try:
        rows = load_rows(split, data_dir())[0][: int(n)]
    except DataError as e:
        st.info(f"No {split} rows to evaluate on: {e}\n\nPoint the app at data: `MCQA_DATA_DIR={SHARED_DATA_HINT}`.")
        return
    bar = st.progress(0.0, text=f"Scoring {len(rows)} questions…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{done}/{total} questions scored")

    try:
        report = evaluate_rows(loaded, rows, compare_base=compare, progress=progress)
    except McqaError as e:  # a question too long, a server that stopped answering
        bar.empty()
        st.error(str(e))
        return
    bar.empty()
    st.session_state["evaluate_result"] = {"spec": current_spec(), "report": report, "split": split}


def bank_run_ui(loaded) -> None:
    """A user's bank: upload and map it, score it with a progress bar (Cancel stops it), show the report and
    offer the results as CSV and the report as JSON."""
    bank = bank_ui()
    if bank is None:
        return
    if not bank.has_answers:
        st.info("This bank has no answer column, so it can be browsed and asked (Browse, Ask) but not scored.")
        return
    trained_on = Path(str((((loaded.run or {}).get("data") or {}).get("bank") or {}).get("source", ""))).name
    seen = loaded.has_adapter and trained_on == Path(bank.source).name
    if seen:
        st.warning("This adapter was trained on this bank (all but its held-out quarter): score the held-out "
                   "part for an honest number.")
    c0, c1, c2 = st.columns([1, 1, 2])
    part = c0.selectbox("Part", ["heldout", "all"] if seen else ["all", "heldout"], key="bank_part",
                        help="heldout: the quarter with sha256(id) % 4 == 0, which training on a bank never uses")
    try:
        bank = select_part(bank, part)
    except DataError as e:
        st.error(str(e))
        return
    n = c1.number_input("Questions", min_value=1, max_value=len(bank.rows), value=len(bank.rows), step=50,
                        key=f"bank_n_{part}", help="The first N questions of the part, in file order")
    compare = c2.toggle("Compare with the base model", value=loaded.has_adapter, key="bank_compare",
                        disabled=not loaded.has_adapter, help="Score again with the adapter switched off")
    run, cancel = st.columns([1, 5])
    if cancel.button("Cancel", key="bank_cancel", help="Stops a run in progress"):
        st.info("Cancelled: no report was kept.")
    elif run.button("Run on your questions", key="bank_run", type="primary"):
        rows = bank.rows[: int(n)]
        bar = st.progress(0.0, text=f"Scoring {len(rows)} questions…")

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done}/{total} questions scored")

        try:
            report = evaluate_rows(loaded, rows, compare_base=compare, progress=progress)
        except McqaError as e:
            bar.empty()
            st.error(str(e))
            return
        report["meta"]["bank"] = bank.describe()
        bar.empty()
        st.session_state["evaluate_bank_result"] = {"spec": current_spec(), "report": report, "rows": rows,
                                                    "name": bank.source}
    ran = st.session_state.get("evaluate_bank_result")
    if ran is None or ran["spec"] != current_spec() or ran["name"] != bank.source:
        return
    report_ui(ran["report"], f"Run here on {ran['report']['n']} questions of {md_escape(ran['name'])}.")
    stem = ran["name"].rsplit(".", 1)[0]
    d1, d2 = st.columns(2)
    d1.download_button("Download results (CSV)", results_csv(ran["report"], ran["rows"]),
                       file_name=f"{stem}-results.csv", mime="text/csv", key="bank_download_csv")
    d2.download_button("Download the report (JSON)", json.dumps(ran["report"], indent=2),
                       file_name=f"{stem}-report.json", mime="application/json", key="bank_download_json")


def headline_ui(report: dict) -> None:
    """The accuracies, each with its interval beneath it, and in words what is and is not a real difference."""
    acc, always_a = report["accuracy"], report["always_a_accuracy"]
    base = report.get("base")
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{acc:.1%}", f"{(acc - always_a) * 100:+.1f} pts vs always-A",
                   help=f"Letter accuracy on {report['n']} questions")
    cols[0].caption(f"{describe_interval(report['accuracy_ci'])}, {report['n']} questions")
    cols[1].metric("Always answer \"A\"", f"{always_a:.1%}", help="The commonest letter, answered every time")
    cols[1].caption(describe_interval(report["always_a_ci"]))
    if base:
        cols[2].metric("Base model", f"{base['accuracy']:.1%}", f"{(acc - base['accuracy']) * 100:+.1f} pts from the adapter",
                       delta_color="normal", help="The same questions with the adapter switched off")
        cols[2].caption(describe_interval(base["accuracy_ci"]))
    else:
        cols[2].metric("Base model", "—", help="Not in this report: run one here with the comparison on")
    cols[3].metric("Mean confidence", f"{report['mean_confidence']:.0%}", help=f"ECE {report['ece']:.3f}")
    lines = ([f"Against always-\"A\": {describe_difference(report['vs_always_a'], 'always-A')}."]
             if report.get("vs_always_a") else [])
    if report.get("vs_base"):
        lines.append(f"Against the base model: {describe_difference(report['vs_base'], 'the base model')}.")
    st.markdown("  \n".join(lines))
    st.caption("Exact McNemar tests on the same questions; \"not distinguishable\" means p ≥ 0.05.")


def subjects_ui(report: dict) -> None:
    import altair as alt

    table = subject_table(report)
    long = []
    for r in table:
        label = f"{r['subject']} (n={r['n']}{', few' if r['few'] else ''})"
        long.append({"subject": label, "model": "this model", "accuracy": r["accuracy"], "low": r["low"],
                     "high": r["high"], "n": r["n"]})
        if r.get("base accuracy") is not None:
            long.append({"subject": label, "model": "base", "accuracy": r["base accuracy"], "low": r["base low"],
                         "high": r["base high"], "n": r["n"]})
    df = pd.DataFrame(long)
    order = list(dict.fromkeys(df["subject"]))
    chart = (
        alt.Chart(df).mark_bar().encode(
            x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5), title=None),
            y=alt.Y("subject:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=180)),
            yOffset="model:N",
            color=alt.Color("model:N", scale=alt.Scale(domain=["this model", "base"][: 2 if report.get("base") else 1],
                                                        range=["#e4572e", "#b8c4cc"]),
                            legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["subject", "model", alt.Tooltip("accuracy:Q", format=".1%"), "n"],
        ).properties(height=max(160, (36 if report.get("base") else 24) * len(order)))
    )
    whiskers = alt.Chart(df).mark_rule(color="#333").encode(
        x="low:Q", x2="high:Q", y=alt.Y("subject:N", sort=order), yOffset="model:N",
        tooltip=["subject", "model", alt.Tooltip("low:Q", format=".1%"), alt.Tooltip("high:Q", format=".1%")])
    rule = alt.Chart(pd.DataFrame({"x": [report["always_a_accuracy"]]})).mark_rule(strokeDash=[4, 3]).encode(x=alt.X("x:Q", title=None))
    st.altair_chart(chart + whiskers + rule, width="stretch")
    st.caption(f"Whiskers: 95 % intervals. Dashed line: always-\"A\" on all these questions. Subjects marked "
               f"\"few\" have under {FEW} questions: their bars swing widely, so do not rank them.")


def confusion_ui(report: dict) -> None:
    import altair as alt

    labels, matrix = report["confusion"]["labels"], report["confusion"]["matrix"]
    # Plain field names: vega-lite reads quotes and dots in a field name as syntax.
    df = pd.DataFrame([{"gold": g, "pred": p, "count": matrix[i][j]}
                       for i, g in enumerate(labels) for j, p in enumerate(labels)])
    base = alt.Chart(df).encode(x=alt.X("pred:N", sort=list(labels), title="model's answer",
                                        axis=alt.Axis(orient="top", labelAngle=0)),
                                y=alt.Y("gold:N", sort=list(labels), title="correct answer"))
    heat = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="oranges"), legend=None),
                                   tooltip=["gold", "pred", "count"])
    text = base.mark_text(fontSize=15).encode(text="count:Q")
    st.altair_chart((heat + text).properties(height=240), width="stretch")
    st.caption("Rows: the correct answer; columns: the model's. The diagonal is correct. Below: how often each "
               "letter is the model's answer and the correct one.")
    spread = pd.DataFrame({"model answers": report["pred_spread"], "correct answers": report["gold_spread"]}).T
    st.dataframe(spread.reindex(columns=list(labels)).map(lambda v: f"{v:.0%}" if pd.notna(v) else "—"))


def wrong_ui(report: dict) -> None:
    wrong = wrong_answers(report)
    if not wrong:
        st.success("No wrong answers in this report.")
        return
    df = pd.DataFrame([{"id": p["id"], "subject": p.get("subject"), "model": p["pred"], "correct": p["gold"],
                        "confidence": max(p["probs"]), "question": short(p.get("question", ""), 100)}
                       for p in wrong])
    st.dataframe(df, hide_index=True, width="stretch", height=min(38 + 35 * len(df), 320),
                 column_config={"confidence": st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                              max_value=1)})
    by_id = {p["id"]: p for p in wrong}
    c1, c2 = st.columns([4, 1])
    pick = c1.selectbox("Open a wrong answer in Browse", list(by_id), key="evaluate_wrong",
                        format_func=lambda i: f"{by_id[i]['pred']}→{by_id[i]['gold']} · "
                                              f"{short(by_id[i].get('question', ''), 90)}")
    c2.markdown("&nbsp;")
    if c2.button("Open in Browse", key="evaluate_open_browse"):
        st.session_state["browse_focus_id"] = pick
        st.switch_page(BROWSE)


def report_ui(report: dict, where: str) -> None:
    report = with_statistics(report)
    st.caption(where)
    headline_ui(report)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Per subject")
        subjects_ui(report)
    with right:
        st.subheader("Confusion matrix")
        confusion_ui(report)
    if report.get("disagreements") is not None:
        st.caption(f"The adapter and its base disagree on {len(report['disagreements'])} of {report['n']} questions.")
    st.subheader(f"Wrong answers ({len(wrong_answers(report))})")
    wrong_ui(report)


through_router()  # the sidebar even where Streamlit runs this file without app.py
st.title("Evaluate")
loaded = require_model()
saved, saved_path = saved_report(loaded.adapter)


def this_models_run() -> dict | None:
    ran = st.session_state.get("evaluate_result")
    return ran if ran is not None and ran["spec"] == current_spec() else None  # not another model's report


source = st.segmented_control("Questions", ["MedMCQA", "Your questions"], default="MedMCQA", key="evaluate_source")
if source == "Your questions":
    bank_run_ui(loaded)
    st.stop()

with st.expander("Run an evaluation here", expanded=saved is None and this_models_run() is None):
    run_ui(loaded)
ran = this_models_run()

if ran is not None:
    report_ui(ran["report"], f"Run here on the first {ran['report']['n']} {ran['split']} questions.")
elif saved is not None:
    report_ui(saved, f"Report written at training end: {saved_path}")
    if saved_path.with_suffix(".png").exists():
        with st.expander("The report's figure (eval_report.png)"):
            st.image(str(saved_path.with_suffix(".png")))
    if (saved_path.parent / CURVES_FILE).exists():
        with st.expander("Training curves (loss and letter accuracy per step)"):
            st.image(str(saved_path.parent / CURVES_FILE))
else:
    if loaded.has_adapter:
        st.info(f"This adapter has no evaluation report yet ({saved_path} is missing): run one above.")
    else:
        st.info("The base model has no saved report: run one above, or train an adapter "
                f"(`{TRAIN_HINT}`); its folder then holds eval_report.json.")
