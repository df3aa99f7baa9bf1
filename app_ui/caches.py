"""What the pages share through Streamlit's caches: the model (`st.cache_resource`: one load per process, shared
by every session), the MedMCQA rows (`st.cache_data`), the app's settings and the model the sidebar chose."""

from __future__ import annotations

import sys

import streamlit as st

from mcqa_core.data.medmcqa import default_data_dir, load_split
from mcqa_core.errors import DataError
from mcqa_core.service.adapters import AppSettings, ModelSpec
from mcqa_core.service.shared_model import load_spec


@st.cache_resource(show_spinner=False, max_entries=3)
def _cached_model(adapter: str | None, base_model: str | None, load_in_4bit: bool | None, backend: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the server's log is not a terminal: no weight-loading bars in it
    return load_spec(
        ModelSpec(adapter, base_model, load_in_4bit, backend), threads=settings().threads, settings=settings()
    )


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


def current_spec() -> ModelSpec | None:
    return st.session_state.get("app_spec")


def current_model():
    """The loaded model the sidebar chose (a cache hit), or None when nothing could be loaded."""
    spec = current_spec()
    return get_model(spec) if spec is not None else None


def require_model():
    loaded = current_model()
    if loaded is None:
        st.info(
            "No model is loaded: pick an adapter or the base model in the sidebar (its message says what went wrong)."
        )
        st.stop()
    return loaded
