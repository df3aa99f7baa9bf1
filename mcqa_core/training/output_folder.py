"""The output-folder policy: what counts as a run, which checkpoints are complete, and saves that never leave
half a file.

A folder holds a finished run once `mcqa_run.json` is written (last, atomically); before that it holds an
unfinished run (complete checkpoints: --resume continues it) or only an unfinished attempt (reused).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..command_line import unwritable_problem
from ..models.run_record import ADAPTER_FILES, CHECKPOINT_DIR, REPORT_FILE, RUN_FILE
from .status_files import CURVES_FILE, PROGRESS_FILE, STATUS_FILE

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
        return (
            [bad]
            if bad
            else ([] if not resume else [f"--resume: {out} does not exist; drop --resume to start a new run"])
        )
    complete, _ = checkpoints(out)
    if resume:
        if not complete:
            return [
                f"--resume: {out / CHECKPOINT_DIR} holds no complete checkpoint to continue from; drop --resume "
                "to start again in the same folder"
            ]
        return []
    finished = [name for name in (RUN_FILE, *ADAPTER_FILES) if (out / name).exists()]
    if finished and not overwrite:
        return [
            f"{out} already holds a run ({', '.join(finished)}); choose another --output-dir, continue it with "
            "--resume, or pass --overwrite to replace its files"
        ]
    if complete and not overwrite:
        return [
            f"{out} holds an unfinished run (newest complete checkpoint: {complete[-1].name}); continue it with "
            "--resume, or pass --overwrite to start again"
        ]
    return []


# What a run leaves in its folder; --overwrite sets an earlier run's copies aside before a new one starts.
RUN_OUTPUTS = (
    RUN_FILE,
    *ADAPTER_FILES,
    CHECKPOINT_DIR,
    REPORT_FILE,
    "eval_report.png",
    "README.md",
    CURVES_FILE,
    PROGRESS_FILE,
    STATUS_FILE,
    "tensorboard",
    "mlruns",
    "wandb",
)


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
        print(f"[output] {folder} was never completed (a crash or a full disk); set aside as {aside.name}", flush=True)
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
