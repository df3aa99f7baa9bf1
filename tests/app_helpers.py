"""Helpers for the app tests: a LoRA adapter folder on the tiny random Llama, built in a second."""

from __future__ import annotations

import json
from pathlib import Path


def make_tiny_adapter(
    folder: Path,
    tiny_model_path: str,
    accuracy: float = 0.3125,
    rows: list[dict] | None = None,
    preset="cpu-demo",
    seed: int = 1,
    settings: dict | None = None,
) -> Path:
    """An adapter folder like training writes (adapter weights, mcqa_run.json; with `rows`, eval_report.json with
    the base on the same rows, as training writes it). It stands in for a real run unless `preset` is "smoke"
    (a machinery check, which the app never shows first).

    The LoRA weights are random (not zero-initialised) so the adapter visibly changes the answers.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mcqa_core.data.prompt import PROMPT_VERSION
    from mcqa_core.models.loading import load_tokenizer
    from mcqa_core.models.tuners.lora_tuner import LORA_TARGETS

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    model = get_peft_model(
        base,
        LoraConfig(
            r=4, lora_alpha=32, target_modules=list(LORA_TARGETS), init_lora_weights=False, task_type="CAUSAL_LM"
        ),
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    load_tokenizer(tiny_model_path).save_pretrained(folder)
    run = {
        "format": "mcqa-run/1",
        "base_model": "tiny-random-llama",
        "load_in_4bit": False,
        "prompt_version": PROMPT_VERSION,
        "preset": preset,
        "data": {
            "source": "tests",
            "train_split": "demo-train",
            "train_rows_used": 32,
            "eval_split": "heldout",
            "eval_rows_used": 16,
        },
        "metrics": {"final_accuracy": accuracy},
        "finished": "2026-01-01T00:00:00",
        **({"settings": settings} if settings else {}),
    }
    (folder / "mcqa_run.json").write_text(json.dumps(run))
    if rows:
        from mcqa_core.evaluation.eval_rows import EvalRows
        from mcqa_core.evaluation.measure import measure
        from mcqa_core.evaluation.protocol import EvalProtocol
        from mcqa_core.evaluation.scorers import LetterScorer
        from mcqa_core.models.inference import load_model

        loaded = load_model(adapter=folder, load_in_4bit=False)
        (folder / "eval_report.json").write_text(
            json.dumps(measure(LetterScorer(loaded), EvalRows(rows), EvalProtocol(compare_base=True)))
        )
    return folder
