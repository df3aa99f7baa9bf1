"""The app's four pages, named once, and the frame drawn around each: app.py lists them through `app_pages`, pages
link to each other through these names."""

from __future__ import annotations

import streamlit as st

from .sidebar import disclaimer_ui, sidebar_ui

ASK, BROWSE, EVALUATE, TRAIN = "pages/ask.py", "pages/browse.py", "pages/evaluate.py", "pages/train.py"
_FRAMED = "app_framed"  # set by the frame, taken by the page: did app.py run before the page in this run?


def app_pages():
    """st.navigation over the four pages, Ask first (the default); the caller runs the chosen one."""
    return st.navigation(
        [
            st.Page(ASK, title="Ask", icon=":material/chat:", default=True),
            st.Page(BROWSE, title="Browse", icon=":material/menu_book:"),
            st.Page(EVALUATE, title="Evaluate", icon=":material/monitoring:"),
            st.Page(TRAIN, title="Train", icon=":material/model_training:"),
        ]
    )


def page_frame() -> None:
    """What surrounds every page: the tab's title, the sidebar and the disclaimer line.

    The sidebar loads the chosen model through st.cache_resource: the first visit in this process pays the
    load, every later click and session reuses it.
    """
    st.set_page_config(page_title="MedMCQA LoRA", page_icon=":material/stethoscope:", layout="wide")
    disclaimer_ui(sidebar_ui())
    st.session_state[_FRAMED] = True


def through_router() -> None:
    """Every page calls this before drawing. Until a session of a freshly started server has called st.navigation,
    Streamlit serves a direct link such as /evaluate from `pages/` in its old multipage mode, without app.py
    (Streamlit's AppTest does so on every run). Then this does what app.py does, which runs this page again inside
    the frame, and stops the frameless run; listing the pages also ends that mode for the whole server."""
    if st.session_state.pop(_FRAMED, False):
        return
    page = app_pages()
    page_frame()
    page.run()
    st.stop()
