"""The callbacks a training process reports through: a line in `progress.jsonl` per logged step and per
evaluation, a clean stop on SIGTERM (save a checkpoint, then exit), and `curves.png` when it ends.
The files and their readers are in run_status.py, which the app imports without the Trainer."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from .run_status import PROGRESS_FILE, stop_requested


class ProgressLog(TrainerCallback):
    """Appends a line to progress.jsonl at the start, at every log and every evaluation, flushed at once.
    `reference` (the always-"A" accuracy of the dev rows) goes into the first line."""

    def __init__(self, out: Path, reference: dict | None = None):
        self.path = Path(out) / PROGRESS_FILE
        self.reference = reference or {}
        self.started = time.time()

    def _write(self, **record) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"time": round(time.time() - self.started, 2), **record}) + "\n")

    def on_train_begin(self, args, state, control, **kw):
        if state.is_world_process_zero:
            self._write(event="begin", step=state.global_step, max_steps=state.max_steps, **self.reference)

    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs and "loss" in logs:
            self._write(event="log", step=state.global_step, max_steps=state.max_steps, loss=logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if state.is_world_process_zero and metrics:
            self._write(event="eval", step=state.global_step, max_steps=state.max_steps,
                        eval_loss=metrics.get("eval_loss"), accuracy=metrics.get("eval_accuracy"))


class StopOnSignal(TrainerCallback):
    """A Stop (SIGTERM, see run_status.install_stop_handler) ends training after the current step with a
    checkpoint, instead of killing the process mid-write; a request after the last step is ignored."""

    def __init__(self):
        self.requested = False

    def on_step_end(self, args, state, control, **kw):
        if stop_requested() and state.global_step < state.max_steps:
            self.requested = True
            control.should_save = True
            control.should_training_stop = True
        return control


def plot_curves(history: list[dict], png: Path, reference: dict | None = None) -> Path | None:
    """Training loss, and eval letter accuracy per step (with always-"A" and the step-0 base model), as one
    picture for the adapter folder, the Evaluate page and the model card."""
    loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    acc = [(h["step"], h["eval_accuracy"]) for h in history if "eval_accuracy" in h]
    # The step-0 evaluation is the base model itself (the LoRA starts as a no-op).
    reference = {**(reference or {}), "base_accuracy": next((a for s, a in acc if s == 0), None)}
    if not loss and not acc:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    if loss:
        left.plot(*zip(*loss), marker=".", color="tab:blue")
    left.set(title="training loss", xlabel="optimizer step")
    if acc:
        right.plot(*zip(*acc), marker="o", color="tab:orange", label="letter accuracy (dev)")
    for key, label, style in (("always_a", 'always "A"', "--"), ("base_accuracy", "base model (step 0)", ":")):
        if reference.get(key) is not None:
            right.axhline(reference[key], linestyle=style, color="gray", label=label)
    right.set(title="letter accuracy on the dev rows", xlabel="optimizer step", ylim=(0, 1))
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
