"""Several processes, one adapter: data parallelism through accelerate / torchrun (DDP), nothing home-made.

    accelerate launch --multi_gpu --num_processes 2 train_adapter.py --preset smoke --output-dir adapters/ddp
    torchrun --nproc_per_node 2 train_adapter.py --preset smoke --output-dir adapters/ddp
    accelerate launch --config_file configs/accelerate_deepspeed_zero2.yaml train_adapter.py ...

The Trainer reads the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK) and wraps the model in
DDP (gloo on CPU, NCCL on GPUs). Each process holds a full copy of the model, takes its share of
every optimizer step's rows, and gradients are averaged, so the global batch is processes x
--per-device-train-batch-size x --gradient-accumulation-steps. Only rank 0 writes the adapter folder,
mcqa_run.json and the model card; checkpoints are the Trainer's (also rank 0).

4-bit (bitsandbytes) bases are placed with `device_map={"": LOCAL_RANK}` (models/loading.py, load_base_model):
one whole copy per GPU, as DDP needs; a 4-bit model cannot be moved after loading.

unsloth across GPUs: unsloth's documentation describes multi-GPU training through `accelerate
launch` (DDP) and DeepSpeed/FSDP as work in progress ("official multi-GPU support soon"). This
project has not verified that combination, so it refuses unsloth with several processes and trains
multi-process on the transformers + PEFT path (`--use-unsloth no`); one process keeps unsloth.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run, from the launcher's environment (1 when launched with plain python)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def parallel_problems(cfg) -> list[str]:
    """Settings that several processes cannot run with; empty for a single process."""
    n = world_size()
    if n <= 1:
        return []
    problems = []
    use = cfg.model.use_unsloth
    if use == "yes" or use == "auto" and _unsloth_would_run():
        problems.append(
            f"unsloth with {n} processes: this project trains multi-process on transformers+peft only "
            "(unsloth's multi-GPU path is not verified here); pass --use-unsloth no, or launch one process"
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") and cfg.model.load_in_4bit:
        problems.append(
            "FSDP with a 4-bit base is not supported here (bitsandbytes weights need a quant_storage "
            "dtype FSDP can shard); pass --no-load-in-4bit, or use configs/accelerate_ddp.yaml / "
            "configs/accelerate_deepspeed_zero2.yaml for QLoRA"
        )
    return problems


def _unsloth_would_run() -> bool:
    from ..models.loading import has_cuda, has_unsloth

    return has_cuda() and has_unsloth()


def setup_cpu_ddp() -> None:
    """On a machine without CUDA, let a multi-process launch train as DDP over gloo.

    The Trainer (through accelerate's PartialState) treats a torchrun launch as distributed only on an
    accelerator, unless told to use the CPU; without this, each CPU process would silently train alone.
    """
    if world_size() > 1:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("ACCELERATE_USE_CPU", "true")
