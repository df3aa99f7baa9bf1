"""Which floating-point precision a run computes in: the recipe's rule (`bf16 = is_bfloat16_supported()`), on CPU
as on GPU.

GPU: bf16 where supported, else fp16. CPU: bf16 where the CPU multiplies bf16 matrices in hardware (AVX512-BF16,
AMX), else fp32; $MCQA_CPU_BF16=0 keeps fp32 on any CPU (scoring and training), e.g. to reproduce an fp32 run.
Training in bf16 is mixed precision: autocast matmuls, fp32 LoRA weights, optimizer state and norms.
"""

from __future__ import annotations

import os

CPU_BF16_ENV = "MCQA_CPU_BF16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX). (`torch.ops.mkldnn.
    _is_mkldnn_bf16_supported()` also says yes to plain AVX512, where bf16 is emulated and gains nothing.)"""
    import torch

    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        )
    except AttributeError:  # a torch without these probes
        return False


def cpu_bf16_allowed() -> bool:
    """bf16 on this CPU: native bf16 matmuls, and not turned off by $MCQA_CPU_BF16=0."""
    return os.environ.get(CPU_BF16_ENV, "1") != "0" and cpu_has_native_bf16()


def compute_dtype():
    """The dtype of a GPU model's weights and of 4-bit layers' compute: bf16 where the GPU supports it, else fp16
    on GPU, fp32 on CPU (where bf16 runs under autocast instead, so weights and norms stay fp32)."""
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def training_precision() -> tuple[str, str]:
    """(precision, why) of a training run on this machine: "bf16", "fp16" or "fp32"."""
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16", "GPU with bf16"
        return "fp16", "GPU without bf16"
    if cpu_bf16_allowed():
        return "bf16", "CPU with native bf16 matmuls (AVX512-BF16 or AMX)"
    if cpu_has_native_bf16():
        return "fp32", f"CPU bf16 turned off by {CPU_BF16_ENV}=0"
    return "fp32", "CPU without native bf16 matmuls"


def precision_flags(precision: str) -> dict:
    """The Trainer's flags for a precision. transformers runs bf16 on CPU only when told the run is on CPU."""
    import torch

    flags = {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    if precision == "bf16" and not torch.cuda.is_available():
        flags["use_cpu"] = True
    return flags


def training_compute_dtype(precision: str):
    """The 4-bit layers' compute dtype in training: a CPU bf16 run dequantizes NF4 straight to bf16."""
    import torch

    return torch.bfloat16 if precision == "bf16" and not torch.cuda.is_available() else compute_dtype()
