"""The operator's way in, drawn in the sidebar, and the one question pages ask: may this session start processes,
write files or read server paths? (The policy itself: mcqa_core/service/operator_access.py.)"""

from __future__ import annotations

import streamlit as st

from mcqa_core.service.operator_access import AccessPolicy

_KEY = "operator_key"


def policy() -> AccessPolicy:
    return AccessPolicy.from_env()


def remote_ip() -> str | None:
    """The connection's address; None from this machine. Streamlit's AppTest session, which runs here, has a
    mock object in its place."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) else None


def is_operator() -> bool:
    return policy().is_operator(remote_ip(), st.session_state.get(_KEY))


def operator_key_ui() -> None:
    """A key field for a visitor when the server has a key; nothing for a connection from this machine."""
    p = policy()
    if p.is_operator(remote_ip()) or not p.key:
        return
    with st.sidebar.expander("Operator", expanded=False):
        offered = st.text_input("Operator key", type="password", key=_KEY, help="The server's MCQA_OPERATOR_KEY")
        if offered and is_operator():
            st.caption("Operator: training and the adapter-folder field are open in this session.")
        elif offered:
            st.caption("That key does not match the server's.")
