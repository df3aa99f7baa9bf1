"""What every benchmark prints about the machine: the CPU and load line first (figures compare only within one run
on one machine), and the roofline: the measured matmul peak at the model's shapes, and a path's share of it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cpu_line() -> str:
    import torch

    from mcqa_core.models.precision_rule import cpu_has_native_bf16

    info = Path("/proc/cpuinfo")
    name = (
        next(
            (line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")),
            "unknown CPU",
        )
        if info.exists()
        else "unknown CPU"
    )
    return (
        f"cpu: {name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, native bf16 matmuls: "
        f"{'yes' if cpu_has_native_bf16() else 'no'}"
    )


def load_line() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------------- roofline

PEAK_ROWS = (256, 1024, 4096)  # rows per matmul: a scoring batch is ~1,200 (16 prompts), a training micro-batch ~1,100


def mlp_shape(model) -> tuple[int, int]:
    """(hidden, intermediate): the decoder's MLP projection, the matmul that holds most of a Llama's FLOPs."""
    cfg = model.config
    return cfg.hidden_size, cfg.intermediate_size


def matmul_peak(k: int, n: int, rows=PEAK_ROWS, seconds: float = 0.3) -> dict[str, float]:
    """Best GFLOP/s of a plain `F.linear` (x: rows x k, weight: n x k) over `rows`, in fp32 and in bf16, on the
    threads torch uses: the machine's own peak at the model's shapes, which the paths below are measured against."""
    import torch
    import torch.nn.functional as F

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for m in rows:
            x, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
            F.linear(x, w)  # first call: allocation and kernel choice
            reps, t = 0, time.perf_counter()
            while reps < 2 or time.perf_counter() - t < seconds:
                F.linear(x, w)
                reps += 1
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
        peaks[name] = best
    return peaks


def peak_line(peaks: dict[str, float], k: int, n: int, rows=PEAK_ROWS) -> str:
    return (
        f"matmul peak at the model's shapes (x[rows, {k}] @ w[{k}, {n}], rows {rows[0]}-{rows[-1]}): "
        f"fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s ({peaks['bf16'] / peaks['fp32']:.2f}x)"
    )


def linear_macs_per_token(model) -> int:
    """Multiply-adds per token in the model's linear layers (4-bit, full precision and LoRA), the output layer
    left out: `in_features x out_features` summed, so packed 4-bit weights count at their full size."""
    import torch

    head = model.get_output_embeddings()
    return sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head
    )


def roofline_line(label: str, gflops: float, precision: str, peaks: dict[str, float], what: str) -> str:
    share = int(100 * gflops / peaks[precision])  # rounded down, so that 49.8 % reads 49 % and MISSED
    return (
        f"roofline {label}: {gflops:.1f} GFLOP/s in {precision} ({what}) = {share}% of the {precision} matmul "
        f"peak (target >= 50%) {'OK' if share >= 50 else 'MISSED'}"
    )
