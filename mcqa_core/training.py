"""Fine-tune a LoRA adapter on MedMCQA with TRL's SFTTrainer and write a self-describing adapter folder.

The folder holds the adapter (adapter_config.json, adapter_model.safetensors), the tokenizer,
`mcqa_run.json` (everything needed to reproduce and to load it for inference) and a model card.
Checkpoints go to `checkpoints/`; `--resume` continues from the newest one.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

from .config import RunConfig
from .batching import plan_batches
from .data import DataError, load_split
from .features import encode_rows
from .prompt import PROMPT_TEMPLATE, PROMPT_VERSION

RUN_FILE = "mcqa_run.json"
CHECKPOINT_DIR = "checkpoints"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class RunError(ValueError):
    """The run cannot start as asked; the message says what to do next."""


def check_output_dir(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to write over a different run unless asked; never delete anything."""
    if resume:
        ckpts = list((out / CHECKPOINT_DIR).glob("checkpoint-*"))
        if not ckpts:
            raise RunError(f"--resume: {out / CHECKPOINT_DIR} holds no checkpoint-* folder to continue from; "
                           "drop --resume to start a new run")
        return
    taken = [name for name in (RUN_FILE, *ADAPTER_FILES, CHECKPOINT_DIR) if (out / name).exists()]
    if taken and not overwrite:
        raise RunError(f"{out} already holds a run ({', '.join(taken)}); choose another --output-dir, "
                       "continue it with --resume, or pass --overwrite to replace its files")


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "unsloth"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def precision_flags() -> dict:
    """bf16 where supported, else fp16 on GPU, else fp32 (CPU)."""
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    return {"bf16": False, "fp16": False}


def _to_dataset(encoded):
    from datasets import Dataset

    return Dataset.from_dict({
        "input_ids": [e["input_ids"] for e in encoded.examples],
        "labels": [e["labels"] for e in encoded.examples],
        "length": [len(e["input_ids"]) for e in encoded.examples],
    })


def keep_4bit_layers_differentiable(model) -> int:
    """Stop bitsandbytes from switching a training model's 4-bit layers to its inference-only CPU kernel.

    bitsandbytes 0.50 on a CPU with AVX512-BF16 repacks a `Linear4bit` weight for a bf16 inference
    kernel the first time the layer runs in eval mode without gradients (an evaluation), and keeps it
    packed. Training steps after that run through that kernel, which has no autograd formula: torch
    warns "an autograd kernel was not registered", the gradient through every frozen 4-bit matmul is
    dropped (the LoRA gradients of all but the last layers are wrong) and a cpu-demo step went from
    ~20 s to ~200 s. Call this before the first evaluation (MCQATrainer does); bitsandbytes' own
    unpacking is lossy, so an already repacked model is refused. Returns the number of 4-bit layers.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    if any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers):
        raise RunError("the 4-bit model was already run for inference (bitsandbytes repacked its weights for "
                       "a kernel that cannot train); load it again before training")
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    return len(layers)


def lm_head_on_label_tokens_only(model) -> None:
    """Make a causal LM's loss forward project only the label tokens through the LM head.

    TRL's default loss ("chunked_nll") already drops prompt positions before the LM head, but rounds
    them up to chunks of 256 positions and recomputes every chunk in the backward pass. A MedMCQA
    micro-batch of 8 rows has about 60 label tokens (the answer letter and option), so that is about
    4x the LM-head work needed, three times over; the LM head of a small model (49,152 x 576 for
    SmolLM2) costs as much per token as a quarter of its decoder layers. Here the label tokens are
    projected once, exactly, in the compute dtype, and the log-softmax is taken in fp32 (the same
    math as "nll"). Above `_CHUNK` label tokens (the course recipe's 64-row batches on a 128k vocab)
    they go through in checkpointed chunks, so the logits never exceed one chunk in memory.
    Without labels (generation, scoring) the model's own forward runs, unchanged.
    """
    import torch
    import torch.nn.functional as F
    from trl.trainer.sft_trainer import _ChunkedCELMHeadOutput

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm_head = target.get_output_embeddings()
    own_forward = type(target).forward.__get__(target)

    def _label_loss(hidden, labels):
        logits = lm_head(hidden).float()
        log_p = F.log_softmax(logits, dim=-1)
        loss = F.nll_loss(log_p, labels, reduction="sum")
        with torch.no_grad():
            correct = (logits.argmax(-1) == labels).sum().float()
            entropy = -(log_p.exp() * log_p).sum()
        return loss, correct, entropy

    def forward(input_ids=None, attention_mask=None, labels=None, num_items_in_batch=None, shift_labels=None,
                **kwargs):
        if labels is None and shift_labels is None:
            return own_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        kwargs.pop("use_cache", None)
        hidden = target.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                                   **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, shift_labels = hidden[:, :-1], labels[:, 1:]
        keep = shift_labels != -100
        hidden, targets = hidden[keep], shift_labels[keep]
        n = targets.numel()
        if n <= _CHUNK:
            loss, correct, entropy = _label_loss(hidden, targets)
        else:
            parts = [torch.utils.checkpoint.checkpoint(_label_loss, hidden[i:i + _CHUNK], targets[i:i + _CHUNK],
                                                       use_reentrant=False) for i in range(0, n, _CHUNK)]
            loss, correct, entropy = (sum(p[k] for p in parts) for k in range(3))
        denominator = num_items_in_batch if num_items_in_batch is not None else max(n, 1)
        if isinstance(denominator, torch.Tensor):
            denominator = denominator.to(loss.device)
        return _ChunkedCELMHeadOutput(loss=loss / denominator, logits=None, num_correct_tokens=correct,
                                      entropy_sum=entropy, num_valid_tokens=keep.sum())

    target.forward = forward


_CHUNK = 1024  # label tokens whose logits are held at once (1024 x 128,256 fp32 = 0.5 GB)


def _make_trainer_class():
    import torch
    from trl import SFTTrainer

    from .scoring import accuracy, score_rows

    class MCQATrainer(SFTTrainer):
        """SFTTrainer whose evaluation adds letter accuracy next to eval loss (and "best" = best accuracy)."""

        def __init__(self, *args, score_rows_for_eval=None, max_prompt_tokens=512, **kwargs):
            super().__init__(*args, **kwargs)
            keep_4bit_layers_differentiable(self.model)
            if self.args.loss_type == "chunked_nll" and not self.args.use_liger_kernel:
                lm_head_on_label_tokens_only(self.model)  # replaces TRL's chunked loss: same math, less work
            if not (self.args.bf16 or self.args.fp16):
                # TRL casts QLoRA adapters to bf16 (the paper's GPU recipe); in an fp32 run that only rounds
                # the adapter and its updates (lr x grad is often below bf16's resolution), so keep fp32.
                for param in self.model.parameters():
                    if param.requires_grad and param.dtype == torch.bfloat16:
                        param.data = param.data.float()
            self.score_rows_for_eval = score_rows_for_eval or []
            self.max_prompt_tokens = max_prompt_tokens

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval"):
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
            if self.score_rows_for_eval:
                scores = score_rows(self.model, self.processing_class, self.score_rows_for_eval,
                                    batch_size=self.args.per_device_eval_batch_size,
                                    max_prompt_tokens=self.max_prompt_tokens)
                output.metrics[f"{metric_key_prefix}_accuracy"] = round(accuracy(scores), 4)
            return output

        def _get_train_sampler(self, train_dataset=None):
            # "batch_rebalance" only tells the Trainer to take a batch sampler; ours keeps each optimizer
            # step's rows exactly those of a random permutation (see mcqa_core.batching).
            if self.args.train_sampling_strategy != "batch_rebalance":
                return super()._get_train_sampler(train_dataset)
            from .batching import step_window_sampler

            dataset = train_dataset if train_dataset is not None else self.train_dataset
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return step_window_sampler(_lengths(dataset), self.args.per_device_train_batch_size,
                                       self.args.gradient_accumulation_steps, seed=seed)

        def _get_eval_sampler(self, eval_dataset):
            # Longest first: evaluation order changes nothing but padding (and memory peaks early).
            if self.args.train_sampling_strategy != "batch_rebalance" or eval_dataset is None:
                return super()._get_eval_sampler(eval_dataset)
            lengths = _lengths(eval_dataset)
            return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))

    return MCQATrainer


def _lengths(dataset) -> list[int]:
    if "length" in dataset.column_names:
        return list(dataset["length"])
    return [len(ids) for ids in dataset["input_ids"]]


def _summary_callback():
    from transformers import TrainerCallback

    class EvalSummary(TrainerCallback):
        """One line per evaluation: step, training loss, eval loss, letter accuracy."""

        def __init__(self):
            self.last_loss = None

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.last_loss = logs["loss"]

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if state.is_world_process_zero and metrics:
                loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "-"
                print(f"[eval] step {state.global_step}/{state.max_steps}  loss {loss}  "
                      f"eval_loss {metrics.get('eval_loss', float('nan')):.4f}  "
                      f"accuracy {metrics.get('eval_accuracy', float('nan')):.4f}", flush=True)

    return EvalSummary()


def sft_config(cfg: RunConfig, out: Path, n_train: int):
    import torch
    from trl import SFTConfig

    t = cfg.train
    plan = plan_batches(n_train, t.per_device_train_batch_size, t.gradient_accumulation_steps)
    return SFTConfig(
        output_dir=str(out / CHECKPOINT_DIR),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        per_device_train_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.grad_accum,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        logging_steps=t.logging_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        optim=t.optim,
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        report_to=t.report_to,
        max_length=cfg.model.max_seq_length,
        # group_by_length: each step's rows split by length within the step (see mcqa_core.batching).
        train_sampling_strategy="batch_rebalance" if t.group_by_length else "random",
        length_column_name="length",
        gradient_checkpointing=False,  # already set up by load_for_training (unsloth or peft's way)
        dataset_num_proc=None,
        remove_unused_columns=False,
        disable_tqdm=False,
        save_only_model=False,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning helps copies to a GPU only (else it warns)
        **precision_flags(),
    )


def validate_config(cfg: RunConfig) -> None:
    """Collect every problem with the settings into one error."""
    t, problems = cfg.train, []
    if t.save_steps % t.eval_steps:
        problems.append(f"--save-steps {t.save_steps} must be a multiple of --eval-steps {t.eval_steps} "
                        "(the best checkpoint is chosen at evaluations)")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "eval_steps", "save_steps",
                 "logging_steps"):
        if getattr(t, name) < 1:
            problems.append(f"{name} must be at least 1")
    if cfg.model.max_seq_length < 32:
        problems.append(f"--max-seq-length {cfg.model.max_seq_length} is too small for any MedMCQA prompt")
    if cfg.data.eval_split not in ("validation", "heldout"):
        problems.append(f"--eval-split must be validation or heldout, got {cfg.data.eval_split!r}")
    if cfg.data.train_split in ("heldout", "validation") and cfg.data.eval_split in ("heldout", "validation"):
        problems.append(f"--train-split {cfg.data.train_split} overlaps the evaluation rows; train on train or "
                        "demo-train")
    if t.optim.endswith("8bit"):
        from .modeling import has_bitsandbytes

        if not has_bitsandbytes():
            problems.append(f"--optim {t.optim} needs bitsandbytes: pip install bitsandbytes (or --optim adamw_torch)")
    from .distributed import parallel_problems
    from .relora import config_problems as relora_problems

    problems += relora_problems(cfg) + parallel_problems(cfg)
    if problems:
        raise RunError("cannot start training:\n  - " + "\n  - ".join(problems))


def run_training(cfg: RunConfig) -> dict:
    """Train, save the adapter folder, return the run record written to mcqa_run.json."""
    import torch
    import transformers

    from .modeling import load_for_training

    started = time.time()
    validate_config(cfg)
    out = Path(cfg.train.output_dir).expanduser()
    check_output_dir(out, cfg.train.overwrite, cfg.train.resume)

    train = load_split(cfg.data.train_split, cfg.data.data_dir, cfg.data.train_limit)
    evals = load_split(cfg.data.eval_split, cfg.data.data_dir, cfg.data.eval_limit)

    transformers.set_seed(cfg.train.seed)
    model, tok, model_info = load_for_training(cfg.model, cfg.lora)
    max_len = cfg.model.max_seq_length
    train_enc = encode_rows(tok, train.rows, max_len)
    eval_enc = encode_rows(tok, evals.rows, max_len)
    if not train_enc.examples:
        raise DataError(f"no training row fits in --max-seq-length {max_len} tokens; raise it (512 fits all "
                        "MedMCQA rows)")
    if not eval_enc.examples:
        raise DataError(f"no evaluation row fits in --max-seq-length {max_len} tokens; raise it")
    counts = {
        "train_rows_used": len(train_enc.examples), "train_rows_invalid": train.skipped,
        "train_rows_too_long": train_enc.skipped_too_long, "train_rows_shortened": train_enc.shortened,
        "eval_rows_used": len(eval_enc.examples), "eval_rows_invalid": evals.skipped,
        "eval_rows_too_long": eval_enc.skipped_too_long, "eval_rows_shortened": eval_enc.shortened,
    }
    print(f"[data] train {counts['train_rows_used']} rows from {train.source} [{train.split}]"
          f" ({train.skipped} invalid, {train_enc.skipped_too_long} too long, {train_enc.shortened} shortened); "
          f"eval {counts['eval_rows_used']} rows [{evals.split}] ({evals.skipped} invalid, "
          f"{eval_enc.skipped_too_long} too long, {eval_enc.shortened} shortened; --max-seq-length {max_len})",
          flush=True)

    out.mkdir(parents=True, exist_ok=True)
    args = sft_config(cfg, out, len(train_enc.examples))
    from .distributed import check_world_fits
    from .relora import make_relora

    check_world_fits(args, len(train_enc.examples))
    relora = make_relora(cfg, args, len(train_enc.examples))  # None unless --relora-steps
    plan = plan_batches(len(train_enc.examples), cfg.train.per_device_train_batch_size,
                        cfg.train.gradient_accumulation_steps)
    counts.update(batch_size_used=plan.batch_size, grad_accum_used=plan.grad_accum)
    print(f"[batch] {plan.describe()}; micro-batches "
          f"{'split by length within each step' if cfg.train.group_by_length else 'in random order'}", flush=True)
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model, args=args, train_dataset=_to_dataset(train_enc), eval_dataset=_to_dataset(eval_enc),
        processing_class=tok, score_rows_for_eval=eval_enc.rows, max_prompt_tokens=max_len,
        callbacks=[_summary_callback()] + ([relora] if relora else []),
    )
    train_started = time.time()
    result = trainer.train(resume_from_checkpoint=True if cfg.train.resume else None)
    train_seconds = time.time() - train_started
    final = _final_metrics(trainer)
    print(f"[final] eval_loss {final.get('eval_loss', float('nan')):.4f}  "
          f"accuracy {final.get('eval_accuracy', float('nan')):.4f}", flush=True)

    if not trainer.is_world_process_zero():  # several processes: rank 0 alone writes the folder
        return {"metrics": {"final_accuracy": final.get("eval_accuracy")}, "rank": args.process_index}
    if relora:  # the merged restarts and the live LoRA, stacked into one adapter
        relora.save_adapter(trainer.model, out)
    else:
        trainer.model.save_pretrained(out)
    tok.save_pretrained(out)
    record = {
        "format": "mcqa-run/1",
        "base_model": cfg.model.model_name,
        "base_model_resolved": model_info["resolved_model"],
        "backend": model_info["backend"],
        "load_in_4bit": cfg.model.load_in_4bit,
        "prompt_version": PROMPT_VERSION,
        "prompt_template": PROMPT_TEMPLATE,
        "preset": cfg.preset,
        "settings": cfg.to_dict(),
        "world_size": args.world_size,
        "relora": relora.record() if relora else None,
        "data": {"source": train.source, "train_split": train.split, "eval_split": evals.split, **counts},
        "metrics": {
            "history": trainer.state.log_history,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_accuracy": trainer.state.best_metric,
            "final_eval_loss": final.get("eval_loss"),
            "final_accuracy": final.get("eval_accuracy"),
            "train_loss": result.training_loss,
            "global_steps": trainer.state.global_step,
        },
        "versions": library_versions(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "wall_seconds": round(time.time() - started, 1),
        "train_seconds": round(train_seconds, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / RUN_FILE).write_text(json.dumps(record, indent=2, default=str))
    (out / "README.md").write_text(model_card(record))
    _write_eval_report(cfg, trainer.model, tok, out, record)
    return record


def _final_metrics(trainer) -> dict:
    """Eval loss and accuracy of the model training ends with. The evaluation at the step that model comes
    from (the best checkpoint, which load_best_model_at_end restored, or the last step) already measured
    it; evaluate again only when no evaluation ran at that step."""
    state = trainer.state
    step = state.global_step
    if state.best_model_checkpoint and trainer.args.load_best_model_at_end:
        step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    logged = [h for h in state.log_history if "eval_loss" in h and h.get("step") == step]
    return logged[-1] if logged else trainer.evaluate()


def _write_eval_report(cfg: RunConfig, model, tok, out: Path, record: dict) -> None:
    """eval_report.json/.png in the adapter folder: the eval split (up to --report-limit rows) scored by the
    trained model, and its accuracy in mcqa_run.json. No base comparison here, to keep training time bounded."""
    from .evaluate import evaluate, write_report
    from .inference import LoadedModel

    rows = load_split(cfg.data.eval_split, cfg.data.data_dir, cfg.data.report_limit).rows
    loaded = LoadedModel(model, tok, cfg.model.model_name, str(out), cfg.model.load_in_4bit,
                         str(next(model.parameters()).device), 0.0, record)
    report = evaluate(loaded, rows, batch_size=cfg.train.per_device_eval_batch_size,
                      max_prompt_tokens=cfg.model.max_seq_length)
    write_report(report, out / "eval_report.json")
    record["metrics"]["report_accuracy"] = report["accuracy"]
    record["metrics"]["report_rows"] = report["n"]
    print(f"[report] accuracy {report['accuracy']:.4f} on {report['n']} {cfg.data.eval_split} rows "
          f"-> {out / 'eval_report.json'}", flush=True)
    (out / RUN_FILE).write_text(json.dumps(record, indent=2, default=str))


def model_card(run: dict) -> str:
    m, d = run["metrics"], run["data"]
    acc = m.get("final_accuracy")
    acc_text = f"{acc:.1%}" if isinstance(acc, (int, float)) and not math.isnan(acc) else "n/a"
    return f"""---
base_model: {run['base_model']}
library_name: peft
tags: [medmcqa, lora, multiple-choice, medical]
---
# MedMCQA LoRA adapter

LoRA adapter for `{run['base_model']}` trained on MedMCQA ({d['train_split']}, {d['train_rows_used']} rows
from `{d['source']}`) with the `{run['preset']}` preset.

| | |
|---|---|
| letter accuracy on {d['eval_split']} ({d['eval_rows_used']} rows) | {acc_text} |
| final eval loss | {m.get('final_eval_loss')} |
| optimizer steps | {m.get('global_steps')} |
| prompt version | `{run['prompt_version']}` |
| 4-bit base | {run['load_in_4bit']} |
| wall time | {run['wall_seconds']} s on {run['device']} |

Letter accuracy: the argmax of the next-token probabilities of A-D after the prompt.
{"Offline stand-in: trained on validation rows outside the held-out set, scored on held-out rows only." if d['eval_split'] == 'heldout' else ""}

## Use

```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("THIS_FOLDER")
```
or, in this project, `python -m mcqa_core.evaluate --adapter THIS_FOLDER` and `streamlit run app.py`.

The prompt (version `{run['prompt_version']}`):
```
{run['prompt_template']}```
"""
