"""ReLoRA (Lialin et al. 2023): every `--relora-steps N` optimizer steps, merge the LoRA update into the model,
re-initialise LoRA, reset its optimizer state and re-warm the learning rate. A 4-bit base is never rewritten:
merged updates stay as frozen low-rank factors beside each layer. The saved adapter stacks every restart and
the live LoRA into one PEFT LoRA. docs/relora.md says how and why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback


def restart_warmup(train_args) -> int:
    """Warm-up steps after each restart: --relora-warmup-steps, else --warmup-steps, at least 1."""
    w = train_args.relora_warmup_steps
    return max(1, train_args.warmup_steps) if w is None else w


def jagged_lambda(base, every: int, warmup: int, max_steps: int):
    """The run's LR multiplier `base(step)` times a linear ramp of `warmup` steps after each restart."""

    def lam(step: int) -> float:
        last = (step // every) * every
        if last == 0 or last >= max_steps or warmup == 0:
            return base(step)
        return base(step) * min(1.0, (step - last + 1) / (warmup + 1))

    return lam


def lora_layers(model):
    """(name, module) for every PEFT LoRA layer."""
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def is_4bit(layer) -> bool:
    w = getattr(layer.get_base_layer(), "weight", None)
    return w is not None and hasattr(w, "quant_state")


class MergedFactors:
    """Frozen low-rank factors of earlier restarts on one 4-bit layer, added to its output by a hook."""

    def __init__(self, base_layer):
        self.A = None  # (R, in)
        self.B = None  # (out, R), scale folded in
        self.handle = base_layer.register_forward_hook(self._hook)

    def append(self, A, B) -> None:
        import torch

        self.A = A if self.A is None else torch.cat([self.A, A], 0)
        self.B = B if self.B is None else torch.cat([self.B, B], 1)

    def _hook(self, module, inputs, output):
        if self.A is None:
            return output
        x = inputs[0].to(self.A.dtype)
        return output + (x @ self.A.T @ self.B.T).to(output.dtype)


class ReLoRACallback(TrainerCallback):
    """Merge, re-initialise and restart every `every` optimizer steps (docs/relora.md)."""

    def __init__(self, every: int, warmup: int, seed: int = 0):
        self.every, self.warmup, self.seed = every, warmup, seed
        self.restarts: list[int] = []
        self.saved: dict[str, list] = {}  # layer name -> [(A, B·scale)] on CPU, for the saved adapter
        self.hooks: dict[str, MergedFactors] = {}

    # Trainer events ---------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, lr_scheduler=None, **kw):
        from torch.optim.lr_scheduler import LambdaLR

        sched = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
        if not isinstance(sched, LambdaLR):
            raise RuntimeError(f"ReLoRA needs a LambdaLR schedule, got {type(sched).__name__}")
        sched.lr_lambdas = [jagged_lambda(f, self.every, self.warmup, state.max_steps) for f in sched.lr_lambdas]

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kw):
        step = state.global_step
        if step % self.every == 0 and step < state.max_steps:
            self.restart(model, optimizer, step)

    # The restart itself -----------------------------------------------------------------------
    def restart(self, model, optimizer=None, step: int | None = None) -> None:
        import torch

        # Same generator on every rank: under DDP all replicas must re-initialise A identically.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + len(self.restarts) + 1)
        lora_params = []
        with torch.no_grad():
            for name, layer in lora_layers(model):
                for adapter in layer.active_adapters:
                    if adapter not in layer.lora_A:
                        continue
                    A, B = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
                    scale = layer.scaling[adapter]
                    factor_A, factor_B = A.detach().clone(), (B.detach() * scale).clone()
                    if is_4bit(layer):
                        if name not in self.hooks:
                            self.hooks[name] = MergedFactors(layer.get_base_layer())
                        self.hooks[name].append(factor_A, factor_B)
                    else:
                        w = layer.get_base_layer().weight
                        w.add_(layer.get_delta_weight(adapter).to(w.dtype))
                    self.saved.setdefault(name, []).append((factor_A.cpu(), factor_B.cpu()))
                    fresh = torch.empty(A.shape, dtype=A.dtype)
                    torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=gen)  # PEFT's default init
                    A.copy_(fresh)
                    B.zero_()
                    lora_params += [A, B]
        if optimizer is not None:
            reset_optimizer_state(optimizer, lora_params)
        self.restarts.append(step if step is not None else -1)

    def record(self) -> dict:
        return {
            "every": self.every,
            "restart_warmup_steps": self.warmup,
            "restarts": list(self.restarts),
            "merge": "4-bit base: frozen low-rank factors beside the NF4 weights; full precision: into W",
            "optimizer_state": "reset for LoRA parameters at each restart",
        }

    def save_adapter(self, model, out: str | Path) -> int:
        """Save the whole update (merged restarts + live LoRA) as one PEFT adapter; returns its rank."""
        model.save_pretrained(out)
        if not self.restarts:
            return model.peft_config["default"].r
        import torch
        from safetensors.torch import save_file

        out = Path(out)
        state, rank = {}, None
        for name, layer in lora_layers(model):
            adapter = "default"
            A = layer.lora_A[adapter].weight.detach().float().cpu()
            B = (layer.lora_B[adapter].weight.detach() * layer.scaling[adapter]).float().cpu()
            As = [a.float() for a, _ in self.saved[name]] + [A]
            Bs = [b.float() for _, b in self.saved[name]] + [B]
            state[f"{name}.lora_A.weight"] = torch.cat(As, 0).contiguous()
            state[f"{name}.lora_B.weight"] = torch.cat(Bs, 1).contiguous()
            rank = state[f"{name}.lora_A.weight"].shape[0]
        save_file(state, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        # Scale 1: the per-restart scales are already folded into B.
        cfg.update({"r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}})
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        return rank


def reset_optimizer_state(optimizer, params) -> int:
    """Drop the optimizer state (moments, step) of `params`; torch and bitsandbytes re-create it lazily."""
    opt = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
    n = 0
    for p in params:
        if opt.state.pop(p, None) is not None:
            n += 1
    return n


def make_relora(train, seed: int):
    """The ReLoRA callback for a run's TrainArgs (None when --relora-steps is unset). The run itself keeps
    its final state instead of reloading the best checkpoint (`load_best_model_at_end=False`): a
    checkpoint's LoRA belongs to its own cycle, and restored onto a base that merged later cycles it would
    be a different model."""
    if train.relora_steps is None:
        return None
    return ReLoRACallback(train.relora_steps, restart_warmup(train), seed=seed)
