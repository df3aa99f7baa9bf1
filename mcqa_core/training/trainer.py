"""The trainer: TRL's SFTTrainer with letter accuracy at every evaluation ("best" = best accuracy),
length-split micro-batches, and the model fixes of `model_patches`; plus the one-line evaluation log."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from ..evaluation.cpu_precision import bf16_pays
from ..evaluation.letter_scoring import accuracy, score_rows
from .batching import step_window_sampler
from .model_patches import keep_4bit_layers_differentiable, lm_head_on_label_tokens_only
from .output_folder import LOSS_FILE
from .progress import StopOnSignal


class MCQATrainer(SFTTrainer):
    """SFTTrainer whose evaluation adds letter accuracy next to eval loss."""

    def __init__(
        self,
        *args,
        score_rows_for_eval=None,
        max_prompt_tokens=512,
        bf16_scoring=False,
        eval_progress=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        keep_4bit_layers_differentiable(self.model)
        if self.args.loss_type == "chunked_nll" and not self.args.use_liger_kernel:
            lm_head_on_label_tokens_only(self.model)  # replaces TRL's chunked loss: same math, less work
        if not (self.args.bf16 or self.args.fp16) or self.args.device.type == "cpu":
            # TRL casts QLoRA adapters to bf16 (the paper's GPU recipe); in an fp32 run, or a CPU bf16 run
            # (autocast matmuls over fp32 weights), that only rounds the adapter and its updates (lr x grad
            # is often below bf16's resolution), so keep fp32 master weights.
            for param in self.model.parameters():
                if param.requires_grad and param.dtype == torch.bfloat16:
                    param.data = param.data.float()
        self.score_rows_for_eval = score_rows_for_eval or []
        self.bf16_scoring = bf16_scoring  # in bf16 where it pays, close calls again in fp32
        self.eval_progress = eval_progress  # (done, total) of the dev rows' letters at each evaluation
        self.max_prompt_tokens = max_prompt_tokens
        self.loss_sum = torch.zeros(())  # summed step losses of the whole run, resumed sessions included
        # this session's forward and backward passes (no evaluation, no save) and their non-padding tokens: tokens/s
        self.step_seconds, self.step_tokens = 0.0, 0

    def train(self, resume_from_checkpoint=None, **kwargs):
        """The Trainer's train, with `training_loss` the mean step loss over the whole run: the Trainer's own
        divides only this session's losses by all the run's steps, which is wrong after --resume."""
        earlier = 0.0
        if resume_from_checkpoint:
            try:
                earlier = json.loads((Path(resume_from_checkpoint) / LOSS_FILE).read_text())["loss_sum"]
            except (OSError, ValueError, KeyError):  # a checkpoint from before this file existed
                earlier = self._logged_loss_sum(resume_from_checkpoint)
        self.loss_sum = torch.tensor(float(earlier))
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        total = self.accelerator.gather(self.loss_sum.reshape(1).to(self.args.device)).mean().item()
        return output._replace(training_loss=total / max(self.state.global_step, 1))

    def training_step(self, *args, **kwargs):
        started = time.perf_counter()
        loss = super().training_step(*args, **kwargs)  # this micro-batch's share of its step's loss
        self.step_seconds += time.perf_counter() - started
        inputs = args[1] if len(args) > 1 else kwargs.get("inputs", {})
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        self.step_tokens += int(mask.sum()) if mask is not None else 0
        self.loss_sum = self.loss_sum.to(loss.device) + loss.detach().float()
        return loss

    def _save_checkpoint(self, model, trial):
        # The running loss goes in before trainer_state.json, the file that marks a checkpoint complete.
        folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / LOSS_FILE).write_text(
                json.dumps({"step": self.state.global_step, "loss_sum": float(self.loss_sum)})
            )
        super()._save_checkpoint(model, trial)

    def _finalize_training(self, trial, num_train_samples, start_time):
        # After a Stop, the Trainer would load the best checkpoint and, with save_total_limit 1, delete every
        # other one, the stop checkpoint included; hiding the best one for this call keeps it for --resume.
        if not any(
            getattr(cb, "requested", False) for cb in self.callback_handler.callbacks if isinstance(cb, StopOnSignal)
        ):
            return super()._finalize_training(trial, num_train_samples, start_time)
        if not (Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}").exists():
            self._save_checkpoint(self.model, trial)  # stopped between micro-batches: the last optimizer step's
        best, self.state.best_model_checkpoint = self.state.best_model_checkpoint, None
        try:
            return super()._finalize_training(trial, num_train_samples, start_time)
        finally:
            self.state.best_model_checkpoint = best

    @staticmethod
    def _logged_loss_sum(checkpoint) -> float:
        """Summed step losses from a checkpoint's log history (each logged loss covers the steps since the
        previous one)."""
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        total, last = 0.0, 0
        for entry in state.get("log_history", []):
            if "loss" in entry:
                total += entry["loss"] * (entry["step"] - last)
                last = entry["step"]
        return total

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        if self.score_rows_for_eval and self.eval_progress:  # the page's bar from the start (the loss pass first)
            self.eval_progress(0, len(self.score_rows_for_eval))
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.score_rows_for_eval:
            scores = score_rows(
                self.model,
                self.processing_class,
                self.score_rows_for_eval,
                batch_size=self.args.per_device_eval_batch_size,
                max_prompt_tokens=self.max_prompt_tokens,
                bf16=self.bf16_scoring and bf16_pays(self.model),
                progress=self.eval_progress,
            )
            output.metrics[f"{metric_key_prefix}_accuracy"] = round(accuracy(scores), 4)
        return output

    def _get_train_sampler(self, train_dataset=None):
        # "batch_rebalance" only tells the Trainer to take a batch sampler; ours keeps each optimizer
        # step's rows exactly those of a random permutation (see training/batching.py).
        if self.args.train_sampling_strategy != "batch_rebalance":
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return step_window_sampler(
            row_lengths(dataset),
            self.args.per_device_train_batch_size,
            self.args.gradient_accumulation_steps,
            seed=seed,
        )

    def _get_eval_sampler(self, eval_dataset):
        # Longest first: evaluation order changes nothing but padding (and memory peaks early).
        if self.args.train_sampling_strategy != "batch_rebalance" or eval_dataset is None:
            return super()._get_eval_sampler(eval_dataset)
        lengths = row_lengths(eval_dataset)
        return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def row_lengths(dataset) -> list[int]:
    if "length" in dataset.column_names:
        return list(dataset["length"])
    return [len(ids) for ids in dataset["input_ids"]]


def to_dataset(encoded):
    """EncodedRows as the Trainer's dataset: input_ids, labels and each row's length (for batching)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "input_ids": [e["input_ids"] for e in encoded.examples],
            "labels": [e["labels"] for e in encoded.examples],
            "length": [len(e["input_ids"]) for e in encoded.examples],
        }
    )


class EvalSummary(TrainerCallback):
    """One line per evaluation: step, training loss, eval loss, letter accuracy on `rows` (the dev rows, named
    as 'demo-dev (16 rows)', so it is never mistaken for the final report's accuracy)."""

    def __init__(self, rows: str = "the eval rows"):
        self.last_loss = None
        self.rows = rows

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.last_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if state.is_world_process_zero and metrics:
            loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "-"
            print(
                f"[eval] step {state.global_step}/{state.max_steps}  loss {loss}  "
                f"eval_loss {metrics.get('eval_loss', float('nan')):.4f}  "
                f"accuracy {metrics.get('eval_accuracy', float('nan')):.4f} on {self.rows}",
                flush=True,
            )


class NonFiniteGuard(TrainerCallback):
    """Stops training at the first step whose loss or trainable weights are inf or nan (a learning rate far
    too high), before that step is evaluated or saved; run.py then refuses to write the adapter."""

    def __init__(self):
        self.found: str | None = None  # what went non-finite, and at which step

    def _stop(self, state, control, what: str):
        self.found = self.found or f"{what} at step {state.global_step}"
        control.should_training_stop = True
        control.should_save = control.should_evaluate = False
        return control

    def on_step_end(self, args, state, control, model=None, **kw):
        # One maximum per tensor, one sync: the check costs far less than the step. ZeRO-3 leaves empty shards.
        weights = [p.detach().abs().amax().float() for p in model.parameters() if p.requires_grad and p.numel()]
        if weights and not torch.isfinite(torch.stack(weights)).all():
            return self._stop(state, control, "the trainable weights became non-finite")
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        bad = [
            k for k in ("loss", "eval_loss") if isinstance((logs or {}).get(k), float) and not math.isfinite(logs[k])
        ]
        return self._stop(state, control, f"{bad[0]} {logs[bad[0]]}") if bad else control

    def on_epoch_end(self, args, state, control, **kw):  # the Trainer's last save/evaluate after the loop
        return self._stop(state, control, "") if self.found else control
