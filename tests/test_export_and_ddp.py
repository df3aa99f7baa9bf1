"""Merge/export, hub push with the hub unreachable, and two-process (DDP over gloo) training on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from .conftest import REPO, save_random_lora

IDS = torch.tensor([[1, 415, 2634, 314, 253, 5053, 30, 1123]])
SECRET = "hf_testSECRETtoken0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory, tiny_model_path, data_dir):
    """A LoRA with non-zero B on the tiny model, saved like train_adapter.py saves one (no training: fast)."""
    from mcqa_core.data.prompt import PROMPT_TEMPLATE, PROMPT_VERSION

    run = {
        "format": "mcqa-run/1",
        "base_model": "tiny-random-llama",
        "load_in_4bit": True,
        "prompt_version": PROMPT_VERSION,
        "prompt_template": PROMPT_TEMPLATE,
        "settings": {"model": {"max_seq_length": 256}},
        "metrics": {"final_accuracy": 0.25},
        "data": {"source": str(data_dir), "eval_split": "heldout"},
    }
    return save_random_lora(
        tiny_model_path, tmp_path_factory.mktemp("adapter") / "a", run, r=16, b_std=0.05, tokenizer=True
    )


def _export(adapter, out, **kw):
    from mcqa_core.shipping.merge import ExportArgs, export_merged

    return export_merged(ExportArgs(adapter=str(adapter), out=str(out), **kw), log=lambda *_: None)


def test_export_merges_checks_and_reloads_as_a_plain_model(random_adapter, tmp_path, tiny_model_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    record = _export(random_adapter, out, check_rows=16)
    check = record["merged"]["check"]
    assert check["rows"] == 16 and check["split"] == "heldout"
    assert check["merge_fidelity"] == 1.0 and check["merge_fidelity_max_prob_diff"] < 1e-4
    assert 0.0 <= check["agreement_with_trained_adapter"] <= 1.0  # vs the 4-bit base it was "trained" on
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "mcqa_run.json",
        "README.md",
    }
    assert not any(p.name.startswith("adapter_") for p in out.iterdir())
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    saved = json.loads((out / "mcqa_run.json").read_text())
    assert saved["format"] == "mcqa-merged/1" and saved["merged"]["from_adapter"] == str(random_adapter.resolve())
    assert "100.0% same letter" in (out / "README.md").read_text()

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), str(random_adapter))
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS).logits, unmerged.eval()(IDS).logits, atol=1e-4, rtol=1e-4)
    assert not list(tmp_path.glob(".merged-*"))  # no temporary folder left behind


def test_export_refuses_non_adapters_and_existing_folders(random_adapter, tmp_path):
    from mcqa_core.errors import ExportError

    not_adapter = tmp_path / "plain"
    not_adapter.mkdir()
    with pytest.raises(ExportError, match="lacks adapter_config.json; train one with"):
        _export(not_adapter, tmp_path / "x", check_rows=0)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="--out .*taken already exists; choose another --out or pass --overwrite"):
        _export(random_adapter, taken, check_rows=0)
    with pytest.raises(ExportError, match="is not an earlier export"):
        _export(random_adapter, taken, check_rows=0, overwrite=True)
    assert (taken / "notes.txt").read_text() == "mine"  # untouched

    out = tmp_path / "m"
    _export(random_adapter, out, check_rows=0)
    first = (out / "mcqa_run.json").read_text()
    _export(random_adapter, out, check_rows=0, overwrite=True)  # an earlier export may be replaced
    assert json.loads((out / "mcqa_run.json").read_text())["merged"]["exported"]
    assert first  # (both writes complete folders)


def _hub_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    # A closed local port: the hub is unreachable here anyway, this makes the test fast and deterministic.
    env.update(HF_TOKEN=SECRET, HF_ENDPOINT="http://127.0.0.1", HF_HOME=extra.pop("hf_home"), **extra)
    return env


def _assert_token_nowhere(folder: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_export_push_with_hub_unreachable_keeps_folder_and_never_writes_token(random_adapter, tmp_path):
    out = tmp_path / "pushed"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcqa_core.cli.export_command",
            "--adapter",
            str(random_adapter),
            "--out",
            str(out),
            "--check-rows",
            "4",
            "--push-to-hub",
            "me/medmcqa-test",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_hub_env(hf_home=str(tmp_path / "hf")),
        timeout=120,
    )
    assert r.returncode == 3, r.stderr[-2000:]
    assert "cannot be reached" in r.stderr and f"the local folder {out} is intact" in r.stderr
    assert (out / "model.safetensors").exists() and (out / "mcqa_run.json").exists()
    _assert_token_nowhere(out, r.stdout, r.stderr)
    _assert_token_nowhere(random_adapter)


def test_push_needs_a_token_and_a_repo_id_before_training_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # no stored login either
    r = subprocess.run(
        [
            sys.executable,
            "train_adapter.py",
            "--preset",
            "smoke",
            "--output-dir",
            str(tmp_path / "o"),
            "--push-to-hub",
            "not a repo",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert "not a hub repo id" in r.stderr and "export HF_TOKEN=... or run `hf auth login`" in r.stderr
    assert not (tmp_path / "o").exists()


def test_world_size_and_unsloth_checks(monkeypatch):
    from mcqa_core.training.checks import fit_problems
    from mcqa_core.training.distributed import parallel_problems
    from mcqa_core.training.settings import load_config

    def rows(n):
        return {"training": SimpleNamespace(examples=[0] * n), "evaluation": SimpleNamespace(examples=[0])}

    smoke = load_config(["--preset", "smoke"])
    too_few = fit_problems(smoke, rows(6), total_steps=10, world_size=2, batch_size=4)
    assert "2 processes x --per-device-train-batch-size 4 need at least 8 training rows, only 6" in too_few[0]
    assert fit_problems(smoke, rows(8), total_steps=10, world_size=2, batch_size=4) == []
    cfg = load_config(["--preset", "smoke", "--use-unsloth", "yes"])
    assert parallel_problems(cfg) == []  # one process: nothing to refuse here
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "unsloth with 2 processes" in parallel_problems(cfg)[0]
    assert parallel_problems(load_config(["--preset", "smoke", "--use-unsloth", "no"])) == []


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, data_dir):
    """torchrun, 2 CPU processes (gloo) x batch 4 == 1 process x batch 8; rank 0 alone writes (and pushes)."""
    from safetensors.torch import load_file

    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config

    common = [
        "--preset",
        "smoke",
        "--data-dir",
        str(data_dir),
        "--no-load-in-4bit",
        "--optim",
        "adamw_torch",
        "--max-steps",
        "3",
        "--eval-steps",
        "3",
        "--save-steps",
        "3",
        "--eval-limit",
        "8",
        "--report-limit",
        "4",
        # plain random order: the length-window sampler is per process (docs/scale-out.md)
        "--no-group-by-length",
    ]
    single = run_training(
        load_config(common + ["--per-device-train-batch-size", "8", "--output-dir", str(tmp_path / "one")])
    )

    two = tmp_path / "two"
    env = _hub_env(hf_home=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "train_adapter.py",
            *common,
            "--per-device-train-batch-size",
            "4",
            "--output-dir",
            str(two),
            "--push-to-hub",
            "me/ddp-test",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "cannot be reached" in r.stderr, out[-3000:]  # trained, then the push failed
    assert out.count("adapter saved to") == 1 and out.count("[report] accuracy") == 1  # rank 0 alone
    run = json.loads((two / "mcqa_run.json").read_text())
    assert run["world_size"] == 2 and run["metrics"]["global_steps"] == 3
    assert run["metrics"]["history"][-1]["epoch"] == pytest.approx(3 * 8 / 32)  # 8 rows per step: both ranks
    loss_two = [h["loss"] for h in run["metrics"]["history"] if "loss" in h]
    loss_one = [h["loss"] for h in single["metrics"]["history"] if "loss" in h]
    assert loss_two == pytest.approx(loss_one, abs=1e-4)
    a = load_file(tmp_path / "one" / "adapter_model.safetensors")
    b = load_file(two / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    _assert_token_nowhere(two, out)
