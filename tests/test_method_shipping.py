"""Shipping a folder of each training method: subset and full fine-tuning export to a plain model that answers as
the folder does; prefix tuning and bottleneck adapters are refused in one line before any model loads; every
method's folder may be published; the card names the method, what it cost and how to load it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def method_folder(tmp_path_factory, data_dir):
    """The folder of a 2-step smoke run of a method (full precision: subset, full and adapter need it), trained
    once per module."""
    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config

    trained = {}

    def folder(method: str):
        if method not in trained:
            out = tmp_path_factory.mktemp(method) / "folder"
            args = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)]
            args += ["--peft-method", method, "--no-load-in-4bit", "--max-steps", "2", "--report-limit", "8"]
            run_training(load_config([*args, "--no-report-base"]))
            trained[method] = out
        return trained[method]

    return folder


def _letter_probs(model, tokenizer, rows):
    from mcqa_core.evaluation.letter_scoring import score_rows

    return [s.probs for s in score_rows(model, tokenizer, rows, max_prompt_tokens=192, bf16=False)]


@pytest.mark.parametrize("method", ["subset", "full"])
def test_export_of_a_base_weight_method_is_a_plain_model_that_answers_as_the_folder(
    method, method_folder, tmp_path, tiny_model_path, data_dir
):
    from transformers import AutoModelForCausalLM

    from mcqa_core.data.medmcqa import load_split
    from mcqa_core.models.inference import load_model
    from mcqa_core.models.loading import load_tokenizer
    from mcqa_core.shipping.merge import ExportArgs, export_merged

    folder, out = method_folder(method), tmp_path / "merged"
    args = ExportArgs(adapter=str(folder), out=str(out), check_rows=8, dtype="float32")
    record = export_merged(args, log=lambda *_: None)
    check = record["merged"]["check"]
    assert record["merged"]["peft_method"] == method and check["rows"] == 8
    assert check["merge_fidelity"] == 1.0 and check["merge_fidelity_max_prob_diff"] < 1e-5
    assert (out / "model.safetensors").exists() and not any(p.name.startswith("adapter_") for p in out.iterdir())

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    top = "model.layers.1.mlp.down_proj.weight"  # the top layer: trained by both methods
    assert not merged.state_dict()[top].equal(base.state_dict()[top]), "the export lost the trained weights"

    rows = load_split("heldout", data_dir, 6).rows
    unmerged = load_model(adapter=folder, device="cpu")
    expected = _letter_probs(unmerged.model, unmerged.tokenizer, rows)
    for got, want in zip(_letter_probs(merged, load_tokenizer(str(out)), rows), expected, strict=True):
        assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    ("method", "why"),
    [
        ("prefix", "prefix tuning's learned keys and values are extra positions"),
        ("adapter", "a non-linearity that no weight of the base can hold"),
    ],
)
def test_export_refuses_an_unmergeable_method_in_one_line_before_loading(method, why, method_folder, tmp_path):
    folder, out = method_folder(method), tmp_path / "merged"
    started = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "mcqa_core.cli.export_command", "--adapter", str(folder), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.perf_counter() - started
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: cannot export: --adapter "), r.stderr
    assert why in lines[0] and f"(--peft-method {method})" in lines[0]
    assert f"`mcqa-eval --adapter {folder}`" in lines[0] and "--peft-method lora, subset or full for" in lines[0]
    assert "Traceback" not in r.stderr and not r.stdout  # nothing loaded, nothing logged
    assert not out.exists() and seconds < 10, seconds


def test_publish_takes_the_folder_of_every_method(method_folder, monkeypatch, capsys):
    from mcqa_core.cli import publish_command
    from mcqa_core.shipping import hub_upload

    pushed = []
    monkeypatch.setattr(hub_upload, "hub_token", lambda: "hf_fake")
    monkeypatch.setattr(hub_upload, "push_folder", lambda folder, repo, private: pushed.append(folder) or repo)
    for method in ("subset", "full", "prefix", "adapter"):
        assert publish_command.main([str(method_folder(method)), f"me/{method}"]) == 0, capsys.readouterr().err
    assert [f.parent.name.rstrip("0123456789") for f in pushed] == ["subset", "full", "prefix", "adapter"]


def test_card_names_the_method_its_costs_and_how_to_load_it(method_folder):
    from mcqa_core.training.model_card import model_card

    folder = method_folder("subset")
    card = (folder / "README.md").read_text()
    costs = json.loads((folder / "mcqa_run.json").read_text())["costs"]
    assert "# MedMCQA fine-tune: subset fine-tuning (top K layers)" in card
    assert "| method | subset fine-tuning (top K layers) |" in card and ", `--peft-method subset`, on MedMCQA" in card
    assert f"({costs['trainable_share']:.2%}) |" in card and "| trainable parameters | " in card
    assert "| saved weights (adapter_model.safetensors) | " in card and "| peak memory while training | " in card
    assert "library_name" not in card and "AutoPeftModelForCausalLM" not in card
    assert 'load_model(adapter="THIS_FOLDER")' in card and "`mcqa-export --adapter THIS_FOLDER --out DIR`" in card

    record = json.loads((folder / "mcqa_run.json").read_text())
    older = {k: v for k, v in record.items() if k not in ("costs", "peft_method")}  # a LoRA from before methods
    older["settings"] = {k: v for k, v in record["settings"].items() if k != "method"}
    card = model_card(older)
    assert "library_name: peft" in card and "AutoPeftModelForCausalLM" in card and "# MedMCQA fine-tune: LoRA" in card
    assert "trainable parameters" not in card and "peak memory" not in card  # no costs kept: none drawn
    prefix = model_card({**older, "peft_method": "prefix"})
    assert "library_name: peft" in prefix and "cannot be merged into a plain model" in prefix
