"""Train: start a run from the page, watch its loss and letter accuracy live, stop and resume it; the new
adapter then appears in the sidebar. The run is its own process; this page only reads its files."""

import time
from datetime import datetime
from pathlib import Path

import streamlit as st

from app_ui.bank_upload import current_bank
from app_ui.caches import settings
from app_ui.markdown_text import md_escape
from app_ui.navigation import ASK, through_router
from app_ui.operator_gate import is_operator, policy, server_text
from app_ui.past_runs_view import past_runs_ui
from app_ui.run_charts import charts_ui
from mcqa_core.errors import McqaError
from mcqa_core.service import preset_catalog as catalog
from mcqa_core.service import train_launcher as runs
from mcqa_core.service.preset_catalog import LEARNING_RATES, flag, offered_presets, preset_config, preset_label
from mcqa_core.service.uploads import bank_for_training


def form_ui(adapters_dir: Path) -> list[str] | None:
    """The settings a user changes, as the command line the run will be; None until Start is pressed."""
    c1, c2 = st.columns(2)
    preset = c1.selectbox("Preset", offered_presets(), format_func=preset_label, key="train_preset")
    name = c2.text_input(
        "Adapter name",
        value=f"{preset}-{datetime.now():%m%d-%H%M}",
        key=f"train_name_{preset}",
        help="A folder name under the adapters folder",
    ).strip()
    bank = current_bank()
    sources = ["MedMCQA (the preset's splits)"] + ([f"Your questions ({bank['name']})"] if bank else [])
    source = st.radio(
        "Data",
        sources,
        horizontal=True,
        key="train_source",
        help="Upload your own questions on Evaluate → Your questions to train on them",
    )
    method = method_ui(preset)
    numbers = numbers_ui(preset)
    if not name or Path(name).name != name or name in (".", ".."):
        st.error("Give the adapter a plain folder name (no slashes).")
        return None
    argv = ["--preset", preset, *flag("train", "output_dir", adapters_dir / name), *method, *numbers]
    if bank and source != sources[0]:
        saved = bank_for_training(bank["name"], bank["rows"])
        bank_columns = {"bank": saved, "answer_col": "cop", "answer_as": "index0"}
        argv += [part for key, value in bank_columns.items() for part in flag("data", key, value)]
    st.caption("The same run from a terminal:")
    st.code(runs.command_line(argv), language="bash", wrap_lines=True)
    return argv if st.button("Start training", key="train_start", type="primary") else None


def method_ui(preset: str) -> list[str]:
    """The training method, only its own settings (each field's help says what it costs) and the 4-bit choice, as
    flags; a method that needs a 16-bit base has the choice off, and says why."""
    methods, default = catalog.offered_methods(preset)
    c = st.columns(3, vertical_alignment="bottom")  # the boxes in one line, whatever their labels wrap to
    method = c[0].selectbox(
        "Method",
        methods,
        index=default,
        format_func=catalog.method_label,
        key=f"train_method_{preset}",
        help=catalog.setting_help("method", "peft_method"),
    )
    values = {}
    for col, s in zip(c[1:3], catalog.method_settings(method, preset)):
        key = f"train_{s.name}_{preset}"  # one per preset, as numbers_ui's
        if s.choices:
            values[s.name] = col.selectbox(s.label, s.choices, index=s.choices.index(s.value), key=key, help=s.help)
        else:
            values[s.name] = col.number_input(s.label, min_value=s.min, value=s.value, key=key, help=s.help)
    note = catalog.sixteen_bit_note(method)
    four_bit = st.toggle(
        "4-bit base",
        value=note is None and preset_config(preset).model.load_in_4bit,
        disabled=note is not None,
        key=f"train_4bit_{preset}_{method}",
        help=note or catalog.setting_help("model", "load_in_4bit"),
    )
    if note:
        st.caption(note)
    return catalog.method_argv(preset, method, values, four_bit)


def numbers_ui(preset: str) -> list[str]:
    """Steps or epochs, learning rate, batch size and evaluation interval, starting from the preset's file, as
    flags."""
    cfg, c = preset_config(preset), st.columns(5, vertical_alignment="bottom")
    # Keyed by preset: Streamlit keeps a keyed widget's value, so each preset starts from its own file.
    steps = c[0].number_input(
        "Max steps",
        min_value=0,
        value=max(cfg.train.max_steps, 0),
        key=f"train_steps_{preset}",
        help="0: train for the epochs instead",
    )
    epochs = c[1].number_input(
        "Epochs",
        min_value=0.1,
        value=float(cfg.train.num_train_epochs),
        step=0.5,
        key=f"train_epochs_{preset}",
        disabled=steps > 0,
    )
    rates = sorted({*LEARNING_RATES, cfg.train.learning_rate})
    lr = c[2].select_slider(  # halves and decades, both ways (a number input's "+" jumped a decade)
        "Learning rate",
        rates,
        value=cfg.train.learning_rate,
        format_func=lambda r: f"{r:.0e}".replace("e-0", "e-"),
        key=f"train_lr_{preset}",
    )
    batch = c[3].number_input(
        "Batch size", min_value=1, value=cfg.train.per_device_train_batch_size, key=f"train_batch_{preset}"
    )
    evals = c[4].number_input("Evaluate every", min_value=1, value=cfg.train.eval_steps, key=f"train_eval_{preset}")
    chosen = {
        ("train", "learning_rate"): lr,
        ("train", "per_device_train_batch_size"): batch,
        ("train", "eval_steps"): evals,
        ("train", "save_steps"): evals,  # checkpoints where the best-model tracking evaluates
        ("train", "max_steps"): steps or -1,
    }
    if not steps:
        chosen["train", "num_train_epochs"] = epochs
    return [part for (group, key), value in chosen.items() for part in flag(group, key, value)]


def progress_ui(v: runs.RunView, name: str) -> None:
    """One bar for what the run is doing now, each phase with its own progress."""
    if v.phase in ("loading", "step-0 check"):  # before the first step: say which wait this is
        doing = (
            "loading the model and the rows"
            if v.phase == "loading"
            else "scoring the dev rows before the first step (the base model: the chart's reference line)"
        )
        st.progress(0.0, text=f"{md_escape(name)}: {doing}…")
    elif v.phase == "evaluation":  # the dev rows' letters: the step-0 check or an evaluation between steps
        what = "the base model before the first step" if v.step == 0 else f"after step {v.step}"
        st.progress(
            min(v.phase_done / max(v.phase_total, 1), 1.0),
            text=f"{md_escape(name)}: scoring the dev rows ({what}), rows {v.phase_done} of {v.phase_total}",
        )
    elif v.phase == "report":  # after the last step: its own bar, not a full one that sits still for minutes
        st.progress(
            min(v.phase_done / max(v.phase_total, 1), 1.0),
            text=f"{md_escape(name)}: trained {v.step} steps; scoring the report's questions, "
            f"{v.phase_done} of {v.phase_total} (the adapter, then the base on the same rows)",
        )
    else:
        done = v.step / v.max_steps if v.max_steps else 0.0
        eta = f", about {v.remaining:.0f} s left" if v.remaining else ""  # only while training
        st.progress(
            min(done, 1.0),
            text=f"{md_escape(name)}: {v.state}, step {v.step} of {v.max_steps or '?'}, "
            f"{v.elapsed:.0f} s of training{eta}",
        )


@st.fragment(run_every=1.0)
def live_ui(out: Path, adapters_dir: Path) -> None:
    """Re-read the run's files every second: a new point shows within about a second of being logged."""
    v = runs.view(out, adapters_dir)
    progress_ui(v, out.name)
    if v.state in ("done", "stopped", "failed") and st.session_state.pop("train_form_hidden", False):
        st.rerun(scope="app")  # the run ended: the start form comes back
    if v.state == "failed":
        st.error(f"The run failed: {server_text(v.error)}")
    elif v.state == "stopped" and v.checkpoint:
        st.warning(f"Stopped at step {v.step} with {v.checkpoint}: Resume continues from it.")
    elif v.state == "stopped":
        st.warning("Stopped before the first step: nothing to resume; start the run again.")
    elif v.state == "done":
        st.success("Done: the adapter is in the sidebar's list, with its measured accuracy.")
        if st.session_state.get("train_seen_done") != str(out):  # once: redraw the sidebar with the new adapter
            st.session_state["train_seen_done"] = str(out)
            st.rerun(scope="app")
    charts_ui(v)
    c1, c2, c3 = st.columns(3)
    operator = is_operator()  # a visitor watches; only the operator stops or resumes
    if (
        operator
        and v.state in ("running", "starting")
        and c1.button(
            "Stop", key="train_stop", help="Ends after the current micro-batch with a checkpoint of the last step"
        )
    ):
        if runs.stop(adapters_dir):
            st.session_state["train_stopping"] = str(out)
        st.rerun(scope="app")
    if v.state in ("running", "starting") and st.session_state.get("train_stopping") == str(out):
        c1.caption("Stopping: the run ends after its current micro-batch and saves a checkpoint of its last step.")
    if (
        operator
        and v.state in ("stopped", "failed")
        and c2.button("Resume", key="train_resume", help="Continue from the newest complete checkpoint")
    ):
        try:
            runs.resume(out, adapters_dir)
            st.session_state.pop("train_error", None)
        except McqaError as e:  # kept past the fragment's next tick, until the next action
            st.session_state["train_error"] = str(e)
        st.rerun(scope="app")
    if error := st.session_state.get("train_error"):
        st.error(error)
    if v.state == "done" and c3.button("Ask this adapter", key="train_ask"):
        # Switched from the full run, not from this fragment: a switch made here left Ask blank (the page's own
        # run never came).
        st.session_state["train_go_ask"] = str(out)
        st.rerun(scope="app")
    with st.expander("Log (last lines)"):
        st.code(server_text("\n".join(v.log_tail)) or "(nothing yet)", language=None)


through_router()  # the sidebar even where Streamlit runs this file without app.py
if go := st.session_state.pop("train_go_ask", None):  # "Ask this adapter"
    st.session_state["sidebar_pick"] = go  # the sidebar's picker takes it on the Ask page's run
    st.switch_page(ASK)
st.title("Train an adapter")
adapters_dir = settings().adapters_dir
held = runs.active_run(adapters_dir)
st.session_state["train_form_hidden"] = held is not None  # no second start form while a run is live
if not is_operator():
    st.info(policy().visitor_reason("Starting, stopping or resuming training"))
elif held is None:
    argv = form_ui(adapters_dir)
    if argv is not None:
        try:
            held = runs.start(argv, adapters_dir)
            st.session_state["train_watch"] = held["output_dir"]
            time.sleep(0.5)  # the process writes its first status line
        except McqaError as e:
            st.error(str(e))
watch = held["output_dir"] if held else st.session_state.get("train_watch")
recent = runs.recent_runs(adapters_dir)
if watch is None and recent:
    watch = str(recent[0])
if watch is not None:
    st.subheader("Training run" if held else "Last run")
    live_ui(Path(watch), adapters_dir)

past_runs_ui(adapters_dir)
