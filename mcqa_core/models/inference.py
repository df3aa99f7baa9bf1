"""Loading a trained adapter (or a base model alone) for scoring and generation.

The adapter folder describes itself: `mcqa_run.json` names the base model, whether it was 4-bit
and the prompt version. An adapter trained with another prompt version, or on a base other than
the one asked for, is refused with a message naming both.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.prompt import PROMPT_VERSION
from ..errors import AdapterError, ModelError
from .loading import has_bitsandbytes, has_cuda, load_base_model
from .run_record import measured_accuracy, read_run


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    base_model: str
    adapter: str | None
    load_in_4bit: bool
    device: str
    load_seconds: float
    run: dict = field(default_factory=dict)  # the adapter's mcqa_run.json, {} for a base model
    # Score in bf16 where it pays (`cpu_precision.bf16_pays`), close calls again in fp32: what `load_model` loads.
    # Models built elsewhere (export's merge check) score in fp32, so exact comparisons stay exact.
    bf16_scoring: bool = False

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None

    def describe(self) -> dict:
        return {
            "base_model": self.base_model,
            "adapter": self.adapter,
            "device": self.device,
            "load_in_4bit": self.load_in_4bit,
            "load_seconds": round(self.load_seconds, 2),
            "accuracy": measured_accuracy(self.run)[0],
            "data": self.run.get("data"),
        }


def adapter_weights_problem(folder: Path) -> str | None:
    """Why the adapter's weight file cannot be used (missing, truncated, not safetensors, inf or nan weights), or
    None. safetensors refuses a file its header does not fully cover."""
    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        return None if (folder / "adapter_model.bin").exists() else "adapter_model.safetensors is missing"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            # A LoRA is small enough to read whole: inf or nan weights (a run that trained on NaN) are damage too.
            bad = next((k for k in f.keys() if not f.get_tensor(k).isfinite().all()), None)
    except Exception as e:  # SafetensorError, OSError: a damaged or truncated file
        return f"adapter_model.safetensors is damaged ({str(e)[:160]})"
    return f"adapter_model.safetensors is damaged (non-finite weights in {bad})" if bad else None


def read_adapter_info(adapter_dir: str | Path) -> dict:
    """The adapter's run record, checked: refuses folders that are not adapters or use another prompt."""
    folder = Path(adapter_dir).expanduser()
    if not folder.is_dir():
        raise AdapterError(
            f"adapter folder {folder} does not exist; train one with `python train_adapter.py --output-dir {folder}`"
        )
    if not (folder / "adapter_config.json").exists():
        raise AdapterError(
            f"adapter folder {folder} lacks adapter_config.json; train one with "
            f"`python train_adapter.py --output-dir {folder}`"
        )
    try:  # here, not in peft after the base model has loaded
        peft_config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        damage = None if isinstance(peft_config, dict) else "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        damage = f"{type(e).__name__}: {str(e)[:120]}"
    if damage:
        raise AdapterError(
            f"adapter {folder}: adapter_config.json is damaged ({damage}); retrain it (`python "
            f"train_adapter.py --output-dir {folder} --overwrite`) or restore the file"
        )
    weights_problem = adapter_weights_problem(folder)
    if weights_problem:
        raise AdapterError(
            f"adapter {folder}: {weights_problem}; retrain it (`python train_adapter.py --output-dir "
            f"{folder} --overwrite`) or restore the file"
        )
    run = read_run(folder)
    if not run:  # an adapter trained elsewhere: fall back to PEFT's own record
        method = peft_config.get("peft_method") or {"PREFIX_TUNING": "prefix"}.get(peft_config.get("peft_type"), "lora")
        run = {
            "base_model": peft_config.get("base_model_name_or_path"),
            "prompt_version": None,
            "load_in_4bit": method in ("lora", "prefix"),  # the others train only on a 16-bit base
            "peft_method": method,
        }
    version = run.get("prompt_version")
    if version is not None and version != PROMPT_VERSION:
        raise AdapterError(
            f"adapter {folder} was trained with prompt version {version!r}, this code uses "
            f"{PROMPT_VERSION!r}; its answers would not be comparable. Retrain it, or use the "
            "code version it was trained with."
        )
    if not run.get("base_model"):
        raise AdapterError(f"adapter {folder} does not name its base model (mcqa_run.json / adapter_config.json)")
    return run


def load_model(
    adapter: str | Path | None = None,
    base_model: str | None = None,
    load_in_4bit: bool | None = None,
    device: str | None = None,
) -> LoadedModel:
    """A base model with (or without) a LoRA adapter, in eval mode, ready for `score_rows`.

    With an adapter, the base comes from its mcqa_run.json; `base_model`, when also given, must match.
    The model is marked for bf16 scoring: `score_rows` runs it in bf16 where that pays (`bf16_pays`).
    """
    started = time.perf_counter()
    run: dict = {}
    if adapter is not None:
        run = read_adapter_info(adapter)
        trained_on = run["base_model"]
        if base_model is not None and base_model not in (trained_on, run.get("base_model_resolved")):
            raise AdapterError(
                f"adapter {adapter} was trained on {trained_on!r}, not {base_model!r}; drop "
                f"--base-model or pass --base-model {trained_on}"
            )
        base_model = trained_on
    elif base_model is None:
        raise ModelError("give an adapter folder or a base model name")
    if load_in_4bit is None:
        load_in_4bit = bool(run.get("load_in_4bit", True))
    if load_in_4bit and not has_bitsandbytes():
        raise ModelError("4-bit loading needs bitsandbytes: pip install bitsandbytes (or load without 4-bit)")
    device = device or ("cuda" if has_cuda() else "cpu")
    model, tok, _ = load_base_model(base_model, load_in_4bit, device)
    if adapter is not None:
        from .tuners import method_of, tuner_for

        try:
            model = tuner_for(method_of(run)).load(model, Path(adapter).expanduser())
        except Exception as e:  # shape mismatches and missing keys come as several types
            raise AdapterError(
                f"adapter {adapter} does not fit base model {base_model!r}: {type(e).__name__}: {str(e)[:300]}"
            ) from None
    model.eval()
    return LoadedModel(
        model,
        tok,
        base_model,
        str(adapter) if adapter is not None else None,
        load_in_4bit,
        device,
        time.perf_counter() - started,
        run,
        bf16_scoring=True,
    )


def generate_text(
    model, tokenizer, text: str, max_new_tokens: int = 64, streamer=None, stop: list[str] | None = None
) -> str:
    """Greedy continuation of `text`, stopping at end-of-sequence (max_new_tokens, never max_length: real
    prompts are often longer than 128 tokens), or at a string of `stop`. `streamer` (transformers'
    TextIteratorStreamer) gets each word as it is written."""
    import torch

    enc = tokenizer(text, return_tensors="pt").to(next(model.parameters()).device)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
            **({"stop_strings": stop, "tokenizer": tokenizer} if stop else {}),
        )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
