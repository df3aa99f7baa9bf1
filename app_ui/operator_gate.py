"""The operator's way in, drawn in the sidebar, and the one question pages ask: may this session start processes,
write files or read server paths? (The policy itself: mcqa_core/service/operator_access.py.) Text the server
wrote goes through `server_text` on its way to a page: a visitor reads it without the server's folders."""

from __future__ import annotations

import streamlit as st

from mcqa_core.service.operator_access import AccessPolicy
from mcqa_core.service.server_paths import ServerPlaces

from .caches import data_dir, settings
from .markdown_text import md_escape

_KEY = "operator_key"


def policy() -> AccessPolicy:
    return AccessPolicy.from_env()


def remote_ip() -> str | None:
    """The connection's address; None from this machine. Streamlit's AppTest session, which runs here, has a
    mock object in its place."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) else None


def login_configured() -> bool:
    """Whether .streamlit/secrets.toml names an identity provider for st.login."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all: Streamlit raises its own error type
        return False


def logged_in_email() -> str | None:
    return st.user.get("email") if st.user.get("is_logged_in") else None


def is_operator() -> bool:
    return policy().is_operator(remote_ip(), st.session_state.get(_KEY), logged_in_email())


def server_places() -> ServerPlaces:
    cfg = settings()
    return ServerPlaces.of(cfg.adapters_dir, data_dir(), cfg.endpoint)


def server_text(text: object) -> str:
    """Text the server wrote (a path, an error, a log line, a command, a report) as this session may read it: whole
    for the operator; for a visitor with the server's folders named neutrally and its answer server's address
    hidden (mcqa_core/service/server_paths.py). Apply it before md_escape, which changes how a path is spelled."""
    return str(text) if is_operator() else server_places().hide(text)


def server_rows(rows: list[dict]) -> list[dict]:
    """A table's rows with `server_text` applied to every text cell."""
    if is_operator():
        return rows
    places = server_places()
    return [{k: places.hide(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


def rows_source(source: str) -> str:
    """Where the validation rows came from, as this session may read it (a visitor: "MedMCQA validation (local
    copy)" for a data folder)."""
    return source if is_operator() else server_places().source(source)


def operator_key_ui() -> None:
    """A key field for a visitor when the server has a key; nothing for a connection from this machine."""
    p = policy()
    login = bool(p.operator_emails) and login_configured()
    if p.is_operator(remote_ip()) or not (p.key or login):
        return
    with st.sidebar.expander("Operator", expanded=False):
        if p.key:
            offered = st.text_input("Operator key", type="password", key=_KEY, help="The server's MCQA_OPERATOR_KEY")
            if offered and is_operator():
                st.caption("Operator: training, export and the adapter-folder field are open in this session.")
            elif offered:
                st.caption("That key does not match the server's.")
        if login and (email := logged_in_email()):
            st.caption(f"Logged in as {md_escape(email)}" + ("" if is_operator() else ": not an operator account"))
            st.button("Log out", key="operator_logout", on_click=st.logout)
        elif login:
            st.button("Log in", key="operator_login", on_click=st.login)
