"""LoRA (W' = W + BA on the projections) with PEFT; on a 4-bit NF4 base it is QLoRA. unsloth's GPU path builds
the same adapter itself (models/loading.py)."""

from __future__ import annotations

from pathlib import Path

from .tuner import Tuner

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(r=16, alpha=16, dropout=0.0, use_rslora=True, target_modules=LORA_TARGETS):
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        use_rslora=use_rslora,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


class LoraTuner(Tuner):
    name, title = "lora", "LoRA (QLoRA on a 4-bit base)"
    mergeable = True
    unsloth = True
    peft_folder = True

    def attach(self, model, method, lora):
        from peft import get_peft_model

        config = lora_config(lora.lora_r, lora.lora_alpha, lora.lora_dropout, lora.use_rslora, lora.target_modules)
        return get_peft_model(model, config)

    def save(self, model, folder: Path) -> None:
        model.save_pretrained(folder)

    def load(self, base, folder: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(folder))

    def merge(self, model):
        return model.merge_and_unload()
