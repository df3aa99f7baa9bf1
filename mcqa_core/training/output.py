"""What a training run writes: the output-folder policy, the run record (`mcqa_run.json`) and the model card.
The record's file names and readers live in models/run_record.py, shared with inference and the app."""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

from ..data.prompt import PROMPT_TEMPLATE, PROMPT_VERSION
from ..errors import RunError
from ..models.run_record import ADAPTER_FILES, CHECKPOINT_DIR, RUN_FILE, RUN_FORMAT, measured_accuracy


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


def build_record(cfg, *, model_info: dict, world_size: int, relora, data: dict, metrics: dict, device: str,
                 started: float, train_seconds: float) -> dict:
    """The run record written to mcqa_run.json: enough to reproduce the run and to load it for inference."""
    return {
        "format": RUN_FORMAT,
        "base_model": cfg.model.model_name,
        "base_model_resolved": model_info["resolved_model"],
        "backend": model_info["backend"],
        "load_in_4bit": cfg.model.load_in_4bit,
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
        "wall_seconds": round(time.time() - started, 1),
        "train_seconds": round(train_seconds, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def model_card(run: dict) -> str:
    m, d = run["metrics"], run["data"]
    acc, acc_rows = measured_accuracy(run)
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
| letter accuracy on {d['eval_split']} ({acc_rows} rows) | {acc_text} |
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
