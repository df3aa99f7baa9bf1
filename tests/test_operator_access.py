"""Who may do what: visitors ask, browse and evaluate (at most MCQA_VISITOR_MAX_ROWS questions per run); the
operator (this machine, or the server's MCQA_OPERATOR_KEY) also starts, stops and resumes training and types
server paths."""

from __future__ import annotations

import time

import pytest

from mcqa_core.service import train_launcher as runs
from mcqa_core.service.operator_access import AccessPolicy, is_local

from . import test_app
from .test_app import open_app, picker_entries, shown

app_env = test_app.app_env

KEY = "s3cret-operator-key"


def test_the_policy_trusts_this_machine_and_the_key_only():
    assert is_local(None) and is_local("127.0.0.1") and is_local("::1") and is_local("127.0.0.2")
    assert not is_local("10.1.2.3") and not is_local("2001:db8::1") and not is_local("not-an-ip")
    open_policy = AccessPolicy()
    assert open_policy.is_operator(None) and not open_policy.is_operator("10.1.2.3", "anything")
    keyed = AccessPolicy(key=KEY)
    assert keyed.is_operator("10.1.2.3", KEY) and not keyed.is_operator("10.1.2.3", KEY[:-1])
    assert not keyed.is_operator("10.1.2.3", "") and not keyed.is_operator("10.1.2.3", None)
    proxied = AccessPolicy.from_env({"MCQA_OPERATOR_KEY": KEY, "MCQA_OPERATOR_LOCAL": "0"})
    assert not proxied.is_operator(None) and proxied.is_operator(None, KEY)  # behind a proxy: the key alone
    assert AccessPolicy.from_env({"MCQA_VISITOR_MAX_ROWS": "25"}).visitor_max_rows == 25
    assert AccessPolicy.from_env({"MCQA_VISITOR_MAX_ROWS": "lots"}).visitor_max_rows == 200
    accounts = AccessPolicy.from_env({"MCQA_OPERATOR_EMAILS": "Ops@Example.org, b@example.org"})
    assert accounts.is_operator("10.1.2.3", email="ops@example.org") and accounts.is_operator(
        "::2", email="b@example.org"
    )
    assert not accounts.is_operator("10.1.2.3", email="visitor@example.org") and not accounts.is_operator("10.1.2.3")


@pytest.fixture
def behind_a_proxy(app_env, monkeypatch):
    """Every connection looks local behind a reverse proxy on this machine: only the key makes an operator."""
    monkeypatch.setenv("MCQA_OPERATOR_LOCAL", "0")
    monkeypatch.setenv("MCQA_OPERATOR_KEY", KEY)
    monkeypatch.setenv("MCQA_VISITOR_MAX_ROWS", "30")
    return app_env


def test_a_visitor_sees_no_start_stop_or_server_path_and_is_told_why(behind_a_proxy, data_dir):
    out = behind_a_proxy / "live"
    argv = ["--preset", "smoke", "--output-dir", str(out), "--max-steps", "200", "--data-dir", str(data_dir)]
    runs.start(argv, behind_a_proxy)
    try:
        deadline = time.time() + 120
        while runs.view(out, behind_a_proxy).state not in ("running", "failed") and time.time() < deadline:
            time.sleep(0.5)
        visitor = open_app("train")
        keys = [b.key for b in visitor.button]
        assert "train_start" not in keys and "train_stop" not in keys and "train_resume" not in keys, keys
        assert "is for the app's operator" in shown(visitor) and "MCQA_OPERATOR_KEY" in shown(visitor)
        assert "live" in shown(visitor)  # the run itself stays in view

        wrong = open_app("train", operator_key="guess")
        assert "train_stop" not in [b.key for b in wrong.button]

        operator = open_app("train", operator_key=KEY)
        assert "train_stop" in [b.key for b in operator.button]
        operator.button(key="train_stop").click().run()
        deadline = time.time() + 120
        while runs.active_run(behind_a_proxy) is not None and time.time() < deadline:
            time.sleep(0.5)
        assert runs.view(out, behind_a_proxy).state == "stopped"
    finally:
        runs.stop(behind_a_proxy)

    at = open_app()
    assert "Another adapter folder…" not in picker_entries(at) and "Operator key" in [t.label for t in at.text_input]
    assert "Another adapter folder…" in picker_entries(open_app(operator_key=KEY))


def test_a_visitor_may_not_export_and_the_operator_may(behind_a_proxy, tiny_model_path):
    from .app_helpers import make_tiny_adapter

    make_tiny_adapter(behind_a_proxy / "tiny-lora", tiny_model_path)
    visitor = open_app("train")
    assert "export_start" not in [b.key for b in visitor.button]
    assert "Exporting and publishing is for the app's operator" in shown(visitor)
    assert "export_start" in [b.key for b in open_app("train", operator_key=KEY).button]


def test_a_visitor_evaluates_at_most_the_visitor_rows(behind_a_proxy):
    visitor = open_app("evaluate")
    assert visitor.number_input(key="evaluate_n").max == 30
    assert "Up to 30 questions per evaluation for visitors" in shown(visitor)
    operator = open_app("evaluate", operator_key=KEY)
    assert operator.number_input(key="evaluate_n").max != 30 and "for visitors" not in shown(operator)


def test_with_an_identity_provider_a_visitor_is_offered_the_login(behind_a_proxy, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from .conftest import REPO

    monkeypatch.setenv("MCQA_OPERATOR_EMAILS", "ops@example.org")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=test_app.TIMEOUT)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"}
    at.run()
    assert not at.exception and "operator_login" in [b.key for b in at.sidebar.button]
    plain = open_app()  # no identity provider configured: no login button, the key field only
    assert "operator_login" not in [b.key for b in plain.sidebar.button]
