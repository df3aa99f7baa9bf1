"""A training run seen from outside its process: `status.json` (running, done, stopped or failed, with
the reason, the process id and its start time) and `progress.jsonl` (one line per logged step, evaluation
and checkpoint). The Train page reads them; nothing is shared in memory, so a reloaded page, another
browser or a restarted server sees the same run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..models.run_record import write_json_atomic

_STOP = {"requested": False, "ctrl_c": False}
CTRL_C_EXIT = 130  # a shell's code for a process ended by Ctrl-C (128 + SIGINT)
CTRL_C_NOTICE = (
    "\n[stop] Ctrl-C: a checkpoint at the end of this step, then the run stops; Ctrl-C again aborts at once\n"
)


def install_stop_handler(abort=None):
    """SIGTERM (the Train page's Stop) and a first Ctrl-C (SIGINT) set a flag instead of ending the process: the
    trainer's StopOnSignal callback acts on it at the end of the step (a checkpoint, then a clean exit), and a run
    still loading stops before its first step. A second Ctrl-C aborts at once: `abort()` settles status.json and
    returns the line that says what was kept, and the process exits 130. Returns what puts the earlier handlers
    back (a run in a longer-lived process, such as a test, gives Ctrl-C back when it ends)."""
    import signal

    def handle(signum, frame):
        if signum == signal.SIGINT and _STOP["ctrl_c"]:
            _abort_now(abort)
        if signum == signal.SIGINT:
            _STOP["ctrl_c"] = True
            # os.write, not print: the handler may run inside a print to the same stream (a progress bar)
            os.write(2, CTRL_C_NOTICE.encode())
        _STOP["requested"] = True

    _STOP.update(requested=False, ctrl_c=False)  # a Stop of an earlier run in this process is not one of this run
    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    return lambda: [signal.signal(s, h) for s, h in previous.items() if h is not None]  # None: set outside Python


def _abort_now(abort) -> None:
    try:
        line = abort() if abort else "aborted by a second Ctrl-C"
    except Exception as e:  # the folder may be what failed; the process ends all the same
        line = f"aborted by a second Ctrl-C ({type(e).__name__}: {e})"
    os.write(2, f"\n{line}\n".encode())
    os._exit(CTRL_C_EXIT)  # at once: no clean-up that could wait on the step in progress


def stop_requested() -> bool:
    return _STOP["requested"]


def ctrl_c_pressed() -> bool:
    """Whether this run's stop came from Ctrl-C (exit 130) rather than the Train page's Stop (exit 0)."""
    return _STOP["ctrl_c"]


PROGRESS_FILE = "progress.jsonl"
STATUS_FILE = "status.json"
CURVES_FILE = "curves.png"


def process_started(pid: int) -> float | None:
    """When process `pid` started (None if there is none): with the pid, it names one process, since a pid is
    reused once its process has ended."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def write_status(out: Path, state: str, **fields) -> None:
    """running | done | stopped | failed, with the process id and start time and, for failed, the one-line
    reason."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / STATUS_FILE,
        {
            "state": state,
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "time": time.time(),
            **fields,
        },
    )


def read_status(out: Path) -> dict | None:
    try:
        return json.loads((Path(out) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def read_progress(out: Path) -> list[dict]:
    """The progress lines written so far (a line being written is skipped until it is whole)."""
    try:
        lines = (Path(out) / PROGRESS_FILE).read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
