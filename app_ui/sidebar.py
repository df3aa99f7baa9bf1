"""The sidebar every page shows: pick an adapter (or the base model), load it once per process, describe it;
and the disclaimer line under every page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mcqa_core.errors import McqaError
from mcqa_core.evaluation.report import describe_interval, measured_interval
from mcqa_core.models.run_record import DISCLAIMER, measured_split
from mcqa_core.models.tuners import method_of, tuner_for
from mcqa_core.service.adapters import (
    AppSettings,
    ModelSpec,
    adapter_spec,
    base_spec,
    describe_run,
    find_adapters,
    first_choice,
    picker_order,
)
from mcqa_core.training.method_costs import costs_line

from .caches import get_model, settings
from .claim_view import current_claim
from .markdown_text import md_escape
from .operator_gate import is_operator, operator_key_ui, server_text

TRAIN_HINT = ".venv/bin/python train_adapter.py --preset cpu-demo --output-dir adapters/cpu-demo"  # or: make cpu-demo
BASE_CHOICE = "__base__"
PATH_CHOICE = "__path__"


def _load_or_error(spec: ModelSpec):
    try:
        with st.spinner(f"Loading {server_text(spec.label())} (once per server; later clicks reuse it)…"):
            return get_model(spec), None
    except McqaError as e:  # our own checks (a damaged adapter, a server down): the message says what to do
        return None, str(e)
    # torch/peft/safetensors raise many types for a damaged folder: name it and keep the app alive
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {str(e)[:500]}"


def _choice_parts(choice: str, adapters: dict, cfg: AppSettings) -> tuple[str, str]:
    """A picker entry as (its name, what it measured: accuracy, interval, rows and split)."""
    if choice == BASE_CHOICE:
        return f"Base model only ({server_text(cfg.base_model)})", ""
    if choice == PATH_CHOICE:
        return "Another adapter folder…", ""
    a = adapters[choice]
    if a.damaged:  # its recorded number would read as a healthy adapter's: the damage instead
        return f"{a.name} (damaged: it will not load)", a.problem or ""
    if claim := measured_interval(a.run):  # the number, how sure it is, and what it was measured on
        acc, rows, (lo, hi) = claim
        split = f" {measured_split(a.run)}" if measured_split(a.run) else ""
        measured = f"{acc:.1%} (95 % CI {lo:.0%}-{hi:.0%}) · {rows:,}{split} rows"
    else:
        measured = "not measured"
    base = a.base_model or "an unknown base"
    if a.machinery_check:
        return f"{a.name} (smoke run on {base}: a machinery check)", measured
    other_base = f" (on {base})" if a.base_model != cfg.base_model else ""
    return f"{a.name}{other_base}", measured


def model_picker_ui(cfg: AppSettings) -> ModelSpec:
    """The sidebar's adapter choice as a spec to load."""
    found = picker_order(find_adapters(cfg.adapters_dir), cfg.base_model)
    ready = {str(a.path): a for a in found if a.ready}
    # Any folder on the server, typed by whoever reaches the page: the operator's alone.
    choices = list(ready) + [BASE_CHOICE] + ([PATH_CHOICE] if is_operator() else [])
    if (pick := st.session_state.pop("sidebar_pick", None)) in choices:  # e.g. "Ask this adapter" on Train
        st.session_state["sidebar_model"] = pick
    elif "sidebar_model" not in st.session_state:  # a first visit: an adapter on the app's base, else the base
        first = first_choice(found, cfg.base_model)
        st.session_state["sidebar_model"] = str(first.path) if first else BASE_CHOICE
    # A radio, not a select box: each entry's name, then its measurement on a line of its own that wraps, so
    # nothing is cut at any sidebar width.
    parts = {c: _choice_parts(c, ready, cfg) for c in choices}
    choice = st.sidebar.radio(
        "Model",
        choices,
        key="sidebar_model",
        format_func=lambda c: md_escape(parts[c][0]),
        captions=[md_escape(parts[c][1]) for c in choices],
        help=server_text(f"Adapter folders found in {cfg.adapters_dir}"),
    )
    healthy = [a for a in ready.values() if not a.damaged]
    measured_on = {(c[1], measured_split(a.run)) for a in healthy if (c := measured_interval(a.run))}
    if len(measured_on) > 1:  # two reports measured differently are not compared without saying so
        st.sidebar.caption(
            "These numbers were measured on different rows: compare adapters on the same questions, with paired "
            "tests, in Evaluate → Leaderboard (`mcqa-eval --leaderboard`)."
        )
    for a in found:
        if not a.ready:
            st.sidebar.caption(f"{md_escape(a.name)}: {md_escape(server_text(a.problem or 'not ready'))}")
    backend = cfg.backend
    if cfg.endpoint:  # a server is configured: either may answer; a failed switch keeps the last good one
        backend = st.sidebar.radio(
            "Answered by",
            ["local", "openai"],
            index=int(cfg.backend == "openai"),
            key="sidebar_backend",
            horizontal=True,
            format_func=lambda b: "this app" if b == "local" else "the server",
            help=server_text(f"the server at {cfg.endpoint} (docs/serving.md)"),
        )
    if choice == PATH_CHOICE:
        path = st.sidebar.text_input(
            "Adapter folder", key="sidebar_adapter_path", placeholder="adapters/my-run or /abs/path"
        ).strip()
        if not path:
            st.sidebar.caption("Type a folder that holds adapter_config.json; the base model answers meanwhile.")
            return base_spec(cfg, backend)
        return adapter_spec(path, cfg, backend)
    if choice == BASE_CHOICE:
        return base_spec(cfg, backend)
    return adapter_spec(choice, cfg, backend)


def sidebar_ui():
    """Pick, load (cached) and describe the model; returns the loaded model or None.

    An adapter that fails to load is reported with its reason and folder; the model loaded before it
    (or the base model) stays in use, and the failing folder is not retried on every click.
    """
    cfg = settings()
    operator_key_ui()
    wanted = model_picker_ui(cfg)
    failed: dict = st.session_state.setdefault("app_failed", {})
    fallback = st.session_state.get("app_good_spec") or base_spec(cfg, "local")
    loaded, spec = None, wanted
    if wanted in failed:
        error = failed[wanted]
    else:
        loaded, error = _load_or_error(wanted)
        if error:
            failed[wanted] = error
    if error:
        st.sidebar.error(
            f"Could not load {md_escape(server_text(wanted.label()))}. The reason:", icon=":material/error:"
        )
        st.sidebar.code(server_text(error), language=None, wrap_lines=True)  # shown as typed: paths may hold markup
        if st.sidebar.button("Try again", key="sidebar_retry"):
            failed.pop(wanted, None)
            st.rerun()
        spec = fallback
        if spec != wanted:
            loaded, error2 = _load_or_error(spec)
            if error2:
                st.sidebar.error(f"The fallback ({md_escape(server_text(spec.label()))}) failed too:")
                st.sidebar.code(server_text(error2), language=None, wrap_lines=True)
            else:
                st.sidebar.warning(f"Still using {md_escape(server_text(spec.label()))}.")
    if loaded is None:
        st.session_state["app_spec"] = None
        return None
    st.session_state["app_spec"] = spec
    st.session_state["app_good_spec"] = spec
    loaded_info_ui(loaded)
    if not loaded.has_adapter and not any(a.ready for a in find_adapters(cfg.adapters_dir)):
        st.sidebar.info(
            "No adapter trained yet, so the base model answers. Train one (minutes on a laptop CPU; "
            f"docs/training.md has measured times):\n\n`{TRAIN_HINT}`"
        )
    return loaded


def disclaimer_ui(loaded) -> None:
    """One line on every page: what this is for, and how sure the loaded model's measured accuracy is."""
    measured = ""
    if loaded is not None and loaded.has_adapter and (claim := measured_interval(loaded.run)):
        acc, rows, (lo, hi) = claim
        measured = f" This adapter: {acc:.1%} letter accuracy (95 % interval {lo:.1%} to {hi:.1%}, {rows} questions)."
    st.caption(f":material/info: {DISCLAIMER}.{measured}")


def method_parts(run: dict) -> tuple[str, str | None]:
    """(the adapter's training method as the app names it, what it cost in one line, or None where its record has
    no costs: a run from before methods had them)."""
    method = method_of(run)
    try:
        title = tuner_for(method).title
    except McqaError:  # a method this version does not know (loading it says so)
        title = method
    costs = run.get("costs")
    if not isinstance(costs, dict) or not costs.get("peft_method"):
        return title, None
    return title, costs_line(costs).removeprefix(f"{costs['peft_method']}:").strip() or None


def loaded_info_ui(loaded) -> None:
    d = loaded.describe()
    run = describe_run(loaded.run) if loaded.has_adapter else {}
    lines = [f"**Base model:** {md_escape(server_text(d['base_model']))}"]
    if loaded.has_adapter:
        lines.append(f"**Adapter:** {md_escape(Path(loaded.adapter).name)}")
        title, costs = method_parts(loaded.run)
        lines.append(f"**Method:** {md_escape(title)}")
        if costs:
            lines.append(f"**Costs:** {md_escape(costs)}")
        if run.get("trained_on"):
            lines.append(f"**Trained on:** {md_escape(run['trained_on'])}")
        if run.get("bank"):
            lines.append(f"**Bank:** {md_escape(run['bank'])}")
        acc = run.get("accuracy")
        if isinstance(acc, (int, float)):
            on = f" on {run['eval_split']} ({run['eval_rows']} rows)" if run.get("eval_split") else ""
            ci = f" ({describe_interval(c[2])})" if (c := measured_interval(loaded.run)) else ""
            lines.append(f"**Measured accuracy:** {acc:.1%}{ci}{md_escape(on)}")
            if isinstance(base := (loaded.run.get("metrics") or {}).get("report_base_accuracy"), (int, float)):
                lines.append(f"**The base on the same rows:** {base:.1%}")
        else:
            lines.append("**Measured accuracy:** not recorded")
    else:
        lines.append("**Adapter:** none (base model only)")
    claim = current_claim(loaded)  # for a base alone, this starts its one first-start measurement
    if not loaded.has_adapter:
        lines.append(f"**Measured:** {md_escape(claim.short)}")
    elif claim.at_prior:
        lines.append('**At the letter prior:** not distinguishable from always-"A"')
    four_bit = "yes" if d["load_in_4bit"] else "no"
    if loaded.has_adapter and loaded.run.get("load_in_4bit") and not d["load_in_4bit"]:
        four_bit += " (trained on the 4-bit base: near-tie answers may differ from its evaluation)"
    if d["device"].startswith("server"):
        lines.append(f"**Answered by:** {md_escape(server_text(d['device']))}")
    else:
        lines.append(
            f"**Device:** {d['device'].upper()} · **4-bit:** {four_bit} · **loaded in** {d['load_seconds']:.1f} s"
        )
    st.sidebar.markdown("  \n".join(lines))
