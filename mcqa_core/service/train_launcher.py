"""Training runs started from the app: each is `train_adapter.py` in its own process (its own session, so
it outlives the page and the server), one at a time per adapters folder, seen only through files: the lock
`.training.lock` in the adapters folder, and status.json, progress.jsonl and train.log in the run's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RunError, SettingsError, refuse
from ..models.run_record import write_json_atomic
from ..training.output_folder import RUN_LOCK, checkpoints, lock_holder
from ..training.status_files import STATUS_FILE, process_started, read_progress, read_status

LOCK_FILE = ".training.lock"
LOG_FILE = "train.log"
LAUNCH_FILE = "launch.json"  # the command line a run was started with, for Resume
LAUNCH_MARK = "=== launched"  # begins each launch's part of train.log
SCRIPT = Path(__file__).resolve().parents[2] / "train_adapter.py"


def command_line(argv: list[str]) -> str:
    """The command as a user would type it in a terminal, from the repository."""
    return shlex.join([".venv/bin/python", "train_adapter.py", *argv])


def check(argv: list[str]):
    """The RunConfig of a command line, or every problem with it in one RunError/SettingsError, in well under a
    second (no torch)."""
    from ..training.checks import start_problems
    from ..training.settings import load_config

    try:
        cfg = load_config(argv)
    except SystemExit:  # argparse already printed to stderr; say it in one line here
        raise SettingsError(f"the settings are not valid: {command_line(argv)}") from None
    refuse(RunError, "start training", start_problems(cfg))
    return cfg


def live_process(held: dict):
    """The lock's process, only while its pid still names the process the lock recorded (same start time; a pid
    is reused once its process ends) and it has not finished (a zombie the server has not reaped yet)."""
    import psutil

    try:
        proc = psutil.Process(int(held.get("pid", -1)))
        started = float(held["pid_started"])
        if abs(proc.create_time() - started) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, KeyError, TypeError, ValueError):  # gone, or a lock without a start time
        return None


def active_run(adapters_dir: Path) -> dict | None:
    """The lock of the run in progress; a lock whose process died (or whose pid another process now has) is
    cleared. Any content that is not a lock record (damaged, truncated, a directory) counts as no lock, unless a
    live run holds one of the folders' own operating-system lock: then that run is the one in progress."""
    lock = Path(adapters_dir) / LOCK_FILE
    try:
        held = json.loads(lock.read_text())
    except (OSError, ValueError):
        held = None
    if not _is_record(held):
        return _run_holding_a_folder(Path(adapters_dir))
    status = read_status(Path(held["output_dir"])) or {}
    finished = status.get("pid") == held.get("pid") and status.get("state") in ("done", "stopped", "failed")
    if live_process(held) is not None and not finished:  # a finished run's process may linger a moment
        return held
    with contextlib.suppress(OSError):
        lock.unlink(missing_ok=True)
    return None


def _is_record(held) -> bool:
    pid, out = (held.get("pid"), held.get("output_dir")) if isinstance(held, dict) else (None, None)
    return isinstance(pid, int) and not isinstance(pid, bool) and isinstance(out, str) and bool(out)


def _run_holding_a_folder(adapters_dir: Path) -> dict | None:
    """A live training process that holds an adapter folder's own lock (training/output_folder.py), as a lock
    record, or None."""
    try:
        folders = [p for p in adapters_dir.iterdir() if (p / RUN_LOCK).is_file()]
    except OSError:
        return None
    for folder in folders:
        if pid := lock_holder(folder):
            return {"pid": pid, "pid_started": process_started(pid), "output_dir": str(folder)}
    return None


def lock_problem(adapters_dir: Path) -> str | None:
    """What stops the page from writing the lock: something that is not a file in its place."""
    lock = Path(adapters_dir) / LOCK_FILE
    if lock.exists() and not lock.is_file():
        return f"{lock} is not a file (a folder?); remove it, then start again"
    return None


def start(argv: list[str], adapters_dir: Path) -> dict:
    """Check, then start `train_adapter.py argv` in the background; returns the lock it holds."""
    adapters_dir = Path(adapters_dir)
    if held := active_run(adapters_dir):
        raise RunError(
            f"a run is already training into {held['output_dir']} (process {held['pid']}); wait for it or stop it first"
        )
    if problem := lock_problem(adapters_dir):
        raise RunError(problem)
    out = Path(check(argv).train.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / LAUNCH_FILE, {"argv": [a for a in argv if a not in ("--resume", "--overwrite")]})
    with (out / LOG_FILE).open("a") as log:
        log.write(f"{LAUNCH_MARK} {time.strftime('%Y-%m-%d %H:%M:%S')}: {command_line(argv)}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *argv],
            cwd=SCRIPT.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    # This launch's own state from the first second: not the last attempt's "stopped" or "failed".
    pid_started = process_started(process.pid)
    write_json_atomic(
        out / STATUS_FILE, {"state": "starting", "pid": process.pid, "pid_started": pid_started, "time": time.time()}
    )
    held = {
        "pid": process.pid,
        "pid_started": pid_started,
        "output_dir": str(out),
        "argv": argv,
        "started": time.time(),
    }
    adapters_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(adapters_dir / LOCK_FILE, held)
    return held


def stop(adapters_dir: Path) -> bool:
    """Ask the running trainer to save a checkpoint and exit (SIGTERM, handled in the trainer). Only the process
    the lock recorded is signalled, never another that has its pid since."""
    import psutil

    held = active_run(adapters_dir)
    proc = live_process(held) if held else None
    if proc is None:
        return False
    try:
        proc.send_signal(signal.SIGTERM)  # psutil checks again that the pid is still that process
    except psutil.Error:
        return False
    return True


def resume(out: Path, adapters_dir: Path) -> dict:
    """Start the same command again with --resume (the newest complete checkpoint)."""
    try:
        argv = json.loads((Path(out) / LAUNCH_FILE).read_text())["argv"]
    except (OSError, ValueError, KeyError):
        raise RunError(
            f"{out} was not started from the app ({LAUNCH_FILE} is missing); resume it with "
            f"`python train_adapter.py ... --output-dir {out} --resume`"
        ) from None
    return start([*argv, "--resume"], adapters_dir)


@dataclass
class RunView:
    """What the Train page draws for one run folder."""

    out: Path
    state: str  # running | done | stopped | failed | starting
    error: str | None = None
    step: int = 0
    max_steps: int = 0
    elapsed: float = 0.0
    losses: list = field(default_factory=list)  # (step, loss)
    evals: list = field(default_factory=list)  # (step, eval_loss, accuracy)
    always_a: float | None = None
    log_tail: list = field(default_factory=list)
    checkpoint: str | None = None  # the newest complete checkpoint, which Resume continues from
    phase: str = "train"  # loading, step-0 check, train, evaluation (dev rows), report (after the last step)
    phase_done: int = 0
    phase_total: int = 0

    @property
    def base_accuracy(self) -> float | None:
        """The step-0 evaluation: the base model itself (the LoRA starts as a no-op)."""
        return next((a for s, _, a in self.evals if s == 0), None)

    @property
    def remaining(self) -> float | None:
        """Seconds left at the run's pace so far (its earlier sessions included); none unless it is training."""
        if self.state != "running" or self.step <= 0 or self.max_steps <= self.step or self.elapsed <= 0:
            return None
        return self.elapsed / self.step * (self.max_steps - self.step)


def _log_tail(path: Path, size: int = 64 * 1024) -> list[str]:
    """The log's last `size` bytes as lines: the page polls every second, and progress bars make logs long."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return clean_log(text)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_log(text: str) -> list[str]:
    """Log text as a terminal would show it: escape codes gone, and a line that progress bars rewrote with "\\r"
    reduced to its last state."""
    return [ANSI.sub("", line.rstrip("\r").rsplit("\r", 1)[-1]) for line in text.split("\n")]


def view(out: Path, adapters_dir: Path, tail: int = 15) -> RunView:
    out = Path(out)
    status = read_status(out) or {}
    state = status.get("state", "starting")
    held = active_run(adapters_dir)
    running_here = held is not None and Path(held["output_dir"]) == out.expanduser()
    records = read_progress(out)
    log = _log_tail(out / LOG_FILE)
    error = status.get("error")
    starts = [i for i, ln in enumerate(log) if ln.startswith(LAUNCH_MARK)]
    log = log[starts[-1] :] if starts else log  # this launch's lines only
    if state in ("running", "starting") and not running_here:
        # Refused before it wrote a status (bad data, say): the command's own one-line error is in the log.
        said = next((ln[len("error: ") :] for ln in reversed(log) if ln.startswith("error: ")), None)
        state, error = "failed", error or said or "the training process ended without finishing; see its log"
    begin = next((r for r in records if r.get("event") == "begin"), {})
    last = records[-1] if records else {}
    log_tail = log[-tail:]
    return RunView(
        out,
        state,
        error,
        step=int(last.get("step", 0)),
        max_steps=int(last.get("max_steps", 0)),
        elapsed=float(last.get("time", 0.0)),
        losses=[(r["step"], r["loss"]) for r in records if r.get("event") == "log"],
        evals=[(r["step"], r.get("eval_loss"), r.get("accuracy")) for r in records if r.get("event") == "eval"],
        always_a=begin.get("always_a"),
        log_tail=[ln for ln in log_tail if ln.strip()],
        checkpoint=next((c.name for c in reversed(checkpoints(out)[0])), None),
        phase=_phase(status, state, records),
        phase_done=int(status.get("done", 0)),
        phase_total=int(status.get("total", 0)),
    )


def _phase(status: dict, state: str, records: list[dict]) -> str:
    """loading (the model and rows), step-0 check (the dev rows scored before the first step), train, report."""
    if state == "starting":
        return "loading"
    if state != "running":
        return "train"
    phase = status.get("phase", "train")
    started = any(r.get("event") == "begin" for r in records)
    if phase == "train" and not started:
        return "loading"  # the trainer has not begun: the model and the rows are still loading
    if phase == "train" and started and not any(r.get("event") in ("eval", "log") for r in records):
        return "step-0 check"
    return phase


def recent_runs(adapters_dir: Path) -> list[Path]:
    """Run folders started from the app, newest first."""
    root = Path(adapters_dir)
    found = [p for p in root.iterdir() if (p / LAUNCH_FILE).exists()] if root.is_dir() else []
    return sorted(found, key=lambda p: (p / LAUNCH_FILE).stat().st_mtime, reverse=True)
