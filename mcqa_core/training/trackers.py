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
        _quiet_tensorboard_thread()
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


def _quiet_tensorboard_thread() -> None:
    """TensorBoard's writer thread keeps a failed write (a full or read-only disk) and raises it again at the run's
    next log, which ends the run in one line; printed from the thread as well, it was a traceback beside that line."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "quiets_tensorboard", False):
        return

    def hook(args):
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
            return
        previous(args)

    hook.quiets_tensorboard = True
    threading.excepthook = hook


def close_tensorboard(trainer) -> None:
    """Flush and close the TensorBoard writer of a run that failed (transformers closes it only when training ends):
    buffered points reach the disk where it still takes them, and the writer's thread stops either way."""
    import contextlib

    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        writer = getattr(callback, "tb_writer", None) if isinstance(callback, TensorBoardCallback) else None
        if writer is None:
            continue
        callback.tb_writer = None  # the end of training, if it still comes, finds nothing left to close
        try:
            writer.close()
        except Exception:  # the disk that failed the run refuses the flush: stop each file's thread all the same
            for file_writer in (getattr(writer, "all_writers", None) or {}).values():
                with contextlib.suppress(Exception):
                    file_writer.close()
