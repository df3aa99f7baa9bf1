"""MedMCQA LoRA demo: `streamlit run app.py`. A router; the pages in pages/ draw, mcqa_core thinks."""

import streamlit as st

st.set_page_config(page_title="MedMCQA LoRA", page_icon="🩺", layout="wide")
nav = st.navigation([st.Page("pages/home.py", title="Home", icon="🏠", default=True)])
nav.run()
