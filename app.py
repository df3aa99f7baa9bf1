"""MedMCQA LoRA demo: `streamlit run app.py` (or `make app`). The router: the four pages and the shared sidebar.

pages/ draw (Ask, Browse, Evaluate, Train), app_ui/ holds what they share, mcqa_core thinks.
Settings for tests and deployments (all optional):
MCQA_APP_BASE_MODEL (default smollm2-135m), MCQA_ADAPTERS_DIR (default adapters/), MCQA_APP_4BIT (0/1),
MCQA_DATA_DIR or `streamlit run app.py -- --data-dir FOLDER` (default ../shared/data/medmcqa).
"""

from app_ui.navigation import app_pages, page_frame

page = app_pages()
page_frame()
page.run()
