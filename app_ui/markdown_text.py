"""User text shown literally inside Streamlit markdown (questions, options, file names, paths)."""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def md_escape(text: str) -> str:
    """Text shown literally inside Streamlit markdown: no emphasis, links, images, HTML, LaTeX or headings."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text))
    return escaped.replace("\n", "  \n")
