"""What a run's method cost, for mcqa_run.json, the card, the sweep and the leaderboard: trainable parameters
(a count and a share of the model), peak memory while training, training tokens per second, and the size of
what the folder saves."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from ..evaluation.leaderboard import BASE_METHOD
from ..models.tuners import tuner_for
from ..models.tuners.tuner import WEIGHTS_FILE


def peak_memory() -> tuple[int, str]:
    """(bytes, what was measured): the CUDA allocator's peak on a GPU, else the process's peak resident memory."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024), "peak resident memory of the training process"


def method_costs(method: str, model_info: dict, tokens: int, train_seconds: float, out: Path) -> dict:
    """The costs block of mcqa_run.json. `tokens`: the non-padding tokens this session trained on; `train_seconds`:
    the forward and backward passes that took (no evaluation, no checkpoint)."""
    trainable, total = model_info.get("trainable_parameters"), model_info.get("total_parameters")
    memory, memory_kind = peak_memory()
    weights = Path(out) / WEIGHTS_FILE
    return {
        "peft_method": method,
        "title": tuner_for(method).title,
        "mergeable": tuner_for(method).mergeable,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_share": round(trainable / total, 6) if trainable and total else None,
        "saved_bytes": weights.stat().st_size if weights.exists() else None,
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
        "train_tokens": tokens,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(tokens / train_seconds, 1) if train_seconds > 0 else None,
        "gradient_checkpointing": model_info.get("gradient_checkpointing"),
    }


def costs_line(costs: dict) -> str:
    """'subset: 3.5 M trainable (2.6 %), saved 14.2 MB, peak 1.20 GB, 230 tokens/s'"""
    parts = [f"{costs['peft_method']}:"]
    if costs.get("trainable_parameters") is not None:
        share = f" ({costs['trainable_share']:.2%})" if costs.get("trainable_share") else ""
        parts.append(f"{human(costs['trainable_parameters'], '')} trainable{share},")
    if costs.get("saved_bytes") is not None:
        parts.append(f"saved {human(costs['saved_bytes'], 'B')},")
    if costs.get("peak_memory_bytes"):
        parts.append(f"peak memory {human(costs['peak_memory_bytes'], 'B')},")
    if costs.get("tokens_per_second"):
        parts.append(f"{costs['tokens_per_second']:.0f} training tokens/s")
    return " ".join(parts).rstrip(",")


def human(n: float, unit: str) -> str:
    for size, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f} {prefix}{unit}".rstrip()
    return f"{n:g} {unit}".rstrip()


COST_HEADERS = ("method", "trainable (share)", "peak memory", "tokens/s", "train time", "saved")
_COST_FORMATS = ("<8", ">18", ">11", ">8", ">10", ">10")  # the method to the left, the numbers to the right


def cost_cells(method: str, costs: dict | None) -> tuple[str, ...]:
    """A method and its costs as table cells (COST_HEADERS), for a sweep's ranking and the leaderboard: a base
    model's are blank, an unmeasured cost (a run older than the costs) is '?'."""
    if method == BASE_METHOD:
        return (method, *[""] * (len(COST_HEADERS) - 1))
    c = costs or {}

    def cell(key: str, show) -> str:
        return "?" if c.get(key) is None else show(c[key])

    share = f" ({c['trainable_share']:.2%})" if c.get("trainable_share") is not None else ""
    return (
        method,
        cell("trainable_parameters", lambda n: human(n, "") + share),
        cell("peak_memory_bytes", lambda n: human(n, "B")),
        cell("tokens_per_second", lambda n: f"{n:.0f}"),
        cell("train_seconds", lambda n: f"{n:.1f} s"),
        cell("saved_bytes", lambda n: human(n, "B")),
    )


def cost_text(cells) -> str:
    """Cells (COST_HEADERS or cost_cells) as fixed-width columns, two spaces after each."""
    return "".join(f"{str(c):{f}}  " for c, f in zip(cells, _COST_FORMATS))


def memory_note(costs: list[dict | None]) -> str:
    """Which peak memory the table shows (the allocator's on a GPU, the process's resident set on a CPU): numbers
    measured both ways are not comparable."""
    kinds = sorted({c["peak_memory_kind"] for c in costs if c and c.get("peak_memory_kind")})
    if not kinds:
        return ""
    return f"peak memory: {'; '.join(kinds)}" + (" (measured differently: not comparable)" if len(kinds) > 1 else "")
