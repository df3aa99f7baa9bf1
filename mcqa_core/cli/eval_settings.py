"""`mcqa-eval`'s settings: one field per flag (the field name is the flag), with its help, bounds and choices."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.banks.bank_flags import BankColumns
from ..data.prompt import PROMPT_STYLES, SCORINGS
from ..evaluation.fewshot import SHOT_SELECTIONS
from ..setting_fields import setting

BACKENDS = ("local", "openai")


@dataclass
class EvalArgs(BankColumns):
    adapter: str | None = setting(
        None,
        "Adapter folder written by train_adapter.py (its base model and prompt version come from its mcqa_run.json).",
        metavar="DIR",
    )
    base_model: str | None = setting(
        None,
        "Base model: hub id, local folder or offline alias (smollm2-135m, "
        "tiny-random-llama). With --adapter it must match the adapter's base.",
        metavar="NAME",
    )
    data_dir: str | None = setting(
        None,
        "Folder with validation.jsonl (HF schema); unset: $MCQA_DATA_DIR, else "
        "../shared/data/medmcqa beside the repository, else the hub.",
    )
    split: str | None = setting(
        None,
        "Rows to score: MedMCQA's heldout (default; the offline stand-in) or "
        "validation; a bank's all (default), heldout or rest (sha256(id) % 4).",
    )
    limit: int | None = setting(None, "Score only the first N valid rows.", min=1, metavar="N")
    batch_size: int = setting(16, "Questions per forward pass.", min=1)
    output: str | None = setting(
        None,
        "Report path; the per-subject chart is written beside it as .png (default: reports/NAME-SPLIT.json).",
        metavar="REPORT.json",
    )
    overwrite: bool = setting(False, "Replace an existing report at --output.")
    compare_base: bool = setting(
        False, "Also score with the adapter switched off and list the questions where they disagree."
    )
    prompt: str = setting(
        "course",
        f"Prompt template: {' or '.join(PROMPT_STYLES)} (lm-evaluation-harness's medmcqa prompt).",
        metavar="STYLE",
        choices=PROMPT_STYLES,
    )
    shuffle_options: int = setting(
        0, "Re-ask each question with K permutations of its options (position bias).", min=0, metavar="K"
    )
    shots: int = setting(0, "Solved examples before each question (K-shot; docs/evaluation.md).", min=0, metavar="K")
    shot_selection: str = setting(
        "random",
        "random (the same K for every question, a fixed seed) or similar (each question's K most similar rows of the "
        "examples' pool, by BM25).",
        choices=SHOT_SELECTIONS,
    )
    scoring: str = setting(
        "letter",
        "letter (the next token's A-D, one pass per question) or cloze (each option's text after the question: "
        "lm-eval's acc and acc_norm; docs/evaluation.md).",
        choices=SCORINGS,
    )
    abstain: str | None = setting(
        None,
        "Answer only above a confidence threshold chosen on other rows (the dev slice, the train split, a bank's "
        "rest) for a target: coverage=0.8 or accuracy=0.6; the report states coverage and accuracy at it.",
        metavar="RULE",
    )
    leaderboard: bool = setting(
        False,
        "Score every adapter under --adapters-dir and each base they were trained on, on the same rows and protocol "
        "(saved reports reused), ranked, every pair tested with Holm's correction.",
    )
    adapters_dir: str | None = setting(
        None, "With --leaderboard: the adapters folder (default: $MCQA_ADAPTERS_DIR, else adapters/).", metavar="DIR"
    )
    suite: str | None = setting(
        None,
        "Score a suite of sets with one protocol: medical (MedMCQA, MedQA, PubMedQA, MMLU's six medical subjects, "
        "HEAD-QA) or a YAML file listing sets; one report per set and summary.json in one folder.",
        metavar="NAME_OR_FILE",
    )
    max_prompt_tokens: int = setting(1024, "Longer prompts have their question shortened.", min=1)
    load_in_4bit: bool | None = setting(
        None,
        "Load the base in 4-bit (--4bit) or full precision (--no-4bit); "
        "default: as the adapter was trained, 4-bit for a base alone.",
        flag="4bit",
    )
    backend: str = setting(
        "local",
        "Who scores: local (the model in this process) or openai (a server speaking "
        "the OpenAI API: vLLM, llama.cpp's llama-server; docs/serving.md).",
        choices=BACKENDS,
    )
    endpoint: str | None = setting(
        None, "With --backend openai: the server's URL, e.g. http://localhost:8000/v1.", metavar="URL"
    )
    model: str | None = setting(
        None,
        "With --backend openai: the model (or LoRA) name the server serves "
        "(vLLM's --lora-modules NAME=..., llama-server's --alias).",
        metavar="NAME",
    )
    base_served_model: str | None = setting(
        None, "With --backend openai and --compare-base: the name the server gives the base model.", metavar="NAME"
    )
    timeout: float = setting(60.0, "With --backend openai: seconds to wait for one answer.", min=1)
