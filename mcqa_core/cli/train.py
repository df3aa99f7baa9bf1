"""Fine-tune a LoRA adapter for MedMCQA multiple-choice answering (`mcqa-train`, or `python train_adapter.py`).

    # seconds, a tiny random Llama: checks the machinery end to end
    mcqa-train --preset smoke --output-dir adapters/smoke

    # offline, SmolLM2-135M in 4-bit on CPU (the time it takes: --help, under --preset)
    mcqa-train --preset cpu-demo --output-dir adapters/cpu-demo

    # the course recipe on a CUDA GPU (unsloth when installed), data from the hub
    mcqa-train --output-dir adapters/llama-3.2-1b-medmcqa

    # several processes (DDP; CPU: gloo), and upload when done (token from HF_TOKEN or `hf auth login`)
    torchrun --nproc_per_node 2 train_adapter.py --preset smoke --output-dir adapters/ddp --push-to-hub me/smoke

    # any setting can be overridden, or read from YAML (flags win)
    mcqa-train --preset cpu-demo --max-steps 20 --learning-rate 1e-4 --config run.yaml
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..command_line import command
from ..errors import McqaError, RunError, one_line, refuse
from ..training.run_status import read_status, write_status


def mark_failed(out: Path, error: BaseException) -> None:
    """status.json says failed, with the reason in one line, when this process had started the run there."""
    status = read_status(out) or {}
    if status.get("state") == "running" and status.get("pid") == os.getpid():
        reason = str(error) if isinstance(error, McqaError) else f"{type(error).__name__}: {error}"
        write_status(out, "failed", error=one_line([reason or type(error).__name__]))


@command
def main(argv: list[str] | None = None) -> int:
    from ..training.settings import load_config

    cfg = load_config(argv, description=__doc__)
    if cfg.train.push_to_hub:  # before a long run, not after it
        from ..shipping.publish import check_push_ready

        refuse(RunError, "start training", check_push_ready(cfg.train.push_to_hub))
    # Heavy imports (torch, transformers) only after the arguments are known to be good.
    from ..training.distributed import is_main_process, setup_cpu_ddp

    setup_cpu_ddp()  # torchrun / accelerate launch on CPU: DDP over gloo
    from ..models.run_record import measured_accuracy
    from ..training.run import run_training

    try:
        record = run_training(cfg)
    except BaseException as e:  # the Train page reads the reason from status.json
        mark_failed(Path(cfg.train.output_dir).expanduser(), e)
        raise
    if not is_main_process():  # rank 0 reports and pushes; the other processes only trained
        return 0
    if record.get("stopped"):
        print(f"stopped at step {record['metrics']['global_steps']} with a checkpoint; continue with --resume")
        return 0
    accuracy, rows = measured_accuracy(record)
    print(f"adapter saved to {cfg.train.output_dir} (accuracy {accuracy} on {rows} {record['data'].get('report_split')} rows)")
    if cfg.train.push_to_hub:
        from ..shipping.publish import push_folder

        print(f"pushed to {push_folder(cfg.train.output_dir, cfg.train.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
