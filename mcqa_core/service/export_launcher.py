"""Exports started from the app: `mcqa-export` in its own process, like a training run, one at a time per
exports folder, seen through files: the lock `.export.lock` and each export's log. The command is the one a
user would type, so the app writes exactly what `mcqa-export` writes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError
from ..models.run_record import RUN_FILE, write_json_atomic
from ..training.status_files import process_started
from .train_launcher import clean_log, live_process

EXPORT_LOCK = ".export.lock"
# What the page offers: (label, mcqa-export flags). Merged 16-bit for vLLM and transformers; GGUF for
# llama.cpp and Ollama (a Modelfile beside it), each checked against the adapter's own answers.
EXPORT_FORMATS = {
    "merged 16-bit (safetensors, bf16)": ["--dtype", "bfloat16"],
    "GGUF f16 + Ollama Modelfile": ["--format", "gguf", "--gguf-types", "f16"],
    "GGUF q8_0 + Ollama Modelfile": ["--format", "gguf", "--gguf-types", "q8_0"],
}


def can_publish() -> bool:
    """Whether the server has a hub token (only its presence: the token itself never leaves huggingface_hub)."""
    from ..shipping.hub_upload import hub_token

    return bool(hub_token())


def export_folder_name(adapter: Path, fmt: str) -> str:
    kind = "gguf-" + EXPORT_FORMATS[fmt][-1] if "gguf" in EXPORT_FORMATS[fmt] else "merged"
    return f"{Path(adapter).name}-{kind}-{time.strftime('%m%d-%H%M')}"


def exports_dir(adapters_dir: Path) -> Path:
    """Beside the adapters folder: adapters/ -> exports/."""
    return Path(adapters_dir).resolve().parent / "exports"


CHECK_ROWS = 64  # rows the export answers with the adapter and with the exported model, compared


def gguf_here() -> tuple[bool, bool, str | None]:
    """(GGUF can be written here, its letters can be checked in llama-server here, the one line that says what
    is missing and how to add it, or None)."""
    from ..shipping import llama_cpp

    convert, check = llama_cpp.converter() is not None, llama_cpp.server_binary() is not None
    if not convert:
        return False, False, f"GGUF needs llama.cpp's converter, which is not installed: {llama_cpp.CONVERTER_HINT}"
    if not check:
        return (
            True,
            False,
            (
                "The GGUF's letters are not checked against the adapter's here: that runs it in llama-server, which is "
                "not installed (`make setup-serving` builds it, minutes)"
            ),
        )
    return True, True, None


def export_argv(
    adapter: Path, out: Path, fmt: str, check_rows: int | None = None, repo: str | None = None
) -> list[str]:
    """`mcqa-export`'s arguments; `check_rows` None: CHECK_ROWS, or 0 for a GGUF where llama-server is missing."""
    if check_rows is None:
        check_rows = 0 if "gguf" in EXPORT_FORMATS[fmt] and not gguf_here()[1] else CHECK_ROWS
    argv = ["--adapter", str(adapter), "--out", str(out), "--check-rows", str(check_rows), *EXPORT_FORMATS[fmt]]
    return argv + (["--push-to-hub", repo] if repo else [])


def failure_line(lines: list[str]) -> str | None:
    """The command's own one-line error (`error: ...`), whole, from its log."""
    return next((ln[len("error: ") :] for ln in reversed(lines) if ln.startswith("error: ")), None)


def command_line(argv: list[str]) -> str:
    return shlex.join([".venv/bin/mcqa-export", *argv])


def start_export(argv: list[str], folder: Path) -> dict:
    """Start `mcqa-export argv` in the background, its log in `folder`; returns the lock it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    if held := active_export(folder):
        raise RunError(f"an export into {held['out']} is running (process {held['pid']}); wait for it to end")
    out = Path(argv[argv.index("--out") + 1])
    log_path = folder / f"{out.name}.log"
    with log_path.open("w") as log:
        log.write(f"$ {command_line(argv)}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "mcqa_core.cli.export_command", *argv],
            cwd=Path(__file__).resolve().parents[2],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the page and the server, as training does
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    held = {
        "pid": process.pid,
        "pid_started": process_started(process.pid),
        "out": str(out),
        "log": str(log_path),
        "started": time.time(),
    }
    write_json_atomic(folder / EXPORT_LOCK, held)
    return held


def _lock(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / EXPORT_LOCK).read_text())
    except (OSError, ValueError):
        return None


def active_export(folder: Path) -> dict | None:
    """The lock of the export in progress; a lock whose process ended is left for `export_view` to read."""
    held = _lock(folder)
    return held if held is not None and live_process(held) is not None else None


@dataclass
class ExportView:
    out: Path
    state: str  # running | done | failed
    log_tail: list
    seconds: float
    error: str | None = None  # a failed export's one-line error, whole


def export_view(folder: Path) -> ExportView | None:
    """The newest export started from the app: running while its process lives, done once its folder holds
    the record (the export writes it last, atomically), failed otherwise (the log's end says why)."""
    if (held := _lock(folder)) is None:
        return None
    out, log = Path(held["out"]), Path(held["log"])
    lines = clean_log(log.read_text(errors="replace")) if log.exists() else []
    if live_process(held) is not None:
        state = "running"
    else:
        state = "done" if _exported(out) else "failed"
    seconds = (log.stat().st_mtime if state != "running" and log.exists() else time.time()) - held["started"]
    error = failure_line(lines) if state == "failed" else None
    return ExportView(out, state, [line for line in lines if line.strip()][-12:], seconds, error)


def _exported(out: Path) -> bool:
    try:
        return "merged" in json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return False
