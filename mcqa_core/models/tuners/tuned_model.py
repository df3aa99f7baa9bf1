"""A base model carrying one of our own methods (subset, bottleneck, full) for inference, with PEFT's switch:
`disable_adapter()` is a block in which it answers as the base alone. Imported only where torch already is."""

from __future__ import annotations

from contextlib import contextmanager

import torch


class TunedModel(torch.nn.Module):
    """Forward, generate and every attribute are the wrapped model's; `off` switches the method off and `on`
    back (for a bottleneck, a flag; for changed weights, the base's own tensors exchanged with the trained ones)."""

    def __init__(self, model, method: str, off, on):
        super().__init__()
        self.base_model = model
        self.method = method
        self._off, self._on = off, on

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.base_model, name)

    def get_base_model(self):
        return self.base_model

    @contextmanager
    def disable_adapter(self):
        self._off()
        try:
            yield
        finally:
            self._on()


def with_other_tensors(model, other: dict, method: str, *, load: bool) -> TunedModel:
    """`model` with a second value for some of its parameters (name -> tensor), exchanged by pointer (no copy).
    load=True: `other` are the trained values, put in now, and the base's are kept to switch back to; load=False:
    `other` are the base's values and the model already holds the trained ones."""
    params = dict(model.named_parameters())
    missing = sorted(set(other) - set(params))
    if missing:
        raise KeyError(f"{len(missing)} saved tensors the base does not have, e.g. {missing[0]}")
    for name, tensor in other.items():
        if params[name].shape != tensor.shape:
            raise ValueError(f"{name}: saved {tuple(tensor.shape)}, the base has {tuple(params[name].shape)}")
    spare = {name: t.to(params[name].device, params[name].dtype) for name, t in other.items()}

    def exchange():
        for name, tensor in spare.items():
            params[name].data, spare[name] = tensor, params[name].data

    if load:
        exchange()
    return TunedModel(model, method, exchange, exchange)
