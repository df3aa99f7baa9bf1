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

import sys

from ..command_line import command
from ..errors import RunError, refuse


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

    record = run_training(cfg)
    if not is_main_process():  # rank 0 reports and pushes; the other processes only trained
        return 0
    accuracy, rows = measured_accuracy(record)
    print(f"adapter saved to {cfg.train.output_dir} (accuracy {accuracy} on {rows} {cfg.data.eval_split} rows)")
    if cfg.train.push_to_hub:
        from ..shipping.publish import push_folder

        print(f"pushed to {push_folder(cfg.train.output_dir, cfg.train.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
