"""Fine-tune a LoRA adapter for MedMCQA multiple-choice answering.

    # seconds, a tiny random Llama: checks the machinery end to end
    python train_adapter.py --preset smoke --output-dir adapters/smoke

    # offline, SmolLM2-135M in 4-bit on CPU, at most 30 minutes on 2 cores
    python train_adapter.py --preset cpu-demo --data-dir ../shared/data/medmcqa --output-dir adapters/cpu-demo

    # the course recipe on a CUDA GPU (unsloth when installed), data from the hub
    python train_adapter.py --output-dir adapters/llama-3.2-1b-medmcqa

    # several processes (DDP; CPU: gloo), and upload when done (token from HF_TOKEN or `hf auth login`)
    torchrun --nproc_per_node 2 train_adapter.py --preset smoke --output-dir adapters/ddp --push-to-hub me/smoke

    # any setting can be overridden, or read from YAML (flags win)
    python train_adapter.py --preset cpu-demo --max-steps 20 --learning-rate 1e-4 --config run.yaml
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from mcqa_core.config import load_config

    try:
        cfg = load_config(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.train.push_to_hub:  # before a long run, not after it
        from mcqa_core.publish import check_push_ready

        problems = check_push_ready(cfg.train.push_to_hub)
        if problems:
            print("error: cannot start training:\n  - " + "\n  - ".join(problems), file=sys.stderr)
            return 2
    # Heavy imports (torch, transformers) only after the arguments are known to be good.
    from mcqa_core.distributed import is_main_process, setup_cpu_ddp

    setup_cpu_ddp()  # torchrun / accelerate launch on CPU: DDP over gloo
    from mcqa_core.data import DataError
    from mcqa_core.modeling import ModelError
    from mcqa_core.training import RunError, run_training

    try:
        record = run_training(cfg)
    except (DataError, ModelError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not is_main_process():  # rank 0 reports and pushes; the other processes only trained
        return 0
    print(f"adapter saved to {cfg.train.output_dir} (accuracy {record['metrics']['final_accuracy']})")
    if cfg.train.push_to_hub:
        from mcqa_core.publish import push_and_report

        return push_and_report(cfg.train.output_dir, cfg.train.push_to_hub)
    return 0

if __name__ == "__main__":
    sys.exit(main())
