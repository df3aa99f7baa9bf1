"""`mcqa_run.json`: the record every adapter (and merged export) folder carries, and what it claims.

Training writes it; inference, the app, export and publish read it back instead of declaring again
the base model, the prompt version, the data and the measured accuracy.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..data.rows import DERIVED_SPLITS, SPLITS, splits_overlap
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
    return run


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
    """(accuracy, rows) a run claims: the end-of-training report on the whole eval split when there is one,
    else the last in-training evaluation (fewer rows)."""
    metrics, data = run.get("metrics") or {}, run.get("data") or {}
    if isinstance(metrics.get("report_accuracy"), (int, float)):
        return metrics["report_accuracy"], metrics.get("report_rows")
    acc = metrics.get("final_accuracy")
    return (acc, data.get("eval_rows_used")) if isinstance(acc, (int, float)) else (None, None)


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
        return ("This adapter was trained on demo-train rows, which are part of validation (three quarters of it): "
                "accuracy on validation is inflated. Choose the heldout split (--split heldout) for an honest number.")
    return None
