"""Full fine-tuning, the reference every parameter-efficient method is measured against: every weight trains
(a tied embedding once). The folder holds the whole model's tensors; merging is that model saved whole."""

from __future__ import annotations

from pathlib import Path

from .subset_tuner import SubsetTuner
from .tuner import trainable_state, write_own_folder


class FullTuner(SubsetTuner):
    name, title = "full", "full fine-tuning (reference)"

    def attach(self, model, method, lora):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def save(self, model, folder: Path) -> None:
        config = {"peft_method": self.name, "base_model_name_or_path": model.name_or_path}
        write_own_folder(folder, trainable_state(model), config)
