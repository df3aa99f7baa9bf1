"""What a base model is made of, known before any weight loads: the names of its modules (what `--target-modules`
must name), for the checks a run makes before it starts, and whether a saved LoRA's shapes fit it.

The model's folder on this machine (an offline alias already converted, a local folder, or a hub id in the local
Hugging Face cache) answers: its safetensors header names every weight (a few bytes read, no torch), else the
model is built on the meta device from its config.json (no weights, but torch and transformers' model code:
seconds). Nothing is downloaded or converted to find out: a model not on this machine yet is unknown (None), and
the loader checks it later.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from .loading import TINY_MODEL
from .offline import OFFLINE_MODEL, SMOLLM2_FOLDER, TINY_FOLDER, mcqa_cache_dir

ALIAS_FOLDERS = {OFFLINE_MODEL: SMOLLM2_FOLDER, TINY_MODEL: TINY_FOLDER}
WEIGHTS, INDEX = "model.safetensors", "model.safetensors.index.json"


def model_folder(name: str) -> Path | None:
    """The folder holding the model's config.json on this machine, or None (not converted or downloaded yet)."""
    if name in ALIAS_FOLDERS:
        folder = mcqa_cache_dir() / ALIAS_FOLDERS[name]
        return folder if (folder / WEIGHTS).exists() else None
    path = Path(name).expanduser()
    if path.exists():
        return path if (path / "config.json").is_file() else None
    if name.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # an id the hub library refuses, or a cache it cannot read: unknown here
        return None
    return Path(found).parent if isinstance(found, str) else None


def _header_shapes(file: Path) -> dict[str, list]:
    """A safetensors file's tensors and their shapes, from its header alone (8 bytes of length, then JSON)."""
    with file.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {k: v.get("shape", []) for k, v in header.items() if k != "__metadata__"}


def _saved_weights(folder: Path) -> dict[str, int] | None:
    """Every saved weight's name -> its number of dimensions; None when the folder holds no safetensors."""
    try:
        if (folder / INDEX).exists():
            files = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        elif (folder / WEIGHTS).exists():
            files = [WEIGHTS]
        else:
            return None
        return {k: len(shape) for f in files for k, shape in _header_shapes(folder / f).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return None


def _meta_modules(folder: Path) -> dict[str, int] | None:
    """The model built on the meta device from its config: every module -> its weight's dimensions (0: none)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # an architecture this transformers cannot build: loading it will say so
        return None
    weight = lambda m: getattr(m, "weight", None)  # noqa: E731
    return {n: weight(m).dim() if isinstance(weight(m), torch.Tensor) else 0 for n, m in model.named_modules() if n}


def module_names(name: str) -> dict[str, int] | None:
    """Every module path of the model (`model.layers.0.self_attn.q_proj`) -> how many dimensions its weight has (2
    for a linear layer or an embedding, 0 for a container); None when the model is not on this machine yet."""
    folder = model_folder(name)
    if folder is None:
        return None
    weights = _saved_weights(folder)
    if weights is None:
        return _meta_modules(folder)
    modules: dict[str, int] = {}
    for key, dims in weights.items():
        path, _, last = key.rpartition(".")
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            modules.setdefault(".".join(parts[:i]), 0)
        if last == "weight":
            modules[path] = dims
    try:
        tied = json.loads((folder / "config.json").read_text()).get("tie_word_embeddings", True)
    except (OSError, ValueError, AttributeError):
        tied = True
    if tied and "lm_head" not in modules:  # a tied output layer is saved once, as the input embedding
        modules["lm_head"] = 2
    return modules


def missing_targets(modules: dict[str, int], targets: list[str]) -> list[str]:
    """The targets no module answers to, matched as PEFT matches a list: the whole path or its last parts."""
    return [t for t in targets if not any(m == t or m.endswith(f".{t}") for m in modules)]


def layer_names(modules: dict[str, int]) -> list[str]:
    """The distinct last names of the modules with a weight matrix (what LoRA can target), in model order."""
    return list(dict.fromkeys(m.rpartition(".")[2] for m, dims in modules.items() if dims == 2))


def _projection_sizes(config: dict) -> dict[str, tuple[int, int]] | None:
    """(inputs, outputs) of the Llama-family linear layers LoRA targets, from config.json; None for a config these
    names do not describe (a nested text_config, mixture-of-experts layers with their own widths)."""
    if any(k in config for k in ("num_experts", "num_local_experts", "moe_intermediate_size")):
        return None
    try:
        hidden, heads, inter = (int(config[k]) for k in ("hidden_size", "num_attention_heads", "intermediate_size"))
        kv, head = int(config.get("num_key_value_heads") or heads), int(config.get("head_dim") or hidden // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    attn = {"q_proj": (hidden, heads * head), "k_proj": (hidden, kv * head), "v_proj": (hidden, kv * head)}
    mlp = {"gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}
    vocab = {"lm_head": (hidden, int(config["vocab_size"]))} if isinstance(config.get("vocab_size"), int) else {}
    return attn | {"o_proj": (heads * head, hidden)} | mlp | vocab


def lora_fit_problem(weights: Path, base: str) -> str | None:
    """Why a LoRA's saved weights cannot sit on `base`, from the two headers alone (shapes, no tensor read), or
    None: it fits, or cannot be checked cheaply (another method's names, a base not on this machine yet, a layer
    name the config does not size). lora_A is [r, inputs] and lora_B [outputs, r] of the layer it adapts."""
    folder = model_folder(base)
    try:
        config = json.loads((folder / "config.json").read_text()) if folder else None
        shapes = _header_shapes(weights)
    except (OSError, ValueError, TypeError, AttributeError, struct.error):
        return None
    sizes = _projection_sizes(config) if isinstance(config, dict) else None
    if sizes is None:
        return None
    layers = config.get("num_hidden_layers")
    described = (
        f"config.json: hidden_size {config['hidden_size']}, intermediate_size {config['intermediate_size']}, "
        f"{config['num_attention_heads']} heads, {layers} layers"
    )
    for key, shape in shapes.items():
        path, lora, rest = key.partition(".lora_")
        part, name = rest.split(".")[0], path.rpartition(".")[2]
        if not lora or part not in ("A", "B") or len(shape) != 2:
            continue
        layer = re.search(r"\.layers\.(\d+)\.", f"{path}.")
        if layer and isinstance(layers, int) and int(layer.group(1)) >= layers:
            return f"its weights reach layer {layer.group(1)}, the base has {layers} ({described})"
        if name not in sizes:
            continue
        inputs, outputs = sizes[name]
        got, want, side = (shape[1], inputs, "inputs") if part == "A" else (shape[0], outputs, "outputs")
        if got != want:
            where = f"layer {layer.group(1)} {name}" if layer else name
            return f"its {where} has {got} {side}, the base's has {want} ({described})"
    return None
