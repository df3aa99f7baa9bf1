"""The callbacks a training process reports through: a line in `progress.jsonl` per logged step, evaluation
and checkpoint, a clean stop on SIGTERM (save a checkpoint, then exit), and `curves.png` when it ends.
The files and their readers are in status_files.py, which the app imports without the Trainer."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from .status_files import PROGRESS_FILE, read_progress, stop_requested


class ProgressLog(TrainerCallback):
    """Appends a line to progress.jsonl at the start, at every optimizer step, log, evaluation and checkpoint,
    flushed at once.
    `reference` (the always-"A" accuracy of the dev rows) goes into the first line. `time` is the run's training
    time: a resumed session goes on from the time its checkpoint was saved, so elapsed time and ETA never go
    back, and the lines of steps after that checkpoint (run again now) are dropped."""

    def __init__(self, out: Path, reference: dict | None = None):
        self.path = Path(out) / PROGRESS_FILE
        self.reference = reference or {}
        self.started = time.time()
        self.earlier = 0.0  # earlier sessions' training time, up to the checkpoint this session resumed from

    def _write(self, **record) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"time": round(self.earlier + time.time() - self.started, 2), **record}) + "\n")

    def _carry_over(self, step: int) -> float:
        """On resume from `step`: keep only the lines up to it; the run's time when its checkpoint was saved."""
        kept = [r for r in read_progress(self.path.parent) if r.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)  # the Train page may be reading it: it sees the old lines or the new ones
        saved = [r["time"] for r in kept if r.get("event") == "save" and r.get("step") == step]
        return saved[-1] if saved else max((r.get("time", 0.0) for r in kept), default=0.0)

    def on_train_begin(self, args, state, control, **kw):
        if state.is_world_process_zero:
            if state.global_step > 0:
                self.earlier = self._carry_over(state.global_step)
            self._write(event="begin", step=state.global_step, max_steps=state.max_steps, **self.reference)

    def on_step_end(self, args, state, control, **kw):
        # every optimizer step, whatever logging_steps says: the Train page's step count and ETA follow the trainer
        if state.is_world_process_zero:
            self._write(event="step", step=state.global_step, max_steps=state.max_steps)

    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs and "loss" in logs:
            self._write(event="log", step=state.global_step, max_steps=state.max_steps, loss=logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if state.is_world_process_zero and metrics:
            self._write(
                event="eval",
                step=state.global_step,
                max_steps=state.max_steps,
                eval_loss=metrics.get("eval_loss"),
                accuracy=metrics.get("eval_accuracy"),
            )

    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            self._write(event="save", step=state.global_step, max_steps=state.max_steps)


class StopOnSignal(TrainerCallback):
    """A Stop (SIGTERM, see status_files.install_stop_handler) ends training after the current micro-batch with a
    checkpoint of the last optimizer step, instead of killing the process mid-write; a request after the last
    step is ignored. Mid-step, the step's unfinished gradients are dropped (`MCQATrainer._finalize_training` saves
    the checkpoint); --resume runs that step again whole."""

    def __init__(self):
        self.requested = False

    def on_step_end(self, args, state, control, **kw):
        if stop_requested() and state.global_step < state.max_steps:
            self.requested = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_substep_end(self, args, state, control, **kw):
        if stop_requested() and state.global_step < state.max_steps:
            self.requested = True
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
