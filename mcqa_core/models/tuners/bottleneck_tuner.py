"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021): a small down-projection, ReLU and
up-projection whose output is added to the sub-layer's own, in every decoder layer, while the model stays
frozen. `pfeiffer` puts one after each MLP; `houlsby` one after attention and one after the MLP. The
up-projection starts at zero, so training starts from the base model exactly, as a LoRA does.

Our own module: AdapterHub's `adapters` pins transformers 4.57 and PEFT has no bottleneck adapter. The
non-linearity sits inside the residual path, so it cannot be merged into the base's weights.
"""

from __future__ import annotations

from pathlib import Path

from .tuner import Tuner, decoder_layers, read_own_folder, trainable_state, write_own_folder

PLACEMENTS = {"pfeiffer": ("mlp",), "houlsby": ("self_attn", "mlp")}
CHILD = "bottleneck"  # the adapter's name under the sub-layer it follows


def _bottleneck(hidden: int, dim: int, device):
    import torch

    class Bottleneck(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.down = torch.nn.Linear(hidden, dim, device=device)
            self.up = torch.nn.Linear(dim, hidden, device=device)
            torch.nn.init.normal_(self.down.weight, std=1e-2)  # near-identity start (Houlsby)
            torch.nn.init.zeros_(self.down.bias)
            torch.nn.init.zeros_(self.up.weight)
            torch.nn.init.zeros_(self.up.bias)
            self.enabled = True

        def forward(self, h):
            if not self.enabled:
                return h
            x = h.to(self.down.weight.dtype)
            return h + self.up(torch.relu(self.down(x))).to(h.dtype)

    return Bottleneck()


def _after(module, _args, output):
    """The sub-layer's output with its adapter added (attention returns a tuple: its first item is the output)."""
    adapter = getattr(module, CHILD)
    if isinstance(output, tuple):
        return (adapter(output[0]), *output[1:])
    return adapter(output)


def insert(model, dim: int, placement: str) -> list:
    """A bottleneck after each placed sub-layer of every decoder layer; returns the adapters."""
    hidden = model.config.hidden_size
    added = []
    for layer in decoder_layers(model):
        for part in PLACEMENTS[placement]:
            sub = getattr(layer, part)
            device = next(sub.parameters()).device
            sub.add_module(CHILD, _bottleneck(hidden, dim, device))
            sub.register_forward_hook(_after)
            added.append(getattr(sub, CHILD))
    return added


def _adapters(model) -> list:
    return [getattr(sub, CHILD) for layer in decoder_layers(model) for sub in layer.children() if hasattr(sub, CHILD)]


class BottleneckTuner(Tuner):
    name, title = "adapter", "bottleneck adapters"
    # transformers' Trainer refuses a quantized model that is not a PEFT model, and PEFT has no bottleneck adapter
    not_on_4bit = "trains on a 16-bit base here (transformers trains a 4-bit base only through PEFT)"

    def attach(self, model, method, lora):
        for p in model.parameters():
            p.requires_grad_(False)
        insert(model, method.adapter_dim, method.adapter_placement)  # new modules: trainable
        return model

    def save(self, model, folder: Path) -> None:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        adapters = _adapters(inner)
        placement = "houlsby" if len(adapters) > len(decoder_layers(inner)) else "pfeiffer"
        config = {
            "peft_method": self.name,
            "adapter_dim": adapters[0].down.out_features,
            "adapter_placement": placement,
            "base_model_name_or_path": inner.name_or_path,
        }
        write_own_folder(folder, trainable_state(inner), config)

    def load(self, base, folder: Path):
        config, tensors = read_own_folder(folder)
        insert(base, int(config["adapter_dim"]), config["adapter_placement"])
        result = base.load_state_dict(tensors, strict=False)
        if result.unexpected_keys or any(CHILD in k for k in result.missing_keys):
            raise KeyError(
                f"the saved adapters do not fit this base: {(result.unexpected_keys + result.missing_keys)[:2]}"
            )
        return self.for_report(base, "")

    def for_report(self, model, base_path: str):
        from .tuned_model import TunedModel

        adapters = _adapters(model)

        def switch(on: bool):
            def apply():
                for a in adapters:
                    a.enabled = on

            return apply

        return TunedModel(model, self.name, switch(False), switch(True))
