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


def adapter_weights_problem(folder: Path, whole: bool = True) -> str | None:
    """Why the adapter's weight file cannot be used (missing, empty, truncated, not safetensors, inf or nan
    weights), or None. safetensors refuses a file its header does not fully cover; `whole=False` reads that header
    alone (no tensor, no torch: the app's list of adapters)."""
    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        return None if (folder / "adapter_model.bin").exists() else "adapter_model.safetensors is missing"
    if weights.stat().st_size == 0:
        return "adapter_model.safetensors is empty (0 bytes)"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), "pt" if whole else "numpy") as f:
            # A LoRA is small enough to read whole: inf or nan weights (a run that trained on NaN) are damage too.
            bad = next((k for k in f.keys() if not f.get_tensor(k).isfinite().all()), None) if whole else None
    except Exception as e:  # SafetensorError, OSError: a damaged or truncated file
        return f"adapter_model.safetensors is damaged ({str(e)[:160]})"
    return f"adapter_model.safetensors is damaged (non-finite weights in {bad})" if bad else None


def _config_problem(folder: Path) -> tuple[dict, str | None]:
    """(adapter_config.json, why it cannot be read or None): checked here, not in peft after the base has loaded."""
    try:
        peft_config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        return peft_config, None if isinstance(peft_config, dict) else "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {}, f"{type(e).__name__}: {str(e)[:120]}"


def adapter_damage(folder: Path) -> str | None:
    """What makes a folder with adapter_config.json unusable, seen cheaply (the config parsed, the weights' header
    read), or None: the app marks such a folder before anyone picks it."""
    _, damage = _config_problem(folder)
    return f"adapter_config.json is damaged ({damage})" if damage else adapter_weights_problem(folder, whole=False)


def recorded_base_gone(name: str) -> bool:
    """A base recorded as a folder on this machine (a path, never a hub id or an alias) that is no longer there."""
    return (name.startswith(("/", "~", ".")) or name.count("/") > 1) and not Path(name).expanduser().exists()


def base_for(run: dict, base_model: str | None) -> str:
    """The base an adapter loads on: the one its record names, or `base_model` where that folder is gone."""
    return base_model if base_model and recorded_base_gone(run["base_model"]) else run["base_model"]


def read_adapter_info(adapter_dir: str | Path, base_model: str | None = None, *, check_base: bool = True) -> dict:
    """The adapter's run record, checked: refuses folders that are not adapters or use another prompt, and (with
    `check_base`) a recorded base folder that is gone (unless `base_model` stands in) or one the weights do not fit."""
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
    peft_config, damage = _config_problem(folder)
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
    if check_base:
        _check_base(folder, run, base_model)
    return run


def _check_base(folder: Path, run: dict, base_model: str | None) -> None:
    """The base the adapter would load on, checked in a second from config.json and the two safetensors headers,
    where loading the base first took 15-70 s to find the same."""
    recorded = run["base_model"]
    if recorded_base_gone(recorded) and not base_model:
        raise AdapterError(
            f"adapter {folder} was trained on the base model folder {recorded}, which no longer exists; restore "
            "it, or pass --base-model NAME_OR_FOLDER with the same base from elsewhere"
        )
    base = base_for(run, base_model)
    from .architecture import lora_fit_problem

    misfit = lora_fit_problem(folder / "adapter_model.safetensors", base)
    if misfit:
        trained_on = "pass the --base-model it was trained on" if base != recorded else (
            "restore the base it was trained on (or correct base_model in its mcqa_run.json)"
        )  # fmt: skip
        raise AdapterError(
            f"adapter {folder} does not fit base model {base!r}: {misfit}; {trained_on}, or retrain it on this "
            f"base (`mcqa-train --model-name {base} --output-dir {folder} --overwrite`)"
        )


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
        run = read_adapter_info(adapter, base_model)
        trained_on = base_for(run, base_model)  # the record's base, or base_model where its folder is gone
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
    model,
    tokenizer,
    text: str,
    max_new_tokens: int = 64,
    streamer=None,
    stop: list[str] | None = None,
    no_repeat_ngram_size: int = 0,
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
            no_repeat_ngram_size=no_repeat_ngram_size,  # transformers' guard: no run of this many tokens twice
            **({"stop_strings": stop, "tokenizer": tokenizer} if stop else {}),
        )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
