"""Training methods in the app: the Train form offers each method with only its own settings and launches it with
its flags; an adapter folder of every method loads from the sidebar, says its method and costs, and answers on
Ask; past runs name their method."""

from __future__ import annotations

import dataclasses

import pytest

from mcqa_core.models.tuners import METHODS, tuner_for
from mcqa_core.service import preset_catalog as catalog
from mcqa_core.service import train_launcher as runs
from mcqa_core.training.setting_groups import MethodArgs

from . import test_app
from .test_app import fill, open_app, shown

app_env = test_app.app_env  # the same app settings, autouse here too
SIXTEEN_BIT = {m for m in METHODS if tuner_for(m).not_on_4bit}


@pytest.fixture(scope="module")
def method_folders(tmp_path_factory, data_dir):
    """One finished folder of each method (one step of the smoke preset on a few rows), in one adapters folder."""
    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config

    root = tmp_path_factory.mktemp("method-adapters")
    for method in METHODS:
        run_training(
            load_config(
                ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(root / method)]
                + ["--peft-method", method, "--no-load-in-4bit", "--max-steps", "1", "--train-limit", "8"]
                + ["--per-device-train-batch-size", "4", "--eval-limit", "2", "--report-limit", "2"]
                + ["--no-report-base", "--report-to", "none"]
            )
        )
    return root


def test_every_method_setting_is_on_the_form_under_exactly_one_method():
    own = [name for fields in catalog.METHOD_SETTINGS.values() for _, name, _ in fields]
    wanted = {f.name for f in dataclasses.fields(MethodArgs)} - {"peft_method"}
    assert sorted(catalog.METHOD_SETTINGS) == sorted(METHODS)
    assert len(own) == len(set(own)) and wanted <= set(own), own


@pytest.mark.parametrize("method", METHODS)
def test_the_launched_command_carries_the_method_and_its_own_flags_and_passes_the_checks(method, tmp_path):
    settings = catalog.method_settings(method, "smoke")
    assert all(s.help == catalog.setting_help(s.group, s.name) and s.help for s in settings)  # the field's own
    # a value of its own for each (the tiny base has 2 decoder layers: more is refused before anything loads)
    changed = {s.name: (s.choices[-1] if s.choices else 1 if s.name == "trainable_layers" else s.value + 1)
               for s in settings}  # fmt: skip
    argv = catalog.method_argv("smoke", method, changed, load_in_4bit=True)
    assert argv[:2] == ["--peft-method", method]
    for s in settings:
        assert argv[argv.index(f"--{s.name.replace('_', '-')}") + 1] == str(changed[s.name])
    others = {f"--{n.replace('_', '-')}" for m, fs in catalog.METHOD_SETTINGS.items() if m != method for _, n, _ in fs}
    assert not others & set(argv)  # only the chosen method's own settings
    assert ("--no-load-in-4bit" in argv) == (method in SIXTEEN_BIT)  # 4-bit asked, 16-bit where needed
    cfg = runs.check(["--preset", "smoke", "--output-dir", str(tmp_path / method), *argv])  # what start() checks
    assert cfg.method.peft_method == method and cfg.model.load_in_4bit == (method not in SIXTEEN_BIT)
    if method not in SIXTEEN_BIT:  # the 4-bit choice turned off by hand reaches the command too
        assert catalog.method_argv("smoke", method, {}, load_in_4bit=False)[-1] == "--no-load-in-4bit"


def test_the_train_form_shows_only_the_chosen_methods_settings_and_launches_it():
    at = open_app("train")
    picker = at.selectbox(key="train_method_smoke")
    assert picker.value == "lora" and list(picker.options)[0].startswith("lora: LoRA")
    assert at.number_input(key="train_lora_r_smoke").value == 16
    assert at.toggle(key="train_4bit_smoke_lora").value is True  # the preset's base, as before methods
    assert "--peft-method lora --lora-r 16" in at.code[0].value
    picker.set_value("adapter").run()
    assert not at.exception
    keys = {w.key for w in (*at.number_input, *at.selectbox)}
    assert {"train_adapter_dim_smoke", "train_adapter_placement_smoke"} <= keys and "train_lora_r_smoke" not in keys
    assert at.number_input(key="train_adapter_dim_smoke").help.startswith("adapter: bottleneck width (2 x hidden")
    four_bit = at.toggle(key="train_4bit_smoke_adapter")
    assert four_bit.value is False and four_bit.disabled
    assert "The adapter method trains on a 16-bit base" in shown(at)
    at.selectbox(key="train_adapter_placement_smoke").set_value("houlsby").run()
    command = at.code[0].value
    assert "--peft-method adapter --adapter-dim 16 --adapter-placement houlsby --no-load-in-4bit" in command
    at.selectbox(key="train_method_smoke").set_value("full").run()
    keys = {w.key for w in (*at.number_input, *at.selectbox)}
    assert not {k for k in keys if k.startswith(("train_adapter", "train_lora", "train_trainable", "train_num"))}
    assert "--peft-method full --no-load-in-4bit" in at.code[0].value


@pytest.mark.parametrize("method", METHODS)
def test_an_adapter_of_each_method_loads_says_its_method_and_costs_and_answers(method, method_folders, monkeypatch):
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(method_folders))
    at = open_app("ask", sidebar_model=str(method_folders / method))
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    title = tuner_for(method).title
    assert f"**Method:** {title}" in sidebar.replace("\\", ""), sidebar
    assert "trainable" in sidebar and "**Costs:**" in sidebar
    assert any(c.value.startswith(f"Answering with {method} · method: ") for c in at.caption), shown(at)
    fill(at, "Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")
    at.button(key="ask_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.markdown if m.value.startswith("#### ")]  # the answer's headline


def test_past_runs_name_each_runs_method(method_folders, monkeypatch):
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(method_folders))
    at = open_app("train")
    past = next(d.value for d in at.dataframe if "method" in d.value.columns)
    assert list(past.columns[:2]) == ["name", "method"]
    assert dict(zip(past["name"], past["method"])) == {m: m for m in METHODS}


def test_a_record_from_before_methods_reads_as_lora_without_costs():
    from app_ui.sidebar import method_parts

    assert method_parts({}) == (tuner_for("lora").title, None)
    assert method_parts({"peft_method": "newer"}) == ("newer", None)  # a method this version does not know
    costs = {"peft_method": "subset", "trainable_parameters": 2000, "trainable_share": 0.5, "saved_bytes": 8000}
    title, line = method_parts({"peft_method": "subset", "costs": costs})
    assert (
        title == tuner_for("subset").title and line.startswith("2.00 k trainable (50.00%)") and "saved 8.00 kB" in line
    )
