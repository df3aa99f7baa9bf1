"""Subset fine-tuning: the top K decoder layers train, everything else (embeddings, lower layers, final norm,
LM head) stays frozen. Only those layers' tensors are saved; loading puts them over the base's, and merging is
that model saved whole."""

from __future__ import annotations

from pathlib import Path

from ...errors import ModelError
from .tuner import Tuner, decoder_layers, read_own_folder, trainable_state, write_own_folder


def base_tensors(base_path: str, names: list[str]) -> dict:
    """Named tensors read from a model folder's safetensors files (one file or shards), without loading the model."""
    from safetensors import safe_open

    folder = Path(base_path)
    if not folder.is_dir():  # a hub id: the copy the load just used
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(base_path, local_files_only=True, allow_patterns=["*.safetensors"]))
    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            found.update({k: f.get_tensor(k) for k in names if k in f.keys()})
    if missing := [n for n in names if n not in found]:
        raise KeyError(f"the base folder {base_path} lacks {len(missing)} trained tensors, e.g. {missing[0]}")
    return found


class SubsetTuner(Tuner):
    name, title = "subset", "subset fine-tuning (top K layers)"
    mergeable = True
    not_on_4bit = "trains the base's own weights, which 4-bit layers cannot"

    def attach(self, model, method, lora):
        layers = decoder_layers(model)
        k = method.trainable_layers
        if k > len(layers):
            raise ModelError(
                f"--trainable-layers {k} is more than the model's {len(layers)} decoder layers; give at most "
                f"{len(layers)} (or --peft-method full)"
            )
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[len(layers) - k :]:
            for p in layer.parameters():
                p.requires_grad_(True)
        return model

    def save(self, model, folder: Path) -> None:
        n = len(decoder_layers(model))
        trained = [
            i for i, layer in enumerate(decoder_layers(model)) if any(p.requires_grad for p in layer.parameters())
        ]
        config = {"peft_method": self.name, "trainable_layers": len(trained), "layers": trained, "num_layers": n}
        write_own_folder(folder, trainable_state(model), {**config, "base_model_name_or_path": model.name_or_path})

    def load(self, base, folder: Path):
        from .tuned_model import with_other_tensors

        _, tensors = read_own_folder(folder)
        return with_other_tensors(base, tensors, self.name, load=True)

    def for_report(self, model, base_path: str):
        """The model training ended with, able to switch back to the base's own weights (read from the base's
        safetensors files, only the trained tensors) for the report's base comparison."""
        from .tuned_model import with_other_tensors

        names = [n for n, p in model.named_parameters() if p.requires_grad]
        return with_other_tensors(model, base_tensors(base_path, names), self.name, load=False)

    def merge(self, model):
        return model.get_base_model()  # the trained tensors are already in place
