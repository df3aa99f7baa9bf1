"""Experiment trackers for --report-to, through transformers' own integrations: TensorBoard by default, Weights &
Biases or MLflow when asked, none. Each keeps its files in the adapter folder, and W&B stays offline without a
login, so a run never phones out unless its user set that up."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"  # inside the adapter folder: `tensorboard --logdir FOLDER/tensorboard`
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "none": None}  # name: package


def trackers(text: str) -> list[str]:
    return [t.strip().lower() for t in str(text).split(",") if t.strip()]


def tracker_problems(text: str) -> list[str]:
    """Why --report-to cannot work, said before any model loads."""
    names = trackers(text)
    unknown = [t for t in names if t not in TRACKERS]
    if unknown or not names or ("none" in names and len(names) > 1):
        return [
            f"--report-to must be none or a comma-separated list of {', '.join(t for t in TRACKERS if t != 'none')}"
            f", got {text!r}"
        ]
    return [
        f"--report-to {t} needs the {TRACKERS[t]} package: pip install {TRACKERS[t]} (or --report-to tensorboard)"
        for t in names
        if TRACKERS[t] and importlib.util.find_spec(TRACKERS[t]) is None
    ]


def tracker_environment(text: str, out: Path, env=os.environ) -> list[str]:
    """Point each tracker at the adapter folder (a user's own settings win), and say where each one writes."""
    names, said = trackers(text), []
    if "tensorboard" in names:
        env["TENSORBOARD_LOGGING_DIR"] = str(out / TENSORBOARD_DIR)  # read by the Trainer's TensorBoard callback
        said.append(f"tensorboard: tensorboard --logdir {out / TENSORBOARD_DIR}")
    if "mlflow" in names:
        env.setdefault("MLFLOW_TRACKING_URI", (out / "mlruns").resolve().as_uri())
        said.append(f"mlflow: {env['MLFLOW_TRACKING_URI']}")
    if "wandb" in names:
        env.setdefault("WANDB_DIR", str(out))
        if not env.get("WANDB_API_KEY") and not (Path.home() / ".netrc").exists():
            env.setdefault("WANDB_MODE", "offline")  # no login: no prompt, no upload; `wandb sync` later
        said.append(f"wandb: {env.get('WANDB_MODE', 'online')} in {env['WANDB_DIR']}")
    return said
