"""Questions typed into the app: checked, answered (P(A..D) from one forward pass), explained on request.

Every call that uses the model goes through the process's shared scorer (`shared_model.scorer_for`).
Unfilled options: the prompt always shows four options (it is the one the adapter was trained on), so an
empty option is written as `UNFILLED_OPTION` and its letter is taken out of the answer: its probability
is set to zero and the others are renormalised. A question needs at least two filled options.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..data.features import encode_prompt
from ..data.prompt import CONTEXT_KEY, LETTERS, MEDMCQA_OPTIONS, OPTION_KEYS, format_prompt
from ..errors import DataError
from ..evaluation.letter_scoring import LetterScore
from ..evaluation.scorers import adapter_switch
from ..models import inference
from .row_filters import normalize
from .shared_model import APP_MAX_PROMPT_TOKENS, scorer_for

# The Ask page's boxes: A-D always reach the model (the four-option prompt the adapters learned; an empty one
# is shown as UNFILLED_OPTION), E only when it is filled (a five-option question).
ASK_KEYS = OPTION_KEYS
ALWAYS_ASKED = OPTION_KEYS[:MEDMCQA_OPTIONS]
UNFILLED_OPTION = "(no option)"
EXPLANATION_HEADER = "\n\n### Explanation:\n"
EXPLANATION_END = ["\n\n"]  # one paragraph: small models go on to repeat "The answer is C" after it
EXPLANATION_TOKENS = 96  # the budget: a paragraph, seconds on a CPU (docs/app.md)
# No run of this many tokens twice: a small model at the letter prior otherwise says one sentence five times.
EXPLANATION_NO_REPEAT = 5


@dataclass
class AskInput:
    """A typed question, checked. `row` is what the model sees; `errors` stop it from being asked."""

    row: dict
    allowed: list[str]  # letters of the filled options
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_input(question: str, options: dict[str, str] | list[str], context: str = "") -> AskInput:
    """Check a question and its options (by key opa..ope, or a list in A-E order) before asking the model;
    a passage (`context`) is shown to the model before the question."""
    if not isinstance(options, dict):
        options = dict(zip(ASK_KEYS, options))
    question = (question or "").strip()
    texts = {k: (options.get(k) or "").strip() for k in ASK_KEYS}
    filled = [k for k in ASK_KEYS if texts[k]]
    errors, warns = [], []
    if not question:
        errors.append("Type a question first.")
    if len(filled) < 2:
        have = ", ".join(LETTERS[OPTION_KEYS.index(k)] for k in filled) or "none"
        errors.append(f"Fill at least two options (filled: {have}).")
    seen: dict[str, str] = {}
    for k in filled:
        letter = LETTERS[OPTION_KEYS.index(k)]
        key = normalize(texts[k])
        if key in seen:
            warns.append(f"Options {seen[key]} and {letter} are the same text; the model cannot tell them apart.")
        else:
            seen[key] = letter
    empty = [LETTERS[OPTION_KEYS.index(k)] for k in ALWAYS_ASKED if not texts[k]]
    if empty and len(filled) >= 2:
        warns.append(
            f"Option{'s' if len(empty) > 1 else ''} {', '.join(empty)} left empty: shown to the model as "
            f'"{UNFILLED_OPTION}" and never chosen.'
        )
    row = {"question": question, **{k: texts[k] or UNFILLED_OPTION for k in ASK_KEYS if k in ALWAYS_ASKED or texts[k]}}
    if (context or "").strip():
        row[CONTEXT_KEY] = context.strip()
    allowed = [LETTERS[OPTION_KEYS.index(k)] for k in filled]
    return AskInput(row, allowed, errors, warns)


def restrict_probs(probs: list[float], allowed: list[str]) -> list[float]:
    """Zero the letters of unfilled options and renormalise over the rest."""
    kept = [p if L in allowed else 0.0 for L, p in zip(LETTERS, probs)]
    total = sum(kept)
    return (
        [p / total for p in kept]
        if total > 0
        else [1.0 / len(allowed) if L in allowed else 0.0 for L, _ in zip(LETTERS, probs)]
    )


# --------------------------------------------------------------------------- answering


@dataclass
class Answer(LetterScore):
    """A letter score as the app shows it: P(A..D) restricted to the filled options, the time it took,
    and whether the adapter was on."""

    seconds: float = 0.0
    adapter: bool = True  # answered with the adapter switched on


@dataclass
class PromptInfo:
    text: str  # exactly what the model reads
    n_tokens: int
    shortened: bool
    message: str | None  # how it was shortened, for the user


def prepare_prompt(tokenizer, row: dict, max_tokens: int = APP_MAX_PROMPT_TOKENS, style: str = "course") -> PromptInfo:
    """The prompt the model will read, by the scorers' own `encode_prompt`; a question too long is cut (with
    " ..."), and the message says how. Ask passes its scorer's limit and style (`ask_request.scored_prompt`).

    Raises DataError when even the options alone do not fit.
    """
    enc = encode_prompt(tokenizer, row, max_tokens, style)
    if enc is None:
        raise DataError(f"The options alone are longer than the {max_tokens} tokens the app reads; shorten them.")
    message = None
    if enc.shortened:
        full = len(tokenizer(format_prompt(row, style))["input_ids"])
        q_tokens = len(tokenizer(row["question"], add_special_tokens=False)["input_ids"])
        message = (
            f"The question was too long for the model: the prompt would be {full} tokens and the app reads "
            f"at most {max_tokens}, so the question ({q_tokens} tokens) was cut at the end and marked "
            'with " ...". The options were kept whole.'
        )
    return PromptInfo(enc.text, len(enc.ids), enc.shortened, message)


def answer_rows(loaded, rows: list[dict], *, adapter: bool = True, allowed: list[str] | None = None) -> list[Answer]:
    """Score rows with the loaded model, adapter on (or off: the base model's answer from the same weights).
    `seconds` is the wait for the answer, queueing included: what the user saw."""
    started = time.perf_counter()
    scores = scorer_for(loaded).score(rows, adapter=adapter)
    seconds = time.perf_counter() - started
    out = []
    for s in scores:
        probs = restrict_probs(s.probs, allowed) if allowed else s.probs
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
        out.append(Answer(**{**fields, "probs": probs}, seconds=seconds, adapter=adapter and loaded.has_adapter))
    return out


def answer_question(loaded, row: dict, *, adapter: bool = True, allowed: list[str] | None = None) -> Answer:
    return answer_rows(loaded, [row], adapter=adapter, allowed=allowed)[0]


def explanation_opening(row: dict, letter: str) -> str:
    """The explanation's first words, written for the model: it explains the answer it chose, not another."""
    return f"{letter}. {row[OPTION_KEYS[LETTERS.index(letter)]]} is correct because"


def explanation_prompt(prompt_text: str, row: dict, letter: str) -> str:
    """The scored prompt, the chosen answer as the model was trained to write it, a request to explain, and the
    explanation's opening."""
    option = row[OPTION_KEYS[LETTERS.index(letter)]]
    return f"{prompt_text}{letter} {option}{EXPLANATION_HEADER}{explanation_opening(row, letter)}"


def stream_explanation(
    loaded, prompt_text: str, row: dict, letter: str, max_new_tokens: int = EXPLANATION_TOKENS, adapter: bool = True
) -> Iterator[str]:
    """The explanation piece by piece: its opening, then the model's greedy words as they are written (a server
    backend sends its text at once). Unchecked, and small models ramble: `other_letters` flags the worst case."""
    yield explanation_opening(row, letter)
    prompt = explanation_prompt(prompt_text, row, letter)
    scorer = scorer_for(loaded)
    if getattr(scorer, "generate", None):
        yield _spaced(scorer.generate(prompt, max_new_tokens, adapter=adapter, stop=EXPLANATION_END))
        return
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    failed: list[BaseException] = []

    def write():
        with adapter_switch(loaded.model, adapter):
            inference.generate_text(
                loaded.model,
                loaded.tokenizer,
                prompt,
                max_new_tokens,
                streamer=streamer,
                stop=EXPLANATION_END,
                no_repeat_ngram_size=EXPLANATION_NO_REPEAT,
            )

    def in_turn():  # in the answer queue's turn, alone with the model; the page reads the words meanwhile
        try:
            scorer.run(write)
        except BaseException as e:  # noqa: BLE001 - raised below, in the page's thread
            failed.append(e)
        finally:
            streamer.end()

    worker = threading.Thread(target=in_turn, name="explanation", daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if failed:
        raise failed[0]


def _spaced(text: str) -> str:
    return text if not text or text[0].isspace() else f" {text}"


# "the answer is C", "correct answer: (C)", "option C is correct": claims about which letter is right.
_NAMED_LETTER = re.compile(
    r"(?i:answer)\s*(?i:is|:)?\s*\(?([A-E])\b|(?i:option|choice)\s*\(?([A-E])\)?\s*(?i:is|was)\s*(?i:the\s+)?"
    r"(?i:correct|right|answer)"
)


def other_letters(explanation: str, letter: str, allowed: list[str]) -> list[str]:
    """The letters in play that the explanation calls the answer, other than the chosen one."""
    named = {m.group(1) or m.group(2) for m in _NAMED_LETTER.finditer(explanation)}
    return sorted(named & set(allowed) - {letter})
