"""MedMCQA LoRA demo: `streamlit run app.py` (or `make app`). A router plus the shared sidebar.

The pages in app_pages/ draw; mcqa_core thinks. (Not `pages/`: Streamlit treats that folder as an
old-style multipage app, and a link straight to /evaluate would skip this router and its sidebar.)
Settings for tests and deployments (all optional):
MCQA_APP_BASE_MODEL (default smollm2-135m), MCQA_ADAPTERS_DIR (default adapters/), MCQA_APP_4BIT (0/1),
MCQA_DATA_DIR or `streamlit run app.py -- --data-dir FOLDER` (default ../shared/data/medmcqa).
"""

import streamlit as st

from app_shared import disclaimer_ui, sidebar_ui

st.set_page_config(page_title="MedMCQA LoRA", page_icon=":material/stethoscope:", layout="wide")

nav = st.navigation([
    st.Page("app_pages/ask.py", title="Ask", icon=":material/chat:", default=True),
    st.Page("app_pages/browse.py", title="Browse", icon=":material/menu_book:"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
])
# The sidebar loads the chosen model through st.cache_resource: the first visit in this process pays
# the load, every later click and session reuses it.
disclaimer_ui(sidebar_ui())
nav.run()
