"""The Streamlit pieces every page shares: the cached model and data, the sidebar, the answer view.

Only drawing and caching live here; what they show is computed by `mcqa_core` (which never imports
Streamlit). The model is an `st.cache_resource`: one load per process, shared by every session.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import streamlit as st

from mcqa_core.data.prompt import LETTERS, OPTION_KEYS
from mcqa_core.data.medmcqa import default_data_dir, load_split
from mcqa_core.errors import DataError, McqaError
from mcqa_core.evaluation.report import describe_interval, measured_interval
from mcqa_core.models.run_record import DISCLAIMER
from mcqa_core.service.adapters import AppSettings, ModelSpec, adapter_spec, base_spec, describe_run, find_adapters
from mcqa_core.service.questions import Answer, load_spec
from mcqa_core.service.row_filters import short
from mcqa_core.training.settings import CPU_DEMO_TIME

TRAIN_HINT = ".venv/bin/python train_adapter.py --preset cpu-demo --output-dir adapters/cpu-demo"  # or: make cpu-demo
BASE_CHOICE = "__base__"
PATH_CHOICE = "__path__"


# --------------------------------------------------------------------------- showing user text safely


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def md_escape(text: str) -> str:
    """Text shown literally inside Streamlit markdown: no emphasis, links, images, HTML, LaTeX or headings."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text))
    return escaped.replace("\n", "  \n")


# --------------------------------------------------------------------------- caches


@st.cache_resource(show_spinner=False, max_entries=3)
def _cached_model(adapter: str | None, base_model: str | None, load_in_4bit: bool | None, backend: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the server's log is not a terminal: no weight-loading bars in it
    return load_spec(ModelSpec(adapter, base_model, load_in_4bit, backend), threads=settings().threads,
                     settings=settings())


def get_model(spec: ModelSpec):
    """The model for a spec: loaded on the first call in this process, then shared by every session."""
    return _cached_model(spec.adapter, spec.base_model, spec.load_in_4bit, spec.backend)


@st.cache_data(show_spinner="Reading MedMCQA rows…", max_entries=4)
def load_rows(split: str, data_dir: str | None) -> tuple[list[dict], str]:
    loaded = load_split(split, data_dir)
    return loaded.rows, loaded.source


def settings() -> AppSettings:
    return AppSettings.from_env()


def _argv_data_dir() -> str | None:
    """`streamlit run app.py -- --data-dir FOLDER` (the flag the training script uses too)."""
    args = sys.argv[1:]
    for i, a in enumerate(args):
        if a == "--data-dir" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--data-dir="):
            return a.split("=", 1)[1]
    return None


def data_dir() -> str | None:
    """Where MedMCQA rows come from: a folder typed in Browse, else --data-dir, else $MCQA_DATA_DIR or
    ../shared/data/medmcqa, else None (the Hugging Face hub)."""
    return st.session_state.get("app_data_dir") or _argv_data_dir() or default_data_dir()


def validation_rows_or_none() -> tuple[list[dict] | None, str]:
    """(rows, source) or (None, reason) for the validation split."""
    try:
        return load_rows("validation", data_dir())
    except DataError as e:
        return None, str(e)


# --------------------------------------------------------------------------- the model in use


def current_spec() -> ModelSpec | None:
    return st.session_state.get("app_spec")


def current_model():
    """The loaded model the sidebar chose (a cache hit), or None when nothing could be loaded."""
    spec = current_spec()
    return get_model(spec) if spec is not None else None


def require_model():
    loaded = current_model()
    if loaded is None:
        st.info("No model is loaded: pick an adapter or the base model in the sidebar (its message says what "
                "went wrong).")
        st.stop()
    return loaded


def _load_or_error(spec: ModelSpec):
    try:
        with st.spinner(f"Loading {spec.label()} (once per server; later clicks reuse it)…"):
            return get_model(spec), None
    except McqaError as e:  # our own checks (a damaged adapter, a server down): the message says what to do
        return None, str(e)
    except Exception as e:  # torch/peft/safetensors raise many types for a damaged folder; keep the app alive
        return None, f"{type(e).__name__}: {str(e)[:500]}"


def _choice_label(choice: str, adapters: dict, cfg: AppSettings) -> str:
    if choice == BASE_CHOICE:
        return f"Base model only ({cfg.base_model})"
    if choice == PATH_CHOICE:
        return "Another adapter folder…"
    a = adapters[choice]
    acc = f" · {c[0]:.1%} ({describe_interval(c[2], 0)})" if (c := measured_interval(a.run)) else ""
    return f"{a.name}{acc}"


def model_picker_ui(cfg: AppSettings) -> ModelSpec:
    """The sidebar's adapter choice as a spec to load."""
    found = find_adapters(cfg.adapters_dir)
    ready = {str(a.path): a for a in found if a.ready}
    choices = list(ready) + [BASE_CHOICE, PATH_CHOICE]
    if (pick := st.session_state.pop("sidebar_pick", None)) in choices:  # e.g. "Ask this adapter" on Train
        st.session_state["sidebar_model"] = pick
    choice = st.sidebar.selectbox("Model", choices, key="sidebar_model",
                                  format_func=lambda c: _choice_label(c, ready, cfg),
                                  help=f"Adapter folders found in {cfg.adapters_dir}")
    for a in found:
        if not a.ready:
            st.sidebar.caption(f"{md_escape(a.name)}: {md_escape(a.problem or 'not ready')}")
    backend = cfg.backend
    if cfg.endpoint:  # a server is configured: either may answer; a failed switch keeps the last good one
        backend = st.sidebar.radio("Answered by", ["local", "openai"], index=int(cfg.backend == "openai"),
                                   key="sidebar_backend", horizontal=True,
                                   format_func=lambda b: "this app" if b == "local" else "the server",
                                   help=f"the server: {cfg.endpoint} (docs/serving.md)")
    if choice == PATH_CHOICE:
        path = st.sidebar.text_input("Adapter folder", key="sidebar_adapter_path",
                                     placeholder="adapters/my-run or /abs/path").strip()
        if not path:
            st.sidebar.caption("Type a folder that holds adapter_config.json; the base model answers meanwhile.")
            return base_spec(cfg, backend)
        return adapter_spec(path, cfg, backend)
    if choice == BASE_CHOICE:
        return base_spec(cfg, backend)
    return adapter_spec(choice, cfg, backend)


def sidebar_ui():
    """Pick, load (cached) and describe the model; returns the loaded model or None.

    An adapter that fails to load is reported with its reason and folder; the model loaded before it
    (or the base model) stays in use, and the failing folder is not retried on every click.
    """
    cfg = settings()
    wanted = model_picker_ui(cfg)
    failed: dict = st.session_state.setdefault("app_failed", {})
    fallback = st.session_state.get("app_good_spec") or base_spec(cfg, "local")
    loaded, spec = None, wanted
    if wanted in failed:
        error = failed[wanted]
    else:
        loaded, error = _load_or_error(wanted)
        if error:
            failed[wanted] = error
    if error:
        st.sidebar.error(f"Could not load {md_escape(wanted.label())}. The reason:", icon=":material/error:")
        st.sidebar.code(error, language=None, wrap_lines=True)  # shown as typed: paths may hold markup
        if st.sidebar.button("Try again", key="sidebar_retry"):
            failed.pop(wanted, None)
            st.rerun()
        spec = fallback
        if spec != wanted:
            loaded, error2 = _load_or_error(spec)
            if error2:
                st.sidebar.error(f"The fallback ({md_escape(spec.label())}) failed too:")
                st.sidebar.code(error2, language=None, wrap_lines=True)
            else:
                st.sidebar.warning(f"Still using {md_escape(spec.label())}.")
    if loaded is None:
        st.session_state["app_spec"] = None
        return None
    st.session_state["app_spec"] = spec
    st.session_state["app_good_spec"] = spec
    loaded_info_ui(loaded)
    if not loaded.has_adapter and not any(a.ready for a in find_adapters(cfg.adapters_dir)):
        st.sidebar.info(f"No adapter trained yet, so the base model answers. Train one ({CPU_DEMO_TIME}):\n\n"
                        f"`{TRAIN_HINT}`")
    return loaded


def disclaimer_ui(loaded) -> None:
    """One line on every page: what this is for, and how sure the loaded model's measured accuracy is."""
    measured = ""
    if loaded is not None and loaded.has_adapter and (claim := measured_interval(loaded.run)):
        acc, rows, (lo, hi) = claim
        measured = f" This adapter: {acc:.1%} letter accuracy (95 % interval {lo:.1%} to {hi:.1%}, {rows} questions)."
    st.caption(f":material/info: {DISCLAIMER}.{measured}")


def loaded_info_ui(loaded) -> None:
    d = loaded.describe()
    run = describe_run(loaded.run) if loaded.has_adapter else {}
    lines = [f"**Base model:** {md_escape(d['base_model'])}"]
    if loaded.has_adapter:
        lines.append(f"**Adapter:** {md_escape(Path(loaded.adapter).name)}")
        if run.get("trained_on"):
            lines.append(f"**Trained on:** {md_escape(run['trained_on'])}")
        if run.get("bank"):
            lines.append(f"**Bank:** {md_escape(run['bank'])}")
        acc = run.get("accuracy")
        if isinstance(acc, (int, float)):
            on = f" on {run['eval_split']} ({run['eval_rows']} rows)" if run.get("eval_split") else ""
            ci = f" ({describe_interval(c[2])})" if (c := measured_interval(loaded.run)) else ""
            lines.append(f"**Measured accuracy:** {acc:.1%}{ci}{md_escape(on)}")
        else:
            lines.append("**Measured accuracy:** not recorded")
    else:
        lines.append("**Adapter:** none (base model only)")
    four_bit = "yes" if d["load_in_4bit"] else "no"
    if loaded.has_adapter and loaded.run.get("load_in_4bit") and not d["load_in_4bit"]:
        four_bit += " (trained on the 4-bit base: near-tie answers may differ from its evaluation)"
    if d["device"].startswith("server"):
        lines.append(f"**Answered by:** {md_escape(d['device'])}")
    else:
        lines.append(f"**Device:** {d['device'].upper()} · **4-bit:** {four_bit} · "
                     f"**loaded in** {d['load_seconds']:.1f} s")
    st.sidebar.markdown("  \n".join(lines))


# --------------------------------------------------------------------------- answers


def probs_line(probs: list[float]) -> str:
    return " · ".join(f"{L} {p:.1%}" for L, p in zip(LETTERS, probs))


def probs_chart_ui(probs: list[float], row: dict, pred: str, gold: str | None = None, key: str = "") -> None:
    import altair as alt
    import pandas as pd

    letters = LETTERS[:len(probs)]
    df = pd.DataFrame({
        "letter": list(letters),
        "probability": probs,
        "option": [short(row.get(k, ""), 80) for k in OPTION_KEYS[:len(probs)]],
        "role": ["model's answer" if L == pred else ("correct answer" if L == gold else "other") for L in letters],
    })
    # The legend names the correct answer only when there is one (a MedMCQA sample, unchanged).
    roles = ["model's answer", "other"] if gold is None else ["model's answer", "correct answer", "other"]
    colors = ["#e4572e", "#b8c4cc"] if gold is None else ["#e4572e", "#2e86ab", "#b8c4cc"]
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5),
                    title=None),
            y=alt.Y("letter:N", sort=list(letters), title=None, axis=alt.Axis(labelOverlap=False, labelFontSize=13)),
            color=alt.Color("role:N", scale=alt.Scale(domain=roles, range=colors[: len(roles)]),
                            legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["letter", "option", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=40 * len(letters) + 30)
    )
    st.altair_chart(chart, width="stretch", key=f"chart_{key}" if key else None)


def answer_ui(answer: Answer, row: dict, title: str | None = None, key: str = "") -> None:
    """One answer: the letter and option text, how sure, how long it took, the probability bars."""
    if title:
        st.markdown(f"**{title}**")
    option = row[OPTION_KEYS[LETTERS.index(answer.pred)]]
    st.markdown(f"#### {answer.pred}. {md_escape(option)}")
    verdict = ""
    if answer.gold is not None:
        gold_text = md_escape(short(row[OPTION_KEYS[LETTERS.index(answer.gold)]], 60))
        verdict = (" · :green[:material/check_circle: **correct**]" if answer.correct
                   else f" · :red[:material/cancel: **wrong**]: MedMCQA says **{answer.gold}** ({gold_text})")
    st.markdown(f"Confidence **{answer.confidence:.0%}** · answered in **{answer.seconds:.2f} s**{verdict}")
    probs_chart_ui(answer.probs, row, answer.pred, answer.gold, key=key)
    st.caption(f"P(answer): {probs_line(answer.probs)} — the letters A–D held {answer.letter_mass:.0%} of the "
               "model's next-token probability")
