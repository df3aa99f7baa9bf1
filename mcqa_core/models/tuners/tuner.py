"""The interface every training method implements, and what they share: counting parameters, and writing the
folder a method saves (`adapter_config.json` and `adapter_model.safetensors`, PEFT's names, so a folder of any
method is found, checked and listed the same way).

A tuner takes the method's settings (`method`: peft_method and its own knobs; `lora`: LoRA's) as read by
training/setting_groups.py; it never imports them, since the training floor sits above this one.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
OWN_FORMAT = "mcqa-tuner/1"  # adapter_config.json of a method PEFT does not have


class Tuner:
    name: str = ""
    title: str = ""  # as the docs and the app name it
    mergeable: bool = False  # its weights can be folded into a plain model (mcqa-export)
    # why it cannot train over a 4-bit base, or None where it can
    not_on_4bit: str | None = None
    gradient_checkpointing: bool = True  # can recompute activations (PEFT refuses it for prefix tuning)
    unsloth: bool = False  # unsloth's GPU path supports it
    peft_folder: bool = False  # its folder is PEFT's own (AutoPeftModelForCausalLM opens it)

    def attach(self, model, method, lora):
        """The base model made trainable for this method: only its parameters require grad."""
        raise NotImplementedError

    def save(self, model, folder: Path) -> None:
        """adapter_config.json and adapter_model.safetensors: what the method trained, and nothing else."""
        raise NotImplementedError

    def load(self, base, folder: Path):
        """The saved method on a freshly loaded base, for inference. The result's `disable_adapter()` is a context
        in which it answers as the base alone (the base comparison of every report)."""
        raise NotImplementedError

    def for_report(self, model, base_path: str):
        """The model training ended with, given PEFT's `disable_adapter()` switch if it lacks one (the final
        report's base comparison); `base_path` is the base's folder or hub id."""
        return model

    def merge(self, model):
        """A plain transformers model with the method folded in (mergeable tuners only)."""
        raise NotImplementedError(f"{self.name} cannot be merged")

    def problems(self, model_cfg, method, lora, explicit: list[str]) -> list[str]:
        """Combinations this method cannot train, each a line that names the flag to change."""
        found = []
        if self.not_on_4bit and model_cfg.load_in_4bit:
            found.append(
                f"--peft-method {self.name} {self.not_on_4bit}: pass --no-load-in-4bit (or --peft-method lora "
                "for QLoRA)"
            )
        if not self.unsloth and model_cfg.use_unsloth == "yes":
            found.append(
                f"--peft-method {self.name} runs on transformers (unsloth's GPU path trains LoRA only): pass "
                "--use-unsloth auto or no"
            )
        if (
            not self.gradient_checkpointing
            and lora.gradient_checkpointing
            and "lora.gradient_checkpointing" in explicit
        ):
            found.append(
                f"--peft-method {self.name} cannot recompute activations (PEFT refuses it): drop "
                "--gradient-checkpointing"
            )
        return found


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, all) parameters, a 4-bit weight counted as the weights it packs (PEFT's rule), a tied
    weight once."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2 * (p.element_size() if hasattr(p, "element_size") else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def trainable_state(model) -> dict:
    """Every trainable tensor by its name in `model`, contiguous and detached (what a method saves)."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def write_own_folder(folder: Path, tensors: dict, config: dict) -> None:
    """A method of ours in PEFT's file names: its settings and the tensors it trained."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps({"format": OWN_FORMAT, **config}, indent=2))


def read_own_folder(folder: Path) -> tuple[dict, dict]:
    """(config, tensors) of a folder write_own_folder wrote."""
    from safetensors.torch import load_file

    return json.loads((folder / CONFIG_FILE).read_text()), load_file(str(folder / WEIGHTS_FILE))


def decoder_layers(model):
    """The decoder layers of a Llama-family model (or a PEFT model around one)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder().layers
