"""Fine-tune a LoRA adapter for MedMCQA multiple-choice answering (`mcqa-train`, or `python train_adapter.py`).

# seconds, a tiny random Llama: checks the machinery end to end
mcqa-train --preset smoke --output-dir adapters/smoke

# offline, SmolLM2-135M-Instruct in 4-bit on CPU (the time it takes: --help, under --preset)
mcqa-train --preset cpu-demo --output-dir adapters/cpu-demo

# the course recipe on a CUDA GPU (unsloth when installed), data from the hub
mcqa-train --output-dir adapters/llama-3.2-1b-medmcqa

# several processes (DDP; CPU: gloo), and upload when done (token from HF_TOKEN or `hf auth login`)
torchrun --nproc_per_node 2 train_adapter.py --preset smoke --output-dir adapters/ddp --push-to-hub me/smoke

# any setting can be overridden, or read from YAML (flags win)
mcqa-train --preset cpu-demo --max-steps 20 --learning-rate 1e-4 --config run.yaml
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

from ..command_line import command
from ..errors import McqaError, RunError, disk_full, one_line, refuse
from ..models.run_record import CHECKPOINT_DIR
from ..training.status_files import CTRL_C_EXIT, STATUS_FILE, read_status, write_status


def mark_failed(out: Path, error: BaseException) -> str | None:
    """status.json says failed, with the reason in one line, when this process had started the run there; where
    the folder refuses even that (gone read-only), what the error's line should add. Never raises: it runs while
    another error is on its way out."""
    status = read_status(out) or {}
    if status.get("state") != "running" or status.get("pid") != os.getpid():
        return None
    reason = one_line(
        [(str(error) if isinstance(error, McqaError) else f"{type(error).__name__}: {error}") or type(error).__name__]
    )
    try:
        write_status(out, "failed", error=reason)
    except Exception as e:  # a full disk refuses the new file an atomic write needs
        try:
            rewrite_in_place(out / STATUS_FILE, {**status, "state": "failed", "error": reason, "time": time.time()})
        except Exception:
            return f"{out / STATUS_FILE} still says running: it could not be updated ({type(e).__name__}: {e})"
    return None


def rewrite_in_place(path: Path, data: dict) -> None:
    """Write over a file's own blocks, which a full disk still allows (short JSON, so no new block is needed);
    a reader may catch it half-written, which read_status takes for no status until the write ends."""
    with open(path, "r+") as f:
        f.write(json.dumps(data))
        f.truncate()


def disk_full_error(out: Path, error: BaseException) -> RunError:
    """A full disk anywhere in a run, in one line that says what to do next."""
    from ..training.output_folder import checkpoints

    complete, _ = checkpoints(out)
    then = f"rerun with --resume to continue from {complete[-1].name}" if complete else "rerun the same command"
    return RunError(f"the disk is full while writing {out} ({type(error).__name__}: {error}); free space, then {then}")


def ctrl_c_line(argv: list[str] | None, out: str, step: int) -> str:
    """What a run stopped by Ctrl-C kept, and the command that continues it (this one, with --resume)."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--resume", "--overwrite")]
    program = f"python {sys.argv[0]}" if sys.argv[0].endswith("train_adapter.py") else "mcqa-train"
    if not step:
        return (
            f"stopped by Ctrl-C before the first step: nothing was trained; start again with: {program} "
            + shlex.join(args)
        )
    saved = Path(out).expanduser() / CHECKPOINT_DIR / f"checkpoint-{step}"
    return f"stopped by Ctrl-C at step {step}, saved as {saved}; continue with: {program} " + shlex.join(
        [*args, "--resume"]
    )


@command
def main(argv: list[str] | None = None) -> int:
    from ..training.checks import config_problems
    from ..training.settings import load_config

    cfg = load_config(argv, description=__doc__, check=config_problems)
    if cfg.train.push_to_hub:  # before a long run, not after it
        from ..shipping.hub_upload import check_push_ready

        refuse(RunError, "start training", check_push_ready(cfg.train.push_to_hub))
    # Heavy imports (torch, transformers) only after the arguments are known to be good.
    from ..training.distributed import is_main_process, setup_cpu_ddp

    setup_cpu_ddp()  # torchrun / accelerate launch on CPU: DDP over gloo
    from ..models.run_record import measured_accuracy
    from ..training.run import run_training

    try:
        record = run_training(cfg)
    except BaseException as e:  # the Train page reads the reason from status.json
        out = Path(cfg.train.output_dir).expanduser()
        if not isinstance(e, McqaError) and not disk_full(e):
            mark_failed(out, e)
            raise
        error = e if isinstance(e, McqaError) else disk_full_error(out, e)
        if note := mark_failed(out, error):  # the same line says so: the page will still show the run as running
            raise type(error)(f"{error}; {note}") from None
        raise error from None
    if not is_main_process():  # rank 0 reports and pushes; the other processes only trained
        return 0
    if record.get("stopped") and record.get("ctrl_c"):
        print(ctrl_c_line(argv, cfg.train.output_dir, record["metrics"]["global_steps"]), flush=True)
        return CTRL_C_EXIT
    if record.get("stopped"):
        print(f"stopped at step {record['metrics']['global_steps']} with a checkpoint; continue with --resume")
        return 0
    accuracy, rows = measured_accuracy(record)
    split = record["data"].get("report_split")
    print(f"adapter saved to {cfg.train.output_dir} (accuracy {accuracy} on {rows} {split} rows)")
    if cfg.train.push_to_hub:
        from ..shipping.hub_upload import push_folder

        print(f"pushed to {push_folder(cfg.train.output_dir, cfg.train.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
