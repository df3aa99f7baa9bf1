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

_STOP = {"requested": False}


def install_stop_handler() -> None:
    """SIGTERM (the Train page's Stop) sets a flag instead of killing the process; the trainer's StopOnSignal
    callback acts on it at the end of the step, and a run still loading stops before its first step."""
    import signal

    def handle(signum, frame):
        _STOP["requested"] = True

    _STOP["requested"] = False  # a Stop of an earlier run in this process is not one of this run
    signal.signal(signal.SIGTERM, handle)


def stop_requested() -> bool:
    return _STOP["requested"]


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
