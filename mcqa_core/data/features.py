"""Token ids and labels for one row, built by length: the prompt and the completion are tokenized
separately, labels are -100 over the prompt (and padding) and the completion's ids after it.

When prompt + completion would exceed `max_seq_length`, the question text is shortened (never an
option, never the completion); a row that still does not fit is skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .prompt import format_completion, format_prompt

IGNORE_INDEX = -100
ELLIPSIS = " ..."


@dataclass
class EncodedPrompt:
    ids: list[int]
    text: str
    shortened: bool  # the question was cut to fit


def _tokens(tokenizer, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def encode_prompt(
    tokenizer, row: dict, max_tokens: int, style: str = "course", scoring: str = "letter", shots: str = ""
) -> EncodedPrompt | None:
    """The prompt's ids (after `shots`, the K-shot examples), with the question shortened until they fit in
    `max_tokens`; None if impossible."""
    text = format_prompt(row, style, scoring, shots)
    ids = _tokens(tokenizer, text, True)
    if len(ids) <= max_tokens:
        return EncodedPrompt(ids, text, False)
    q_ids = _tokens(tokenizer, row["question"], False)
    overflow = len(ids) - max_tokens
    # Cutting tokens and re-tokenizing can shift a boundary by a token or two: retry with a larger cut.
    for extra in (len(_tokens(tokenizer, ELLIPSIS, False)), 4, 8, 16):
        keep = len(q_ids) - overflow - extra
        if keep <= 0:
            return None
        short = dict(row, question=tokenizer.decode(q_ids[:keep]).rstrip() + ELLIPSIS)
        text = format_prompt(short, style, scoring, shots)
        ids = _tokens(tokenizer, text, True)
        if len(ids) <= max_tokens:
            return EncodedPrompt(ids, text, True)
    return None


def completion_ids(tokenizer, row: dict, style: str = "course", completion: str = "letter-text") -> list[int]:
    return _tokens(tokenizer, format_completion(row, style, completion), False) + [tokenizer.eos_token_id]


def encode_example(
    tokenizer, row: dict, max_seq_length: int, style: str = "course", completion: str = "letter-text"
) -> dict | None:
    """`input_ids` and `labels` (-100 on the prompt) for training; None when the row cannot fit."""
    answer = completion_ids(tokenizer, row, style, completion)
    prompt = encode_prompt(tokenizer, row, max_seq_length - len(answer), style)
    if prompt is None:
        return None
    return {
        "input_ids": prompt.ids + answer,
        "labels": [IGNORE_INDEX] * len(prompt.ids) + answer,
        "shortened": prompt.shortened,
    }


@dataclass
class EncodedRows:
    examples: list[dict]
    rows: list[dict]  # the rows kept, aligned with examples
    shortened: int
    skipped_too_long: int


def encode_rows(
    tokenizer, rows: list[dict], max_seq_length: int, style: str = "course", completion: str = "letter-text"
) -> EncodedRows:
    examples, kept, shortened, skipped = [], [], 0, 0
    for row in rows:
        ex = encode_example(tokenizer, row, max_seq_length, style, completion)
        if ex is None:
            skipped += 1
            continue
        shortened += ex.pop("shortened")
        examples.append(ex)
        kept.append(row)
    return EncodedRows(examples, kept, shortened, skipped)
