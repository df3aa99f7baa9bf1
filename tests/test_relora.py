"""ReLoRA: a restart merges exactly the LoRA delta, zeroes B, leaves the outputs alone, resets the optimizer,
re-warms the LR; a ReLoRA run saves one adapter that reproduces the trained model."""

from __future__ import annotations

import json

import pytest
import torch

from mcqa_core.errors import RunError
from mcqa_core.training.checks import config_problems
from mcqa_core.training.relora import ReLoRACallback, jagged_lambda, lora_layers
from mcqa_core.training.run import run_training
from mcqa_core.training.settings import load_config

IDS = torch.tensor([[1, 415, 2634, 314, 253, 5053, 30, 1123]])


def _peft(base):
    from peft import get_peft_model

    from mcqa_core.models.tuners.lora_tuner import lora_config

    torch.manual_seed(0)
    model = get_peft_model(base, lora_config())
    for _, layer in lora_layers(model):  # a trained-looking adapter: B no longer zero
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.05)
    return model


def _one_adam_step(model):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    model(IDS, labels=IDS).loss.backward()
    opt.step()
    opt.zero_grad()
    return opt, params


def test_restart_on_full_precision_base_merges_the_exact_delta(tiny_model):
    model = _peft(tiny_model)
    opt, params = _one_adam_step(model)
    layers = lora_layers(model)
    before_w = {n: layer.get_base_layer().weight.detach().clone() for n, layer in layers}
    delta = {n: layer.get_delta_weight("default").detach().clone() for n, layer in layers}
    before_a = {n: layer.lora_A["default"].weight.detach().clone() for n, layer in layers}
    with torch.no_grad():
        logits_before = model(IDS).logits

    ReLoRACallback(every=2, warmup=1).restart(model, opt, step=2)

    for n, layer in layers:
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
        assert not torch.equal(layer.lora_A["default"].weight, before_a[n])  # re-initialised
        assert torch.equal(layer.get_base_layer().weight, before_w[n] + delta[n])
        assert delta[n].abs().max() > 1e-4  # the test merges a real update, not zeros
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, logits_before, atol=1e-4, rtol=1e-4)
    assert all(not opt.state.get(p) for p in params)  # LoRA moments dropped, re-created on the next step


def test_restart_on_4bit_base_keeps_nf4_bytes_and_outputs(tiny_model_path, tmp_path):
    from transformers import AutoModelForCausalLM

    from mcqa_core.models.loading import quantization_config

    base = AutoModelForCausalLM.from_pretrained(
        tiny_model_path, quantization_config=quantization_config(True), device_map={"": "cpu"}
    )
    model = _peft(base)
    layers = lora_layers(model)
    with torch.no_grad():
        logits_before = model(IDS).logits
    # Taken after a forward: bitsandbytes repacks the NF4 bytes for its CPU kernel on first use.
    nf4_before = {n: layer.get_base_layer().weight.data.clone() for n, layer in layers}
    cb = ReLoRACallback(every=2, warmup=1)
    cb.restart(model, None, step=2)
    for _, layer in layers:  # a second cycle's update, merged too
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.05)
    with torch.no_grad():
        logits_mid = model(IDS).logits
    cb.restart(model, None, step=4)

    for n, layer in layers:
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
        assert torch.equal(layer.get_base_layer().weight.data, nf4_before[n])  # never re-quantized
        assert cb.hooks[n].A.shape[0] == 2 * layer.r["default"]
    with torch.no_grad():
        after = model(IDS).logits
    torch.testing.assert_close(after, logits_mid, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits_mid, logits_before)  # the second cycle did change the model
    assert cb.restarts == [2, 4]

    # The saved adapter holds both merged cycles and the live LoRA: B_cat·A_cat == merged factors + live update.
    # (Compared as tensors: on CPU, saving a 4-bit model makes bitsandbytes change its weight layout and with it
    # the base's rounding, so forward passes before and after a save differ by ~1e-2 whatever the adapter.)
    from safetensors.torch import load_file

    for _, layer in layers:
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.05)
    cb.save_adapter(model, tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 3 * 16
    for n, layer in layers:
        live = layer.get_delta_weight("default")
        expected = cb.hooks[n].B @ cb.hooks[n].A + live
        got = saved[f"{n}.lora_B.weight"] @ saved[f"{n}.lora_A.weight"]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_jagged_schedule_rewarms_after_each_restart():
    lam = jagged_lambda(lambda s: 1.0, every=10, warmup=4, max_steps=30)
    assert [lam(s) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [round(lam(s), 2) for s in (10, 11, 13, 14, 19)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert round(lam(20), 2) == 0.2 and lam(30) == 1.0  # no restart at the end of the run


def test_bad_relora_settings_are_one_clear_error(tmp_path, data_dir):
    def problems(*flags):
        return "; ".join(config_problems(load_config(["--preset", "smoke", "--output-dir", str(tmp_path), *flags])))

    assert "--relora-steps 2 is smaller than --warmup-steps 5" in problems("--relora-steps", "2", "--warmup-steps", "5")
    assert "--resume with --relora-steps" in problems("--relora-steps", "3", "--resume")
    with pytest.raises(RunError, match="--relora-steps 6 is not smaller than the run \\(6 optimizer steps\\)"):
        run_training(
            load_config(
                [
                    "--preset",
                    "smoke",
                    "--data-dir",
                    str(data_dir),
                    "--output-dir",
                    str(tmp_path / "o"),
                    "--relora-steps",
                    "6",
                    "--no-load-in-4bit",
                ]
            )
        )


def test_relora_run_records_restarts_and_saves_the_trained_model(tmp_path, data_dir, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import mcqa_core.models.loading as modeling

    captured = {}
    real = modeling.load_for_training

    def spy(*args):
        model, tok, info = real(*args)
        captured["model"] = model
        return model, tok, info

    monkeypatch.setattr(modeling, "load_for_training", spy)
    out = tmp_path / "relora"
    record = run_training(
        load_config(
            [
                "--preset",
                "smoke",
                "--data-dir",
                str(data_dir),
                "--output-dir",
                str(out),
                "--no-load-in-4bit",
                "--optim",
                "adamw_torch",
                "--relora-steps",
                "2",
                "--relora-warmup-steps",
                "1",
                "--eval-steps",
                "6",
                "--save-steps",
                "6",
                "--report-limit",
                "4",
            ]
        )
    )
    assert record["relora"]["restarts"] == [2, 4]
    assert json.loads((out / "mcqa_run.json").read_text())["relora"]["restarts"] == [2, 4]
    lrs = [h["learning_rate"] for h in record["metrics"]["history"] if "learning_rate" in h]
    assert lrs[2] < lrs[1] and lrs[4] < lrs[3]  # jagged: the LR drops back at each restart
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 48 and cfg["lora_alpha"] == 48 and not cfg["use_rslora"]  # 2 merged cycles + live LoRA

    trained = captured["model"].eval()
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(record["base_model_resolved"]), str(out)
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(IDS).logits, trained(IDS).logits, atol=1e-4, rtol=1e-4)
