"""The Train page's past runs: a table narrow enough to read whole (each run's name, method and accuracy), then the
run picked below it with every setting its mcqa_run.json records, its TensorBoard command, curves and export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from mcqa_core.service.run_history import curves_image, past_runs, tensorboard_command

from .export_panel import export_ui
from .markdown_text import md_escape
from .operator_gate import server_rows, server_text

SUMMARY = ("name", "method", "accuracy", "measured on", "base, same rows")  # the rest: the picked run's details


def past_runs_ui(adapters_dir: Path) -> None:
    history = past_runs(adapters_dir)  # newest first
    if not history:
        return
    shown = server_rows(history)  # a visitor: no server folder in a cell
    st.subheader(f"Past runs ({len(history)})")
    text = st.column_config.TextColumn
    sizes = {  # about 450 px in all: whole at 800 px; rows taller than 4 rem wrap their text
        "name": text(pinned=True),
        "method": text(width=60),
        "accuracy": text(width=120),
        "measured on": text("rows", width=70, help="The rows the accuracy was measured on"),
        "base, same rows": text("base", width=60, help="The base model on the same rows, when the report scored it"),
    }
    st.dataframe(
        pd.DataFrame([{k: r[k] for k in SUMMARY} for r in shown]),
        hide_index=True,
        width="stretch",
        height=min(38 + 70 * len(history), 390),
        row_height=70,
        column_config=sizes,
    )
    st.caption(
        "Accuracy: the run's report at training end, with its 95 % interval, on the rows named beside it; the "
        "base model on the same rows when the report scored it. Each run's settings: pick it below."
    )
    names = [r["name"] for r in history]
    if (
        st.session_state.get("train_history_newest") != names[0]
        or st.session_state.get("train_history_pick") not in names
    ):
        st.session_state["train_history_newest"] = st.session_state["train_history_pick"] = names[0]  # just finished
    pick = st.selectbox("Look at a run", names, key="train_history_pick")
    details = {k: v for k, v in shown[names.index(pick)].items() if k not in SUMMARY}
    st.table(  # one value a line, as text (the settings mix numbers and words), each read whole
        pd.DataFrame({"value": ["" if v is None else str(v) for v in details.values()]}, index=list(details))
    )
    folder = adapters_dir / pick
    if command := tensorboard_command(folder):
        st.caption("Its TensorBoard logs, from a terminal in the repository:")
        st.code(server_text(command), language="bash", wrap_lines=True)  # a visitor: the adapters folder by name
    if image := curves_image(folder):
        st.image(str(image), caption=f"{md_escape(pick)}: training loss and letter accuracy per step")
    export_ui(folder, adapters_dir)
