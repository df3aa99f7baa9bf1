"""The machine line every benchmark prints first: figures compare only within one run on one machine."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_line() -> str:
    import torch

    from mcqa_core.models.loading import cpu_has_native_bf16

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
