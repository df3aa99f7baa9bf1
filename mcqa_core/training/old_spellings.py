"""The older spellings of training settings, which still load with a one-line notice: the short flags
(`--batch-size`, `--no-4bit`), their YAML keys (`batch-size`, `batch_size`), the lora group's bare names
(`lora: {r: 16}`) and a field name written with dashes (`max-steps`)."""

from __future__ import annotations

import sys

# old name (underscores) -> (group, field name)
OLD_NAMES = {
    "4bit": ("model", "load_in_4bit"),
    "r": ("lora", "lora_r"),
    "alpha": ("lora", "lora_alpha"),
    "dropout": ("lora", "lora_dropout"),
    "rslora": ("lora", "use_rslora"),
    "batch_size": ("train", "per_device_train_batch_size"),
    "grad_accum": ("train", "gradient_accumulation_steps"),
    "eval_batch_size": ("train", "per_device_eval_batch_size"),
    "epochs": ("train", "num_train_epochs"),
}
# flags that were spelled otherwise (the lora group's --lora-r, --lora-alpha, --lora-dropout are unchanged)
OLD_FLAGS = ("4bit", "rslora", "batch-size", "grad-accum", "eval-batch-size", "epochs")


def old_name(group: str | None, name: str) -> tuple[str, str] | None:
    """(group, field) that an older spelling names, or None."""
    found = OLD_NAMES.get(name.replace("-", "_"))
    return found if found and group in (None, found[0]) else None


def tell(origin: str, renamed: dict[str, str]) -> None:
    """One line on stderr naming the older spellings one settings source used, and what to write instead."""
    if renamed:
        pairs = ", ".join(f"{old} -> {new}" for old, new in renamed.items())
        print(f"notice: {origin}: older spellings still load; write {pairs}", file=sys.stderr)
