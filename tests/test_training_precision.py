"""The precision a training run computes in: the recipe's rule on CPU (bf16 where the CPU multiplies bf16 in
hardware), recorded in mcqa_run.json; a bf16 smoke run (4-bit + LoRA + 8-bit AdamW) steps like the fp32 one."""

from __future__ import annotations

import json

import pytest
import torch

from mcqa_core.models import precision_rule
from mcqa_core.training.run import plan_for, run_training, sft_config
from mcqa_core.training.settings import load_config

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule (a GPU takes its own)")


def test_the_cpu_follows_the_recipes_rule_and_the_trainer_is_told(monkeypatch, tmp_path):
    monkeypatch.delenv(precision_rule.CPU_BF16_ENV)
    monkeypatch.setattr(precision_rule, "cpu_has_native_bf16", lambda: True)
    assert precision_rule.training_precision()[0] == "bf16"
    cfg = load_config(["--preset", "smoke", "--output-dir", str(tmp_path)])
    args = sft_config(cfg, tmp_path, plan_for(cfg, 10))
    assert (args.bf16, args.fp16, args.use_cpu) == (True, False, True)  # transformers runs CPU bf16 only so
    assert precision_rule.training_compute_dtype("bf16") == torch.bfloat16  # NF4 dequantized straight to bf16

    monkeypatch.setenv(precision_rule.CPU_BF16_ENV, "0")  # the opt-out
    assert precision_rule.training_precision() == ("fp32", "CPU bf16 turned off by MCQA_CPU_BF16=0")
    monkeypatch.delenv(precision_rule.CPU_BF16_ENV)
    monkeypatch.setattr(precision_rule, "cpu_has_native_bf16", lambda: False)  # emulated bf16 gains nothing
    assert precision_rule.training_precision()[0] == "fp32"
    args = sft_config(cfg, tmp_path, plan_for(cfg, 10))
    assert (args.bf16, args.fp16, args.use_cpu) == (False, False, False)
    assert precision_rule.training_compute_dtype("fp32") == torch.float32


def test_a_bf16_smoke_run_keeps_fp32_adapters_steps_like_fp32_and_says_so(
    smoke_adapter, data_dir, tmp_path, monkeypatch, capsys
):
    """Same seed, same rows: only the precision differs from the shared (fp32) smoke run."""
    import mcqa_core.models.loading as modeling

    monkeypatch.delenv(precision_rule.CPU_BF16_ENV)
    monkeypatch.setattr(precision_rule, "cpu_has_native_bf16", lambda: True)
    captured = {}
    real = modeling.load_for_training

    def spy(*args):
        model, tok, info = real(*args)
        captured["model"], captured["lora"] = model, {n: p.detach().clone() for n, p in lora_params(model)}
        return model, tok, info

    monkeypatch.setattr(modeling, "load_for_training", spy)
    out = tmp_path / "bf16"
    record = run_training(load_config(["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)]))

    fp32 = json.loads((smoke_adapter[0] / "mcqa_run.json").read_text())
    assert (fp32["precision"], record["precision"]) == ("fp32", "bf16")
    assert json.loads((out / "mcqa_run.json").read_text())["precision"] == "bf16"
    assert " s on cpu in bf16 (load " in (out / "README.md").read_text()
    printed = capsys.readouterr().out
    assert "[precision] bf16: CPU with native bf16 matmuls" in printed and "(bf16 on cpu)" in printed

    after = dict(lora_params(captured["model"]))
    assert all(p.dtype == torch.float32 for p in after.values())  # fp32 master weights under autocast
    assert all(not torch.equal(captured["lora"][n], p) for n, p in after.items() if "lora_B" in n)
    assert all(torch.isfinite(p).all() for p in after.values())
    ours, theirs = step_losses(record), step_losses(fp32)
    assert len(ours) == len(theirs) > 0
    # bf16 rounds each matmul's inputs (8 bits of mantissa): 2 % of the loss holds with margin on this model
    assert ours == pytest.approx(theirs, rel=0.02)
    assert record["metrics"]["final_eval_loss"] == pytest.approx(fp32["metrics"]["final_eval_loss"], rel=0.02)


def lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" in n]


def step_losses(record: dict) -> list:
    return [h["loss"] for h in record["metrics"]["history"] if "loss" in h]
