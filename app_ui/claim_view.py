"""What the visitor is looking at, said before the first answer: which model answers and what it is measured to do
(mcqa_core/service/measured_claim.py), the label an explanation gets from a model measured at the letter prior, and
the operator's one button that trains the demo adapter (mcqa_core/service/demo_run.py)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mcqa_core.errors import McqaError
from mcqa_core.service import demo_run
from mcqa_core.service import train_launcher as runs
from mcqa_core.service.adapters import find_adapters
from mcqa_core.service.measured_claim import Claim, claim_for

from .caches import data_dir, settings
from .markdown_text import md_escape
from .operator_gate import is_operator, server_text

PRIOR_NOTE = (
    'This model is measured at the letter prior (its accuracy is not distinguishable from always-"A"): its '
    "explanation is not evidence; the retrieved expert explanations below are."
)


def claim_name(loaded) -> str:
    """The loaded model as the sentence names it."""
    base = server_text(loaded.base_model)
    if loaded.has_adapter:
        return f"{Path(loaded.adapter).name} (adapter on {base})"
    return f"{base} (base, no adapter)"


def current_claim(loaded) -> Claim:
    """The claim for the loaded model; for a base alone this starts its one measurement in this process."""
    return claim_for(loaded, claim_name(loaded), data_dir=data_dir(), rows=settings().measure_rows)


def claim_ui(loaded) -> Claim:
    """The sentence at the top of Ask; while the base is being measured it looks again every few seconds, and the
    whole page is drawn again once the report is there (the Explain label depends on it)."""
    claim = current_claim(loaded)
    if claim.state == "measuring":
        _measuring_ui(loaded)
    else:
        _claim_line(claim)
    return claim


def _claim_line(claim: Claim) -> None:
    text = md_escape(server_text(claim.sentence))
    if claim.state == "measured":
        st.markdown(f":material/query_stats: {text}.")
    elif claim.state == "failed":
        st.warning(text, icon=":material/error:")
    else:
        st.caption(f":material/hourglass_top: {text}")


@st.fragment(run_every=3.0)
def _measuring_ui(loaded) -> None:
    claim = current_claim(loaded)
    if claim.state != "measuring":
        st.rerun(scope="app")
    _claim_line(claim)


def prior_note(claim: Claim | None) -> str | None:
    """The label beside Explain for a model measured at the prior; None otherwise."""
    return PRIOR_NOTE if claim is not None and claim.at_prior else None


def _train_link() -> None:
    from .navigation import TRAIN  # navigation draws the sidebar, which imports this module

    st.page_link(TRAIN, label="Follow it on Train", icon=":material/model_training:")


def demo_train_ui(loaded) -> None:
    """For the operator, while no adapter is ready: one button that starts the cpu-demo run, with its measured time
    on this kind of CPU. A visitor sees nothing here (the notice above already says how to train one)."""
    cfg = settings()
    if loaded.has_adapter or not is_operator() or any(a.ready for a in find_adapters(cfg.adapters_dir)):
        return
    if held := runs.active_run(cfg.adapters_dir):
        st.caption(f"A run is training into {md_escape(Path(held['output_dir']).name)}.")
        _train_link()
        return
    row = st.container(horizontal=True, vertical_alignment="center")
    clicked = row.button(
        "Train the demo adapter",
        icon=":material/model_training:",
        key="ask_train_demo",
        help="The cpu-demo preset (SmolLM2-135M, 4-bit, 1,024 demo-train rows, 32 steps), started as the Train page "
        "starts a run",
    )
    row.caption(f"cpu-demo: {md_escape(demo_run.demo_time_line())}.")
    if clicked:
        try:
            held = demo_run.start_demo(cfg.adapters_dir)
        except McqaError as e:
            st.error(server_text(e))
            return
        st.session_state["train_watch"] = held["output_dir"]
        st.success(f"Started cpu-demo into {md_escape(Path(held['output_dir']).name)}.")
        _train_link()
