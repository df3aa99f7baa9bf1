"""The app's drawing code that the pages share: the page list, the cached model and data, the sidebar, the answer
view and the upload of your own questions. What they show is computed by `mcqa_core`, which never imports
Streamlit."""
