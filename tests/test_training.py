"""Training machinery on a tiny random Llama (fast) and one real step on SmolLM2 in 4-bit on CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from mcqa_core.errors import RunError
from mcqa_core.training.run import run_training
from mcqa_core.training.settings import load_config

from .conftest import REPO

PROMISED_FILES = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "mcqa_run.json",
    "README.md",
    "checkpoints",
    "curves.png",
    "tensorboard",
    "progress.jsonl",
    "status.json",
}


def _lora_and_base(model):
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    return lora, base


def test_smoke_run_writes_exactly_the_promised_folder(smoke_adapter):
    out, record = smoke_adapter
    assert {p.name for p in out.iterdir()} >= PROMISED_FILES - {"chat_template.jinja"}
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # `tensorboard --logdir` opens them
    assert {p.name for p in out.iterdir()} <= PROMISED_FILES | {"eval_report.json", "eval_report.png"}
    run = json.loads((out / "mcqa_run.json").read_text())
    assert run["prompt_version"] == "course-v1" and run["base_model"] == "tiny-random-llama"
    assert run["data"]["train_rows_used"] == 32 and run["data"]["eval_split"] == "demo-dev"
    assert run["data"]["report_split"] == "heldout" and run["data"]["selection"].startswith("dev slice demo-dev")
    assert run["settings"]["lora"]["lora_r"] == 16 and run["settings"]["train"]["optim"] == "adamw_8bit"
    assert any("eval_accuracy" in h for h in run["metrics"]["history"])
    assert 0.0 <= run["metrics"]["final_accuracy"] <= 1.0
    assert run["versions"]["trl"] and run["wall_seconds"] > 0


def test_record_card_and_sidebar_name_where_each_figure_comes_from(smoke_adapter):
    """The smoke run: 6 steps x 8 rows over 32 rows; accuracy reported on 32 heldout rows, eval loss on 16
    demo-dev rows; the wall time covers every phase, the final scoring included."""
    from mcqa_core.service.adapters import describe_run

    out, _ = smoke_adapter
    run = json.loads((out / "mcqa_run.json").read_text())
    d, m = run["data"], run["metrics"]
    assert (d["rows_per_step"], d["row_presentations"], d["unique_train_rows"]) == (8, 48, 32)
    assert (m["final_split"], m["final_rows"], m["report_rows"]) == ("demo-dev", 16, 32)
    assert list(run["phase_seconds"]) == ["load", "train", "save", "final_evaluation"]
    assert run["wall_seconds"] >= sum(run["phase_seconds"].values()) - 0.5
    card = (out / "README.md").read_text()
    assert f"| letter accuracy on heldout (32 rows) | {m['report_accuracy']:.1%} |" in card
    assert f"| eval loss on demo-dev (16 rows), model of step {m['final_step']} |" in card
    assert "demo-train: 32 unique rows of 32 usable, 48 row presentations (6 steps x 8 rows)" in card
    assert "final evaluation" in card
    seen = describe_run(run)
    assert (seen["eval_split"], seen["eval_rows"]) == ("heldout", 32)
    assert seen["trained_on"].startswith("demo-train: 32 unique rows") and "48 row presentations" in seen["trained_on"]


def test_rows_seen_counts_presentations_and_unique_rows():
    from mcqa_core.models.run_record import rows_seen, rows_seen_text

    assert rows_seen(1024, 32, 8) == {"rows_per_step": 32, "row_presentations": 256, "unique_train_rows": 256}
    assert rows_seen(10, 4, 3)["row_presentations"] == 10  # the epoch's last step takes the 2 rows left
    assert rows_seen(10, 4, 4) == {"rows_per_step": 4, "row_presentations": 14, "unique_train_rows": 10}
    assert rows_seen(100, 8, 3, world_size=2) == {"rows_per_step": 16, "row_presentations": 48, "unique_train_rows": 48}
    # a record from before the counts were kept: worked out from the batch sizes it does keep
    old = {
        "data": {"train_split": "demo-train", "train_rows_used": 1024, "batch_size_used": 8, "grad_accum_used": 4},
        "metrics": {"global_steps": 8},
    }
    assert (
        rows_seen_text(old) == "demo-train: 256 unique rows of 1024 usable, 256 row presentations (8 steps x 32 rows)"
    )


def test_nonfinite_loss_stops_in_one_line_and_keeps_the_earlier_run(smoke_adapter, data_dir, tmp_path):
    """A learning rate of 1e30 turns the LoRA non-finite within a few steps (the cheapest real NaN): exit 2,
    status failed with the reason, no adapter at the top, the earlier run's files set aside whole."""
    out = tmp_path / "nan"
    shutil.copytree(smoke_adapter[0], out)
    before = (out / "adapter_model.safetensors").read_bytes()
    r = subprocess.run(
        [
            sys.executable,
            "train_adapter.py",
            "--preset",
            "smoke",
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(out),
            "--overwrite",
            "--learning-rate",
            "1e30",
            "--max-steps",
            "4",
            "--eval-steps",
            "4",
            "--save-steps",
            "4",
            "--eval-limit",
            "4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("error: training stopped: ") and "non-finite" in lines[-1]
    assert "no adapter was written" in lines[-1] and "Traceback" not in r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("[eval] step 0/4")][0].endswith(
        " on demo-dev (4 rows)"
    )
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and "non-finite" in status["error"]
    assert not {"adapter_model.safetensors", "adapter_config.json", "mcqa_run.json"} & {p.name for p in out.iterdir()}
    assert not list((out / "checkpoints").glob("checkpoint-*"))  # no checkpoint of the non-finite weights
    aside = list(out.glob(".replaced-*"))
    assert len(aside) == 1 and (aside[0] / "adapter_model.safetensors").read_bytes() == before


def test_eval_and_export_refuse_an_adapter_with_nonfinite_weights_or_record(smoke_adapter, tmp_path):
    from safetensors.torch import load_file, save_file

    from mcqa_core.errors import AdapterError
    from mcqa_core.models.inference import read_adapter_info

    weights, record = tmp_path / "weights", tmp_path / "record"
    for folder in (weights, record):
        shutil.copytree(smoke_adapter[0], folder)
    tensors = load_file(weights / "adapter_model.safetensors")
    name = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, weights / "adapter_model.safetensors")
    run = json.loads((record / "mcqa_run.json").read_text())
    run["metrics"]["train_loss"] = float("inf")
    (record / "mcqa_run.json").write_text(json.dumps(run))  # Python writes Infinity, as the old runs did
    with pytest.raises(AdapterError, match=f"damaged \\(non-finite weights in {name}\\)"):
        read_adapter_info(weights)
    with pytest.raises(AdapterError, match="records metrics.train_loss = inf: .* adapter is damaged"):
        read_adapter_info(record)
    for args in (
        ["-m", "mcqa_core.cli.eval_command", "--adapter", str(weights), "--limit", "2"],
        ["-m", "mcqa_core.cli.export_command", "--adapter", str(record), "--out", str(tmp_path / "m")],
    ):
        r = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "damaged" in lines[0], (args, r.stderr)
    assert not (tmp_path / "m").exists()


def test_adapter_reloads_with_identical_logits(smoke_adapter, tiny_model_path):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    from mcqa_core.models.inference import load_model

    out, _ = smoke_adapter
    ids = torch.tensor([[1, 415, 2634, 314, 253, 5053]])
    # Through our loader (4-bit base as trained) twice: identical.
    a = load_model(out).model
    b = load_model(out).model
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)
    # Plain PEFT entry points open the folder too.
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), str(out))
    auto = AutoPeftModelForCausalLM.from_pretrained(str(out))
    with torch.no_grad():
        torch.testing.assert_close(peft_model(ids).logits, auto(ids).logits)


def test_lora_moves_base_stays_and_loss_falls_on_tiny_overfit_set(tmp_path, data_dir, monkeypatch):
    """4 rows, many steps: LoRA weights all move, no base weight does, the loss falls by more than half."""
    import mcqa_core.models.loading as modeling

    cfg = load_config(
        [
            "--preset",
            "smoke",
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(tmp_path / "o"),
            "--train-limit",
            "4",
            "--per-device-train-batch-size",
            "4",
            "--max-steps",
            "40",
            "--learning-rate",
            "2e-2",
            "--no-load-in-4bit",
            "--eval-steps",
            "40",
            "--save-steps",
            "40",
            "--warmup-steps",
            "0",
            "--optim",
            "adamw_torch",
        ]
    )
    captured = {}
    real = modeling.load_for_training

    def spy(*args):
        model, tok, info = real(*args)
        captured["model"] = model
        captured["before"] = _lora_and_base(model)
        return model, tok, info

    monkeypatch.setattr(modeling, "load_for_training", spy)  # run_training imports it at call time
    record = run_training(cfg)
    lora_before, base_before = captured["before"]
    lora_after, base_after = _lora_and_base(captured["model"])
    moved = [n for n in lora_before if not torch.equal(lora_before[n], lora_after[n])]
    assert len(moved) == len(lora_before) > 0
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before)
    losses = [h["loss"] for h in record["metrics"]["history"] if "loss" in h]
    assert losses[-1] < 0.5 * losses[0], losses


def test_output_dir_holding_a_run_is_refused_and_kept(smoke_adapter, data_dir):
    out, _ = smoke_adapter
    before = (out / "adapter_model.safetensors").read_bytes()
    cfg = load_config(["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)])
    with pytest.raises(RunError, match="already holds a run.*--overwrite"):
        run_training(cfg)
    assert (out / "adapter_model.safetensors").read_bytes() == before


def test_resume_continues_from_newest_checkpoint(tmp_path, data_dir, capsys):
    out = tmp_path / "r"
    base = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)]
    run_training(load_config(base + ["--max-steps", "3"]))
    record = run_training(load_config(base + ["--max-steps", "6", "--resume"]))
    # every accuracy printed at the end names its rows; the last line lists the phases of the wall time
    printed = capsys.readouterr().out
    assert "accuracy" in printed and all(
        " on demo-dev (16 rows)" in line for line in printed.splitlines() if line.startswith(("[eval]", "[final]"))
    )
    assert "[report] accuracy" in printed and " on 32 heldout rows" in printed
    timed = [line for line in printed.splitlines() if line.startswith("[time]")]
    assert len(timed) == 2 and "train" in timed[-1] and "final evaluation" in timed[-1]
    assert record["metrics"]["global_steps"] == 6
    steps = [h["step"] for h in record["metrics"]["history"] if "loss" in h]
    assert steps == [1, 2, 3, 4, 5, 6]  # history carried over from the checkpoint, steps 1-3 not re-run
    # train_loss is the mean over all six steps, not this session's three divided by six
    losses = [h["loss"] for h in record["metrics"]["history"] if "loss" in h]
    assert record["metrics"]["train_loss"] == pytest.approx(sum(losses) / 6, abs=2e-3)


def test_cli_errors_are_one_clear_line(tmp_path, data_dir):
    def run(*args):
        return subprocess.run([sys.executable, "train_adapter.py", *args], cwd=REPO, capture_output=True, text=True)

    r = run(
        "--preset",
        "smoke",
        "--model-name",
        "no-such-model",
        "--output-dir",
        str(tmp_path / "a"),
        "--data-dir",
        str(data_dir),
    )
    assert r.returncode == 2 and "unknown model 'no-such-model'" in r.stderr
    r = run("--preset", "smoke", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "b"))
    assert r.returncode == 2 and "has no validation.jsonl" in r.stderr or "has no train" in r.stderr
    r = run(
        "--preset", "smoke", "--max-seq-length", "48", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "c")
    )
    assert r.returncode == 2 and "--max-seq-length 48" in r.stderr
    r = run(
        "--preset", "smoke", "--use-unsloth", "yes", "--output-dir", str(tmp_path / "d"), "--data-dir", str(data_dir)
    )
    if not torch.cuda.is_available():
        assert r.returncode == 2 and "unsloth needs a CUDA GPU" in r.stderr


def test_smollm2_trains_one_step_in_4bit_on_cpu(tmp_path, data_dir):
    """The real offline model, 4-bit NF4 on CPU, one optimizer step with 8-bit AdamW."""
    record = run_training(
        load_config(
            [
                "--preset",
                "cpu-demo",
                "--data-dir",
                str(data_dir),
                "--output-dir",
                str(tmp_path / "s"),
                "--train-limit",
                "4",
                "--eval-limit",
                "4",
                "--per-device-train-batch-size",
                "2",
                "--gradient-accumulation-steps",
                "2",
                "--max-steps",
                "1",
                "--eval-steps",
                "1",
                "--save-steps",
                "1",
                "--report-limit",
                "4",
            ]
        )
    )
    assert record["load_in_4bit"] and record["metrics"]["global_steps"] == 1
    assert record["base_model"] == "smollm2-135m"
    assert record["metrics"]["train_loss"] > 0


def test_sft_config_takes_the_shared_names_as_they_are(tmp_path):
    """TrainArgs reaches TRL's SFTConfig by name; the batch plan alone overrides the two batch sizes."""
    import dataclasses

    from trl import SFTConfig

    from mcqa_core.training.run import plan_for, sft_config
    from mcqa_core.training.setting_groups import OWN_MEANING, TrainArgs

    shared = {f.name for f in dataclasses.fields(TrainArgs)} & {f.name for f in dataclasses.fields(SFTConfig)}
    assert shared - set(OWN_MEANING) == {
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "per_device_eval_batch_size",
        "num_train_epochs",
        "max_steps",
        "eval_steps",
        "save_steps",
        "logging_steps",
        "save_total_limit",
        "optim",
        "weight_decay",
        "seed",
        "report_to",
    }
    cfg = load_config(
        [
            "--preset",
            "smoke",
            "--output-dir",
            str(tmp_path),
            "--optim",
            "adamw_torch",
            "--weight-decay",
            "0.05",
            "--per-device-train-batch-size",
            "16",
        ]
    )
    args = sft_config(cfg, tmp_path, plan_for(cfg, 10))
    assert (args.optim, args.weight_decay, args.max_steps, args.eval_steps) == ("adamw_torch", 0.05, 6, 3)
    assert args.per_device_train_batch_size == 10  # the plan: a step asked for more rows than there are
    assert args.output_dir == str(tmp_path / "checkpoints") and args.push_to_hub is False


def test_each_evaluation_writes_its_rows_k_of_n_then_training_again(tmp_path, data_dir, monkeypatch):
    """The Train page's bar during the step-0 check and each evaluation: phase "evaluation" with the dev rows
    scored so far, then a plain "running" status once they are all scored."""
    from mcqa_core.training import run as run_module

    written = []
    real = run_module.write_status
    monkeypatch.setattr(
        run_module, "write_status", lambda out, state, **f: written.append((state, f)) or real(out, state, **f)
    )
    argv = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "run")]
    run_training(load_config([*argv, "--max-steps", "2", "--eval-steps", "1", "--per-device-eval-batch-size", "4"]))
    phases = [f for state, f in written if state == "running" and f.get("phase") == "evaluation"]
    assert phases and {f["total"] for f in phases} == {16}  # the smoke preset's 16 dev rows
    assert [f["done"] for f in phases[:4]] == [0, 4, 8, 12]  # rows k of n, batch by batch, from the step-0 check
    evaluations = sum(1 for f in phases if f["done"] == 0)
    assert evaluations == 3  # step 0, 1 and 2
    after = [written[i + 1] for i, (state, f) in enumerate(written[:-1]) if f.get("done") == 12]
    assert all(state == "running" and "phase" not in f for state, f in after)  # back to training
