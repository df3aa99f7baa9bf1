"""`mcqa_run.json`: the record every adapter (and merged export) folder carries, and what it claims.

Training writes it; inference, the app, export and publish read it back instead of declaring again
the base model, the prompt version, the data and the measured accuracy.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from ..data.medmcqa import DERIVED_SPLITS, SPLITS, splits_overlap
from ..errors import AdapterError

RUN_FILE = "mcqa_run.json"
REPORT_FILE = "eval_report.json"  # the end-of-training report, beside the adapter
CHECKPOINT_DIR = "checkpoints"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
RUN_FORMAT = "mcqa-run/1"
# Shown on every page of the app and in every model card.
DISCLAIMER = "A research demo of fine-tuning, not for clinical decisions"
MERGED_FORMAT = "mcqa-merged/1"


def read_run(folder: str | Path) -> dict:
    """The folder's mcqa_run.json; {} when it has none. A damaged file is refused with the next step."""
    path = Path(folder).expanduser() / RUN_FILE
    if not path.exists():
        return {}
    try:
        run = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"{path} is unreadable ({type(e).__name__}: {e}); retrain or restore the file") from None
    if not isinstance(run, dict):
        raise AdapterError(f"{path} is not a run record (a JSON object); retrain or restore the file")
    if bad := nonfinite_figure(run):
        raise AdapterError(
            f"{path} records {bad}: the run trained on non-finite numbers, so its adapter is "
            "damaged; retrain it with a lower --learning-rate"
        )
    return run


# The figures a trained run records; any of them inf or nan means the weights went non-finite.
LOSS_FIGURES = ("train_loss", "final_eval_loss", "final_accuracy", "best_accuracy", "report_accuracy")


def nonfinite_figure(run: dict) -> str | None:
    """'metrics.train_loss = nan' for the first loss or accuracy of a run record that is not finite, else None.
    Other logged values (grad_norm) may be inf in a healthy fp16 run, whose loss scaler skips such steps."""
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    named = [(f"metrics.{k}", metrics.get(k)) for k in LOSS_FIGURES]
    history = metrics.get("history") if isinstance(metrics.get("history"), list) else []
    named += [
        (f"metrics.history step {h.get('step')} {k}", h.get(k))
        for h in history
        if isinstance(h, dict)
        for k in ("loss", "eval_loss", "eval_accuracy")
    ]
    return next(
        (f"{name} = {value}" for name, value in named if isinstance(value, float) and not math.isfinite(value)), None
    )


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON beside `path`, then move it into place: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, default=str))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run(folder: str | Path, record: dict) -> Path:
    path = Path(folder) / RUN_FILE
    write_json_atomic(path, record)
    return path


def measured_accuracy(run: dict) -> tuple[float | None, int | None]:
    """(accuracy, rows) a run claims: the end-of-training report (report split) when there is one, else the
    evaluation of the model training ended with (eval split, fewer rows). measured_split names the split."""
    metrics, data = run.get("metrics") or {}, run.get("data") or {}
    if isinstance(metrics.get("report_accuracy"), (int, float)):
        return metrics["report_accuracy"], metrics.get("report_rows")
    acc = metrics.get("final_accuracy")
    if not isinstance(acc, (int, float)):
        return None, None
    return acc, metrics.get("final_rows", data.get("eval_rows_used"))


def measured_split(run: dict) -> str | None:
    """The split measured_accuracy's figure was measured on, named as mcqa_run.json records it."""
    metrics, data = run.get("metrics") or {}, run.get("data") or {}
    if isinstance(metrics.get("report_accuracy"), (int, float)):
        return data.get("report_split") or data.get("eval_split")
    return data.get("eval_split") if isinstance(metrics.get("final_accuracy"), (int, float)) else None


def rows_seen(rows: int, rows_per_step: int, steps: int, world_size: int = 1) -> dict:
    """How many training rows a run's steps took: row presentations (a row counted once per epoch it is drawn
    in; an epoch's last step takes only the rows left) and unique rows."""
    window = rows_per_step * world_size  # every process takes its own batch of each step
    per_epoch = math.ceil(rows / window)
    epochs, left = divmod(steps, per_epoch)
    return {
        "rows_per_step": window,
        "row_presentations": epochs * rows + min(left * window, rows),
        "unique_train_rows": rows if epochs else min(left * window, rows),
    }


def rows_seen_text(run: dict) -> str | None:
    """The training rows of a run in words: 'demo-train: 256 unique rows of 1024 usable, 256 row presentations
    (8 steps x 32 rows)'. Records written before these counts are worked out from the batch sizes they keep."""
    data, steps = run.get("data") or {}, (run.get("metrics") or {}).get("global_steps")
    if not data.get("train_split"):
        return None
    seen = {k: data[k] for k in ("rows_per_step", "row_presentations", "unique_train_rows") if k in data}
    numbers = [data.get(k) for k in ("train_rows_used", "batch_size_used", "grad_accum_used")] + [steps]
    if not seen and all(isinstance(n, int) and n > 0 for n in numbers):
        seen = rows_seen(numbers[0], numbers[1] * numbers[2], steps, run.get("world_size") or 1)
    if not seen:
        return f"{data['train_split']} ({data.get('train_rows_used')} usable rows)"
    return (
        f"{data['train_split']}: {seen['unique_train_rows']} unique rows of {data.get('train_rows_used')} "
        f"usable, {seen['row_presentations']} row presentations ({steps} steps x {seen['rows_per_step']} rows)"
    )


def trained_on_row(run: dict, row_id) -> bool:
    """True when the run's training split holds this validation row (offline demo-train is carved from
    validation), so an answer to it says little about how well the adapter generalises."""
    train_split = (run.get("data") or {}).get("train_split")
    if train_split not in DERIVED_SPLITS or row_id is None or DERIVED_SPLITS[train_split][0] != "validation":
        return False
    return DERIVED_SPLITS[train_split][1](row_id)


def split_overlap_warning(run: dict, split: str) -> str | None:
    """A warning when scoring a run on rows it was trained on."""
    train_split = (run.get("data") or {}).get("train_split")
    if train_split in SPLITS and split in SPLITS and splits_overlap(train_split, split):
        return (
            "This adapter was trained on demo-train rows, which are part of validation (three quarters of it): "
            "accuracy on validation is inflated. Choose the heldout split (--split heldout) for an honest number."
        )
    return None
