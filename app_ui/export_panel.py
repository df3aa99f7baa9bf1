"""The Train page's Export panel: merged 16-bit or GGUF (checked against the adapter, with an Ollama Modelfile),
optionally published, as `mcqa-export` in its own process that the panel follows like a run."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mcqa_core.errors import McqaError
from mcqa_core.service import export_launcher as exports

from .markdown_text import md_escape
from .operator_gate import is_operator, policy


def export_ui(adapter: Path, adapters_dir: Path) -> None:
    """Merged 16-bit or GGUF (checked against the adapter, with an Ollama Modelfile), optionally published: the
    `mcqa-export` command in its own process, followed here like a run."""
    st.markdown(f"**Export {md_escape(adapter.name)}**")
    if not is_operator():
        st.caption(policy().visitor_reason("Exporting and publishing"))
        return
    folder = exports.exports_dir(adapters_dir)
    c1, c2 = st.columns(2)
    convert, _, missing = exports.gguf_here()
    offered = [f for f in exports.EXPORT_FORMATS if convert or "gguf" not in exports.EXPORT_FORMATS[f]]
    fmt = c1.radio("Format", offered, key="export_format")
    if missing and (not convert or "gguf" in exports.EXPORT_FORMATS[fmt]):
        c1.caption(md_escape(missing) + ".")
    repo = None
    if exports.can_publish():
        repo = c2.text_input("Also publish to the hub as (optional)", key="export_repo", placeholder="owner/name")
    else:
        c2.caption("Publishing needs a hub token on the server (HF_TOKEN or `hf auth login`); files are written here.")
    argv = exports.export_argv(adapter, folder / exports.export_folder_name(adapter, fmt), fmt, repo=repo or None)
    st.code(exports.command_line(argv), language="bash", wrap_lines=True)
    v = exports.export_view(folder)
    if st.button("Export", key="export_start", disabled=v is not None and v.state == "running"):
        try:
            exports.start_export(argv, folder)
            v = exports.export_view(folder)
        except McqaError as e:
            st.error(str(e))
    if v is not None and v.state == "running":
        export_live_ui(folder)
    elif v is not None:
        export_result_ui(v)


@st.fragment(run_every=1.0)
def export_live_ui(folder: Path) -> None:
    """Re-read the export's log every second while it runs; once it ends, the page draws the result."""
    v = exports.export_view(folder)
    if v.state != "running":
        st.rerun(scope="app")
    st.info(f"Exporting into {md_escape(str(v.out))}: {v.seconds:.0f} s so far (merge, agreement check, write).")
    st.code("\n".join(v.log_tail) or "(nothing yet)", language=None)


def export_result_ui(v: exports.ExportView) -> None:
    if v.state == "done":
        st.success(f"Exported into {md_escape(str(v.out))} in {v.seconds:.0f} s: the same files as `mcqa-export`.")
    else:
        why = f": {md_escape(v.error)}" if v.error else "; the log's last lines say why."
        st.error(f"The export into {md_escape(str(v.out))} failed{why}")
    st.code("\n".join(v.log_tail) or "(nothing yet)", language=None)
