"""How a trained folder becomes a plain model for `mcqa-export`, by the method it was trained with
(`peft_method` in its mcqa_run.json): a mergeable method (LoRA, subset, full) is loaded onto the 16-bit base by its
own tuner and folded in; any other is refused before a model loads, saying why and what to do instead."""

from __future__ import annotations

from pathlib import Path

from ..models.tuners import TUNERS, method_of, tuner_for

# Why a method's training has no place in the base's weights (models/tuners/ says how each one works).
WHY_NOT_MERGEABLE = {
    "prefix": "prefix tuning's learned keys and values are extra positions in front of every layer's attention, "
    "and a plain model's weights have no place for them",
    "adapter": "bottleneck adapters put a ReLU inside every layer's residual path, a non-linearity that no weight "
    "of the base can hold",
}


def unmergeable_problem(run: dict, adapter: Path) -> str | None:
    """The refusal for a folder whose method cannot be merged, or None. Raises AdapterError for a method this
    version does not know."""
    method = method_of(run)
    tuner = tuner_for(method)
    if tuner.mergeable:
        return None
    why = WHY_NOT_MERGEABLE.get(method, f"{tuner.title} cannot be folded into the base's weights")
    names = [name for name, t in TUNERS.items() if t.mergeable]
    mergeable = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
    return (
        f"--adapter {adapter} was trained with {tuner.title} (--peft-method {method}), which cannot be merged "
        f"into a plain model: {why}. Evaluate or serve the folder itself instead (`mcqa-eval --adapter {adapter}`, "
        f"or choose it in the app), or train with --peft-method {mergeable} for a model to export"
    )


def merge_onto_base(run: dict, adapter: Path, dtype, device: str, score, log):
    """The base in 16-bit or fp32 with the folder's method merged in, its tokenizer, and the unmerged answers
    (`score(model, tok)` of the method loaded but not merged: the agreement check's reference)."""
    from transformers import AutoModelForCausalLM

    from ..models.loading import load_tokenizer, resolve_model

    tuner = tuner_for(method_of(run))
    base_path = resolve_model(run["base_model"])
    log(
        f"[export] loading {run['base_model']} in {str(dtype).removeprefix('torch.')} (not 4-bit) on {device}, "
        f"with its {tuner.title}"
    )
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device)
    tok = load_tokenizer(str(adapter) if (adapter / "tokenizer_config.json").exists() else base_path)
    loaded = tuner.load(base, adapter).eval()
    unmerged = score(loaded, tok)
    model = tuner.merge(loaded)
    model.eval()
    return model, tok, unmerged
