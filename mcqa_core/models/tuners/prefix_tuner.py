"""Prefix tuning with PEFT: learned keys and values for `num_virtual_tokens` positions in front of every layer's
attention. Nothing of the base changes, so nothing can be merged: served as PEFT serves it, or not at all.
PEFT refuses gradient checkpointing for it. Scoring gives such a model whole prompts, right-padded
(evaluation/letter_scoring.py), since its virtual tokens sit before every prompt's cache."""

from __future__ import annotations

from pathlib import Path

from .tuner import Tuner


class PrefixTuner(Tuner):
    name, title = "prefix", "prefix tuning"
    gradient_checkpointing = False
    peft_folder = True

    def attach(self, model, method, lora):
        from peft import PrefixTuningConfig, get_peft_model

        return get_peft_model(
            model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=method.num_virtual_tokens)
        )

    def save(self, model, folder: Path) -> None:
        model.save_pretrained(folder)

    def load(self, base, folder: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(folder))


def virtual_tokens(model) -> int:
    """How many learned positions a prompt-learning PEFT model puts before every input (0 for any other)."""
    config = getattr(model, "active_peft_config", None)
    return int(getattr(config, "num_virtual_tokens", 0) or 0) if getattr(config, "is_prompt_learning", False) else 0
