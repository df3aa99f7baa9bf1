"""The prompt the model sees and the completion it learns, defined once for the whole project.

`PROMPT_VERSION` is saved in every adapter folder (`mcqa_run.json`); loading an adapter trained
with another version is refused, because the letters it learned to emit follow this exact text.
"""

from __future__ import annotations

LETTERS = ("A", "B", "C", "D")
OPTION_KEYS = ("opa", "opb", "opc", "opd")

# The course template, to the character. Bump PROMPT_VERSION whenever it changes.
PROMPT_TEMPLATE = (
    "Choose the correct option for the following question.\n\n"
    "### Question:\n{question}\n\n"
    "### Choice:\nA. {opa}. B. {opb}. C. {opc}. D. {opd}.\n\n"
    "### Answer:\n"
)
PROMPT_VERSION = "course-v1"

# lm-evaluation-harness's `medmcqa` task prompt, so scores can sit next to leaderboard numbers.
LM_EVAL_TEMPLATE = "Question: {question}\nChoices:\nA. {opa}\nB. {opb}\nC. {opc}\nD. {opd}\nAnswer:"

PROMPT_STYLES = {"course": PROMPT_TEMPLATE, "lm-eval": LM_EVAL_TEMPLATE}


def format_prompt(row: dict, style: str = "course") -> str:
    """The prompt for one MedMCQA row in the Hugging Face schema (question, opa..opd)."""
    try:
        template = PROMPT_STYLES[style]
    except KeyError:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {sorted(PROMPT_STYLES)}") from None
    return template.format(question=row["question"], **{k: row[k] for k in OPTION_KEYS})


def answer_letter(row: dict) -> str:
    return LETTERS[int(row["cop"])]


def format_completion(row: dict, style: str = "course") -> str:
    """What the model learns to write after the prompt: "{letter} {option text}" (course) or " {letter}"
    (lm-eval, whose prompt ends without a space). The end-of-sequence token is added by the tokenizer step."""
    letter = answer_letter(row)
    if style == "lm-eval":
        return f" {letter}"
    return f"{letter} {row[OPTION_KEYS[int(row['cop'])]]}"


def letter_prefix(letter: str, style: str = "course") -> str:
    """The text whose first token is the letter the scorer reads, as it begins a completion."""
    return f" {letter}" if style == "lm-eval" else letter
