"""Who may do what in the app. Asking, browsing and evaluating are open to every visitor; what starts processes,
writes files, reads server paths or uses the hub token is for the operator: a connection from this machine, or a
session that typed the key the server was started with."""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass

OPERATOR_KEY_ENV = "MCQA_OPERATOR_KEY"
# 0 behind a reverse proxy on this machine: every visitor's connection then comes from 127.0.0.1.
TRUST_LOCAL_ENV = "MCQA_OPERATOR_LOCAL"
VISITOR_ROWS_ENV = "MCQA_VISITOR_MAX_ROWS"
# With st.login configured (an identity provider in .streamlit/secrets.toml): the accounts that operate.
OPERATOR_EMAILS_ENV = "MCQA_OPERATOR_EMAILS"
VISITOR_MAX_ROWS = 200  # one visitor's evaluation holds the shared answer queue for about this many questions


@dataclass(frozen=True)
class AccessPolicy:
    key: str | None = None
    trust_local: bool = True
    visitor_max_rows: int = VISITOR_MAX_ROWS
    operator_emails: frozenset = frozenset()

    @classmethod
    def from_env(cls, env=None) -> AccessPolicy:
        env = os.environ if env is None else env
        rows = (env.get(VISITOR_ROWS_ENV) or "").strip()
        return cls(
            key=env.get(OPERATOR_KEY_ENV) or None,
            trust_local=(env.get(TRUST_LOCAL_ENV) or "1").strip().lower() not in ("0", "false", "no"),
            visitor_max_rows=max(int(rows), 1) if rows.isdigit() else VISITOR_MAX_ROWS,
            operator_emails=frozenset(
                e.strip().lower() for e in (env.get(OPERATOR_EMAILS_ENV) or "").split(",") if e.strip()
            ),
        )

    def is_operator(self, remote_ip: str | None, offered_key: str | None = None, email: str | None = None) -> bool:
        """`remote_ip` as Streamlit's st.context.ip_address gives it: None for a connection from this machine;
        `email`: the account logged in through st.login, if any."""
        if self.trust_local and is_local(remote_ip):
            return True
        if email and email.strip().lower() in self.operator_emails:
            return True
        return bool(self.key and offered_key) and hmac.compare_digest(offered_key.encode(), self.key.encode())

    def visitor_reason(self, action: str) -> str:
        """One line for a visitor: what they may not do, why, and how an operator gets in."""
        if self.key:
            how = f"the operator types the key the server was started with ({OPERATOR_KEY_ENV}) in the sidebar"
        elif self.operator_emails:
            how = "the operator logs in from the sidebar"
        else:
            how = f"the operator opens the app on its own machine, or restarts it with {OPERATOR_KEY_ENV} set"
        return (
            f"{action} is for the app's operator: it starts processes or writes files on the server, and this "
            f"connection comes from another machine. Asking, browsing and evaluating stay open; {how}."
        )


def is_local(remote_ip: str | None) -> bool:
    if remote_ip is None:
        return True
    try:
        return ipaddress.ip_address(remote_ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
