"""The training methods (models/tuners/) on the tiny random Llama: what trains moves and nothing else does, the
trainable count matches a closed form of the model's shape and what the folder saves, a saved folder scores
exactly as the model it was saved from, and combinations that cannot work are refused before anything loads."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from .conftest import REPO

METHODS = ("lora", "subset", "adapter", "prefix", "full")


def settings(**kw):
    method = dict(
        peft_method="lora", trainable_layers=1, adapter_dim=4, adapter_placement="houlsby", num_virtual_tokens=5
    )
    from mcqa_core.training.setting_groups import LoraArgs

    return SimpleNamespace(**{**method, **kw}), LoraArgs(lora_r=4)


def closed_form(method: str, config, m, lora) -> int:
    """The trainable parameters of each method, from the model's shape alone."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * config.head_dim
    q = config.num_attention_heads * config.head_dim
    shapes = {  # (in, out) of each projection
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }
    per_layer = sum(i * o for i, o in shapes.values()) + 2 * h  # projections and the two RMS norms
    if method == "lora":
        return layers * sum(lora.lora_r * (i + o) for name, (i, o) in shapes.items() if name in lora.target_modules)
    if method == "subset":
        return m.trainable_layers * per_layer
    if method == "adapter":
        per_adapter = 2 * h * m.adapter_dim + m.adapter_dim + h
        return layers * (2 if m.adapter_placement == "houlsby" else 1) * per_adapter
    if method == "prefix":
        return layers * 2 * kv * m.num_virtual_tokens
    return config.vocab_size * h + layers * per_layer + h  # full: tied embedding once, layers, final norm


def attached(path, method: str):
    import torch
    from transformers import AutoModelForCausalLM

    from mcqa_core.models.tuners import tuner_for

    m, lora = settings(peft_method=method)
    torch.manual_seed(0)
    model = tuner_for(method).attach(AutoModelForCausalLM.from_pretrained(path), m, lora)
    return model, m, lora


@pytest.mark.parametrize("method", METHODS)
def test_only_the_methods_parameters_train(tiny_model_path, tokenizer, method):
    import torch

    from mcqa_core.models.tuners import parameter_counts

    model, m, lora = attached(tiny_model_path, method)
    trainable, _ = parameter_counts(model)
    assert trainable == closed_form(method, model.config, m, lora)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = tokenizer("Choose the correct option. ### Answer:\nB Aspirin", return_tensors="pt")["input_ids"]
    model.train()
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    wanted = {n for n, p in model.named_parameters() if p.requires_grad}
    assert moved == wanted  # every trainable tensor moved; every frozen one is bit-identical
    assert sum(p.numel() for n, p in model.named_parameters() if n in moved) == trainable


@pytest.mark.parametrize("method", METHODS)
def test_saved_folder_scores_exactly_as_the_model(tiny_model_path, tokenizer, validation_rows, tmp_path, method):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from mcqa_core.evaluation.letter_scoring import score_rows
    from mcqa_core.models.tuners import parameter_counts, tuner_for

    model, _, _ = attached(tiny_model_path, method)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained-looking state: every trainable tensor away from its starting value
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    rows = validation_rows[:6]
    before = score_rows(model, tokenizer, rows, batch_size=4, bf16=False)
    tuner = tuner_for(method)
    tuner.save(model, tmp_path)
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        saved = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    assert saved == parameter_counts(model)[0]  # the folder holds what trained, and nothing else
    loaded = tuner.load(AutoModelForCausalLM.from_pretrained(tiny_model_path), tmp_path).eval()
    after = score_rows(loaded, tokenizer, rows, batch_size=4, bf16=False)
    assert flat(after) == pytest.approx(flat(before), abs=1e-6)
    base = score_rows(AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer, rows, batch_size=4, bf16=False)
    with loaded.disable_adapter():  # the base comparison of every report
        off = score_rows(loaded, tokenizer, rows, batch_size=4, bf16=False)
    assert flat(off) == pytest.approx(flat(base), abs=1e-6)
    again = score_rows(loaded, tokenizer, rows, batch_size=4, bf16=False)  # switched back on
    assert flat(again) == pytest.approx(flat(before), abs=1e-6)


def flat(scores) -> list[float]:
    return [p for s in scores for p in s.probs]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_prefix_scores_do_not_depend_on_the_batch(tiny_model_path, tokenizer, validation_rows):
    from mcqa_core.evaluation.letter_scoring import score_rows

    model, _, _ = attached(tiny_model_path, "prefix")
    rows = validation_rows[:6]
    one = score_rows(model.eval(), tokenizer, rows, batch_size=1, bf16=False)
    many = score_rows(model, tokenizer, rows, batch_size=6, bf16=False)
    assert flat(many) == pytest.approx(flat(one), abs=1e-5)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--peft-method", "subset"], "--no-load-in-4bit"),
        (["--peft-method", "full"], "--no-load-in-4bit"),
        (["--peft-method", "adapter"], "--no-load-in-4bit"),
        (["--peft-method", "prefix", "--gradient-checkpointing"], "drop --gradient-checkpointing"),
        (["--peft-method", "prefix", "--relora-steps", "4"], "--relora-steps restarts a LoRA"),
        (["--peft-method", "subset", "--no-load-in-4bit", "--use-unsloth", "yes"], "--use-unsloth auto or no"),
    ],
)
def test_impossible_combinations_are_refused_before_loading(flags, words, tmp_path):
    from mcqa_core.errors import SettingsError
    from mcqa_core.training.checks import config_problems
    from mcqa_core.training.settings import load_config

    try:
        cfg = load_config(["--preset", "smoke", "--output-dir", str(tmp_path / "out"), *flags])
    except SettingsError as e:  # refused while reading
        problems = [str(e)]
    else:
        problems = config_problems(cfg)
    assert any(words in p for p in problems), problems


def test_refusal_is_one_line_with_exit_2(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train_adapter.py"),
            "--preset",
            "smoke",
            "--peft-method",
            "full",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "--no-load-in-4bit" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert not out.exists()  # nothing written


def test_method_is_recorded_with_its_costs(tmp_path, data_dir):
    from safetensors import safe_open

    from mcqa_core.models.inference import load_model
    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config

    out = tmp_path / "subset"
    flags = [
        "--preset",
        "smoke",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(out),
        "--peft-method",
        "subset",
        "--trainable-layers",
        "1",
        "--no-load-in-4bit",
        "--max-steps",
        "2",
        "--eval-steps",
        "1",
        "--save-steps",
        "1",
        "--report-limit",
        "8",
    ]
    record = run_training(load_config(flags))
    costs = record["costs"]
    assert record["peft_method"] == costs["peft_method"] == "subset"
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        saved = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
        assert all(k.startswith("model.layers.1.") for k in f.keys())  # the top layer only
    assert costs["trainable_parameters"] == saved
    assert costs["saved_bytes"] == (out / "adapter_model.safetensors").stat().st_size
    assert costs["peak_memory_bytes"] > 0 and costs["tokens_per_second"] > 0 and 0 < costs["trainable_share"] < 1
    assert load_model(adapter=out).model.method == "subset"  # loads back through its tuner


def test_cloze_scoring_refuses_prefix_tuning_in_one_line(tiny_model_path, tokenizer, validation_rows):
    from mcqa_core.errors import ModelError
    from mcqa_core.evaluation.cloze_scoring import score_options

    model, _, _ = attached(tiny_model_path, "prefix")
    with pytest.raises(ModelError, match="--scoring letter"):
        score_options(model.eval(), tokenizer, validation_rows[:2])
