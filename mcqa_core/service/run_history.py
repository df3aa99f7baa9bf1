"""Past training runs in the adapters folder, as the Train page lists them: what each was run with, what it
measured (with its interval and the base on the same rows), how long it took, and where its curves are."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..evaluation.protocol import weights_and_compute
from ..evaluation.report import describe_interval, measured_interval
from ..models.run_record import measured_split
from ..models.tuners import method_of
from ..training.status_files import CURVES_FILE
from ..training.trackers import TENSORBOARD_DIR
from .adapters import find_adapters

# The settings a reader compares between runs, as (group, name) in mcqa_run.json's "settings".
COMPARED_SETTINGS = (
    ("lora", "lora_r"),
    ("lora", "lora_alpha"),
    ("train", "learning_rate"),
    ("train", "per_device_train_batch_size"),
    ("train", "gradient_accumulation_steps"),
    ("train", "max_steps"),
    ("train", "num_train_epochs"),
)


def past_runs(adapters_dir: Path) -> list[dict]:
    """One row per finished adapter folder (it has mcqa_run.json), newest first."""
    rows = []
    for a in find_adapters(adapters_dir):
        if not a.run:
            continue
        run, metrics = a.run, a.run.get("metrics") or {}
        claim = measured_interval(run)
        base = metrics.get("report_base_accuracy")
        settings = run.get("settings") or {}
        rows.append(
            {
                "name": a.name,
                "method": method_of(run),
                "finished": run.get("finished", ""),
                "preset": run.get("preset"),
                "base model": run.get("base_model"),
                "accuracy": f"{claim[0]:.1%} ({describe_interval(claim[2])})" if claim else "not measured",
                "measured on": " ".join(filter(None, (f"{claim[1]:,}", measured_split(run), "rows"))) if claim else "",
                "base, same rows": f"{base:.1%}" if isinstance(base, (int, float)) else "",
                "steps": metrics.get("global_steps"),
                "wall time": f"{run['wall_seconds'] / 60:.1f} min" if run.get("wall_seconds") else "",
                "precision": weights_and_compute(run.get("load_in_4bit"), run.get("precision")),
                **{name: (settings.get(group) or {}).get(name) for group, name in COMPARED_SETTINGS},
            }
        )
    return sorted(rows, key=lambda r: r["finished"], reverse=True)


def curves_image(folder: Path) -> Path | None:
    path = Path(folder) / CURVES_FILE
    return path if path.exists() else None


def tensorboard_command(folder: Path) -> str | None:
    """The command that opens this run's TensorBoard logs, when it wrote any."""
    logs = Path(folder) / TENSORBOARD_DIR
    return f".venv/bin/tensorboard --logdir {shlex.quote(str(logs))}" if logs.is_dir() else None
