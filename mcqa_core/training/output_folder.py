"""The output-folder policy: what counts as a run, which checkpoints are complete, and saves that never leave
half a file.

A folder holds a finished run once `mcqa_run.json` is written (last, atomically); before that it holds an
unfinished run (complete checkpoints: --resume continues it) or only an unfinished attempt (reused). One run at a
time: a run holds an operating-system lock on the folder's `.run.lock` (flock) from before it changes anything
until it ends (then the file goes); the kernel drops it when the process ends, however it ends, so no crash
leaves a lock that still holds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..command_line import unwritable_problem
from ..errors import RunError
from ..models.run_record import ADAPTER_FILES, CHECKPOINT_DIR, REPORT_FILE, RUN_FILE
from .distributed import is_main_process, world_size
from .status_files import CURVES_FILE, PROGRESS_FILE, STATUS_FILE, process_started, read_status, write_status

# A checkpoint is complete once the Trainer has written trainer_state.json, its last file before it
# rotates older checkpoints away; a crash or a full disk before that leaves a folder without it.
TRAINER_STATE = "trainer_state.json"
LOSS_FILE = "mcqa_loss.json"  # the run's summed step losses up to a checkpoint (train_loss after --resume)
RUN_LOCK = ".run.lock"  # the running process's id; its flock is the lock (a crash may leave the file, unheld)


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
    if not bad and (holder := lock_holder(out)) is not None and not _same_launch(holder):
        return [in_use(out, holder)]
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
    if not resume and out.exists() and not complete and any(p.name != RUN_LOCK for p in out.iterdir()):
        print(f"[output] {out} holds only an unfinished attempt with no complete checkpoint; reusing it", flush=True)
    return complete[-1] if resume else None


def lock_holder(out: Path) -> int | None:
    """The process id of the live run that holds `out` (0 when it has not written its id yet), or None when no
    run does. Only looks: nothing is created or changed."""
    import fcntl

    try:
        fd = os.open(out / RUN_LOCK, os.O_RDONLY)
    except OSError:  # no lock file: no run has held this folder since the lock came in
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(fd)
    finally:
        os.close(fd)  # also lets go of the shared lock, held for an instant
    return None


def _pid_in(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _same_launch(pid: int) -> bool:
    """Whether `pid` is another process of this launch (torchrun's and accelerate's processes share a parent)."""
    if world_size() <= 1 or not pid:
        return False
    import psutil

    try:
        return psutil.Process(pid).ppid() == os.getppid()
    except psutil.Error:
        return False


def in_use(out: Path, pid: int) -> str:
    """The refusal of a second run into a folder a live run holds, naming that run."""
    started = process_started(pid) if pid else None
    since = f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
    who = f"process {pid}{since}" if pid else "a process that has not written its id yet"
    return (
        f"{out} is in use by a live run ({who}); wait for it to end, stop it (kill -TERM {pid or 'PID'} saves a "
        "checkpoint), or choose another --output-dir"
    )


def hold_output_dir(out: Path):
    """Take `out`'s run lock for this run (only the main process of several takes it); returns what gives it back
    and removes the file, so a finished folder holds only the run's files. RunError naming the live run when
    another run holds it."""
    if not is_main_process():
        return lambda: None
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_LOCK
    while True:
        fd = _locked(path, out)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except OSError:
            pass
        os.close(fd)  # a run that just ended removed the file this one locked: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release() -> None:
        Path(path).unlink(missing_ok=True)  # while still held: whoever opens it next makes a new one
        os.close(fd)

    return release


def _locked(path: Path, out: Path) -> int:
    """An open descriptor of `path` with its exclusive flock taken, or RunError naming the live run."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunError(
            f"cannot lock {path} ({type(e).__name__}: {e}); remove it or choose another --output-dir"
        ) from None
    for wait in (0.05, 0.2, None):  # a look by lock_holder holds it for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if wait is None:
                pid = _pid_in(fd)
                os.close(fd)
                raise RunError(f"cannot start training: {in_use(out, pid)}") from None
            time.sleep(wait)


def aborted(out: Path) -> str:
    """A run ended at once by a second Ctrl-C: status.json says what `out` keeps, and so does the line returned."""
    step = (read_status(out) or {}).get("step")
    if (out / RUN_FILE).exists():  # a finished run, cut short in its final report
        write_status(out, "done", step=step)
        return f"aborted: the trained adapter is kept in {out}, without its final report (mcqa-eval --adapter {out})"
    complete, _ = checkpoints(out)
    if complete:
        write_status(out, "stopped", step=checkpoint_step(complete[-1]))
        return f"aborted: {complete[-1]} is kept; continue from it with the same command and --resume"
    write_status(out, "failed", error="aborted by a second Ctrl-C before the first checkpoint")
    return f"aborted before the first checkpoint: nothing is kept in {out}; run the same command again to start over"


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
