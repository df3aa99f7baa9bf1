"""What a training run writes: the output-folder policy (what counts as a run, complete checkpoints, atomic
saves), the run record (`mcqa_run.json`) and the model card. The record's file names and readers live in
models/run_record.py, shared with inference and the app.

A folder holds a finished run once `mcqa_run.json` is written (last, atomically); before that it holds an
unfinished run (complete checkpoints: --resume continues it) or only an unfinished attempt (reused).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from ..command_line import unwritable_problem
from ..data.prompt import PROMPT_TEMPLATE, PROMPT_VERSION
from ..evaluation.report import measured_interval
from ..evaluation.stats import describe_difference
from ..models.run_record import (
    ADAPTER_FILES,
    CHECKPOINT_DIR,
    DISCLAIMER,
    REPORT_FILE,
    RUN_FILE,
    RUN_FORMAT,
    measured_accuracy,
    measured_split,
    rows_seen_text,
)

# A checkpoint is complete once the Trainer has written trainer_state.json, its last file before it
# rotates older checkpoints away; a crash or a full disk before that leaves a folder without it.
TRAINER_STATE = "trainer_state.json"
LOSS_FILE = "mcqa_loss.json"  # the run's summed step losses up to a checkpoint (train_loss after --resume)


def checkpoint_step(folder: Path) -> int:
    try:
        return int(folder.name.rsplit("-", 1)[-1])
    except ValueError:
        return -1


def is_complete_checkpoint(folder: Path) -> bool:
    try:
        return isinstance(json.loads((folder / TRAINER_STATE).read_text()), dict)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def checkpoints(out: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoint folders under out/checkpoints, oldest first."""
    found = sorted((p for p in (out / CHECKPOINT_DIR).glob("checkpoint-*") if p.is_dir()), key=checkpoint_step)
    complete = [p for p in found if is_complete_checkpoint(p)]
    return complete, [p for p in found if p not in complete]


def _writable_problem(out: Path) -> str | None:
    if out.exists() and not out.is_dir():
        return f"--output-dir {out} is a file, not a folder; choose another --output-dir"
    return unwritable_problem(out, f"--output-dir {out}")


def output_problems(out: Path, overwrite: bool, resume: bool) -> list[str]:
    """What stops a run from writing to `out`; nothing is changed on disk here."""
    bad = _writable_problem(out)
    if bad or not out.exists():
        return [bad] if bad else ([] if not resume else
                                  [f"--resume: {out} does not exist; drop --resume to start a new run"])
    complete, _ = checkpoints(out)
    if resume:
        if not complete:
            return [f"--resume: {out / CHECKPOINT_DIR} holds no complete checkpoint to continue from; drop --resume "
                    "to start again in the same folder"]
        return []
    finished = [name for name in (RUN_FILE, *ADAPTER_FILES) if (out / name).exists()]
    if finished and not overwrite:
        return [f"{out} already holds a run ({', '.join(finished)}); choose another --output-dir, continue it with "
                "--resume, or pass --overwrite to replace its files"]
    if complete and not overwrite:
        return [f"{out} holds an unfinished run (newest complete checkpoint: {complete[-1].name}); continue it with "
                "--resume, or pass --overwrite to start again"]
    return []


# What a run leaves in its folder; --overwrite sets an earlier run's copies aside before a new one starts.
RUN_OUTPUTS = (RUN_FILE, *ADAPTER_FILES, CHECKPOINT_DIR, REPORT_FILE, "eval_report.png", "README.md", "curves.png",
               "progress.jsonl", "status.json", "tensorboard")


def prepare_output_dir(out: Path, resume: bool, overwrite: bool = False) -> Path | None:
    """Set incomplete checkpoints aside (renamed, never deleted) and return the checkpoint to resume from.

    Called once output_problems found nothing: a folder holding only an unfinished attempt (no complete
    checkpoint, no finished run) is reused as it is; with --overwrite, an earlier run's files are moved to
    `.replaced-TIME/` first, so no old checkpoint or record is mistaken for the new run's.
    """
    old = [out / name for name in RUN_OUTPUTS if (out / name).exists()] if overwrite and not resume else []
    if old:
        aside = out / f".replaced-{int(time.time())}"
        aside.mkdir()
        for path in old:
            path.rename(aside / path.name)
        print(f"[output] --overwrite: the earlier run's files are set aside in {aside}", flush=True)
    complete, incomplete = checkpoints(out)
    for folder in incomplete:
        aside = folder.with_name(f".incomplete-{folder.name}-{int(time.time())}")
        folder.rename(aside)
        print(f"[output] {folder} was never completed (a crash or a full disk); set aside as {aside.name}",
              flush=True)
    if not resume and out.exists() and not complete and any(out.iterdir()):
        print(f"[output] {out} holds only an unfinished attempt with no complete checkpoint; reusing it", flush=True)
    return complete[-1] if resume else None


def save_atomically(out: Path, save) -> None:
    """`save(folder)` into a staging folder beside the files, then each file moved into `out` in one rename:
    a crash mid-save leaves the staging folder, never a half-written adapter file."""
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".partial-"))
    try:
        save(staging)
        for item in staging.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def build_record(cfg, *, model_info: dict, world_size: int, relora, data: dict, metrics: dict, device: str,
                 started: float, phases: dict) -> dict:
    """The run record written to mcqa_run.json: enough to reproduce the run and to load it for inference.
    `phases`: seconds per phase so far (load, train, save, final_evaluation); run.py adds the last one."""
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
        **timing(started, phases),
    }


def timing(started: float, phases: dict) -> dict:
    """The record's times: wall time from the command's start to now (run.py rewrites it after the final
    scoring, so that counts), and the seconds of each phase."""
    return {"wall_seconds": round(time.time() - started, 1), "train_seconds": round(phases.get("train", 0.0), 1),
            "phase_seconds": {name: round(seconds, 1) for name, seconds in phases.items()},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def limitations(run: dict) -> str:
    """What the adapter is for and how sure its number is, for the card (and anyone who reads it)."""
    m = run.get("metrics") or {}
    lines = [f"{DISCLAIMER}."]
    if claim := measured_interval(run):
        acc, rows, (lo, hi) = claim
        lines.append(f"Measured letter accuracy: {acc:.1%} (95 % interval {lo:.1%} to {hi:.1%}) on {rows} questions.")
    if m.get("report_vs_always_a"):
        lines.append(f"Against always answering \"A\": {describe_difference(m['report_vs_always_a'], 'always-A')}.")
    lines.append("A small model fine-tuned on exam questions learns the answer-letter prior and some wording; its "
                 "answers are not checked facts and its explanations are unchecked text.")
    return " ".join(lines)


def model_card(run: dict) -> str:
    m, d = run["metrics"], run["data"]
    acc, acc_rows = measured_accuracy(run)
    acc_text = f"{acc:.1%}" if isinstance(acc, (int, float)) and not math.isnan(acc) else "n/a"
    loss_at = f", model of step {m['final_step']}" if m.get("final_step") is not None else ""
    loss = m.get("final_eval_loss")
    loss_text = f"{loss:.4f}" if isinstance(loss, (int, float)) else loss
    phases = f" ({phase_times(run['phase_seconds'])})" if run.get("phase_seconds") else ""
    return f"""---
base_model: {run['base_model']}
library_name: peft
tags: [medmcqa, lora, multiple-choice, medical]
---
# MedMCQA LoRA adapter

LoRA adapter for `{run['base_model']}` trained on MedMCQA ({rows_seen_text(run)}; from `{d['source']}`) with the
`{run['preset']}` preset.

| | |
|---|---|
| letter accuracy on {measured_split(run)} ({acc_rows} rows) | {acc_text} |
| eval loss on {d['eval_split']} ({m.get('final_rows', d.get('eval_rows_used'))} rows){loss_at} | {loss_text} |
| optimizer steps | {m.get('global_steps')} |
| prompt version | `{run['prompt_version']}` |
| 4-bit base | {run['load_in_4bit']} |
| wall time | {run['wall_seconds']} s on {run['device']}{phases} |

Letter accuracy: the argmax of the next-token probabilities of the answer letters after the prompt.
Checkpoint chosen on: {d.get('selection') or d['eval_split']}.
{"Offline stand-in: trained on validation rows outside the held-out set, scored on held-out rows only." if d.get('report_split', d['eval_split']) == 'heldout' else ""}

## Limitations

{limitations(run)}

## Training curves

![training loss and letter accuracy per step](curves.png)

TensorBoard event files are in `tensorboard/` (`tensorboard --logdir THIS_FOLDER`).

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
