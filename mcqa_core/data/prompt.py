"""The prompt the model sees and the completion it learns, defined once for the whole project.

`PROMPT_VERSION` is saved in every adapter folder (`mcqa_run.json`); loading an adapter trained
with another version is refused, because the letters it learned to emit follow this exact text.
"""

from __future__ import annotations

# An item has 2 to 5 options, stored in the first keys of OPTION_KEYS (MedMCQA's schema, extended by "ope").
LETTERS = ("A", "B", "C", "D", "E")
OPTION_KEYS = ("opa", "opb", "opc", "opd", "ope")
MEDMCQA_OPTIONS = 4
MIN_OPTIONS, MAX_OPTIONS = 2, 5

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


def option_count(row: dict) -> int:
    """How many options a row has: its leading OPTION_KEYS that hold a value."""
    n = 0
    while n < MAX_OPTIONS and row.get(OPTION_KEYS[n]) is not None:
        n += 1
    return n


def row_options(row: dict) -> list[str]:
    return [row[k] for k in OPTION_KEYS[: option_count(row)]]


def row_letters(row: dict) -> tuple[str, ...]:
    return LETTERS[: option_count(row)]


def format_prompt(row: dict, style: str = "course", scoring: str = "letter", shots: str = "") -> str:
    """The prompt for one row (question, opa..): four options give the templates above to the byte; two,
    three or five list the options that exist the same way. `shots` (solved examples, from `fewshot_prefix`)
    come first; a row carrying CONTEXT_KEY shows its passage before the question.
    `scoring="cloze"`: the question alone (CLOZE_TEMPLATES), each option's text then follows it."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {sorted(PROMPT_STYLES)}")
    return shots + _question_prompt(row, style, scoring)


def _question_prompt(row: dict, style: str, scoring: str = "letter") -> str:
    options = row_options(row)
    if scoring == "cloze":
        text = CLOZE_TEMPLATES[style].format(question=row["question"])
    elif len(options) == MEDMCQA_OPTIONS:
        text = PROMPT_STYLES[style].format(question=row["question"], **dict(zip(OPTION_KEYS, options)))
    elif style == "lm-eval":
        listed = "".join(f"{L}. {o}\n" for L, o in zip(LETTERS, options))
        text = f"Question: {row['question']}\nChoices:\n{listed}Answer:"
    else:
        listed = " ".join(f"{L}. {o}." for L, o in zip(LETTERS, options))
        text = (
            f"Choose the correct option for the following question.\n\n### Question:\n{row['question']}\n\n"
            f"### Choice:\n{listed}\n\n### Answer:\n"
        )
    return _with_context(text, row.get(CONTEXT_KEY), style)


# A passage shown before the question (PubMedQA's abstract, a vignette): after the course's instruction line,
# or as lm-evaluation-harness's pubmedqa task shows it ("Abstract: ...\n"). Rows without one are unchanged.
CONTEXT_KEY = "context"
_INSTRUCTION = "Choose the correct option for the following question.\n\n"


def _with_context(prompt: str, context: str | None, style: str) -> str:
    if not context:
        return prompt
    if style == "lm-eval":
        return f"Abstract: {context}\n{prompt}"
    return f"{_INSTRUCTION}### Context:\n{context}\n\n{prompt.removeprefix(_INSTRUCTION)}"


# Cloze scoring (lm-eval's `acc` / `acc_norm`, OLMES' "RC" form): the question without its options, then each
# option's text as a continuation whose log-likelihood is summed. lm-eval joins them with a space.
CLOZE_TEMPLATES = {
    "course": "Choose the correct option for the following question.\n\n### Question:\n{question}\n\n### Answer:\n",
    "lm-eval": "Question: {question}\nAnswer:",
}
SCORINGS = ("letter", "cloze")


def cloze_continuations(row: dict, style: str = "course") -> list[str]:
    """What follows the cloze prompt for each option, in option order."""
    return [(" " if style == "lm-eval" else "") + o for o in row_options(row)]


# K-shot prompts: K solved examples, each followed by FEWSHOT_SEPARATOR (lm-evaluation-harness's
# fewshot_delimiter), then the question. Zero examples leave the prompt as it is, to the byte.
FEWSHOT_SEPARATOR = "\n\n"


def fewshot_prefix(examples: list[dict], style: str = "course", scoring: str = "letter") -> str:
    """The solved examples, each as its prompt and its answer the way the model was trained to write it (for
    cloze scoring: the correct option's text)."""
    return "".join(
        _question_prompt(ex, style, scoring)
        + (cloze_continuations(ex, style)[int(ex["cop"])] if scoring == "cloze" else format_completion(ex, style))
        + FEWSHOT_SEPARATOR
        for ex in examples
    )


Shots = str | list[str]  # the examples' text: the same before every question, or one per question (retrieved)


def shots_of(shots: Shots, i: int) -> str:
    """The examples' text before question `i`."""
    return shots if isinstance(shots, str) else shots[i]


def answer_letter(row: dict) -> str:
    return LETTERS[int(row["cop"])]


COMPLETIONS = ("letter-text", "letter")  # what the model learns to write: the course's, or the letter alone


def format_completion(row: dict, style: str = "course", completion: str = "letter-text") -> str:
    """What the model learns to write after the prompt: "{letter} {option text}" (course), "{letter}" alone
    (completion="letter": all of the loss on the token the scorer reads), or " {letter}" (lm-eval, whose
    prompt ends without a space). The end-of-sequence token is added by the tokenizer step."""
    letter = answer_letter(row)
    if style == "lm-eval":
        return f" {letter}"
    if completion == "letter":
        return letter
    return f"{letter} {row[OPTION_KEYS[int(row['cop'])]]}"


def letter_prefix(letter: str, style: str = "course") -> str:
    """The text whose first token is the letter the scorer reads, as it begins a completion."""
    return f" {letter}" if style == "lm-eval" else letter
