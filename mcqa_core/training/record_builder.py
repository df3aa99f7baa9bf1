"""The run record a training run writes to `mcqa_run.json`: what reproduces the run and what inference needs.
Its file names and readers live in models/run_record.py, shared with inference and the app."""

from __future__ import annotations

import platform
import time

from ..data.prompt import PROMPT_TEMPLATE, PROMPT_VERSION
from ..models.run_record import RUN_FORMAT


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "unsloth"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def phase_times(phases: dict) -> str:
    """'load 20.1 s, train 877.7 s, ...' for the card and the last printed line."""
    return ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in phases.items())


def build_record(
    cfg,
    *,
    model_info: dict,
    world_size: int,
    relora,
    data: dict,
    metrics: dict,
    device: str,
    precision: tuple[str, str],
    started: float,
    phases: dict,
) -> dict:
    """The run record written to mcqa_run.json: enough to reproduce the run and to load it for inference.
    `phases`: seconds per phase so far (load, train, save, final_evaluation); run.py adds the last one."""
    return {
        "format": RUN_FORMAT,
        "base_model": cfg.model.model_name,
        "base_model_resolved": model_info["resolved_model"],
        "backend": model_info["backend"],
        "load_in_4bit": cfg.model.load_in_4bit,
        "peft_method": cfg.method.peft_method,
        "prompt_version": PROMPT_VERSION,
        "prompt_template": PROMPT_TEMPLATE,
        "preset": cfg.preset,
        "settings": cfg.to_dict(),
        "world_size": world_size,
        "relora": relora.record() if relora else None,
        "data": data,
        "metrics": metrics,
        "versions": library_versions(),
        "device": device,
        "precision": precision[0],  # bf16 | fp16 | fp32: models/precision_rule.py
        "precision_reason": precision[1],
        **timing(started, phases),
    }


def timing(started: float, phases: dict) -> dict:
    """The record's times: wall time from the command's start to now (run.py rewrites it after the final
    scoring, so that counts), and the seconds of each phase."""
    return {
        "wall_seconds": round(time.time() - started, 1),
        "train_seconds": round(phases.get("train", 0.0), 1),
        "phase_seconds": {name: round(seconds, 1) for name, seconds in phases.items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
